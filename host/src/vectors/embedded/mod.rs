//! The embedded vector store: every chunk in memory, vectors in one contiguous `f32` matrix,
//! brute-force cosine search (vectors are unit length, so a dot product) with a partial top-k,
//! persisted as a snapshot plus an append-only log, so a change writes bytes in proportion to
//! the change, not to the store.
//!
//! Files (little endian):
//! - `PATH`, the snapshot: `DBRAG\0\0\0`, `u32` version, `u32` dim, `u64` length of the JSON
//!   header, the header `{"model", "chunks": [...]}` (chunks without vectors), `count * dim`
//!   `f32`s, then the SHA-256 of everything before it. Always replaced whole: temporary file,
//!   fsync, rename, fsync of the folder. Version 2 may be continued by a log; version 1 files
//!   (written before the log existed; same layout) open too.
//! - `PATH.log`: `DBRAGLOG`, `u32` log version, the first 8 bytes of the SHA-256 trailer of
//!   the snapshot it continues; then one record per change: `u32` payload length, the first 8
//!   bytes of the payload's SHA-256, the payload (`u32` JSON length, the JSON operation
//!   `upsert` (model, dim, chunks without vectors), `delete_ids` or `delete_group`, then the
//!   upserted vectors as `f32`s). Each change is one append and one fsync.
//! - `PATH.lock`: the exclusive lock of the one writer.
//!
//! Opening loads the snapshot, then replays the log. A log continuing another snapshot (a
//! crash between a compaction's two renames, or a snapshot deleted by hand) is stale and
//! ignored. A torn last record (a crash mid-append, or a writer appending right now while a
//! reader looks) is dropped: a writer warns and truncates it away, a reader skips it. A
//! damaged record with more records after it (or with an impossible length) is a `Corrupt`
//! error naming the log. Compaction writes a new snapshot and starts an empty log once the
//! log is larger than the snapshot and than 1 MiB (and on the first change when there is no
//! snapshot or no usable log): amortised, each change is written a bounded number of times.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::store::{Chunk, Entry, Match, StoreError, StoreStats, VectorStore};

mod files;
mod format;
#[cfg(test)]
mod tests;

use self::files::*;
use self::format::*;

#[derive(Default)]
struct Inner {
    dim: usize,
    model: String,
    /// Chunks without vectors; row `i` of `matrix` belongs to `chunks[i]`.
    chunks: Vec<Chunk>,
    matrix: Vec<f32>,
    index: HashMap<String, usize>,
}

impl Inner {
    /// Would `chunks` fit (one dimension, the stored one unless the store is empty)?
    fn check(&self, chunks: &[Chunk], model: &str, location: &str) -> Result<(), StoreError> {
        let Some(dim) = chunks.first().map(|c| c.vector.len()) else {
            return Ok(());
        };
        let stored = if self.chunks.is_empty() {
            dim
        } else {
            self.dim
        };
        if let Some(bad) = chunks.iter().find(|c| c.vector.len() != stored) {
            return Err(StoreError::Dimension {
                stored,
                stored_model: self.model.clone(),
                given: bad.vector.len(),
                given_model: model.to_owned(),
                location: location.to_owned(),
            });
        }
        Ok(())
    }

    /// Insert or replace chunks that passed `check`.
    fn apply_upsert(&mut self, chunks: Vec<Chunk>, model: &str) {
        let Some(dim) = chunks.first().map(|c| c.vector.len()) else {
            return;
        };
        if self.chunks.is_empty() {
            self.dim = dim;
        }
        let stored = self.dim;
        self.model = model.to_owned();
        for mut chunk in chunks {
            let vector = std::mem::take(&mut chunk.vector);
            match self.index.get(&chunk.id).copied() {
                Some(row) => {
                    self.matrix[row * stored..(row + 1) * stored].copy_from_slice(&vector);
                    self.chunks[row] = chunk;
                }
                None => {
                    let row = self.chunks.len();
                    self.index.insert(chunk.id.clone(), row);
                    self.chunks.push(chunk);
                    self.matrix.extend_from_slice(&vector);
                }
            }
        }
    }

