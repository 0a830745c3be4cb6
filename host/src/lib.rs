//! databot host library: the plugin runtime, the capabilities it grants, configuration and CLI.
//!
//! Layers, top to bottom: a module may use the ones below it, never one above
//! (`layering.rs` checks every `crate::` path against this order):
//! - `cli`: the `databot` command line;
//! - `gateway`: the HTTP API (messages, SSE, health, metrics, status, MCP over HTTP) over the bus;
//! - `schedules`: scheduled jobs (agent prompts and tool calls on cron, intervals, one-off
//!   times), claimed exactly once per slot in the sessions database, delivered through
//!   `channels`, webhooks or the history;
//! - `mcp`: the MCP server (stdio and Streamable HTTP): tools and connector resources from
//!   `runtime`;
//! - `channels`: chat channel plugins' ingress (verified, deduplicated, allowlisted), their
//!   replies (split, streamed, rate-limited) and status, over the bus (a peer of `mcp`);
//! - `agent`: the agent loop, sessions and memory (calls providers and tools via `runtime`,
//!   retrieval via `rag`; implements the bus's `MessageHandler`);
//! - `rag`: the knowledge base: ingestion (schemas, docs, conversations) and retrieval over a
//!   vector store; embeds through provider plugins via `runtime`;
//! - `bus`: messages in and replies out, ordered per conversation, bounded;
//! - `runtime`: loading, validating, hot-swapping and calling plugin components under budgets;
//! - `capabilities`: the host functions a plugin may import, each checked against its grants;
//! - `vectors`: vector stores (the contract, the embedded store, the plugins' collections),
//!   shared by `rag` and the `vectors` capability;
//! - `contract`: the `databot:plugin` bindings generated from `wit/` and their error type;
//! - `telemetry`: tracing, OpenTelemetry export, trace-context propagation and metrics (any
//!   layer above may record into it);
//! - `config`: the operator's YAML configuration;
//! - `signature`: publisher keys and plugin signatures (Ed25519 over a component's digest);
//! - `events`, `digest`, `process_limits`, `net`, `timing`, `progress`: leaves (a turn's event
//!   queue, from provider to listener; content digests; the open-file limit and its share-out;
//!   TCP sockets without Nagle/delayed-ACK stalls; when a cron pattern, interval or instant is
//!   next due; how long work reports its progress).

pub mod agent;
pub mod bus;
pub mod capabilities;
pub mod channels;
pub mod cli;
pub mod config;
pub mod contract;
pub mod digest;
pub mod events;
pub mod gateway;
pub mod mcp;
pub mod net;
pub mod process_limits;
pub mod progress;
pub mod rag;
pub mod runtime;
pub mod schedules;
pub mod signature;
pub mod telemetry;
pub mod timing;
pub mod vectors;

#[cfg(test)]
mod layering;
