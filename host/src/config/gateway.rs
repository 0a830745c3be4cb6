//! The `gateway` section: the HTTP gateway of `databot serve`. Where it listens, who may call it
//! (API keys, the `Host` and `Origin` allowlists) and how much one client may take (request and
//! failed-authentication limits, connections, timeouts, body size).
//!
//! `validate` refuses anything the gateway could not enforce as written, naming the key. The
//! allowlist entries are parsed here (`AllowedHost`, `AllowedOrigin`) and matched by the gateway.

use std::net::SocketAddr;

use serde::Deserialize;

use super::Secret;

/// Shortest API key accepted, in characters.
pub const MIN_API_KEY_CHARS: usize = 16;
/// Longest API key accepted, in characters.
pub const MAX_API_KEY_CHARS: usize = 512;

/// The HTTP gateway of `databot serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Address to listen on. Anything but loopback requires `api_keys` or `admin_keys`.
    pub bind: String,
    /// Accepted keys (`Authorization: Bearer KEY` or `X-API-Key: KEY`), each 16 to 512 visible
    /// ASCII characters. Empty: no auth, and only a loopback bind is allowed.
    pub api_keys: Vec<Secret>,
    /// Operators' keys: accepted like `api_keys`, and they manage every scheduled job and
    /// the tool groups (other keys manage only the jobs they made).
    pub admin_keys: Vec<Secret>,
    pub rate_limit: RateLimitConfig,
    /// Failed authentications one client address may make before it is refused for a while.
    pub auth_failures: AuthFailureConfig,
    /// Reverse proxies (addresses or networks) whose `X-Forwarded-For` names the client for
    /// the per-client limits; without them every client behind a proxy is the proxy.
    pub trusted_proxies: Vec<String>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Origins allowed by CORS; empty sends no CORS headers at all. They also pass the
    /// `Origin` check.
    pub cors_origins: Vec<String>,
    /// `Host` values accepted on the API routes besides `localhost` and IP addresses (`name` or
    /// `name:port`; `"*"` accepts any host, which drops DNS-rebinding protection).
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted on the API routes besides loopback ones and `cors_origins`
    /// (`scheme://host[:port]`, `:*` for any port). A request with another `Origin` gets 403.
    pub allowed_origins: Vec<String>,
    /// How long a message waits for its reply before the request answers 504.
    pub reply_timeout_seconds: u64,
    /// Connections open at once. When full, the connection idle the longest is closed to make
    /// room; with every connection busy, new ones wait. Capped by the open-file limit.
    pub max_connections: usize,
    /// A new connection must deliver a complete request head within this long.
    pub header_read_timeout_seconds: u64,
    /// A kept-alive connection must deliver its next request head within this long after the
    /// previous response.
    pub idle_timeout_seconds: u64,
    /// A request body must arrive in full within this long after its head.
    pub body_read_timeout_seconds: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".to_owned(),
            api_keys: Vec::new(),
            admin_keys: Vec::new(),
            rate_limit: RateLimitConfig::default(),
            auth_failures: AuthFailureConfig::default(),
            trusted_proxies: Vec::new(),
            max_body_bytes: 1024 * 1024,
            cors_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            reply_timeout_seconds: 300,
            max_connections: 4096,
            header_read_timeout_seconds: 10,
            idle_timeout_seconds: 60,
            body_read_timeout_seconds: 30,
        }
    }
}

/// Requests per client (API key, or address without keys) in a sliding window. `requests: 0`
/// turns the limit off (trusted benchmarks, internal deployments behind their own limits).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub requests: u32,
    pub window_seconds: u64,
    /// Count requests in the shared PostgreSQL session store, so a client's limit holds across
    /// replicas. Unset: shared when the bus is Kafka (several replicas), in memory otherwise.
    pub shared: Option<bool>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests: 120,
            window_seconds: 60,
            shared: None,
        }
    }
}

/// After `max_failures` failed authentications (no key, or a wrong one) from one address (an
/// IPv6 client's whole /64) within `window_seconds`, requests from that address without a valid
/// key get 429 until the window slides. A valid key is always accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthFailureConfig {
    pub max_failures: u32,
    pub window_seconds: u64,
}

