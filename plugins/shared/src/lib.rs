//! Code the first-party plugins share, as a library crate (not a plugin: it is not in the
//! workspace's member list, which names the plugins, and joins the workspace as a path
//! dependency).
//!
//! - `catalog`, `kafka`: the argument structs of the catalog and Kafka operations, declared
//!   once by `catalog_args!` and `kafka_args!` for the connector that runs them and the tool
//!   that forwards them (with its own extra fields), so the two cannot drift apart;
//! - `resolve`: which connector instance a delegating tool calls, and the call.

pub mod catalog;
pub mod kafka;
pub mod resolve;
