//! The `vectors` capability's backend: each plugin's granted collections are embedded stores
//! of their own under `DATA_DIR/rag/plugins/PLUGIN/COLLECTION.bin`, so a plugin never reaches
//! another plugin's collections or the agent's knowledge base. `PluginCollections` (one per
//! runtime, in `HostServices`) keeps the open stores, shared per file across calls (each call
//! has a fresh plugin instance); they close, releasing their file locks, with the runtime.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::embedded::EmbeddedStore;
use super::store::{Chunk, VectorStore};
use crate::contract::GuestError;

/// Longest vector a plugin may store.
pub const MAX_DIM: usize = 4096;
/// Largest payload of one point, in bytes of JSON.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024;
/// Most points one collection holds.
pub const MAX_POINTS: usize = 20_000;
/// Most matches one search returns.
pub const MAX_LIMIT: u32 = 100;

/// The collections a runtime has open, by file.
#[derive(Default)]
pub struct PluginCollections {
    open: Mutex<HashMap<PathBuf, Arc<EmbeddedStore>>>,
}

/// One search hit: point id, cosine similarity, the payload JSON as stored.
pub struct PluginMatch {
    pub id: String,
    pub score: f32,
    pub payload: String,
}

/// A collection name is 1-64 letters, digits, `_` or `-` (it becomes a file name). Checked
/// before the grant, so a name no grant could allow is invalid input, not a denial.
pub fn check_collection_name(collection: &str) -> Result<(), GuestError> {
    let valid = !collection.is_empty()
        && collection.len() <= 64
        && collection
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        return Ok(());
    }
    Err(GuestError::InvalidInput(format!(
        "collection name `{collection}`: use 1-64 letters, digits, `_` or `-`"
    )))
}

fn collection_path(data_dir: &Path, plugin: &str, collection: &str) -> Result<PathBuf, GuestError> {
    check_collection_name(collection)?;
    // One folder per exact plugin name: a name outside [A-Za-z0-9_-] is hex-encoded behind a
    // `~` (which no plain name holds), so two different names never share a folder.
    let plain = !plugin.is_empty()
        && plugin
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let plugin = if plain {
        plugin.to_owned()
    } else {
        format!("~{}", hex::encode(plugin.as_bytes()))
    };
    Ok(data_dir
        .join("rag")
        .join("plugins")
        .join(plugin)
        .join(format!("{collection}.bin")))
}

impl PluginCollections {
    fn open(&self, path: &Path, collection: &str) -> Result<Arc<EmbeddedStore>, GuestError> {
        let mut open = self.open.lock();
        if let Some(store) = open.get(path) {
            return Ok(store.clone());
        }
        let store = EmbeddedStore::open(path).map_err(|e| match e {
            super::StoreError::Busy { .. } => GuestError::Unavailable(format!(
                "collection `{collection}` ({}) is in use by another databot process on the same data folder",
                path.display()
            )),
            other => GuestError::Failed(format!("collection `{collection}`: {other}")),
        })?;
        let store = Arc::new(store);
        open.insert(path.to_owned(), store.clone());
        Ok(store)
    }

