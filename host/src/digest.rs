//! Content digests: the SHA-256 of some bytes as lower-case hex, the one form the host uses for
//! plugin digests (compile cache keys, revisions) and for knowledge-base chunk hashes. A leaf.

use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_digest_is_sha256_in_lower_case_hex() {
        assert_eq!(
            super::sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
