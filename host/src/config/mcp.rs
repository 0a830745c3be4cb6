//! The `mcp` section: the Model Context Protocol server (`databot mcp` on stdio, and `/mcp` on
//! the gateway over Streamable HTTP). The defaults serve `/mcp` on a loopback gateway to local
//! clients only.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Serve MCP over Streamable HTTP at `/mcp` on the gateway (behind its API keys).
    pub http: bool,
    /// `Host` header values accepted on `/mcp` besides loopback names and the bind address
    /// (`name` or `name:port`; `"*"` accepts any host, which drops DNS-rebinding protection).
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted on `/mcp` besides loopback ones and `gateway.cors_origins`
    /// (`scheme://host:port`, `:*` for any port). A request with another `Origin` gets 403.
    pub allowed_origins: Vec<String>,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            http: true,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
        }
    }
}
