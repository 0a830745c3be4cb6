//! The vector store contract: chunks with a stable id, a unit-length vector, their text and
//! where they came from; cosine search with an optional source-kind filter; replacement by
//! group. Implemented by `embedded` (the default) and `qdrant`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Scale to unit length; the zero vector (a text with no features) stays zero and so never
/// matches anything.
pub fn normalise(vector: &mut [f32]) {
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|v| *v /= norm);
    }
}

/// One piece of knowledge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// Stable id: the same source text gets the same id, so re-ingesting replaces.
    pub id: String,
    /// Where it came from, shown to the model: `schema:pg/public.orders`, `doc:guide.md#chunk2`,
    /// `conversation:cli:default`.
    pub source: String,
    /// The unit replaced together (`schema:pg`, `doc:guide.md`, `conversation:KEY`).
    pub group: String,
    /// Hash of the content the group was built from (unchanged files are skipped).
    #[serde(default)]
    pub hash: String,
    pub text: String,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Unit length (cosine similarity is a dot product).
    #[serde(skip)]
    pub vector: Vec<f32>,
}

impl Chunk {
    /// `schema`, `doc`, `conversation`, ...: the part of the source before the first `:`.
    pub fn kind(&self) -> &str {
        kind_of(&self.source)
    }
}

/// The kind of a source string.
pub fn kind_of(source: &str) -> &str {
    source.split_once(':').map_or(source, |(kind, _)| kind)
}

/// A search hit.
#[derive(Debug, Clone, Serialize)]
pub struct Match {
    pub id: String,
    pub source: String,
    pub text: String,
    pub score: f32,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A stored chunk without its vector and text (for replacement decisions).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: String,
    pub hash: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreStats {
    /// `embedded` or `qdrant`.
    pub store: String,
    /// The file (embedded) or `URL/collection` (qdrant).
    pub location: String,
    pub chunks: usize,
    pub by_kind: BTreeMap<String, usize>,
    /// Vector dimension, once something was stored.
    pub dim: Option<usize>,
    /// Embedding model the vectors came from, once something was stored.
    pub model: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the knowledge base {path} is unreadable: {reason}; move it away or delete it and run `databot rag ingest` again"
    )]
    Corrupt { path: String, reason: String },
    #[error("cannot write the knowledge base {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read the knowledge base {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the knowledge base holds {stored}-dimensional vectors (model `{stored_model}`) but the embedder gives {given} ({given_model}); delete {location} (or pick another rag.path/collection) and run `databot rag ingest` again"
    )]
    Dimension {
        stored: usize,
        stored_model: String,
        given: usize,
        given_model: String,
        location: String,
    },
    #[error(
        "the knowledge base {path} is in use by another databot process (e.g. `databot serve`); stop it first, or search with `databot rag search`"
    )]
    Busy { path: String },
    #[error("the knowledge base {path} was opened read-only")]
    ReadOnly { path: String },
    #[error("qdrant: {0}")]
    Qdrant(String),
}

/// Where chunks live. Vectors passed in are unit length and all of one dimension.
#[async_trait::async_trait]
pub trait VectorStore: Send + Sync {
    /// Insert or replace chunks by id. `model` names the embedder the vectors came from.
    async fn upsert(&self, chunks: Vec<Chunk>, model: &str) -> Result<(), StoreError>;
    /// The `k` most similar chunks, best first, optionally only of one source kind.
    async fn search(
        &self,
        vector: &[f32],
        k: usize,
        kind: Option<&str>,
    ) -> Result<Vec<Match>, StoreError>;
    /// Ids and content hashes of a group's chunks.
    async fn entries(&self, group: &str) -> Result<Vec<Entry>, StoreError>;
    /// Groups whose name starts with `prefix` (e.g. every `doc:` or `schema:pg` group).
    async fn groups(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Remove chunks by id; returns how many existed.
    async fn delete_ids(&self, ids: &[String]) -> Result<usize, StoreError>;
    /// Remove a whole group; returns how many chunks it had.
    async fn delete_group(&self, group: &str) -> Result<usize, StoreError>;
    async fn stats(&self) -> Result<StoreStats, StoreError>;
}
