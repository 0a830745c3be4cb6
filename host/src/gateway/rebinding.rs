//! DNS-rebinding and cross-site protection for every protected route (`/api/v1/*`,
//! `/metrics`, `/mcp`): the one place the `Host` and `Origin` of a request are judged.
//!
//! `Host` (and the authority of an absolute request target) must be `localhost`, an IP address,
//! or a `gateway.allowed_hosts` entry. A rebound page always sends its own DNS name, so an IP
//! address or `localhost` cannot be a rebinding. `Origin`, when sent, must be a loopback origin
//! (`http(s)://localhost`, `127.0.0.0/8`, `[::1]`, any port), a `gateway.cors_origins` or a
//! `gateway.allowed_origins` entry; `null` and anything malformed are refused. A request
//! without `Origin` that a browser marks `Sec-Fetch-Site: cross-site` is refused too, so
//! no-cors requests from other sites do not get through either.

use std::net::IpAddr;

use http::HeaderMap;

use crate::config::{AllowedHost, AllowedOrigin, GatewayConfig, split_authority};

/// Why a request was refused, for the 403 answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Host(String),
    Origin(String),
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Host(_) => "host_not_allowed",
            Self::Origin(_) => "origin_not_allowed",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Host(message) | Self::Origin(message) => message,
        }
    }
}

/// The allowlists of one gateway.
pub struct SameOrigin {
    hosts: Vec<AllowedHost>,
    origins: Vec<AllowedOrigin>,
}

impl SameOrigin {
    /// From the gateway settings (already validated: entries that do not parse are skipped).
    pub fn new(config: &GatewayConfig) -> Self {
        Self {
            hosts: config
                .allowed_hosts
                .iter()
                .filter_map(|h| AllowedHost::parse(h).ok())
                .collect(),
            origins: config
                .cors_origins
                .iter()
                .chain(&config.allowed_origins)
                .filter_map(|o| AllowedOrigin::parse(o).ok())
                .collect(),
        }
    }

    /// Judge one request by its headers and request target.
    pub fn check(&self, headers: &HeaderMap, uri: &http::Uri) -> Result<(), Refusal> {
        self.check_host(headers, uri)?;
        self.check_origin(headers)
    }

    fn check_host(&self, headers: &HeaderMap, uri: &http::Uri) -> Result<(), Refusal> {
        let mut hosts = headers.get_all(http::header::HOST).iter();
        let header = match (hosts.next(), hosts.next()) {
            (Some(_), Some(_)) => {
                return Err(Refusal::Host("more than one `Host` header".into()));
            }
            (Some(value), None) => Some(
                value
                    .to_str()
                    .map_err(|_| Refusal::Host("the `Host` header is not visible ASCII".into()))?,
            ),
            (None, _) => None,
        };
        let target = uri.authority().map(http::uri::Authority::as_str);
        if header.is_none() && target.is_none() {
            return Err(Refusal::Host("the request has no `Host` header".into()));
        }
        for authority in header.into_iter().chain(target) {
            if !self.host_allowed(authority) {
                return Err(Refusal::Host(format!(
                    "the host `{authority}` is not allowed here; list the name clients use in \
                     gateway.allowed_hosts"
                )));
            }
        }
        Ok(())
    }

    fn host_allowed(&self, authority: &str) -> bool {
        let Some((host, port)) = split_authority(authority) else {
            return false;
        };
        host == "localhost"
            || host.parse::<IpAddr>().is_ok()
            || self
                .hosts
                .iter()
                .any(|allowed| allowed.matches(&host, port))
    }

    fn check_origin(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let mut origins = headers.get_all(http::header::ORIGIN).iter();
        let origin = match (origins.next(), origins.next()) {
            (Some(_), Some(_)) => {
                return Err(Refusal::Origin("more than one `Origin` header".into()));
            }
            (Some(value), None) => value
                .to_str()
                .map_err(|_| Refusal::Origin("the `Origin` header is not visible ASCII".into()))?,
            (None, _) => {
                let cross_site = headers
                    .get("sec-fetch-site")
                    .is_some_and(|site| site.as_bytes().eq_ignore_ascii_case(b"cross-site"));
                return if cross_site {
                    Err(Refusal::Origin(
                        "cross-site browser requests are not accepted".into(),
                    ))
                } else {
                    Ok(())
                };
            }
        };
        if loopback_origin(origin) || self.origins.iter().any(|o| o.matches(origin)) {
            Ok(())
        } else {
            Err(Refusal::Origin(format!(
                "the origin `{origin}` is not allowed; list it in gateway.allowed_origins"
            )))
        }
    }
}

