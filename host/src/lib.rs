//! databot host library: the plugin runtime, the capabilities it grants, configuration and CLI.
//!
//! Layers, top to bottom (a module may call the ones below it, never above):
//! - `cli`: the `databot` command line;
//! - `gateway`: the HTTP API (messages, SSE, health, metrics, status, MCP over HTTP) over the bus;
//! - `mcp`: the MCP server (stdio and Streamable HTTP): tools and connector resources from
//!   `runtime`;
//! - `agent`: the agent loop, sessions and memory (calls providers and tools via `runtime`,
//!   retrieval via `rag`; implements the bus's `MessageHandler`);
//! - `rag`: vector stores, ingestion (schemas, docs, conversations) and retrieval; embeds
//!   through provider plugins via `runtime`;
//! - `bus`: messages in and replies out, ordered per conversation, bounded;
//! - `runtime`: loading, validating, hot-swapping and calling plugin components under budgets;
//! - `capabilities`: the host functions a plugin may import, each checked against its grants;
//! - `config`: the operator's YAML configuration;
//! - `telemetry`: tracing, OpenTelemetry export, trace-context propagation and metrics (any
//!   layer may record into it; it calls none of them);
//! - `process_limits`: the open-file limit and how its descriptors are shared (a leaf).

pub mod agent;
pub mod bus;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod mcp;
pub mod process_limits;
pub mod rag;
pub mod runtime;
pub mod telemetry;
