//! The `rag` section: the knowledge base (store, embeddings), what gets ingested and how much
//! retrieved context the agent adds to a prompt. The defaults work with no service: the
//! embedded store in `runtime.data_dir` and the agent's provider for embeddings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RagConfig {
    /// Retrieval on or off (ingestion, prompt enrichment, conversation capture).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Where vectors live: `embedded` (in-process, one file) or `qdrant`.
    #[serde(default)]
    pub store: RagStoreKind,
    /// File of the embedded store (default `DATA_DIR/rag/knowledge.bin`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub qdrant: QdrantConfig,
    /// Provider plugin that computes embeddings (default: `agent.provider`).
    #[serde(default)]
    pub provider: Option<String>,
    /// Embedding model passed to the provider (default: the provider's own).
    #[serde(default)]
    pub model: Option<String>,
    /// Matches added to a prompt at most.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Matches scoring below this cosine similarity are left out.
    #[serde(default = "default_min_score")]
    pub min_score: f32,
    /// Characters of retrieved context added to a prompt at most.
    #[serde(default = "default_max_context_chars")]
    pub max_context_chars: usize,
    /// Target size of a document chunk, in characters.
    #[serde(default = "default_chunk_chars")]
    pub chunk_chars: usize,
    /// Characters each document chunk repeats from the end of the previous one.
    #[serde(default = "default_chunk_overlap")]
    pub chunk_overlap: usize,
    /// Folders of markdown/text documents to ingest (recursively).
    #[serde(default)]
    pub docs_dirs: Vec<PathBuf>,
    /// Files larger than this are skipped, in bytes.
    #[serde(default = "default_max_doc_bytes")]
    pub max_doc_bytes: u64,
    /// Ingest connector schemas (and docs folders) in the background when `serve` starts.
    #[serde(default = "yes")]
    pub ingest_schemas_on_start: bool,
    /// Schemas to describe per connector (default: each connector's current schema).
    #[serde(default)]
    pub schemas: BTreeMap<String, Vec<String>>,
    /// Keep each completed agent turn (question + final answer) in the knowledge base.
    #[serde(default = "yes")]
    pub ingest_conversations: bool,
    /// Offer one conversation's remembered turns to the others. Off (the default), a
    /// conversation only gets its own older turns back: conversations of different users never
    /// see each other's questions and answers.
    #[serde(default)]
    pub share_conversations: bool,
    /// Texts per embedding request.
    #[serde(default = "default_embed_batch")]
    pub embed_batch: usize,
}

impl Default for RagConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            store: RagStoreKind::default(),
            path: None,
            qdrant: QdrantConfig::default(),
            provider: None,
            model: None,
            top_k: default_top_k(),
            min_score: default_min_score(),
            max_context_chars: default_max_context_chars(),
            chunk_chars: default_chunk_chars(),
            chunk_overlap: default_chunk_overlap(),
            docs_dirs: Vec::new(),
            max_doc_bytes: default_max_doc_bytes(),
            ingest_schemas_on_start: true,
            schemas: BTreeMap::new(),
            ingest_conversations: true,
            share_conversations: false,
            embed_batch: default_embed_batch(),
        }
    }
}

impl RagConfig {
    /// Semantic checks the types cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.chunk_chars < 100 {
            return Err(format!(
                "rag.chunk_chars must be at least 100, got {}",
                self.chunk_chars
            ));
        }
        if self.chunk_overlap >= self.chunk_chars / 2 {
            return Err(format!(
                "rag.chunk_overlap ({}) must be less than half of rag.chunk_chars ({})",
                self.chunk_overlap, self.chunk_chars
            ));
        }
        if !(-1.0..=1.0).contains(&self.min_score) {
            return Err(format!(
                "rag.min_score must be a cosine similarity in [-1, 1], got {}",
                self.min_score
            ));
        }
        if self.embed_batch == 0 {
            return Err("rag.embed_batch must be at least 1".into());
        }
        if self.store == RagStoreKind::Qdrant && self.qdrant.collection.is_empty() {
            return Err("rag.qdrant.collection must not be empty".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RagStoreKind {
    #[default]
    Embedded,
    Qdrant,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QdrantConfig {
    /// gRPC endpoint of the Qdrant server.
    #[serde(default = "default_qdrant_url")]
    pub url: String,
    #[serde(default = "default_collection")]
    pub collection: String,
    #[serde(default)]
    pub api_key: Option<String>,
    /// Deadline of one Qdrant request, in milliseconds.
    #[serde(default = "default_qdrant_timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for QdrantConfig {
    fn default() -> Self {
        Self {
            url: default_qdrant_url(),
            collection: default_collection(),
            api_key: None,
            timeout_ms: default_qdrant_timeout_ms(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_top_k() -> usize {
    5
}
fn default_min_score() -> f32 {
    0.2
}
fn default_max_context_chars() -> usize {
    4000
}
fn default_chunk_chars() -> usize {
    1200
}
fn default_chunk_overlap() -> usize {
    150
}
fn default_max_doc_bytes() -> u64 {
    2 * 1024 * 1024
}
fn default_embed_batch() -> usize {
    // 32 vectors of 1536 floats as JSON stay under the default 1 MiB output budget.
    32
}
fn default_qdrant_url() -> String {
    "http://127.0.0.1:6334".into()
}
fn default_collection() -> String {
    "databot".into()
}
fn default_qdrant_timeout_ms() -> u64 {
    5000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_strict_keys_are_enforced() {
        assert!(RagConfig::default().validate().is_ok());
        let parsed: RagConfig = serde_yaml::from_str("store: qdrant\ntop_k: 3").unwrap();
        assert_eq!(parsed.store, RagStoreKind::Qdrant);
        assert_eq!(parsed.top_k, 3);
        assert!(serde_yaml::from_str::<RagConfig>("topk: 3").is_err());
        let bad = RagConfig {
            chunk_overlap: 900,
            ..RagConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("chunk_overlap"));
    }
}
