//! Publisher signatures of plugins: Ed25519 over a component's SHA-256 digest, so the same
//! signature holds for a file on disk and for the same bytes pulled from a registry (a wasm
//! layer's digest is that SHA-256). A leaf: keys, signing, verifying and the text forms.
//!
//! - A public key is `ed25519:` and 32 bytes in base64; the operator lists trusted ones by
//!   name (`runtime.trusted_keys`). Its id is the first 8 bytes of the key's SHA-256 in hex.
//! - A secret key file holds the PKCS#8 document in base64 (what `databot plugin keygen`
//!   writes, mode 0600).
//! - A detached signature (`FILE.wasm.sig`) is JSON `{"version": 1, "key_id", "signature"}`,
//!   the signature over `databot-plugin-signature-v1\n` followed by the digest in hex: the
//!   prefix keeps a plugin signature from being valid for anything else the key signs.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

/// What a signature covers, before the digest.
const DOMAIN: &[u8] = b"databot-plugin-signature-v1\n";
/// The public key text prefix.
const KEY_PREFIX: &str = "ed25519:";
/// The detached signature's suffix, after the file's whole name (`x.wasm.sig`).
pub const SIGNATURE_SUFFIX: &str = ".sig";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("`{0}` is not a public key: write `ed25519:` and the key's 32 bytes in base64")]
    BadPublicKey(String),
    #[error(
        "not a databot secret key file (the PKCS#8 document in base64, as `databot plugin keygen` writes)"
    )]
    BadSecretKey,
    #[error("not a databot plugin signature ({0})")]
    BadSignatureFile(String),
    #[error("the key could not be made: {0}")]
    KeyGeneration(String),
}

/// An Ed25519 public key a publisher signs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; 32],
}

impl PublicKey {
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let bad = || SignatureError::BadPublicKey(text.to_owned());
        let encoded = text.trim().strip_prefix(KEY_PREFIX).ok_or_else(bad)?;
        let bytes = BASE64.decode(encoded).map_err(|_| bad())?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        Ok(Self { bytes })
    }

    /// The key's id: the first 8 bytes of its SHA-256, in hex.
    pub fn id(&self) -> String {
        crate::digest::sha256_hex(&self.bytes)[..16].to_owned()
    }

    fn verifies(&self, digest: &str, signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.bytes)
            .verify(&message(digest), signature)
            .is_ok()
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{KEY_PREFIX}{}", BASE64.encode(self.bytes))
    }
}

/// Where the detached signature of the component file `path` is (`x.wasm` → `x.wasm.sig`).
pub fn signature_path(path: &std::path::Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(SIGNATURE_SUFFIX);
    std::path::PathBuf::from(name)
}

/// Where `databot plugin keygen` writes the public key of the secret key file `path`.
pub fn public_key_path(path: &std::path::Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    std::path::PathBuf::from(name)
}

/// The component file a signature file belongs to (`x.wasm.sig` → `x.wasm`), if it is one.
pub fn signed_file(path: &std::path::Path) -> Option<std::path::PathBuf> {
    let text = path.to_str()?;
    let file = text.strip_suffix(SIGNATURE_SUFFIX)?;
    file.ends_with(".wasm")
        .then(|| std::path::PathBuf::from(file))
}

fn message(digest: &str) -> Vec<u8> {
    let mut message = DOMAIN.to_vec();
    message.extend_from_slice(digest.as_bytes());
    message
}

/// A publisher's signing key.
pub struct SecretKey {
    pair: Ed25519KeyPair,
    /// The PKCS#8 document, as the key file holds it.
    document: Vec<u8>,
}

impl SecretKey {
    /// A new random key.
    pub fn generate() -> Result<Self, SignatureError> {
        let random = ring::rand::SystemRandom::new();
        let document = Ed25519KeyPair::generate_pkcs8(&random)
            .map_err(|e| SignatureError::KeyGeneration(e.to_string()))?;
        Self::from_document(document.as_ref().to_vec())
    }

    fn from_document(document: Vec<u8>) -> Result<Self, SignatureError> {
        let pair =
            Ed25519KeyPair::from_pkcs8(&document).map_err(|_| SignatureError::BadSecretKey)?;
        Ok(Self { pair, document })
    }

