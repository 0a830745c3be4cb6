//! MCP over Streamable HTTP for the gateway's `/mcp` route: the service (one MCP session per
//! client, all sharing the runtime) and its DNS-rebinding protection. rmcp checks `Host`
//! against the allowed hosts and `Origin` against the allowed origins (403 otherwise); this
//! module decides those lists from the gateway and `mcp` settings.

use std::net::SocketAddr;
use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::DatabotMcp;
use super::notify::{PeerRegistry, forward_runtime_events};
use crate::config::{GatewayConfig, McpConfig};
use crate::runtime::Runtime;

/// The `/mcp` service type.
pub type McpHttpService = StreamableHttpService<DatabotMcp, LocalSessionManager>;

/// Loopback names every local client may use in `Host`.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The `Host` values `/mcp` accepts: loopback names, the bind address when it is a specific
/// address, and `mcp.allowed_hosts`. Empty means any host (`"*"` configured).
pub fn allowed_hosts(gateway: &GatewayConfig, mcp: &McpConfig) -> Vec<String> {
    if mcp.allowed_hosts.iter().any(|h| h.trim() == "*") {
        return Vec::new();
    }
    let mut hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| (*h).to_owned()).collect();
    if let Ok(bind) = gateway.bind.parse::<SocketAddr>()
        && !bind.ip().is_unspecified()
        && !bind.ip().is_loopback()
    {
        hosts.push(bind.ip().to_string());
    }
    hosts.extend(mcp.allowed_hosts.iter().map(|h| h.trim().to_owned()));
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The `Origin` values `/mcp` accepts: loopback origins on any port, `gateway.cors_origins`
/// and `mcp.allowed_origins`. Any other origin is refused (a request without `Origin`, as
/// non-browser clients send, passes).
pub fn allowed_origins(gateway: &GatewayConfig, mcp: &McpConfig) -> Vec<String> {
    let mut origins: Vec<String> = ["http", "https"]
        .iter()
        .flat_map(|scheme| {
            ["localhost", "127.0.0.1", "[::1]"]
                .iter()
                .map(move |host| format!("{scheme}://{host}:*"))
        })
        .collect();
    origins.extend(gateway.cors_origins.iter().cloned());
    origins.extend(mcp.allowed_origins.iter().cloned());
    origins
}

/// The Streamable HTTP service over `runtime`, with the Host/Origin checks on. Every session
/// is told when plugins are loaded or removed. Cancelling `shutdown` ends all sessions.
pub fn service(
    runtime: &Runtime,
    gateway: &GatewayConfig,
    shutdown: CancellationToken,
) -> McpHttpService {
    let mcp = &runtime.config().mcp;
    let peers = Arc::new(PeerRegistry::default());
    forward_runtime_events(runtime, &peers);
    let mut config = StreamableHttpServerConfig::default()
        .with_allowed_origins(allowed_origins(gateway, mcp))
        .enforce_origin_validation()
        .with_max_request_body_bytes(gateway.max_body_bytes)
        .with_cancellation_token(shutdown);
    let hosts = allowed_hosts(gateway, mcp);
    config = if hosts.is_empty() {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(hosts)
    };
    let handler = DatabotMcp::new(runtime.clone(), peers);
    StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(bind: &str, cors: &[&str]) -> GatewayConfig {
        GatewayConfig {
            bind: bind.to_owned(),
            cors_origins: cors.iter().map(|s| (*s).to_owned()).collect(),
            ..GatewayConfig::default()
        }
    }

    #[test]
    fn hosts_are_loopback_plus_a_specific_bind_plus_configured() {
        let mcp = McpConfig {
            allowed_hosts: vec!["bot.example.com".into()],
            ..McpConfig::default()
        };
        let hosts = allowed_hosts(&gateway("10.1.2.3:8080", &[]), &mcp);
        assert!(hosts.contains(&"10.1.2.3".to_owned()));
        assert!(hosts.contains(&"bot.example.com".to_owned()));
        assert!(hosts.contains(&"127.0.0.1".to_owned()));
        let hosts = allowed_hosts(&gateway("0.0.0.0:8080", &[]), &McpConfig::default());
        assert!(!hosts.iter().any(|h| h == "0.0.0.0"));
        assert_eq!(hosts.len(), LOOPBACK_HOSTS.len());
    }

    #[test]
    fn a_star_host_turns_the_host_check_off() {
        let mcp = McpConfig {
            allowed_hosts: vec!["*".into()],
            ..McpConfig::default()
        };
        assert!(allowed_hosts(&gateway("127.0.0.1:8080", &[]), &mcp).is_empty());
    }

    #[test]
    fn origins_are_loopback_plus_cors_plus_configured() {
        let mcp = McpConfig {
            allowed_origins: vec!["https://ide.example.com:443".into()],
            ..McpConfig::default()
        };
        let origins = allowed_origins(
            &gateway("127.0.0.1:8080", &["https://app.example.com:443"]),
            &mcp,
        );
        assert!(origins.contains(&"http://localhost:*".to_owned()));
        assert!(origins.contains(&"http://[::1]:*".to_owned()));
        assert!(origins.contains(&"https://app.example.com:443".to_owned()));
        assert!(origins.contains(&"https://ide.example.com:443".to_owned()));
        assert!(!origins.iter().any(|o| o.contains("evil")));
    }
}