    /// Remove rows matching `doomed` (swap-remove keeps the matrix contiguous).
    fn remove_where(&mut self, doomed: impl Fn(&Chunk) -> bool) -> usize {
        let dim = self.dim;
        let mut removed = 0;
        let mut row = 0;
        while row < self.chunks.len() {
            if !doomed(&self.chunks[row]) {
                row += 1;
                continue;
            }
            let last = self.chunks.len() - 1;
            let id = self.chunks[row].id.clone();
            self.index.remove(&id);
            self.chunks.swap_remove(row);
            if row != last {
                let (head, tail) = self.matrix.split_at_mut(last * dim);
                head[row * dim..(row + 1) * dim].copy_from_slice(&tail[..dim]);
                let moved = self.chunks[row].id.clone();
                self.index.insert(moved, row);
            }
            self.matrix.truncate(last * dim);
            removed += 1;
        }
        removed
    }

    /// Replay one log operation.
    fn apply(&mut self, op: LogOp, floats: &[f32], location: &str) -> Result<(), String> {
        match op {
            LogOp::Upsert {
                model,
                dim,
                mut chunks,
            } => {
                if floats.len() != chunks.len() * dim {
                    return Err(format!(
                        "{} chunks of {dim} dimensions need {} values, found {}",
                        chunks.len(),
                        chunks.len() * dim,
                        floats.len()
                    ));
                }
                if dim > 0 {
                    for (chunk, vector) in chunks.iter_mut().zip(floats.chunks_exact(dim)) {
                        chunk.vector = vector.to_vec();
                    }
                }
                self.check(&chunks, &model, location)
                    .map_err(|e| e.to_string())?;
                self.apply_upsert(chunks, &model);
            }
            LogOp::DeleteIds { ids } => {
                let doomed: HashSet<&str> = ids.iter().map(String::as_str).collect();
                self.remove_where(|c| doomed.contains(c.id.as_str()));
            }
            LogOp::DeleteGroup { group } => {
                self.remove_where(|c| c.group == group);
            }
        }
        Ok(())
    }
}

pub struct EmbeddedStore {
    path: Option<PathBuf>,
    inner: Arc<RwLock<Inner>>,
    /// Serialises changes, so memory and the files change in the same order. A change runs
    /// to its end in a blocking task that holds this, even if its caller goes away, so memory
    /// and the log never disagree.
    writing: Arc<tokio::sync::Mutex<()>>,
    /// The files of a writable store (`None`: in memory, or read-only).
    files: Option<Arc<Mutex<Files>>>,
    /// The exclusive lock on `PATH.lock` a writable store holds (one writer per file).
    _lock: Option<std::fs::File>,
    read_only: bool,
}

