//! Which IP addresses count as "on the public internet" for egress.
//!
//! The tables follow the IANA special-purpose address registries:
//! - IPv4: <https://www.iana.org/assignments/iana-ipv4-special-registry/> (plus multicast,
//!   224.0.0.0/4, from the IPv4 Multicast Address Space registry),
//! - IPv6: <https://www.iana.org/assignments/iana-ipv6-special-registry/> (plus multicast,
//!   ff00::/8, the deprecated site-local fec0::/10 and IPv4-compatible ::/96 of RFC 4291 and
//!   RFC 3879, and the IPv4-translated ::ffff:0:0:0/96 of RFC 2765).
//!
//! An address is looked up by longest prefix, as the registry is read: 192.0.0.0/24 is not
//! globally reachable but its 192.0.0.9/32 and 192.0.0.10/32 entries are. Every entry whose
//! "Globally Reachable" column is False (or N/A for a deprecated block) is refused. Forms that
//! carry an IPv4 address (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64 64:ff9b::/96,
//! 6to4 2002::/16, Teredo 2001::/32) are judged by the IPv4 addresses inside them, since that is
//! where a connection to them ends up. IPv6 outside 2000::/3 is refused unless an entry says
//! otherwise: IANA's IPv6 Address Space registry allocates only 2000::/3 as global unicast.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How an IPv6 entry is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Globally reachable (public).
    Global,
    /// Not globally reachable (or deprecated, N/A in the registry): refused.
    Local,
    /// Judged by the IPv4 address(es) it carries.
    Embedded(Embedding),
}

/// Where the IPv4 address sits inside an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Embedding {
    /// The last 32 bits (IPv4-mapped, -compatible, -translated, NAT64).
    Low32,
    /// Bits 16..48 (6to4, RFC 3056).
    SixToFour,
    /// Teredo (RFC 4380): the server in bits 32..64, the client obfuscated in the last 32
    /// bits. Public only when both are.
    Teredo,
}

struct V4Entry {
    prefix: Ipv4Addr,
    len: u8,
    global: bool,
    /// The registry's name for the block (kept for readers and test messages).
    name: &'static str,
}

struct V6Entry {
    prefix: Ipv6Addr,
    len: u8,
    reach: Reach,
    name: &'static str,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8, global: bool, name: &'static str) -> V4Entry {
    V4Entry {
        prefix: Ipv4Addr::new(a, b, c, d),
        len,
        global,
        name,
    }
}

const fn v6(s: [u16; 8], len: u8, reach: Reach, name: &'static str) -> V6Entry {
    V6Entry {
        prefix: Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        len,
        reach,
        name,
    }
}

/// IANA IPv4 Special-Purpose Address Registry, every row, with its "Globally Reachable"
/// column; plus multicast. Addresses in no entry are public.
const IPV4_TABLE: &[V4Entry] = &[
    v4(0, 0, 0, 0, 8, false, "\"This network\" (RFC 791)"),
    v4(
        0,
        0,
        0,
        0,
        32,
        false,
        "\"This host on this network\" (RFC 1122)",
    ),
    v4(10, 0, 0, 0, 8, false, "Private-Use (RFC 1918)"),
    v4(100, 64, 0, 0, 10, false, "Shared Address Space (RFC 6598)"),
    v4(127, 0, 0, 0, 8, false, "Loopback (RFC 1122)"),
    v4(169, 254, 0, 0, 16, false, "Link Local (RFC 3927)"),
    v4(172, 16, 0, 0, 12, false, "Private-Use (RFC 1918)"),
    v4(
        192,
        0,
        0,
        0,
        24,
        false,
        "IETF Protocol Assignments (RFC 6890)",
    ),
    v4(
        192,
        0,
        0,
        0,
        29,
        false,
        "IPv4 Service Continuity Prefix (RFC 7335)",
    ),
    v4(192, 0, 0, 8, 32, false, "IPv4 dummy address (RFC 7600)"),
    v4(
        192,
        0,
        0,
        9,
        32,
        true,
        "Port Control Protocol Anycast (RFC 7723)",
    ),
    v4(
        192,
        0,
        0,
        10,
        32,
        true,
        "Traversal Using Relays around NAT Anycast (RFC 8155)",
    ),
    v4(
        192,
        0,
        0,
        170,
        32,
        false,
        "NAT64/DNS64 Discovery (RFC 8880)",
    ),
    v4(
        192,
        0,
        0,
        171,
        32,
        false,
        "NAT64/DNS64 Discovery (RFC 8880)",
    ),
    v4(
        192,
        0,
        2,
        0,
        24,
        false,
        "Documentation (TEST-NET-1, RFC 5737)",
    ),
    v4(192, 31, 196, 0, 24, true, "AS112-v4 (RFC 7535)"),
    v4(192, 52, 193, 0, 24, true, "AMT (RFC 7450)"),
    v4(
        192,
        88,
        99,
        0,
        24,
        false,
        "Deprecated (6to4 Relay Anycast, RFC 7526)",
    ),
    v4(192, 168, 0, 0, 16, false, "Private-Use (RFC 1918)"),
    v4(
        192,
        175,
        48,
        0,
        24,
        true,
        "Direct Delegation AS112 Service (RFC 7534)",
    ),
    v4(198, 18, 0, 0, 15, false, "Benchmarking (RFC 2544)"),
    v4(
        198,
        51,
        100,
        0,
        24,
        false,
        "Documentation (TEST-NET-2, RFC 5737)",
    ),
    v4(
        203,
        0,
        113,
        0,
        24,
        false,
        "Documentation (TEST-NET-3, RFC 5737)",
    ),
    v4(224, 0, 0, 0, 4, false, "Multicast (RFC 5771)"),
    v4(240, 0, 0, 0, 4, false, "Reserved (RFC 1112)"),
    v4(255, 255, 255, 255, 32, false, "Limited Broadcast (RFC 919)"),
];

