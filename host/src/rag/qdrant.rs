//! The Qdrant vector store (gRPC through `qdrant-client`): one collection with cosine
//! distance, created on first use with the embedder's dimension; chunks are points whose id is
//! a UUID derived from the chunk id and whose payload holds the chunk's fields.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use qdrant_client::Qdrant;
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::vectors_config::Config as VectorsConfigKind;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, DeletePointsBuilder, Distance, Filter,
    PointId, PointStruct, QueryPointsBuilder, ScrollPointsBuilder, UpsertPointsBuilder, Value,
    VectorParamsBuilder,
};
use tokio::sync::Mutex;

use crate::config::QdrantConfig;
use crate::vectors::store::{Chunk, Entry, Match, StoreError, StoreStats, VectorStore};

/// Points fetched per page when listing entries.
const PAGE: u32 = 256;

pub struct QdrantStore {
    client: Qdrant,
    url: String,
    collection: String,
    /// The collection's dimension once known to exist.
    dim: Mutex<Option<usize>>,
}

fn qdrant_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Qdrant(error.to_string())
}

impl QdrantStore {
    /// A client for `settings.url` (no request is made until first use).
    pub fn connect(settings: &QdrantConfig) -> Result<Self, StoreError> {
        let client = Qdrant::from_url(&settings.url)
            .api_key(settings.api_key.clone().filter(|k| !k.is_empty()))
            .timeout(Duration::from_millis(settings.timeout_ms))
            .skip_compatibility_check()
            .build()
            .map_err(qdrant_error)?;
        Ok(Self {
            client,
            url: settings.url.clone(),
            collection: settings.collection.clone(),
            dim: Mutex::new(None),
        })
    }

    /// The collection's vector size, or `None` when it does not exist.
    async fn existing_dim(&self) -> Result<Option<usize>, StoreError> {
        if !self
            .client
            .collection_exists(&self.collection)
            .await
            .map_err(qdrant_error)?
        {
            return Ok(None);
        }
        let info = self
            .client
            .collection_info(&self.collection)
            .await
            .map_err(qdrant_error)?;
        let size = info
            .result
            .and_then(|r| r.config)
            .and_then(|c| c.params)
            .and_then(|p| p.vectors_config)
            .and_then(|v| v.config)
            .and_then(|c| match c {
                VectorsConfigKind::Params(params) => Some(params.size as usize),
                VectorsConfigKind::ParamsMap(_) => None,
            })
            .ok_or_else(|| {
                StoreError::Qdrant(format!(
                    "collection `{}` exists but has no single unnamed vector; pick another rag.qdrant.collection",
                    self.collection
                ))
            })?;
        Ok(Some(size))
    }

    /// Make sure the collection exists with `dim` dimensions.
    async fn ensure_collection(&self, dim: usize, model: &str) -> Result<(), StoreError> {
        let mut known = self.dim.lock().await;
        let existing = match *known {
            Some(existing) => Some(existing),
            None => self.existing_dim().await?,
        };
        match existing {
            Some(existing) if existing != dim => Err(StoreError::Dimension {
                stored: existing,
                stored_model: "?".into(),
                given: dim,
                given_model: model.to_owned(),
                location: self.location(),
            }),
            Some(existing) => {
                *known = Some(existing);
                Ok(())
            }
            None => {
                self.client
                    .create_collection(
                        CreateCollectionBuilder::new(&self.collection)
                            .vectors_config(VectorParamsBuilder::new(dim as u64, Distance::Cosine)),
                    )
                    .await
                    .map_err(qdrant_error)?;
                *known = Some(dim);
                Ok(())
            }
        }
    }

    /// Delete the whole collection (tests; `rag.qdrant.collection` starts empty again).
    pub async fn drop_collection(&self) -> Result<(), StoreError> {
        let mut known = self.dim.lock().await;
        self.client
            .delete_collection(&self.collection)
            .await
            .map_err(qdrant_error)?;
        *known = None;
        Ok(())
    }

    fn location(&self) -> String {
        format!("{}/{}", self.url, self.collection)
    }

