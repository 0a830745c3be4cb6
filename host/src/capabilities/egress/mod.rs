//! Outgoing HTTP policy (`wasi:http` hook): allowlist by host and port, private networks
//! blocked after DNS resolution unless granted, credentials injected for matching hosts, and
//! the connection made to the vetted addresses only (`pinned`).

mod pinned;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use parking_lot::Mutex;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::PluginGrants;

type SendFuture = Box<
    dyn Future<Output = Result<(http::Response<WasiBody>, pinned::ConnectionTask), HttpError>>
        + Send,
>;

/// The egress hook of one call.
pub struct EgressPolicy {
    grants: Arc<PluginGrants>,
    denials: Arc<Mutex<Vec<String>>>,
    /// The trace context of the call (parent of the request spans).
    pub(crate) trace: crate::telemetry::CallTrace,
}

impl EgressPolicy {
    pub fn new(grants: Arc<PluginGrants>) -> Self {
        Self {
            grants,
            denials: Arc::default(),
            trace: crate::telemetry::CallTrace::default(),
        }
    }

    pub fn denials(&self) -> Vec<String> {
        self.denials.lock().clone()
    }
}

/// Is this address on the public internet? Loopback, private, link-local (cloud metadata),
/// CGNAT, unspecified, multicast, documentation and unique-local ranges are not.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_ip(IpAddr::V4(v4));
            }
            let segments = v6.segments();
            // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = segments[6].to_be_bytes();
                let [c, d] = segments[7].to_be_bytes();
                return is_public_ip(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)));
            }
            let first = segments[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && segments[1] == 0x0db8))
        }
    }
}

impl WasiHttpHooks for EgressPolicy {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let grants = self.grants.clone();
        let denials = self.denials.clone();
        let span = crate::telemetry::child_span(
            egress_span(&grants.plugin, request.method().as_str(), request.uri()),
            &self.trace,
        );
        let traced = span.clone();
        let work = async move {
            let uri = request.uri().clone();
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_matches(['[', ']'])
                .to_owned();
            let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let plugin = &grants.plugin;
            let deny = |reason: String| {
                tracing::warn!(plugin = %plugin, %host, port, "egress denied: {reason}");
                denials.lock().push(reason);
                HttpError::HttpRequestDenied
            };
            if !grants.http_allow.iter().any(|p| p.matches(&host, port)) {
                return Err(deny(format!(
                    "egress to `{host}:{port}` is not allowed; add `\"{host}\"` to `plugins.{plugin}.permissions.http.allow`"
                )));
            }
            let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => match tokio::net::lookup_host((host.as_str(), port)).await {
                    Ok(found) => found.collect(),
                    Err(_) => {
                        return Err(HttpError::DnsError {
                            rcode: Some("lookup failed".into()),
                            info_code: None,
                        });
                    }
                },
            };
            if !grants.may_reach_private(&host, port)
                && let Some(inside) = addresses.iter().find(|a| !is_public_ip(a.ip()))
            {
                return Err(deny(format!(
                    "egress to `{host}:{port}` resolves to the non-public address {}; set `plugins.{plugin}.permissions.http.allow_private: true` to allow it",
                    inside.ip()
                )));
            }
            for secret in grants
                .secrets
                .iter()
                .filter(|s| s.host.matches(&host, port) && s.https.is_none_or(|h| h == https))
            {
                request
                    .headers_mut()
                    .insert(secret.header.clone(), secret.value.clone());
            }
            pinned::send(request, options, &addresses, &host, https).await
        };
        Box::new(async move {
            let result = tracing::Instrument::instrument(work, traced.clone()).await;
            match &result {
                Ok((response, _)) => {
                    traced.record(
                        "http.response.status_code",
                        i64::from(response.status().as_u16()),
                    );
                    if response.status().is_server_error() {
                        traced.record("otel.status_code", "ERROR");
                    }
                }
                Err(error) => {
                    let debug = format!("{error:?}");
                    let kind = debug.split(['(', ' ', '{']).next().unwrap_or_default();
                    crate::telemetry::spans::record_error(&traced, kind);
                }
            }
            result
        })
    }
}

/// The client span of one outgoing HTTP request (OpenTelemetry HTTP conventions; the URL's
/// path and query are left out, they may carry secrets).
fn egress_span(plugin: &str, method: &str, uri: &http::Uri) -> tracing::Span {
    use tracing::field::Empty;
    let host = uri.host().unwrap_or_default();
    tracing::info_span!(
        "http.client",
        otel.name = method,
        otel.kind = "client",
        http.request.method = method,
        server.address = host,
        server.port = uri.port_u16().map(i64::from),
        url.scheme = uri.scheme_str(),
        databot.plugin.name = plugin,
        http.response.status_code = Empty,
        otel.status_code = Empty,
        error.type = Empty,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_recognised() {
        for inside in [
            "127.0.0.1",
            "10.0.0.1",
            "169.254.169.254",
            "192.168.1.1",
            "172.16.0.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public_ip(inside.parse().unwrap()), "{inside}");
        }
        for outside in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public_ip(outside.parse().unwrap()), "{outside}");
        }
    }
}