const LOCAL: Reach = Reach::Local;
const GLOBAL: Reach = Reach::Global;
const LOW32: Reach = Reach::Embedded(Embedding::Low32);

/// IANA IPv6 Special-Purpose Address Registry, every row, plus the blocks named in the module
/// header. Addresses in no entry are public only inside 2000::/3 (`GLOBAL_UNICAST`).
const IPV6_TABLE: &[V6Entry] = &[
    v6(
        [0, 0, 0, 0, 0, 0, 0, 1],
        128,
        LOCAL,
        "Loopback Address (RFC 4291)",
    ),
    v6(
        [0, 0, 0, 0, 0, 0, 0, 0],
        128,
        LOCAL,
        "Unspecified Address (RFC 4291)",
    ),
    v6(
        [0, 0, 0, 0, 0, 0, 0, 0],
        96,
        LOW32,
        "IPv4-compatible, deprecated (RFC 4291)",
    ),
    v6(
        [0, 0, 0, 0, 0, 0xffff, 0, 0],
        96,
        LOW32,
        "IPv4-mapped Address (RFC 4291)",
    ),
    v6(
        [0, 0, 0, 0, 0xffff, 0, 0, 0],
        96,
        LOW32,
        "IPv4-translated (RFC 2765)",
    ),
    v6(
        [0x64, 0xff9b, 0, 0, 0, 0, 0, 0],
        96,
        LOW32,
        "IPv4-IPv6 Translat. (RFC 6052)",
    ),
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        LOCAL,
        "IPv4-IPv6 Translat. (RFC 8215)",
    ),
    v6(
        [0x100, 0, 0, 0, 0, 0, 0, 0],
        64,
        LOCAL,
        "Discard-Only Address Block (RFC 6666)",
    ),
    v6(
        [0x100, 0, 0, 1, 0, 0, 0, 0],
        64,
        LOCAL,
        "Dummy IPv6 Prefix (RFC 9780)",
    ),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        LOCAL,
        "IETF Protocol Assignments (RFC 2928)",
    ),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        32,
        Reach::Embedded(Embedding::Teredo),
        "TEREDO (RFC 4380)",
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 1],
        128,
        GLOBAL,
        "Port Control Protocol Anycast (RFC 7723)",
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 2],
        128,
        GLOBAL,
        "TURN Anycast (RFC 8155)",
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 3],
        128,
        GLOBAL,
        "DNS-SD SRP Anycast (RFC 9665)",
    ),
    v6(
        [0x2001, 2, 0, 0, 0, 0, 0, 0],
        48,
        LOCAL,
        "Benchmarking (RFC 5180)",
    ),
    v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32, GLOBAL, "AMT (RFC 7450)"),
    v6(
        [0x2001, 4, 0x112, 0, 0, 0, 0, 0],
        48,
        GLOBAL,
        "AS112-v6 (RFC 7535)",
    ),
    v6(
        [0x2001, 0x10, 0, 0, 0, 0, 0, 0],
        28,
        LOCAL,
        "Deprecated (previously ORCHID, RFC 4843)",
    ),
    v6(
        [0x2001, 0x20, 0, 0, 0, 0, 0, 0],
        28,
        GLOBAL,
        "ORCHIDv2 (RFC 7343)",
    ),
    v6(
        [0x2001, 0x30, 0, 0, 0, 0, 0, 0],
        28,
        GLOBAL,
        "Drone Remote ID Protocol Entity Tags (RFC 9374)",
    ),
    v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        LOCAL,
        "Documentation (RFC 3849)",
    ),
    v6(
        [0x2002, 0, 0, 0, 0, 0, 0, 0],
        16,
        Reach::Embedded(Embedding::SixToFour),
        "6to4 (RFC 3056)",
    ),
    v6(
        [0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0],
        48,
        GLOBAL,
        "Direct Delegation AS112 Service (RFC 7534)",
    ),
    v6(
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        LOCAL,
        "Documentation (RFC 9637)",
    ),
    v6(
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        LOCAL,
        "Segment Routing (SRv6) SIDs (RFC 9602)",
    ),
    v6(
        [0xfc00, 0, 0, 0, 0, 0, 0, 0],
        7,
        LOCAL,
        "Unique-Local (RFC 4193)",
    ),
    v6(
        [0xfe80, 0, 0, 0, 0, 0, 0, 0],
        10,
        LOCAL,
        "Link-Local Unicast (RFC 4291)",
    ),
    v6(
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        LOCAL,
        "Site-Local, deprecated (RFC 3879)",
    ),
    v6(
        [0xff00, 0, 0, 0, 0, 0, 0, 0],
        8,
        LOCAL,
        "Multicast (RFC 4291)",
    ),
];

