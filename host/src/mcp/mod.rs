//! The Model Context Protocol server: every loaded tool (with its JSON Schema and description)
//! and the connector/health resources, over stdio (`databot mcp`) and over Streamable HTTP at
//! the gateway's `/mcp`. Hot loads and removals reach clients as `list_changed`
//! notifications.
//!
//! Submodules: `server` (the handler: tools, resources, errors as tool errors), `direct`
//! (`tools/call` answered from its raw JSON-RPC bytes, the hot path of both transports),
//! `stdio` (`databot mcp`), `http` (the `/mcp` service, behind the gateway's guard),
//! `notify` (live peers and notifications).

mod direct;
pub mod http;
mod notify;
pub mod server;
mod stdio;

pub use self::notify::PeerRegistry;
pub use self::server::DatabotMcp;
pub use self::stdio::{MAX_LINE_BYTES, serve_stdio};
