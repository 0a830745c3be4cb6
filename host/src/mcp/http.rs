//! MCP over Streamable HTTP for the gateway's `/mcp` route: the service (one MCP session per
//! client, all sharing the runtime). `/mcp` is a protected route of the gateway, so its `Host`
//! and `Origin` checks, keys, lockout, media type and rate limits are the gateway guard's
//! (`gateway::guard`); rmcp's own copies of those checks are off rather than kept in step.

use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::DatabotMcp;
use super::notify::{PeerRegistry, forward_runtime_events};
use crate::config::GatewayConfig;
use crate::runtime::Runtime;

/// The `/mcp` service type.
pub type McpHttpService = StreamableHttpService<DatabotMcp, LocalSessionManager>;

/// The Streamable HTTP service over `runtime`. Every session is told when plugins are loaded
/// or removed. Cancelling `shutdown` ends all sessions.
pub fn service(
    runtime: &Runtime,
    gateway: &GatewayConfig,
    shutdown: CancellationToken,
) -> McpHttpService {
    let peers = Arc::new(PeerRegistry::default());
    forward_runtime_events(runtime, &peers);
    // Host and Origin are judged by the gateway guard before a request gets here.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_max_request_body_bytes(gateway.max_body_bytes)
        .with_cancellation_token(shutdown);
    let handler = DatabotMcp::new(runtime.clone(), peers);
    StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}