impl Default for AuthFailureConfig {
    fn default() -> Self {
        Self {
            max_failures: 10,
            window_seconds: 300,
        }
    }
}

impl RateLimitConfig {
    /// Whether requests are limited at all (`requests: 0` is off).
    pub fn enabled(&self) -> bool {
        self.requests > 0
    }
}

impl GatewayConfig {
    /// The bind address, parsed.
    pub fn bind_address(&self) -> Result<SocketAddr, String> {
        self.bind.parse().map_err(|_| {
            format!(
                "gateway.bind `{}` is not an address like 127.0.0.1:8080",
                self.bind
            )
        })
    }

    /// `trusted_proxies` parsed: addresses (`10.0.0.5`) and networks (`10.0.0.0/8`).
    pub fn trusted_proxy_networks(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.trusted_proxies
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!(
                            "gateway.trusted_proxies: `{entry}` is not an address or a network (10.0.0.5, 10.0.0.0/8, fd00::/8)"
                        )
                    })
            })
            .collect()
    }

    /// Every rule the gateway relies on; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        self.bind_address()?;
        self.trusted_proxy_networks()?;
        let all: Vec<(String, &Secret)> = self
            .api_keys
            .iter()
            .enumerate()
            .map(|(i, k)| (format!("gateway.api_keys[{i}]"), k))
            .chain(
                self.admin_keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| (format!("gateway.admin_keys[{i}]"), k)),
            )
            .collect();
        for (index, (name, key)) in all.iter().enumerate() {
            check_api_key(key.expose()).map_err(|e| format!("{name}: {e}"))?;
            if let Some((first, _)) = all[..index]
                .iter()
                .find(|(_, other)| other.expose() == key.expose())
            {
                return Err(format!("{name} is the same key as {first}"));
            }
        }
        let at_least_one = [
            (
                "gateway.rate_limit.window_seconds",
                self.rate_limit.window_seconds,
            ),
            (
                "gateway.auth_failures.max_failures",
                u64::from(self.auth_failures.max_failures),
            ),
            (
                "gateway.auth_failures.window_seconds",
                self.auth_failures.window_seconds,
            ),
            ("gateway.max_body_bytes", self.max_body_bytes as u64),
            ("gateway.reply_timeout_seconds", self.reply_timeout_seconds),
            ("gateway.max_connections", self.max_connections as u64),
            (
                "gateway.header_read_timeout_seconds",
                self.header_read_timeout_seconds,
            ),
            ("gateway.idle_timeout_seconds", self.idle_timeout_seconds),
            (
                "gateway.body_read_timeout_seconds",
                self.body_read_timeout_seconds,
            ),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(format!("{key} must be at least 1"));
            }
        }
        for (index, host) in self.allowed_hosts.iter().enumerate() {
            AllowedHost::parse(host).map_err(|e| format!("gateway.allowed_hosts[{index}]: {e}"))?;
        }
        for (key, origins) in [
            ("gateway.cors_origins", &self.cors_origins),
            ("gateway.allowed_origins", &self.allowed_origins),
        ] {
            for (index, origin) in origins.iter().enumerate() {
                AllowedOrigin::parse(origin).map_err(|e| format!("{key}[{index}]: {e}"))?;
            }
        }
        Ok(())
    }
}

/// The rules of one API key; the message never includes the key.
fn check_api_key(key: &str) -> Result<(), String> {
    let length = key.chars().count();
    if length == 0 {
        return Err("the key is empty (an unset or empty `${VAR}`?); \
                    generate one with `openssl rand -hex 32`"
            .into());
    }
    if length < MIN_API_KEY_CHARS {
        return Err(format!(
            "the key has {length} characters; at least {MIN_API_KEY_CHARS} are required \
             (generate one with `openssl rand -hex 32`)"
        ));
    }
    if length > MAX_API_KEY_CHARS {
        return Err(format!(
            "the key has {length} characters; at most {MAX_API_KEY_CHARS} are accepted"
        ));
    }
    // What a client can send in a header and the gateway compares verbatim.
    if !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err("the key may hold only visible ASCII characters (no spaces)".into());
    }
    Ok(())
}

/// One `Host` allowlist entry: a name or address, with or without a port, or `*` for any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHost {
    Any,
    Exact { host: String, port: Option<u16> },
}