/// 2000::/3, the only block IANA allocates as global unicast.
const GLOBAL_UNICAST: (u128, u8) = (0x2000 << 112, 3);

fn prefix_contains(prefix: u128, len: u8, bits: u32, address: u128) -> bool {
    let shift = bits - u32::from(len);
    // `checked_shr` is None only for a shift of the full width: a /0 prefix.
    match (address ^ prefix).checked_shr(shift) {
        Some(rest) => rest == 0,
        None => true,
    }
}

fn v4_entry(ip: Ipv4Addr) -> Option<&'static V4Entry> {
    IPV4_TABLE
        .iter()
        .filter(|e| {
            prefix_contains(
                u128::from(u32::from(e.prefix)),
                e.len,
                32,
                u128::from(u32::from(ip)),
            )
        })
        .max_by_key(|e| e.len)
}

fn v6_entry(ip: Ipv6Addr) -> Option<&'static V6Entry> {
    IPV6_TABLE
        .iter()
        .filter(|e| prefix_contains(u128::from(e.prefix), e.len, 128, u128::from(ip)))
        .max_by_key(|e| e.len)
}

fn public_v4(ip: Ipv4Addr) -> bool {
    v4_entry(ip).is_none_or(|entry| entry.global)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from(bits as u32);
    match v6_entry(ip).map(|entry| entry.reach) {
        Some(Reach::Global) => true,
        Some(Reach::Local) => false,
        Some(Reach::Embedded(Embedding::Low32)) => public_v4(low32),
        Some(Reach::Embedded(Embedding::SixToFour)) => {
            public_v4(Ipv4Addr::from((bits >> 80) as u32))
        }
        Some(Reach::Embedded(Embedding::Teredo)) => {
            public_v4(Ipv4Addr::from((bits >> 64) as u32))
                && public_v4(Ipv4Addr::from(!(bits as u32)))
        }
        None => prefix_contains(GLOBAL_UNICAST.0, GLOBAL_UNICAST.1, 128, bits),
    }
}

/// Is this address on the public internet? See the module header for the rules.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