    /// Reads the key file's text.
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let document = BASE64
            .decode(text.trim())
            .map_err(|_| SignatureError::BadSecretKey)?;
        Self::from_document(document)
    }

    /// The key file's text.
    pub fn to_text(&self) -> String {
        format!("{}\n", BASE64.encode(&self.document))
    }

    pub fn public_key(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey { bytes }
    }

    /// The detached signature of the component whose SHA-256 is `digest` (hex).
    pub fn sign(&self, digest: &str) -> Signature {
        Signature {
            version: 1,
            key_id: self.public_key().id(),
            signature: BASE64.encode(self.pair.sign(&message(digest)).as_ref()),
        }
    }
}

/// A detached signature, as the `.sig` file holds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub version: u32,
    /// The id of the key that made it (`PublicKey::id`).
    pub key_id: String,
    /// The Ed25519 signature in base64.
    pub signature: String,
}

impl Signature {
    /// Reads a `.sig` file's text. Errors never quote the text (it may be anything a
    /// symlink points at), only say what is wrong.
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let signature: Self = serde_json::from_str(text).map_err(|_| {
            SignatureError::BadSignatureFile(
                "expected JSON {\"version\": 1, \"key_id\", \"signature\"}".into(),
            )
        })?;
        let hex_id = signature.key_id.len() == 16
            && signature
                .key_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_id {
            return Err(SignatureError::BadSignatureFile(
                "its key id is not 16 lower-case hex digits".into(),
            ));
        }
        if signature.version != 1 {
            return Err(SignatureError::BadSignatureFile(format!(
                "version {} (this host reads version 1)",
                signature.version
            )));
        }
        Ok(signature)
    }

    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// The publisher keys an operator trusts, by name.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<String, PublicKey>,
}

/// Who signed a component, when it was checked against the trusted keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signer {
    /// The key's name in `runtime.trusted_keys`.
    pub key: String,
    pub key_id: String,
}

/// Why a signature was not accepted, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error(
        "it is not signed; sign it with `databot plugin sign FILE --key KEYFILE` by {expected}"
    )]
    Unsigned { expected: String },
    #[error(
        "it is signed by key id {key_id}, which runtime.trusted_keys does not list; expected {expected}"
    )]
    UnknownKey { key_id: String, expected: String },
    #[error(
        "its signature by `{key}` (key id {key_id}) does not match its bytes: the file was changed after it was signed, or the signature is for another file"
    )]
    Mismatch { key: String, key_id: String },
    #[error("its signature cannot be read: {0}")]
    Unreadable(String),
}

