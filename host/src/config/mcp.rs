//! The `mcp` section: the Model Context Protocol server (`databot mcp` on stdio, and `/mcp` on
//! the gateway over Streamable HTTP). `/mcp` sits behind the gateway's keys, limits and
//! `Host`/`Origin` checks (`gateway.allowed_hosts`, `gateway.allowed_origins`).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Serve MCP over Streamable HTTP at `/mcp` on the gateway (behind its API keys).
    pub http: bool,
    /// A Streamable HTTP session with no request for this long is closed (its client then
    /// gets 404 and starts a new one). At least 1.
    pub session_idle_seconds: u64,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            http: true,
            session_idle_seconds: 300,
        }
    }
}