/// The registry name of the special-purpose block an address is in, if any (for messages).
pub fn special_purpose_block(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_entry(v4).map(|e| e.name),
        IpAddr::V6(v6) => v6_entry(v6).map(|e| e.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_at(prefix: Ipv4Addr, len: u8, last: bool) -> Ipv4Addr {
        let mask = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        Ipv4Addr::from(u32::from(prefix) | if last { mask } else { 0 })
    }

    fn v6_at(prefix: Ipv6Addr, len: u8, last: bool) -> Ipv6Addr {
        let mask = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        Ipv6Addr::from(u128::from(prefix) | if last { mask } else { 0 })
    }

    fn public(text: &str) -> bool {
        is_public_ip(
            text.parse()
                .unwrap_or_else(|_| panic!("{text} is not an address")),
        )
    }

    #[test]
    fn every_prefix_is_well_formed() {
        for entry in IPV4_TABLE {
            assert!(entry.len <= 32, "{}", entry.name);
            assert_eq!(
                v4_at(entry.prefix, entry.len, false),
                entry.prefix,
                "{}",
                entry.name
            );
        }
        for entry in IPV6_TABLE {
            assert!(entry.len <= 128, "{}", entry.name);
            assert_eq!(
                v6_at(entry.prefix, entry.len, false),
                entry.prefix,
                "{}",
                entry.name
            );
        }
    }

    #[test]
    fn every_ipv4_entry_holds_from_its_first_to_its_last_address() {
        for entry in IPV4_TABLE {
            for last in [false, true] {
                let ip = v4_at(entry.prefix, entry.len, last);
                // A more specific entry may decide for the first or last address.
                let decided_by = v4_entry(ip).map(|e| e.name);
                if decided_by == Some(entry.name) {
                    assert_eq!(public_v4(ip), entry.global, "{ip} in {}", entry.name);
                }
            }
        }
        // Entries without a more specific one inside, checked at both ends.
        for (first, last) in [
            ("0.0.0.0", "0.255.255.255"),
            ("10.0.0.0", "10.255.255.255"),
            ("100.64.0.0", "100.127.255.255"),
            ("127.0.0.0", "127.255.255.255"),
            ("169.254.0.0", "169.254.255.255"),
            ("172.16.0.0", "172.31.255.255"),
            ("192.0.0.0", "192.0.0.255"),
            ("192.0.2.0", "192.0.2.255"),
            ("192.88.99.0", "192.88.99.255"),
            ("192.168.0.0", "192.168.255.255"),
            ("198.18.0.0", "198.19.255.255"),
            ("198.51.100.0", "198.51.100.255"),
            ("203.0.113.0", "203.0.113.255"),
            ("224.0.0.0", "239.255.255.255"),
            ("240.0.0.0", "255.255.255.255"),
        ] {
            assert!(!public(first), "{first}");
            assert!(!public(last), "{last}");
        }
    }

    #[test]
    fn ipv4_neighbours_of_special_blocks_are_public() {
        for outside in [
            "1.0.0.0",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "191.255.255.255",
            "192.0.1.0",
            "192.0.3.0",
            "192.88.98.255",
            "192.88.100.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
        ] {
            assert!(public(outside), "{outside}");
        }
    }

    #[test]
    fn globally_reachable_registry_rows_inside_local_blocks_are_public() {
        for ip in [
            "192.0.0.9",
            "192.0.0.10",
            "192.31.196.1",
            "192.52.193.1",
            "192.175.48.1",
        ] {
            assert!(public(ip), "{ip}");
        }
        for ip in [
            "192.0.0.0",
            "192.0.0.7",
            "192.0.0.8",
            "192.0.0.11",
            "192.0.0.170",
            "192.0.0.171",
            "192.0.0.255",
        ] {
            assert!(!public(ip), "{ip}");
        }
    }

    #[test]
    fn every_ipv6_local_entry_is_refused_at_both_ends() {
        for entry in IPV6_TABLE {
            if entry.reach != Reach::Local {
                continue;
            }
            for last in [false, true] {
                let ip = v6_at(entry.prefix, entry.len, last);
                if v6_entry(ip).map(|e| e.name) == Some(entry.name) {
                    assert!(!public_v6(ip), "{ip} in {}", entry.name);
                }
            }
        }
        for inside in [
            "::",
            "::1",
            "100::",
            "100::ffff:ffff:ffff:ffff",
            "100:0:0:1::1",
            "2001::ffff",
            "2001:1::",
            "2001:1::4",
            "2001:2::1",
            "2001:2:0:ffff::1",
            "2001:10::1",
            "2001:1f:ffff::1",
            "2001:1ff:ffff::1",
            "2001:db8::",
            "2001:db8:ffff:ffff::1",
            "3fff::",
            "3fff:fff:ffff::1",
            "5f00::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf:ffff::1",
            "fec0::1",
            "feff::1",
            "ff02::1",
            "ff0e::1",
            "64:ff9b:1::1",
        ] {
            assert!(!public(inside), "{inside}");
        }
    }

    #[test]
    fn ipv6_globally_reachable_rows_and_global_unicast_are_public() {
        for outside in [
            "2001:1::1",
            "2001:1::2",
            "2001:1::3",
            "2001:3::1",
            "2001:4:112::1",
            "2001:20::1",
            "2001:2f:ffff::1",
            "2001:30::1",
            "2001:200::1",
            "2001:db7:ffff::1",
            "2001:db9::1",
            "2606:4700::1111",
            "2620:4f:8000::1",
            "2a00:1450:4001::200e",
            "3ffe:ffff::1",
            "3fff:1000::1",
        ] {
            assert!(public(outside), "{outside}");
        }
    }

    #[test]
    fn ipv6_outside_global_unicast_is_refused() {
        for inside in [
            "1::1",
            "400::1",
            "1fff:ffff::1",
            "4000::1",
            "8000::1",
            "e000::1",
            "::1:0:0:1",
        ] {
            assert!(!public(inside), "{inside}");
        }
    }

    #[test]
    fn embedded_ipv4_addresses_are_judged_by_the_ipv4_address() {
        for (inside, outside) in [
            // IPv4-mapped
            ("::ffff:127.0.0.1", "::ffff:8.8.8.8"),
            ("::ffff:10.1.2.3", "::ffff:93.184.216.34"),
            ("::ffff:169.254.169.254", "::ffff:1.1.1.1"),
            // IPv4-compatible
            ("::127.0.0.1", "::8.8.8.8"),
            ("::10.0.0.1", "::1.1.1.1"),
            ("::0.0.0.2", "::93.184.216.34"),
            ("::192.168.1.1", "::9.9.9.9"),
            // IPv4-translated
            ("::ffff:0:127.0.0.1", "::ffff:0:8.8.8.8"),
            // NAT64
            ("64:ff9b::127.0.0.1", "64:ff9b::8.8.8.8"),
            ("64:ff9b::100.64.0.1", "64:ff9b::1.1.1.1"),
            ("64:ff9b::a9fe:a9fe", "64:ff9b::5db8:d822"),
            // 6to4: 2002:AABB:CCDD::/48
            ("2002:7f00:1::1", "2002:808:808::1"),
            ("2002:a00:1::", "2002:5db8:d822:1::1"),
            ("2002:c0a8:101::1", "2002:101:101::1"),
            ("2002:a9fe:a9fe::1", "2002:909:909::1"),
        ] {
            assert!(!public(inside), "{inside}");
            assert!(public(outside), "{outside}");
        }
    }

    #[test]
    fn teredo_needs_a_public_server_and_a_public_client() {
        // 2001:0:SERVER:SERVER:flags:port:~CLIENT
        // Server 65.54.227.120 (4136:e378), client 192.0.2.45 obfuscated (3fff:fdd2).
        assert!(!public("2001:0:4136:e378:8000:63bf:3fff:fdd2"));
        // Client 8.8.8.8 (obfuscated f7f7:f7f7), server 65.54.227.120.
        assert!(public("2001:0:4136:e378:8000:63bf:f7f7:f7f7"));
        // Client 127.0.0.1 (80ff:fffe).
        assert!(!public("2001:0:4136:e378:8000:63bf:80ff:fffe"));
        // Server 10.0.0.1 (a00:1), client 8.8.8.8.
        assert!(!public("2001:0:a00:1:8000:63bf:f7f7:f7f7"));
    }

    #[test]
    fn block_names_are_reported() {
        assert_eq!(
            special_purpose_block("100.64.0.1".parse().unwrap()),
            Some("Shared Address Space (RFC 6598)")
        );
        assert_eq!(special_purpose_block("8.8.8.8".parse().unwrap()), None);
        assert_eq!(
            special_purpose_block("fec0::1".parse().unwrap()),
            Some("Site-Local, deprecated (RFC 3879)")
        );
    }
}
