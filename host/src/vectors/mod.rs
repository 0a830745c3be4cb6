//! Vector stores, below both of their users: the knowledge base (`rag`) and the plugins'
//! `vectors` capability. A leaf: it uses only the plugin contract's error type.
//!
//! Submodules: `store` (the vector store contract), `embedded` (the default in-process store
//! persisted to one file), `plugin` (each plugin's granted collections, one embedded store
//! each).

pub mod embedded;
pub mod plugin;
pub mod store;

pub use self::embedded::EmbeddedStore;
pub use self::store::{Chunk, Entry, Match, StoreError, StoreStats, VectorStore, normalise};
