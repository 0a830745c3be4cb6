//! databot host library: the plugin runtime, the capabilities it grants, configuration and CLI.
//!
//! Layers, top to bottom (a module may call the ones below it, never above):
//! - `cli`: the `databot` command line;
//! - `gateway`: the HTTP API (messages, SSE, health, metrics, status) over the bus;
//! - `agent`: the agent loop, sessions and memory (calls providers and tools via `runtime`;
//!   implements the bus's `MessageHandler`);
//! - `bus`: messages in and replies out, ordered per conversation, bounded;
//! - `runtime`: loading, validating, hot-swapping and calling plugin components under budgets;
//! - `capabilities`: the host functions a plugin may import, each checked against its grants;
//! - `config`: the operator's YAML configuration.

pub mod agent;
pub mod bus;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod runtime;