    async fn collection_missing(&self) -> Result<bool, StoreError> {
        if self.dim.lock().await.is_some() {
            return Ok(false);
        }
        Ok(!self
            .client
            .collection_exists(&self.collection)
            .await
            .map_err(qdrant_error)?)
    }

    /// Every point matching `filter`, with payload, page by page.
    async fn scroll_all(
        &self,
        filter: Option<Filter>,
    ) -> Result<Vec<HashMap<String, Value>>, StoreError> {
        if self.collection_missing().await? {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut request = ScrollPointsBuilder::new(&self.collection)
                .limit(PAGE)
                .with_payload(true)
                .with_vectors(false);
            if let Some(filter) = &filter {
                request = request.filter(filter.clone());
            }
            if let Some(offset) = offset.take() {
                request = request.offset(offset);
            }
            let page = self.client.scroll(request).await.map_err(qdrant_error)?;
            out.extend(page.result.into_iter().map(|p| p.payload));
            match page.next_page_offset {
                Some(next) => offset = Some(next),
                None => break,
            }
        }
        Ok(out)
    }

    async fn delete_by(&self, filter: Filter) -> Result<usize, StoreError> {
        if self.collection_missing().await? {
            return Ok(0);
        }
        let count = self.count(Some(filter.clone())).await?;
        if count > 0 {
            self.client
                .delete_points(
                    DeletePointsBuilder::new(&self.collection)
                        .points(filter)
                        .wait(true),
                )
                .await
                .map_err(qdrant_error)?;
        }
        Ok(count)
    }

    async fn count(&self, filter: Option<Filter>) -> Result<usize, StoreError> {
        let mut request = CountPointsBuilder::new(&self.collection).exact(true);
        if let Some(filter) = filter {
            request = request.filter(filter);
        }
        let response = self.client.count(request).await.map_err(qdrant_error)?;
        Ok(response.result.map_or(0, |r| r.count as usize))
    }
}

/// The point id of a chunk: a UUID made of the first 16 bytes of SHA-256 of the chunk id.
pub fn point_id(chunk_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(chunk_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::from_bytes(bytes).to_string()
}

/// A chunk as a Qdrant point.
pub fn to_point(chunk: Chunk, model: &str) -> PointStruct {
    let metadata = serde_json::Value::Object(chunk.metadata.clone()).to_string();
    let payload: HashMap<String, Value> = HashMap::from([
        ("id".to_owned(), chunk.id.clone().into()),
        ("source".to_owned(), chunk.source.clone().into()),
        ("group".to_owned(), chunk.group.clone().into()),
        ("kind".to_owned(), chunk.kind().to_owned().into()),
        ("hash".to_owned(), chunk.hash.clone().into()),
        ("text".to_owned(), chunk.text.clone().into()),
        ("metadata".to_owned(), metadata.into()),
        ("model".to_owned(), model.into()),
    ]);
    PointStruct::new(point_id(&chunk.id), chunk.vector, payload)
}

fn text_of(payload: &HashMap<String, Value>, key: &str) -> String {
    match payload.get(key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(text)) => text.clone(),
        _ => String::new(),
    }
}

fn metadata_of(payload: &HashMap<String, Value>) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_str(&text_of(payload, "metadata")).unwrap_or_default()
}

/// A point's payload back as a search match.
pub fn to_match(payload: &HashMap<String, Value>, score: f32) -> Match {
    Match {
        id: text_of(payload, "id"),
        source: text_of(payload, "source"),
        text: text_of(payload, "text"),
        score,
        metadata: metadata_of(payload),
    }
}

#[async_trait::async_trait]
impl VectorStore for QdrantStore {
    async fn upsert(&self, chunks: Vec<Chunk>, model: &str) -> Result<(), StoreError> {
        let Some(dim) = chunks.first().map(|c| c.vector.len()) else {
            return Ok(());
        };
        self.ensure_collection(dim, model).await?;
        let points: Vec<PointStruct> = chunks.into_iter().map(|c| to_point(c, model)).collect();
        for batch in points.chunks(256) {
            self.client
                .upsert_points(
                    UpsertPointsBuilder::new(&self.collection, batch.to_vec()).wait(true),
                )
                .await
                .map_err(qdrant_error)?;
        }
        Ok(())
    }