impl TrustedKeys {
    /// The keys of `runtime.trusted_keys` (`name: ed25519:...`).
    pub fn parse(keys: &BTreeMap<String, String>) -> Result<Self, (String, SignatureError)> {
        let keys = keys
            .iter()
            .map(|(name, text)| {
                PublicKey::parse(text)
                    .map(|key| (name.clone(), key))
                    .map_err(|e| (name.clone(), e))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys a signature is expected from, for messages: `a (key id …)` or a list.
    pub fn expected(&self) -> String {
        if self.keys.is_empty() {
            return "a publisher key listed in runtime.trusted_keys (none is listed)".to_owned();
        }
        let names: Vec<String> = self
            .keys
            .iter()
            .map(|(name, key)| format!("`{name}` (key id {})", key.id()))
            .collect();
        format!("one of the trusted keys: {}", names.join(", "))
    }

    /// Checks the detached signature text (`None`: there is none) of the component whose
    /// SHA-256 is `digest`.
    pub fn check(&self, digest: &str, signature: Option<&str>) -> Result<Signer, Rejection> {
        let Some(text) = signature else {
            return Err(Rejection::Unsigned {
                expected: self.expected(),
            });
        };
        let signature = Signature::parse(text).map_err(|e| Rejection::Unreadable(e.to_string()))?;
        let Some((name, key)) = self
            .keys
            .iter()
            .find(|(_, key)| key.id() == signature.key_id)
        else {
            return Err(Rejection::UnknownKey {
                key_id: signature.key_id,
                expected: self.expected(),
            });
        };
        let bytes = BASE64
            .decode(&signature.signature)
            .ok()
            .filter(|bytes| bytes.len() == 64)
            .ok_or_else(|| {
                Rejection::Unreadable("the signature is not 64 bytes in base64".to_owned())
            })?;
        if !key.verifies(digest, &bytes) {
            return Err(Rejection::Mismatch {
                key: name.clone(),
                key_id: signature.key_id,
            });
        }
        Ok(Signer {
            key: name.clone(),
            key_id: signature.key_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(pairs: &[(&str, &PublicKey)]) -> TrustedKeys {
        let keys = pairs
            .iter()
            .map(|(name, key)| ((*name).to_owned(), key.to_string()))
            .collect();
        TrustedKeys::parse(&keys).unwrap()
    }

    #[test]
    fn a_signature_holds_for_its_digest_and_key_only() {
        let acme = SecretKey::generate().unwrap();
        let other = SecretKey::generate().unwrap();
        let keys = trusted(&[("acme", &acme.public_key())]);
        let digest = crate::digest::sha256_hex(b"component");
        let signature = acme.sign(&digest).to_text();
        let signer = keys.check(&digest, Some(&signature)).unwrap();
        assert_eq!(signer.key, "acme");
        assert_eq!(signer.key_id, acme.public_key().id());
        // Tampered bytes: another digest.
        let tampered = crate::digest::sha256_hex(b"component!");
        assert!(matches!(
            keys.check(&tampered, Some(&signature)),
            Err(Rejection::Mismatch { key, .. }) if key == "acme"
        ));
        // Re-signed by someone else.
        let resigned = other.sign(&digest).to_text();
        let rejection = keys.check(&digest, Some(&resigned)).unwrap_err();
        assert!(matches!(rejection, Rejection::UnknownKey { .. }));
        assert!(rejection.to_string().contains(&acme.public_key().id()));
        // Someone else's signature bytes under acme's key id.
        let mut forged = other.sign(&digest);
        forged.key_id = acme.public_key().id();
        assert!(matches!(
            keys.check(&digest, Some(&forged.to_text())),
            Err(Rejection::Mismatch { .. })
        ));
        // None at all, or garbage.
        let unsigned = keys.check(&digest, None).unwrap_err();
        assert!(unsigned.to_string().contains("`acme`"), "{unsigned}");
        assert!(matches!(
            keys.check(&digest, Some("{")),
            Err(Rejection::Unreadable(_))
        ));
        // What a signature file holds is never quoted back (it may be another file's text).
        let secret = keys
            .check(&digest, Some("\"db-password-123\""))
            .unwrap_err();
        assert!(!secret.to_string().contains("db-password"), "{secret}");
        let mut odd_id = acme.sign(&digest);
        odd_id.key_id = "<script>".into();
        let odd = keys.check(&digest, Some(&odd_id.to_text())).unwrap_err();
        assert!(matches!(odd, Rejection::Unreadable(_)) && !odd.to_string().contains("<script>"));
        let mut short = acme.sign(&digest);
        short.signature = BASE64.encode([1u8; 10]);
        assert!(matches!(
            keys.check(&digest, Some(&short.to_text())),
            Err(Rejection::Unreadable(_))
        ));
    }

    #[test]
    fn keys_round_trip_through_their_text() {
        let key = SecretKey::generate().unwrap();
        let again = SecretKey::parse(&key.to_text()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let public = PublicKey::parse(&key.public_key().to_string()).unwrap();
        assert_eq!(public, key.public_key());
        assert_eq!(public.id().len(), 16);
        assert!(PublicKey::parse("ed25519:AAAA").is_err());
        assert!(PublicKey::parse("rsa:xyz").is_err());
        assert!(SecretKey::parse("not a key").is_err());
        let keys = BTreeMap::from([("x".to_owned(), "nope".to_owned())]);
        assert_eq!(TrustedKeys::parse(&keys).unwrap_err().0, "x");
    }
}