    /// Insert or replace point `id` of `plugin`'s `collection` (under `data_dir`).
    pub async fn upsert(
        &self,
        data_dir: &Path,
        plugin: &str,
        collection: &str,
        id: String,
        vector: Vec<f32>,
        payload: String,
    ) -> Result<(), GuestError> {
        let path = collection_path(data_dir, plugin, collection)?;
        let vector = checked_vector(vector)?;
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(GuestError::InvalidInput(format!(
                "payload of {} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit",
                payload.len()
            )));
        }
        let payload: serde_json::Value = serde_json::from_str(&payload)
            .map_err(|e| GuestError::InvalidInput(format!("payload is not JSON: {e}")))?;
        if id.is_empty() || id.len() > 256 {
            return Err(GuestError::InvalidInput(
                "point ids are 1 to 256 bytes".into(),
            ));
        }
        let store = self.open(&path, collection)?;
        // A full collection still takes replacements of the points it holds.
        if store.len() >= MAX_POINTS && !store.contains(&id) {
            return Err(GuestError::Failed(format!(
                "collection `{collection}` is full ({MAX_POINTS} points)"
            )));
        }
        let mut metadata = serde_json::Map::new();
        metadata.insert("payload".into(), payload);
        let chunk = Chunk {
            id,
            source: format!("plugin:{plugin}/{collection}"),
            group: collection.to_owned(),
            hash: String::new(),
            text: String::new(),
            metadata,
            vector,
        };
        store.upsert(vec![chunk], "plugin").await.map_err(|e| match e {
            super::StoreError::Dimension { stored, given, .. } => GuestError::InvalidInput(format!(
                "collection `{collection}` holds {stored}-dimensional vectors, this one has {given}"
            )),
            other => GuestError::Failed(other.to_string()),
        })
    }

    /// The `limit` points of `plugin`'s `collection` most similar to `vector`.
    pub async fn search(
        &self,
        data_dir: &Path,
        plugin: &str,
        collection: &str,
        vector: Vec<f32>,
        limit: u32,
    ) -> Result<Vec<PluginMatch>, GuestError> {
        let path = collection_path(data_dir, plugin, collection)?;
        let vector = checked_vector(vector)?;
        let store = self.open(&path, collection)?;
        let hits = store
            .search(&vector, limit.min(MAX_LIMIT) as usize, None)
            .await
            .map_err(|e| match e {
                super::StoreError::Dimension { stored, given, .. } => GuestError::InvalidInput(
                    format!("collection `{collection}` holds {stored}-dimensional vectors, the query has {given}"),
                ),
                other => GuestError::Failed(other.to_string()),
            })?;
        Ok(hits
            .into_iter()
            .map(|m| PluginMatch {
                id: m.id,
                score: m.score,
                payload: m
                    .metadata
                    .get("payload")
                    .map_or_else(|| "null".to_owned(), |p| p.to_string()),
            })
            .collect())
    }
}

