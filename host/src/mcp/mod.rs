//! The Model Context Protocol server: every loaded tool (with its JSON Schema and description)
//! and the connector/health resources, over stdio (`databot mcp`) and over Streamable HTTP at
//! the gateway's `/mcp`. Hot loads and removals reach clients as `list_changed`
//! notifications.
//!
//! Submodules: `server` (the handler: tools, resources, errors as tool errors), `http` (the
//! `/mcp` service, behind the gateway's guard), `notify` (live peers and notifications).

pub mod http;
mod notify;
pub mod server;

use std::sync::Arc;

use anyhow::Context;
use rmcp::ServiceExt;

pub use self::notify::PeerRegistry;
pub use self::server::DatabotMcp;
use crate::runtime::Runtime;

/// Serve one MCP client on stdin/stdout until it disconnects. Logs go to stderr only.
pub async fn serve_stdio(runtime: Runtime) -> anyhow::Result<()> {
    let peers = Arc::new(PeerRegistry::default());
    notify::forward_runtime_events(&runtime, &peers);
    let running = DatabotMcp::new(runtime, peers)
        .serve(rmcp::transport::stdio())
        .await
        .context("starting the MCP session on stdio")?;
    let reason = running
        .waiting()
        .await
        .context("running the MCP session on stdio")?;
    tracing::debug!(?reason, "MCP stdio session ended");
    Ok(())
}
