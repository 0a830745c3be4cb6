//! databot-types: the data the host and plugins exchange as JSON, defined once.
//!
//! The WIT contract (`wit/databot.wit`) passes chat requests, responses, embeddings and stream
//! events as `json` strings. This crate is the one typed definition of those strings: the host
//! serialises and parses them with these types, and the SDK gives them to plugin authors (the
//! `provider!` macro's typed functions), so the two sides cannot drift apart. It depends on
//! serde only, and builds for the host and for `wasm32-wasip2` guests alike.

pub mod chat;
pub mod event;