impl AllowedHost {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(Self::Any);
        }
        let (host, port) = split_authority(text).ok_or_else(|| {
            format!("`{text}` is not a host (expected `name`, `name:port` or `*`)")
        })?;
        Ok(Self::Exact { host, port })
    }

    /// Does a request's `Host` (lower-case, without brackets) and port match?
    pub fn matches(&self, host: &str, port: Option<u16>) -> bool {
        match self {
            Self::Any => true,
            Self::Exact {
                host: allowed,
                port: allowed_port,
            } => allowed == host && allowed_port.is_none_or(|p| port == Some(p)),
        }
    }
}

/// `host[:port]` (an IPv6 address in brackets, or bare without a port) as a lower-case host
/// without brackets and a port. `None` for anything else: user info, paths, spaces, empty hosts,
/// ports that are not 0-65535 in digits.
pub fn split_authority(text: &str) -> Option<(String, Option<u16>)> {
    if let Ok(v6) = text.parse::<std::net::Ipv6Addr>() {
        return Some((v6.to_string(), None));
    }
    let port_of = |digits: &str| {
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse::<u16>().ok())
            .flatten()
    };
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let v6 = v6.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            after => Some(port_of(after.strip_prefix(':')?)?),
        };
        (v6.to_string(), port)
    } else {
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port_of(port)?)),
            None => (text, None),
        };
        let name = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
        if host.is_empty() || !host.bytes().all(name) {
            return None;
        }
        (host.to_ascii_lowercase(), port)
    };
    Some((host, port))
}

/// The port of an origin: any, or one (an origin without a port has its scheme's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginPort {
    Any,
    Exact(u16),
}

/// One `Origin` allowlist entry: `scheme://host`, `scheme://host:port` or `scheme://host:*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigin {
    pub scheme: String,
    pub host: String,
    pub port: OriginPort,
}

impl AllowedOrigin {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let invalid = || {
            format!(
                "`{text}` is not an origin (expected `https://host`, `https://host:port` or \
                 `https://host:*`)"
            )
        };
        let (base, any_port) = match text.strip_suffix(":*") {
            Some(base) => (base, true),
            None => (text, false),
        };
        let (scheme, host, port) = parse_origin(base).ok_or_else(invalid)?;
        let port = match (any_port, port) {
            (true, None) => OriginPort::Any,
            (true, Some(_)) => return Err(invalid()),
            (false, port) => OriginPort::Exact(port.unwrap_or(default_port(&scheme))),
        };
        Ok(Self { scheme, host, port })
    }

    /// Does the `Origin` header value `origin` match? `null` and malformed values never do.
    pub fn matches(&self, origin: &str) -> bool {
        let Some((scheme, host, port)) = parse_origin(origin.trim()) else {
            return false;
        };
        let port = port.unwrap_or(default_port(&scheme));
        self.scheme == scheme
            && self.host == host
            && match self.port {
                OriginPort::Any => true,
                OriginPort::Exact(allowed) => allowed == port,
            }
    }
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