impl EmbeddedStore {
    /// Open (or start) the store persisted at `path` for reading and writing. Only one
    /// process (and one store in it) may hold a file writable at a time; a damaged file is an
    /// error, never silently replaced.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let lock = lock_file(path)?;
        let log_path = log_path_of(path);
        let loaded = load(path, &log_path)?;
        if loaded.stale_log {
            tracing::warn!(
                log = %log_path.display(),
                "ignoring a log that continues another snapshot (an interrupted compaction, or the snapshot was replaced); the next change starts a new one"
            );
        }
        let mut files = Files {
            snapshot: path.to_owned(),
            log_path: log_path.clone(),
            log: None,
            log_len: 0,
            snapshot_len: loaded.snapshot_len,
            compact_min: COMPACT_MIN_LOG_BYTES,
        };
        if let Some(scan) = &loaded.log {
            if let Some(why) = &scan.torn {
                tracing::warn!(
                    log = %log_path.display(),
                    records = scan.records,
                    "dropping a torn last record ({why}): a write was interrupted; the changes before it are kept"
                );
            }
            let file = open_log_for_append(&log_path, scan.good_len).map_err(|source| {
                StoreError::Write {
                    path: log_path.display().to_string(),
                    source,
                }
            })?;
            files.log = Some(file);
            files.log_len = scan.good_len;
        }
        Ok(Self {
            path: Some(path.to_owned()),
            inner: Arc::new(RwLock::new(loaded.inner)),
            writing: Arc::default(),
            files: Some(Arc::new(Mutex::new(files))),
            _lock: Some(lock),
            read_only: false,
        })
    }

    /// Open the store at `path` to search it while another process may own it for writing
    /// (a snapshot of the files as they are now; a record being appended is left out).
    /// Writes are refused.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let log_path = log_path_of(path);
        let mut loaded = load(path, &log_path)?;
        for _ in 1..READ_ATTEMPTS {
            if !loaded.stale_log {
                break;
            }
            // A writer may have compacted between reading the snapshot and the log.
            loaded = load(path, &log_path)?;
        }
        if let Some(why) = loaded.log.as_ref().and_then(|scan| scan.torn.as_ref()) {
            tracing::debug!(log = %log_path.display(), "leaving out a partial last record ({why})");
        }
        Ok(Self {
            path: Some(path.to_owned()),
            inner: Arc::new(RwLock::new(loaded.inner)),
            writing: Arc::default(),
            files: None,
            _lock: None,
            read_only: true,
        })
    }

    /// A store that is never written to disk (tests, benchmarks).
    pub fn in_memory() -> Self {
        Self {
            path: None,
            inner: Arc::default(),
            writing: Arc::default(),
            files: None,
            _lock: None,
            read_only: false,
        }
    }

    pub fn len(&self) -> usize {
        self.inner.read().chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a chunk with this id is stored.
    pub fn contains(&self, id: &str) -> bool {
        self.inner.read().index.contains_key(id)
    }

    fn location(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| "(in memory)".to_owned(), |p| p.display().to_string())
    }

    fn writable(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly {
                path: self.location(),
            });
        }
        Ok(())
    }

    /// Will the next change go to the log (so its record is worth building)?
    fn logging(&self) -> bool {
        self.files.as_ref().is_some_and(|f| f.lock().log.is_some())
    }

    /// Take the right to change the store (held until a change is complete).
    async fn start_change(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.writing.clone().lock_owned().await
    }

    /// Make one checked change durable and visible: append its `record` (if the log takes
    /// it; fsynced), apply it in memory, then write a snapshot when due, all in one blocking
    /// task holding `change`. A change that went to the log stands even when the compaction
    /// after it fails (it is retried on the next change).
    async fn commit<T: Send + 'static>(
        &self,
        change: tokio::sync::OwnedMutexGuard<()>,
        record: Option<Vec<u8>>,
        apply: impl FnOnce(&mut Inner) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let Some(files) = self.files.clone() else {
            return Ok(apply(&mut self.inner.write()));
        };
        let inner = self.inner.clone();
        let location = self.location();
        let task = tokio::task::spawn_blocking(move || {
            let _change = change;
            let mut files = files.lock();
            let logged = match record {
                Some(record) => {
                    files.append(&record).map_err(|source| StoreError::Write {
                        path: files.log_path.display().to_string(),
                        source,
                    })?;
                    true
                }
                None => false,
            };
            let out = apply(&mut inner.write());
            if logged && !files.compaction_due() {
                return Ok(out);
            }
            let bytes = encode(&inner.read());
            match files.compact(&bytes) {
                Ok(()) => Ok(out),
                Err(error) if logged => {
                    tracing::warn!(
                        path = %location,
                        "the change is in the log, but writing a new snapshot failed (retried on the next change): {error}"
                    );
                    Ok(out)
                }
                Err(error) => Err(error),
            }
        });
        task.await.map_err(|e| StoreError::Write {
            path: self.location(),
            source: std::io::Error::other(e.to_string()),
        })?
    }

    /// Fold the log into a new snapshot now (it also happens on its own as the log grows).
    pub async fn compact(&self) -> Result<(), StoreError> {
        self.writable()?;
        let change = self.start_change().await;
        let Some(files) = self.files.clone() else {
            return Ok(());
        };
        let inner = self.inner.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _change = change;
            let bytes = encode(&inner.read());
            files.lock().compact(&bytes)
        });
        task.await.map_err(|e| StoreError::Write {
            path: self.location(),
            source: std::io::Error::other(e.to_string()),
        })?
    }

    /// Synchronous search (the async trait method delegates here; benchmarks call it too).
    pub fn search_now(&self, vector: &[f32], k: usize, kind: Option<&str>) -> Vec<Match> {
        let inner = self.inner.read();
        if k == 0 || inner.dim == 0 || vector.len() != inner.dim {
            return Vec::new();
        }
        // Never more than there are chunks (`k` may come from a user).
        let k = k.min(inner.chunks.len());
        // Best `k` so far, sorted by descending score.
        let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
        for (row, values) in inner.matrix.chunks_exact(inner.dim).enumerate() {
            let score = dot(values, vector);
            if best.len() == k && best.last().is_some_and(|(worst, _)| score <= *worst) {
                continue;
            }
            if let Some(kind) = kind
                && inner.chunks[row].kind() != kind
            {
                continue;
            }
            let at = best.partition_point(|(s, _)| *s >= score);
            best.insert(at, (score, row));
            best.truncate(k);
        }
        best.into_iter()
            .map(|(score, row)| {
                let chunk = &inner.chunks[row];
                Match {
                    id: chunk.id.clone(),
                    source: chunk.source.clone(),
                    text: chunk.text.clone(),
                    score,
                    metadata: chunk.metadata.clone(),
                }
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl VectorStore for EmbeddedStore {
    async fn upsert(&self, chunks: Vec<Chunk>, model: &str) -> Result<(), StoreError> {
        if chunks.is_empty() {
            return Ok(());
        }
        self.writable()?;
        let change = self.start_change().await;
        self.inner.read().check(&chunks, model, &self.location())?;
        let record = self
            .logging()
            .then(|| upsert_record(&chunks, model))
            .flatten();
        let model = model.to_owned();
        self.commit(change, record, move |inner| {
            inner.apply_upsert(chunks, &model)
        })
        .await
    }

    async fn search(
        &self,
        vector: &[f32],
        k: usize,
        kind: Option<&str>,
    ) -> Result<Vec<Match>, StoreError> {
        let dim = self.inner.read().dim;
        if dim != 0 && vector.len() != dim {
            let inner = self.inner.read();
            return Err(StoreError::Dimension {
                stored: dim,
                stored_model: inner.model.clone(),
                given: vector.len(),
                given_model: "the query's embedder".into(),
                location: self.location(),
            });
        }
        Ok(self.search_now(vector, k, kind))
    }

    async fn entries(&self, group: &str) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .inner
            .read()
            .chunks
            .iter()
            .filter(|c| c.group == group)
            .map(|c| Entry {
                id: c.id.clone(),
                hash: c.hash.clone(),
                metadata: c.metadata.clone(),
            })
            .collect())
    }

    async fn groups(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut groups: Vec<String> = self
            .inner
            .read()
            .chunks
            .iter()
            .filter(|c| c.group.starts_with(prefix))
            .map(|c| c.group.clone())
            .collect();
        groups.sort();
        groups.dedup();
        Ok(groups)
    }

    async fn delete_ids(&self, ids: &[String]) -> Result<usize, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.writable()?;
        let change = self.start_change().await;
        // Only ids that exist are logged.
        let present: Vec<String> = {
            let inner = self.inner.read();
            let unique: HashSet<&str> = ids.iter().map(String::as_str).collect();
            unique
                .into_iter()
                .filter(|id| inner.index.contains_key(*id))
                .map(str::to_owned)
                .collect()
        };
        if present.is_empty() {
            return Ok(0);
        }
        let record = self
            .logging()
            .then(|| op_record(&LogOpRef::DeleteIds { ids: &present }, &[]))
            .flatten();
        let doomed: HashSet<String> = present.into_iter().collect();
        self.commit(change, record, move |inner| {
            inner.remove_where(|c| doomed.contains(&c.id))
        })
        .await
    }

    async fn delete_group(&self, group: &str) -> Result<usize, StoreError> {
        self.writable()?;
        let change = self.start_change().await;
        let present = self
            .inner
            .read()
            .chunks
            .iter()
            .filter(|c| c.group == group)
            .count();
        if present == 0 {
            return Ok(0);
        }
        let record = self
            .logging()
            .then(|| op_record(&LogOpRef::DeleteGroup { group }, &[]))
            .flatten();
        let group = group.to_owned();
        self.commit(change, record, move |inner| {
            inner.remove_where(|c| c.group == group)
        })
        .await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let inner = self.inner.read();
        let mut by_kind = BTreeMap::new();
        for chunk in &inner.chunks {
            *by_kind.entry(chunk.kind().to_owned()).or_insert(0) += 1;
        }
        Ok(StoreStats {
            store: "embedded".into(),
            location: self.location(),
            chunks: inner.chunks.len(),
            by_kind,
            dim: (!inner.chunks.is_empty()).then_some(inner.dim),
            model: (!inner.chunks.is_empty()).then(|| inner.model.clone()),
        })
    }
}

/// Dot product with eight independent accumulators (lets the compiler vectorise).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
impl EmbeddedStore {
    /// Insert or replace in memory without writing the files.
    fn upsert_in_memory(&self, chunks: Vec<Chunk>, model: &str) -> Result<(), StoreError> {
        let mut inner = self.inner.write();
        inner.check(&chunks, model, &self.location())?;
        inner.apply_upsert(chunks, model);
        Ok(())
    }

    fn remove_where(&self, doomed: impl Fn(&Chunk) -> bool) -> usize {
        self.inner.write().remove_where(doomed)
    }

    /// Compact once the log passes `bytes` (and the snapshot's size).
    fn set_compact_min(&self, bytes: u64) {
        if let Some(files) = &self.files {
            files.lock().compact_min = bytes;
        }
    }
}