fn checked_vector(mut vector: Vec<f32>) -> Result<Vec<f32>, GuestError> {
    if vector.is_empty() || vector.len() > MAX_DIM {
        return Err(GuestError::InvalidInput(format!(
            "a vector needs 1 to {MAX_DIM} values, got {}",
            vector.len()
        )));
    }
    if vector.iter().any(|v| !v.is_finite()) {
        return Err(GuestError::InvalidInput(
            "the vector holds NaN or infinity".into(),
        ));
    }
    super::normalise(&mut vector);
    Ok(vector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn different_plugin_names_never_share_a_folder() {
        let root = Path::new("/data");
        let path = |plugin: &str| collection_path(root, plugin, "notes").unwrap();
        assert_eq!(
            path("rag_user"),
            root.join("rag/plugins/rag_user/notes.bin")
        );
        assert_ne!(path("a.b"), path("a_b"));
        assert_ne!(path("a/b"), path("a_b"));
        assert_eq!(path("a.b"), root.join("rag/plugins/~612e62/notes.bin"));
        assert!(path("../x").starts_with("/data/rag/plugins/"));
        assert_eq!(
            path("../x").components().count(),
            path("a_b").components().count()
        );
    }

    #[tokio::test]
    async fn a_full_collection_refuses_new_points_but_takes_replacements() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let collections = PluginCollections::default();
        let path = collection_path(data, "p1", "full").unwrap();
        let store = collections.open(&path, "full").unwrap();
        let chunks = (0..MAX_POINTS)
            .map(|n| Chunk {
                id: format!("id{n}"),
                source: "plugin:p1/full".into(),
                group: "full".into(),
                hash: String::new(),
                text: String::new(),
                metadata: Default::default(),
                vector: vec![1.0, 0.0],
            })
            .collect();
        store.upsert(chunks, "plugin").await.unwrap();
        let upsert = |id: &str| {
            collections.upsert(data, "p1", "full", id.into(), vec![0.0, 1.0], "{}".into())
        };
        let error = upsert("new").await.unwrap_err();
        assert!(
            matches!(&error, GuestError::Failed(m) if m.contains("is full")),
            "{error:?}"
        );
        upsert("id7").await.unwrap();
        assert_eq!(store.len(), MAX_POINTS);
    }

    #[tokio::test]
    async fn collections_are_per_plugin_checked_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let collections = PluginCollections::default();
        collections
            .upsert(
                data,
                "p1",
                "notes",
                "a".into(),
                vec![1.0, 0.0],
                r#"{"t":"a"}"#.into(),
            )
            .await
            .unwrap();
        collections
            .upsert(
                data,
                "p1",
                "notes",
                "b".into(),
                vec![0.0, 2.0],
                r#"{"t":"b"}"#.into(),
            )
            .await
            .unwrap();
        let hits = collections
            .search(data, "p1", "notes", vec![0.1, 1.0], 5)
            .await
            .unwrap();
        assert_eq!(hits[0].id, "b");
        assert_eq!(hits[0].payload, r#"{"t":"b"}"#);
        // Another plugin's collection of the same name is another collection.
        assert!(
            collections
                .search(data, "p2", "notes", vec![0.1, 1.0], 5)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(data.join("rag/plugins/p1/notes.bin").exists());
        // Bad input.
        for bad in ["", "../x", "a/b", &"x".repeat(65)] {
            assert!(matches!(
                collections.search(data, "p1", bad, vec![1.0], 1).await,
                Err(GuestError::InvalidInput(_))
            ));
        }
        assert!(matches!(
            collections.upsert(data, "p1", "notes", "c".into(), vec![1.0, 0.0, 0.0], "{}".into()).await,
            Err(GuestError::InvalidInput(m)) if m.contains("2-dimensional")
        ));
        assert!(matches!(
            collections
                .upsert(
                    data,
                    "p1",
                    "notes",
                    "c".into(),
                    vec![f32::NAN, 0.0],
                    "{}".into()
                )
                .await,
            Err(GuestError::InvalidInput(_))
        ));
        assert!(matches!(
            collections
                .upsert(
                    data,
                    "p1",
                    "notes",
                    "c".into(),
                    vec![1.0, 0.0],
                    "{not json".into()
                )
                .await,
            Err(GuestError::InvalidInput(_))
        ));
        assert!(matches!(
            collections.search(data, "p1", "notes", vec![], 1).await,
            Err(GuestError::InvalidInput(_))
        ));
    }

    #[tokio::test]
    async fn points_survive_a_new_runtime_and_one_runtime_owns_a_data_folder() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let first = PluginCollections::default();
        for i in 0..20u8 {
            first
                .upsert(
                    data,
                    "p1",
                    "notes",
                    format!("p{i}"),
                    vec![1.0, f32::from(i)],
                    format!(r#"{{"i":{i}}}"#),
                )
                .await
                .unwrap();
        }
        // Another runtime on the same folder while this one runs: refused, clearly.
        let second = PluginCollections::default();
        assert!(matches!(
            second.search(data, "p1", "notes", vec![1.0, 0.0], 1).await,
            Err(GuestError::Unavailable(m)) if m.contains("in use") && m.contains("notes")
        ));
        drop(first);
        let hits = second
            .search(data, "p1", "notes", vec![0.0, 1.0], 2)
            .await
            .unwrap();
        assert_eq!(hits[0].id, "p19");
        assert_eq!(hits[0].payload, r#"{"i":19}"#);
        assert_eq!(hits.len(), 2);
        // Oversized payloads and bad ids are refused before anything is stored.
        let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_PAYLOAD_BYTES));
        assert!(matches!(
            second.upsert(data, "p1", "notes", "big".into(), vec![1.0, 0.0], big).await,
            Err(GuestError::InvalidInput(m)) if m.contains("limit")
        ));
        assert!(matches!(
            second
                .upsert(
                    data,
                    "p1",
                    "notes",
                    String::new(),
                    vec![1.0, 0.0],
                    "1".into()
                )
                .await,
            Err(GuestError::InvalidInput(_))
        ));
    }
}