/// `http(s)://host[:port]` with nothing after the authority but an optional `/`.
fn parse_origin(text: &str) -> Option<(String, String, Option<u16>)> {
    let (scheme, rest) = text.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = split_authority(authority)?;
    Some((scheme, host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(keys: &[&str]) -> GatewayConfig {
        let yaml = format!(
            "api_keys: [{}]",
            keys.iter()
                .map(|k| format!("\"{k}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        serde_yaml::from_str(&yaml).unwrap()
    }

    #[test]
    fn empty_short_odd_and_repeated_keys_are_refused_by_position() {
        let error = keys(&[""]).validate().unwrap_err();
        assert!(
            error.starts_with("gateway.api_keys[0]: the key is empty"),
            "{error}"
        );
        let error = keys(&["0123456789abcdef", "short"]).validate().unwrap_err();
        assert!(error.starts_with("gateway.api_keys[1]:"), "{error}");
        assert!(
            error.contains("5 characters") && !error.contains("short"),
            "{error}"
        );
        let spaced = keys(&["0123456789 abcdef"]).validate().unwrap_err();
        assert!(spaced.contains("visible ASCII"), "{spaced}");
        let padded = keys(&[" 0123456789abcdef"]).validate().unwrap_err();
        assert!(padded.contains("visible ASCII"), "{padded}");
        let repeated = keys(&["0123456789abcdef", "0123456789abcdef"])
            .validate()
            .unwrap_err();
        assert!(repeated.contains("api_keys[1] is the same key as gateway.api_keys[0]"));
        let long = "k".repeat(MAX_API_KEY_CHARS + 1);
        assert!(keys(&[&long]).validate().is_err());
        assert!(keys(&["0123456789abcdef"]).validate().is_ok());
        // Characters, not bytes: 15 two-byte characters are still too short.
        assert!(keys(&[&"é".repeat(15)]).validate().is_err());
    }

    #[test]
    fn zero_limits_and_bad_allowlists_name_their_key() {
        let zero: GatewayConfig = serde_yaml::from_str("max_connections: 0").unwrap();
        assert!(
            zero.validate()
                .unwrap_err()
                .contains("gateway.max_connections")
        );
        let zero: GatewayConfig = serde_yaml::from_str("auth_failures: {max_failures: 0}").unwrap();
        assert!(
            zero.validate()
                .unwrap_err()
                .contains("auth_failures.max_failures")
        );
        let hosts: GatewayConfig =
            serde_yaml::from_str("allowed_hosts: [ok.example, \"a b\"]").unwrap();
        assert!(
            hosts
                .validate()
                .unwrap_err()
                .starts_with("gateway.allowed_hosts[1]")
        );
        let origins: GatewayConfig =
            serde_yaml::from_str("allowed_origins: [\"ftp://x.example\"]").unwrap();
        assert!(
            origins
                .validate()
                .unwrap_err()
                .starts_with("gateway.allowed_origins[0]")
        );
        let cors: GatewayConfig = serde_yaml::from_str("cors_origins: [\"null\"]").unwrap();
        assert!(
            cors.validate()
                .unwrap_err()
                .starts_with("gateway.cors_origins[0]")
        );
        let bind: GatewayConfig = serde_yaml::from_str("bind: localhost").unwrap();
        assert!(bind.validate().unwrap_err().contains("gateway.bind"));
        assert!(GatewayConfig::default().validate().is_ok());
    }

    #[test]
    fn hosts_match_name_and_port() {
        let any_port = AllowedHost::parse("Bot.Example.com").unwrap();
        assert!(any_port.matches("bot.example.com", Some(8080)));
        assert!(any_port.matches("bot.example.com", None));
        assert!(!any_port.matches("bot.example.com.evil.example", None));
        let one_port = AllowedHost::parse("bot.example.com:8443").unwrap();
        assert!(one_port.matches("bot.example.com", Some(8443)));
        assert!(!one_port.matches("bot.example.com", Some(8080)));
        assert!(!one_port.matches("bot.example.com", None));
        let v6 = AllowedHost::parse("[fd00::1]:80").unwrap();
        assert!(v6.matches("fd00::1", Some(80)));
        assert_eq!(AllowedHost::parse("*").unwrap(), AllowedHost::Any);
        for bad in [
            "",
            "a b",
            "user@host",
            "host/path",
            "host:",
            "host:99999",
            "host:x",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        let exact = AllowedOrigin::parse("https://app.example.com").unwrap();
        assert!(exact.matches("https://app.example.com"));
        assert!(exact.matches("https://app.example.com:443"));
        assert!(exact.matches("HTTPS://APP.example.com"));
        assert!(!exact.matches("http://app.example.com"));
        assert!(!exact.matches("https://app.example.com:8443"));
        assert!(!exact.matches("https://app.example.com.evil.example"));
        assert!(!exact.matches("null"));
        assert!(!exact.matches("https://app.example.com/path"));
        let any = AllowedOrigin::parse("http://localhost:*").unwrap();
        assert!(any.matches("http://localhost:5173") && any.matches("http://localhost"));
        let v6 = AllowedOrigin::parse("http://[::1]:*").unwrap();
        assert!(v6.matches("http://[::1]:3000"));
        for bad in [
            "null",
            "app.example.com",
            "ftp://a.example",
            "https://a:1:*",
            "https://",
        ] {
            assert!(AllowedOrigin::parse(bad).is_err(), "{bad}");
        }
    }
}
