//! The `mcp` section: the Model Context Protocol server (`databot mcp` on stdio, and `/mcp` on
//! the gateway over Streamable HTTP). `/mcp` sits behind the gateway's keys, limits and
//! `Host`/`Origin` checks (`gateway.allowed_hosts`, `gateway.allowed_origins`).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Serve MCP over Streamable HTTP at `/mcp` on the gateway (behind its API keys).
    pub http: bool,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self { http: true }
    }
}
