//! The address a request came from, for the per-client limits (failed authentications,
//! unverified webhooks, request rates). It is the connection's peer, unless the peer is one of
//! `gateway.trusted_proxies`: then the client is the right-most address in
//! `X-Forwarded-For` that is not a trusted proxy (hops appended by untrusted parties further
//! left are not believed). A proxy that sends no usable header leaves its own address.

use std::net::IpAddr;

use ipnet::IpNet;

/// The trusted proxies, parsed once (`gateway.trusted_proxies`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    /// From `gateway.trusted_proxies` (checked by the config's `validate`).
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self { networks }
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.networks.iter().any(|net| net.contains(&address))
    }

    /// Whether a trusted proxy (`peer`) says the client reached it over HTTPS
    /// (`X-Forwarded-Proto: https`).
    pub fn forwarded_https(&self, peer: IpAddr, headers: &http::HeaderMap) -> bool {
        self.trusts(peer)
            && headers
                .get("x-forwarded-proto")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.split(',').next())
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
    }

    /// The client behind `peer`, as far as the trusted proxies vouch for it.
    pub fn client(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        // Each hop decoded on its own: one bad byte from a client spoils only its own hop.
        let hops: Vec<&[u8]> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(address) = parse_hop(hop) else {
                // Garbage from a hop: nothing further left can be believed.
                break;
            };
            client = address;
            if !self.trusts(address) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` hop: an address, or an address with a port (`1.2.3.4:80`,
/// `[2001:db8::1]:80`, as some proxies write them), or a bracketed IPv6 address.
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let hop = std::str::from_utf8(hop).ok()?.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|a| a.ip()))
        .or_else(|_| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(hop)
                .parse::<IpAddr>()
        })
        .ok()
}

/// IPv4-mapped IPv6 addresses as IPv4, so `10.0.0.0/8` matches `::ffff:10.0.0.5`.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &[&str]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for value in forwarded {
            map.append("x-forwarded-for", value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_a_trusted_peer_is_looked_behind_and_only_as_far_as_trusted_hops_go() {
        let config: crate::config::GatewayConfig =
            serde_yaml::from_str("trusted_proxies: [10.0.0.0/8, 192.0.2.7]").unwrap();
        let proxies = TrustedProxies::new(config.trusted_proxy_networks().unwrap());
        // An untrusted peer is the client, whatever it claims.
        assert_eq!(
            proxies.client(ip("198.51.100.1"), &headers(&["203.0.113.9"])),
            ip("198.51.100.1")
        );
        // Behind the proxy: the right-most untrusted hop; a spoofed left-most one is ignored.
        assert_eq!(
            proxies.client(ip("10.0.0.5"), &headers(&["1.2.3.4, 203.0.113.9"])),
            ip("203.0.113.9")
        );
        // Two trusted proxies in a row, over two header lines.
        assert_eq!(
            proxies.client(
                ip("::ffff:10.0.0.5"),
                &headers(&["203.0.113.9", "192.0.2.7"])
            ),
            ip("203.0.113.9")
        );
        // No header, or garbage: the proxy's own address.
        assert_eq!(
            proxies.client(ip("10.0.0.5"), &headers(&[])),
            ip("10.0.0.5")
        );
        assert_eq!(
            proxies.client(ip("10.0.0.5"), &headers(&["not-an-ip"])),
            ip("10.0.0.5")
        );
        // Hops with ports, as some proxies write them.
        assert_eq!(
            proxies.client(ip("10.0.0.5"), &headers(&["[2001:db8::7]:443"])),
            ip("2001:db8::7")
        );
        assert_eq!(
            proxies.client(ip("10.0.0.5"), &headers(&["203.0.113.9:5000"])),
            ip("203.0.113.9")
        );
        for bad in ["10.0.0.0/33", "proxy.example"] {
            let config: crate::config::GatewayConfig =
                serde_yaml::from_str(&format!("trusted_proxies: [\"{bad}\"]")).unwrap();
            assert!(config.validate().unwrap_err().contains("trusted_proxies"));
        }
    }
}