    async fn search(
        &self,
        vector: &[f32],
        k: usize,
        kind: Option<&str>,
    ) -> Result<Vec<Match>, StoreError> {
        if k == 0 || self.collection_missing().await? {
            return Ok(Vec::new());
        }
        let mut request = QueryPointsBuilder::new(&self.collection)
            .query(vector.to_vec())
            .limit(k as u64)
            .with_payload(true);
        if let Some(kind) = kind {
            request = request.filter(Filter::must([Condition::matches("kind", kind.to_owned())]));
        }
        let response = self.client.query(request).await.map_err(qdrant_error)?;
        Ok(response
            .result
            .iter()
            .map(|point| to_match(&point.payload, point.score))
            .collect())
    }

    async fn entries(&self, group: &str) -> Result<Vec<Entry>, StoreError> {
        let filter = Filter::must([Condition::matches("group", group.to_owned())]);
        Ok(self
            .scroll_all(Some(filter))
            .await?
            .iter()
            .map(|payload| Entry {
                id: text_of(payload, "id"),
                hash: text_of(payload, "hash"),
                metadata: metadata_of(payload),
            })
            .collect())
    }

    async fn groups(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut groups: Vec<String> = self
            .scroll_all(None)
            .await?
            .iter()
            .map(|payload| text_of(payload, "group"))
            .filter(|group| group.starts_with(prefix))
            .collect();
        groups.sort();
        groups.dedup();
        Ok(groups)
    }

    async fn delete_ids(&self, ids: &[String]) -> Result<usize, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let points: Vec<PointId> = ids.iter().map(|id| point_id(id).into()).collect();
        self.delete_by(Filter::must([Condition::has_id(points)]))
            .await
    }

    async fn delete_group(&self, group: &str) -> Result<usize, StoreError> {
        self.delete_by(Filter::must([Condition::matches(
            "group",
            group.to_owned(),
        )]))
        .await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut stats = StoreStats {
            store: "qdrant".into(),
            location: self.location(),
            ..StoreStats::default()
        };
        let Some(dim) = self.existing_dim().await? else {
            return Ok(stats);
        };
        let payloads = self.scroll_all(None).await?;
        let mut by_kind = BTreeMap::new();
        for payload in &payloads {
            *by_kind.entry(text_of(payload, "kind")).or_insert(0) += 1;
        }
        stats.chunks = payloads.len();
        stats.by_kind = by_kind;
        stats.dim = Some(dim);
        stats.model = payloads.first().map(|p| text_of(p, "model"));
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qdrant_client::qdrant::point_id::PointIdOptions;

    #[test]
    fn chunks_map_to_points_and_back() {
        let mut metadata = serde_json::Map::new();
        metadata.insert("table".into(), "orders".into());
        let chunk = Chunk {
            id: "abc".into(),
            source: "schema:pg/public.orders".into(),
            group: "schema:pg".into(),
            hash: "h1".into(),
            text: "table public.orders".into(),
            metadata,
            vector: vec![0.6, 0.8],
        };
        let point = to_point(chunk.clone(), "offline-hash-384");
        let Some(PointIdOptions::Uuid(uuid)) =
            point.id.as_ref().and_then(|id| id.point_id_options.clone())
        else {
            panic!("a UUID point id");
        };
        assert_eq!(uuid, point_id("abc"));
        assert!(uuid::Uuid::parse_str(&uuid).is_ok());
        assert_ne!(point_id("abc"), point_id("abd"));
        assert_eq!(text_of(&point.payload, "kind"), "schema");
        assert_eq!(text_of(&point.payload, "group"), "schema:pg");
        assert_eq!(text_of(&point.payload, "model"), "offline-hash-384");
        let back = to_match(&point.payload, 0.5);
        assert_eq!(back.id, chunk.id);
        assert_eq!(back.source, chunk.source);
        assert_eq!(back.text, chunk.text);
        assert_eq!(back.metadata, chunk.metadata);
        assert_eq!(back.score, 0.5);
    }
}