/// `http(s)://localhost`, a loopback address, any port.
fn loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let Some((host, _)) = split_authority(rest) else {
        return false;
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same_origin(yaml: &str) -> SameOrigin {
        let config: GatewayConfig = serde_yaml::from_str(yaml).unwrap();
        config.validate().unwrap();
        SameOrigin::new(&config)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn path() -> http::Uri {
        "/api/v1/message".parse().unwrap()
    }

    #[test]
    fn hosts_are_localhost_ip_addresses_and_configured_names() {
        let check = same_origin("allowed_hosts: [bot.example.com, \"api.example.com:8443\"]");
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1:8080",
            "127.9.9.9",
            "[::1]:8080",
            "10.1.2.3:80",
            "bot.example.com",
            "bot.example.com:1234",
            "api.example.com:8443",
        ] {
            assert!(
                check.check(&headers(&[("host", ok)]), &path()).is_ok(),
                "{ok}"
            );
        }
        for refused in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "bot.example.com.evil.example",
            "api.example.com",
            "api.example.com:8080",
            "127.0.0.1.nip.io",
            "localhost:notaport",
            "user@localhost",
            "",
        ] {
            let refusal = check
                .check(&headers(&[("host", refused)]), &path())
                .unwrap_err();
            assert_eq!(refusal.code(), "host_not_allowed", "{refused}");
        }
        // No Host at all, two of them, or an absolute target naming another host.
        assert!(check.check(&headers(&[]), &path()).is_err());
        assert!(
            check
                .check(
                    &headers(&[("host", "localhost"), ("host", "evil.example")]),
                    &path()
                )
                .is_err()
        );
        let absolute: http::Uri = "http://evil.example/api/v1/message".parse().unwrap();
        assert!(
            check
                .check(&headers(&[("host", "localhost")]), &absolute)
                .is_err()
        );
        let star = same_origin("allowed_hosts: [\"*\"]");
        assert!(
            star.check(&headers(&[("host", "evil.example")]), &path())
                .is_ok()
        );
    }

    #[test]
    fn origins_are_loopback_and_configured_ones() {
        let check = same_origin(
            "cors_origins: [\"https://console.example.com\"]\nallowed_origins: [\"https://ide.example.com:*\"]",
        );
        let with = |origin: &str| headers(&[("host", "localhost"), ("origin", origin)]);
        for ok in [
            "http://localhost:5173",
            "https://localhost",
            "http://127.0.0.1:9999",
            "http://127.0.0.2",
            "http://[::1]:3000",
            "https://console.example.com",
            "https://console.example.com:443",
            "https://ide.example.com:8443",
        ] {
            assert!(check.check(&with(ok), &path()).is_ok(), "{ok}");
        }
        for refused in [
            "http://evil.example",
            "null",
            "https://console.example.com:8443",
            "http://console.example.com",
            "https://console.example.com.evil.example",
            "http://localhost.evil.example",
            "http://10.0.0.1",
            "file://",
            "chrome-extension://abc",
            "",
        ] {
            let refusal = check.check(&with(refused), &path()).unwrap_err();
            assert_eq!(refusal.code(), "origin_not_allowed", "{refused}");
        }
        // No Origin: allowed, unless a browser says the request is cross-site.
        assert!(
            check
                .check(&headers(&[("host", "localhost")]), &path())
                .is_ok()
        );
        let cross = headers(&[("host", "localhost"), ("sec-fetch-site", "cross-site")]);
        assert!(check.check(&cross, &path()).is_err());
        let same = headers(&[("host", "localhost"), ("sec-fetch-site", "same-origin")]);
        assert!(check.check(&same, &path()).is_ok());
    }
}
