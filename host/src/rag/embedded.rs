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
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::store::{Chunk, Entry, Match, StoreError, StoreStats, VectorStore};

const MAGIC: &[u8; 8] = b"DBRAG\0\0\0";
/// Snapshot format written; 2 may be continued by a log.
const VERSION: u32 = 2;
/// Snapshot formats read (1 is 2 without a log).
const READABLE_VERSIONS: [u32; 2] = [1, 2];
const LOG_MAGIC: &[u8; 8] = b"DBRAGLOG";
const LOG_VERSION: u32 = 1;
/// Magic, version, snapshot tag.
const LOG_HEADER_LEN: usize = 20;
/// Payload length and checksum before each record's payload.
const RECORD_HEAD_LEN: usize = 12;
/// A change bigger than this is written as a new snapshot instead of a log record.
const MAX_RECORD_BYTES: usize = 1 << 30;
/// The log is folded into a new snapshot once it is larger than the snapshot and than this.
const COMPACT_MIN_LOG_BYTES: u64 = 1024 * 1024;
/// How often a reader re-reads the pair when the log continues another snapshot (a writer
/// compacting between the two reads).
const READ_ATTEMPTS: usize = 3;

/// The first 8 bytes of a snapshot's SHA-256 trailer: which snapshot a log continues.
type Tag = [u8; 8];

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

#[derive(Serialize, Deserialize)]
struct Header {
    model: String,
    chunks: Vec<Chunk>,
}

/// One change in the log, as read back.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum LogOp {
    /// Chunks without vectors; the vectors follow the JSON, `dim` values each.
    Upsert {
        model: String,
        dim: usize,
        chunks: Vec<Chunk>,
    },
    DeleteIds {
        ids: Vec<String>,
    },
    DeleteGroup {
        group: String,
    },
}

/// One change in the log, as written (the same JSON as `LogOp`).
#[derive(Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum LogOpRef<'a> {
    Upsert {
        model: &'a str,
        dim: usize,
        chunks: &'a [Chunk],
    },
    DeleteIds {
        ids: &'a [String],
    },
    DeleteGroup {
        group: &'a str,
    },
}

/// The files of a writable store.
struct Files {
    snapshot: PathBuf,
    log_path: PathBuf,
    /// Append handle of a log continuing the current snapshot; `None`: the next change
    /// writes a snapshot (there is none yet, the log was stale, or an append failed).
    log: Option<std::fs::File>,
    log_len: u64,
    snapshot_len: u64,
    compact_min: u64,
}

impl Files {
    /// Append one record and fsync it. On failure nothing of it may stay for the next
    /// record to follow: the log is cut back, and the next change writes a snapshot.
    fn append(&mut self, record: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let Some(file) = self.log.as_mut() else {
            return Err(std::io::Error::other("no log is open"));
        };
        let written = file.write_all(record).and_then(|()| file.sync_data());
        if let Err(error) = written {
            let _ = file.set_len(self.log_len);
            self.log = None;
            return Err(error);
        }
        self.log_len += record.len() as u64;
        Ok(())
    }

    fn compaction_due(&self) -> bool {
        self.log.is_none() || self.log_len > self.snapshot_len.max(self.compact_min)
    }

    /// Replace the snapshot with `bytes` (the whole store) and start an empty log after it.
    /// A crash between the two renames leaves the old log, which continues the old snapshot
    /// and is therefore ignored as stale.
    fn compact(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.log = None;
        write_atomically(&self.snapshot, bytes).map_err(|source| StoreError::Write {
            path: self.snapshot.display().to_string(),
            source,
        })?;
        self.snapshot_len = bytes.len() as u64;
        let header = log_header(&tag_of(bytes));
        let log_error = |source| StoreError::Write {
            path: self.log_path.display().to_string(),
            source,
        };
        write_atomically(&self.log_path, &header).map_err(log_error)?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .map_err(log_error)?;
        self.log = Some(file);
        self.log_len = header.len() as u64;
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

/// What opening read: the snapshot with the log replayed onto it.
struct Loaded {
    inner: Inner,
    /// Length of the snapshot file (0: none).
    snapshot_len: u64,
    /// The log continuing the snapshot, if there is one.
    log: Option<LogScan>,
    /// A log was there but continues another snapshot.
    stale_log: bool,
}

/// How far the log was good.
struct LogScan {
    /// Offset after the last good record (where the next append goes).
    good_len: u64,
    records: usize,
    /// Why the bytes after `good_len` were dropped (a torn last record).
    torn: Option<String>,
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

fn encode(inner: &Inner) -> Vec<u8> {
    let header = Header {
        model: inner.model.clone(),
        chunks: inner.chunks.clone(),
    };
    // Proven invariant: the header is strings and `serde_json::Value` maps (string keys, no
    // NaN), which always serialise. Never write an empty header in its place: that would be
    // a valid-looking snapshot without its chunks.
    let header = serde_json::to_vec(&header).expect("a store header always serialises");
    let mut out = Vec::with_capacity(32 + header.len() + inner.matrix.len() * 4 + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(inner.dim as u32).to_le_bytes());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for value in &inner.matrix {
        out.extend_from_slice(&value.to_le_bytes());
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

fn decode(bytes: &[u8]) -> Result<Inner, String> {
    if bytes.len() < 24 + 32 || &bytes[..8] != MAGIC {
        return Err("not a databot knowledge base file (bad magic or too short)".into());
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != digest {
        return Err("checksum mismatch (truncated or modified)".into());
    }
    let version = u32::from_le_bytes(body[8..12].try_into().map_err(|_| "short header")?);
    if !READABLE_VERSIONS.contains(&version) {
        return Err(format!(
            "format version {version}, this databot reads versions {READABLE_VERSIONS:?}"
        ));
    }
    let dim = u32::from_le_bytes(body[12..16].try_into().map_err(|_| "short header")?) as usize;
    let header_len =
        u64::from_le_bytes(body[16..24].try_into().map_err(|_| "short header")?) as usize;
    let header_end = 24usize
        .checked_add(header_len)
        .filter(|end| *end <= body.len())
        .ok_or("header length beyond the end of the file")?;
    let header: Header =
        serde_json::from_slice(&body[24..header_end]).map_err(|e| format!("bad header: {e}"))?;
    let floats = &body[header_end..];
    if floats.len() != header.chunks.len() * dim * 4 {
        return Err(format!(
            "{} chunks of {dim} dimensions need {} bytes of vectors, found {}",
            header.chunks.len(),
            header.chunks.len() * dim * 4,
            floats.len()
        ));
    }
    let matrix = floats_of(floats);
    let mut index = HashMap::with_capacity(header.chunks.len());
    for (row, chunk) in header.chunks.iter().enumerate() {
        if index.insert(chunk.id.clone(), row).is_some() {
            return Err(format!("duplicate chunk id {}", chunk.id));
        }
    }
    Ok(Inner {
        dim,
        model: header.model,
        chunks: header.chunks,
        matrix,
        index,
    })
}

fn floats_of(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Which snapshot `bytes` (a valid snapshot) is.
fn tag_of(bytes: &[u8]) -> Tag {
    let mut tag = [0; 8];
    let trailer = &bytes[bytes.len().saturating_sub(32)..];
    let n = trailer.len().min(8);
    tag[..n].copy_from_slice(&trailer[..n]);
    tag
}

fn log_path_of(path: &Path) -> PathBuf {
    let mut log = path.as_os_str().to_owned();
    log.push(".log");
    PathBuf::from(log)
}

fn log_header(tag: &Tag) -> Vec<u8> {
    let mut out = Vec::with_capacity(LOG_HEADER_LEN);
    out.extend_from_slice(LOG_MAGIC);
    out.extend_from_slice(&LOG_VERSION.to_le_bytes());
    out.extend_from_slice(tag);
    out
}

/// The snapshot a log continues.
fn parse_log_header(bytes: &[u8]) -> Result<Tag, String> {
    if bytes.len() < LOG_HEADER_LEN || &bytes[..8] != LOG_MAGIC {
        return Err("not a databot knowledge base log (bad magic or too short)".into());
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != LOG_VERSION {
        return Err(format!(
            "log format version {version}, this databot reads version {LOG_VERSION}"
        ));
    }
    let mut tag = [0; 8];
    tag.copy_from_slice(&bytes[12..LOG_HEADER_LEN]);
    Ok(tag)
}

fn upsert_record(chunks: &[Chunk], model: &str) -> Option<Vec<u8>> {
    let dim = chunks.first().map_or(0, |c| c.vector.len());
    let vectors: Vec<&[f32]> = chunks.iter().map(|c| c.vector.as_slice()).collect();
    op_record(&LogOpRef::Upsert { model, dim, chunks }, &vectors)
}

/// A framed log record: `u32` payload length, 8 bytes of the payload's SHA-256, payload
/// (`u32` JSON length, the JSON operation, the vectors). `None` for a change too big for
/// one record (it is written as a new snapshot instead).
fn op_record(op: &LogOpRef<'_>, vectors: &[&[f32]]) -> Option<Vec<u8>> {
    let json = serde_json::to_vec(op).ok()?;
    let floats: usize = vectors.iter().map(|v| v.len()).sum();
    let payload_len = 4 + json.len() + floats * 4;
    if payload_len > MAX_RECORD_BYTES {
        return None;
    }
    let mut record = Vec::with_capacity(RECORD_HEAD_LEN + payload_len);
    record.extend_from_slice(&u32::try_from(payload_len).ok()?.to_le_bytes());
    record.extend_from_slice(&[0; 8]);
    record.extend_from_slice(&u32::try_from(json.len()).ok()?.to_le_bytes());
    record.extend_from_slice(&json);
    for vector in vectors {
        for value in *vector {
            record.extend_from_slice(&value.to_le_bytes());
        }
    }
    let digest = Sha256::digest(&record[RECORD_HEAD_LEN..]);
    record[4..RECORD_HEAD_LEN].copy_from_slice(&digest[..8]);
    Some(record)
}

/// A record's payload: the operation and its vectors.
fn decode_payload(payload: &[u8]) -> Result<(LogOp, Vec<f32>), String> {
    let json_len = payload
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("payload shorter than its JSON length")?;
    let json_end = 4usize
        .checked_add(json_len)
        .filter(|end| *end <= payload.len())
        .ok_or("JSON length beyond the record")?;
    let op: LogOp =
        serde_json::from_slice(&payload[4..json_end]).map_err(|e| format!("bad operation: {e}"))?;
    let floats = &payload[json_end..];
    if !floats.len().is_multiple_of(4) {
        return Err(format!(
            "{} bytes of vectors is not whole values",
            floats.len()
        ));
    }
    Ok((op, floats_of(floats)))
}

/// Replay the log records in `bytes` (header checked) onto `inner`. A bad last record is
/// torn (left out); a bad record with more after it is an error.
fn replay(bytes: &[u8], inner: &mut Inner, location: &str) -> Result<LogScan, String> {
    let mut at = LOG_HEADER_LEN;
    let mut records = 0;
    let torn = |at: usize, records: usize, why: String| LogScan {
        good_len: at as u64,
        records,
        torn: Some(why),
    };
    while at < bytes.len() {
        let rest = &bytes[at..];
        let number = records + 1;
        if rest.len() < RECORD_HEAD_LEN {
            return Ok(torn(
                at,
                records,
                format!(
                    "record {number}: {} bytes, shorter than a record head",
                    rest.len()
                ),
            ));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > MAX_RECORD_BYTES {
            // No record is this long: a damaged length, not an interrupted append.
            return Err(format!(
                "record {number} at byte {at}: impossible length {len}"
            ));
        }
        let end = RECORD_HEAD_LEN + len;
        if end > rest.len() {
            return Ok(torn(
                at,
                records,
                format!(
                    "record {number}: {len} bytes announced, {} there",
                    rest.len() - RECORD_HEAD_LEN
                ),
            ));
        }
        let payload = &rest[RECORD_HEAD_LEN..end];
        if Sha256::digest(payload)[..8] != rest[4..RECORD_HEAD_LEN] {
            // The last record, or zeros a crash left after the end: an interrupted append.
            if end == rest.len() || rest.iter().all(|b| *b == 0) {
                return Ok(torn(
                    at,
                    records,
                    format!("record {number}: checksum mismatch"),
                ));
            }
            return Err(format!(
                "record {number} at byte {at}: checksum mismatch, with {} more bytes after it",
                rest.len() - end
            ));
        }
        let (op, floats) =
            decode_payload(payload).map_err(|e| format!("record {number} at byte {at}: {e}"))?;
        inner
            .apply(op, &floats, location)
            .map_err(|e| format!("record {number} at byte {at}: {e}"))?;
        at += end;
        records += 1;
    }
    Ok(LogScan {
        good_len: at as u64,
        records,
        torn: None,
    })
}

/// Read the snapshot at `path` and replay the log at `log_path` onto it.
fn load(path: &Path, log_path: &Path) -> Result<Loaded, StoreError> {
    let corrupt = |file: &Path, reason: String| StoreError::Corrupt {
        path: file.display().to_string(),
        reason,
    };
    let read = |file: &Path| match std::fs::read(file) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Read {
            path: file.display().to_string(),
            source,
        }),
    };
    let (mut inner, snapshot) = match read(path)? {
        Some(bytes) => {
            let inner = decode(&bytes).map_err(|reason| corrupt(path, reason))?;
            (inner, Some((bytes.len() as u64, tag_of(&bytes))))
        }
        None => (Inner::default(), None),
    };
    let snapshot_len = snapshot.map_or(0, |(len, _)| len);
    let Some(log) = read(log_path)? else {
        return Ok(Loaded {
            inner,
            snapshot_len,
            log: None,
            stale_log: false,
        });
    };
    let continues = parse_log_header(&log).map_err(|reason| corrupt(log_path, reason))?;
    if snapshot.map(|(_, tag)| tag) != Some(continues) {
        return Ok(Loaded {
            inner,
            snapshot_len,
            log: None,
            stale_log: true,
        });
    }
    let location = path.display().to_string();
    let scan = replay(&log, &mut inner, &location).map_err(|reason| corrupt(log_path, reason))?;
    Ok(Loaded {
        inner,
        snapshot_len,
        log: Some(scan),
        stale_log: false,
    })
}

/// Open the log for appending after its first `len` good bytes (a torn tail is cut off).
fn open_log_for_append(path: &Path, len: u64) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new().append(true).open(path)?;
    if file.metadata()?.len() != len {
        file.set_len(len)?;
        file.sync_all()?;
    }
    Ok(file)
}

/// Take the exclusive lock on `PATH.lock` (created with its folder when missing).
fn lock_file(path: &Path) -> Result<std::fs::File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let write_error = |source| StoreError::Write {
        path: lock_path.display().to_string(),
        source,
    };
    if let Some(parent) = lock_path.parent() {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(write_error)?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor this function owns; no memory is involved.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::WouldBlock {
                return Err(StoreError::Busy {
                    path: path.display().to_string(),
                });
            }
            return Err(write_error(error));
        }
    }
    Ok(file)
}

/// Replace `path` with `bytes`: temporary file, fsync, rename, fsync of the folder (so the
/// rename itself survives a crash).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".tmp{}", std::process::id()));
    let temp = PathBuf::from(temp);
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temp, path)?;
    #[cfg(unix)]
    std::fs::File::open(parent)?.sync_all()?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(values: &[f32]) -> Vec<f32> {
        let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
        values.iter().map(|v| v / norm).collect()
    }

    fn chunk(id: &str, source: &str, group: &str, vector: &[f32]) -> Chunk {
        Chunk {
            id: id.into(),
            source: source.into(),
            group: group.into(),
            hash: "h".into(),
            text: format!("text of {id}"),
            metadata: Default::default(),
            vector: unit(vector),
        }
    }

    /// A deterministic pseudo-random unit vector.
    fn random_vector(seed: u64, dim: usize) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let values: Vec<f32> = (0..dim)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        unit(&values)
    }

    fn file_len(path: &Path) -> u64 {
        std::fs::metadata(path).map_or(0, |m| m.len())
    }

    fn ids(hits: &[Match]) -> Vec<&str> {
        hits.iter().map(|h| h.id.as_str()).collect()
    }

    /// Everything a store holds, comparable across opens.
    fn contents(store: &EmbeddedStore) -> Vec<(String, String, Vec<f32>)> {
        let inner = store.inner.read();
        let mut all: Vec<_> = inner
            .chunks
            .iter()
            .enumerate()
            .map(|(row, c)| {
                (
                    c.id.clone(),
                    c.group.clone(),
                    inner.matrix[row * inner.dim..(row + 1) * inner.dim].to_vec(),
                )
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    #[tokio::test]
    async fn search_ranks_by_cosine_filters_by_kind_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rag/kb.bin");
        let store = EmbeddedStore::open(&path).unwrap();
        store
            .upsert(
                vec![
                    chunk("a", "schema:pg/a", "schema:pg", &[1.0, 0.0, 0.0]),
                    chunk("b", "doc:b.md#0", "doc:b.md", &[0.9, 0.1, 0.0]),
                    chunk("c", "doc:c.md#0", "doc:c.md", &[0.0, 0.0, 1.0]),
                ],
                "m",
            )
            .await
            .unwrap();
        let hits = store
            .search(&unit(&[1.0, 0.05, 0.0]), 2, None)
            .await
            .unwrap();
        assert_eq!(
            hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(hits[0].score > hits[1].score);
        let docs = store
            .search(&unit(&[1.0, 0.0, 0.0]), 5, Some("doc"))
            .await
            .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].id, "b");

        // Replace, delete, reopen.
        store
            .upsert(
                vec![chunk("a", "schema:pg/a", "schema:pg", &[0.0, 1.0, 0.0])],
                "m",
            )
            .await
            .unwrap();
        assert_eq!(store.delete_group("doc:c.md").await.unwrap(), 1);
        assert_eq!(store.len(), 2);
        drop(store);
        let reopened = EmbeddedStore::open(&path).unwrap();
        assert_eq!(reopened.len(), 2);
        let hits = reopened
            .search(&unit(&[0.0, 1.0, 0.0]), 1, None)
            .await
            .unwrap();
        assert_eq!(hits[0].id, "a");
        assert!((hits[0].score - 1.0).abs() < 1e-5);
        let stats = reopened.stats().await.unwrap();
        assert_eq!(stats.dim, Some(3));
        assert_eq!(stats.by_kind.get("schema"), Some(&1));
    }

    #[tokio::test]
    async fn a_different_dimension_is_refused() {
        let store = EmbeddedStore::in_memory();
        store
            .upsert(vec![chunk("a", "doc:a#0", "doc:a", &[1.0, 0.0])], "m1")
            .await
            .unwrap();
        let error = store
            .upsert(vec![chunk("b", "doc:b#0", "doc:b", &[1.0, 0.0, 0.0])], "m2")
            .await
            .unwrap_err();
        assert!(error.to_string().contains("2-dimensional"), "{error}");
        assert!(store.search(&[1.0, 0.0, 0.0], 1, None).await.is_err());
    }

    #[tokio::test]
    async fn a_different_dimension_is_refused_without_touching_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kb.bin");
        let store = EmbeddedStore::open(&path).unwrap();
        store
            .upsert(vec![chunk("a", "doc:a#0", "doc:a", &[1.0, 0.0])], "m1")
            .await
            .unwrap();
        store
            .upsert(vec![chunk("b", "doc:b#0", "doc:b", &[0.0, 1.0])], "m1")
            .await
            .unwrap();
        let log = log_path_of(&path);
        let (snapshot, logged) = (std::fs::read(&path).unwrap(), std::fs::read(&log).unwrap());
        let error = store
            .upsert(vec![chunk("c", "doc:c#0", "doc:c", &[1.0, 0.0, 0.0])], "m2")
            .await
            .unwrap_err();
        assert!(error.to_string().contains("2-dimensional"), "{error}");
        assert_eq!(std::fs::read(&path).unwrap(), snapshot);
        assert_eq!(std::fs::read(&log).unwrap(), logged);
        drop(store);
        assert_eq!(EmbeddedStore::open(&path).unwrap().len(), 2);
    }

    #[test]
    fn damaged_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kb.bin");
        std::fs::write(&path, b"hello, not a store").unwrap();
        let error = EmbeddedStore::open(&path).err().unwrap().to_string();
        assert!(error.contains("bad magic"), "{error}");
        let inner = Inner {
            dim: 2,
            chunks: vec![chunk("a", "doc:a#0", "doc:a", &[1.0, 0.0])],
            matrix: vec![1.0, 0.0],
            ..Inner::default()
        };
        let mut bytes = encode(&inner);
        assert!(decode(&bytes).is_ok());
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        assert!(decode(&bytes).err().unwrap().contains("checksum"));
        bytes.truncate(40);
        assert!(decode(&bytes).is_err());
        // A log that is no log.
        std::fs::write(&path, encode(&inner)).unwrap();
        std::fs::write(log_path_of(&path), b"garbage").unwrap();
        let error = EmbeddedStore::open(&path).err().unwrap().to_string();
        assert!(error.contains("kb.bin.log"), "{error}");
        assert!(error.contains("bad magic"), "{error}");
    }

    #[tokio::test]
    async fn one_writer_per_file_and_readers_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kb.bin");
        let writer = EmbeddedStore::open(&path).unwrap();
        let busy = EmbeddedStore::open(&path).err().unwrap().to_string();
        assert!(busy.contains("in use"), "{busy}");
        writer
            .upsert(vec![chunk("a", "doc:a#0", "doc:a", &[1.0, 0.0])], "m")
            .await
            .unwrap();
        let reader = EmbeddedStore::open_read_only(&path).unwrap();
        assert_eq!(reader.len(), 1);
        let refused = reader.delete_group("doc:a").await.unwrap_err().to_string();
        assert!(refused.contains("read-only"), "{refused}");
        drop(writer);
        assert!(EmbeddedStore::open(&path).is_ok());
    }

    #[test]
    fn swap_remove_keeps_rows_aligned() {
        let store = EmbeddedStore::in_memory();
        store
            .upsert_in_memory(
                vec![
                    chunk("a", "doc:x#0", "x", &[1.0, 0.0]),
                    chunk("b", "doc:y#0", "y", &[0.0, 1.0]),
                    chunk("c", "doc:x#1", "x", &[1.0, 1.0]),
                ],
                "m",
            )
            .unwrap();
        assert_eq!(store.remove_where(|c| c.id == "a"), 1);
        let hits = store.search_now(&unit(&[0.0, 1.0]), 1, None);
        assert_eq!(hits[0].id, "b");
        let hits = store.search_now(&unit(&[1.0, 1.0]), 1, None);
        assert_eq!(hits[0].id, "c");
        assert!((hits[0].score - 1.0).abs() < 1e-5);
    }

    #[tokio::test]
    async fn changes_after_the_first_go_to_the_log_and_replay_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kb.bin");
        let log = log_path_of(&path);
        let store = EmbeddedStore::open(&path).unwrap();
        store
            .upsert(
                vec![
                    chunk("a", "doc:a#0", "doc:a", &[1.0, 0.0, 0.0]),
                    chunk("b", "doc:b#0", "doc:b", &[0.0, 1.0, 0.0]),
                    chunk("c", "doc:c#0", "doc:c", &[0.0, 0.0, 1.0]),
                ],
                "m",
            )
            .await
            .unwrap();
        // The first change wrote a snapshot (there was none) and an empty log after it.
        let snapshot = std::fs::read(&path).unwrap();
        assert_eq!(file_len(&log), LOG_HEADER_LEN as u64);
        store
            .upsert(vec![chunk("d", "doc:d#0", "doc:d", &[1.0, 1.0, 0.0])], "m")
            .await
            .unwrap();
        store
            .upsert(vec![chunk("a", "doc:a#0", "doc:a", &[0.0, 1.0, 1.0])], "m")
            .await
            .unwrap();
        assert_eq!(
            store.delete_ids(&["b".into(), "zz".into()]).await.unwrap(),
            1
        );
        assert_eq!(store.delete_group("doc:c").await.unwrap(), 1);
        assert_eq!(store.delete_group("doc:nothing").await.unwrap(), 0);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            snapshot,
            "the snapshot is untouched"
        );
        assert!(file_len(&log) > LOG_HEADER_LEN as u64);
        let before = contents(&store);
        assert_eq!(
            before.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
            ["a", "d"]
        );
        // A reader next to the writer replays the log too.
        let reader = EmbeddedStore::open_read_only(&path).unwrap();
        assert_eq!(contents(&reader), before);
        drop(store);
        let reopened = EmbeddedStore::open(&path).unwrap();
        assert_eq!(contents(&reopened), before);
        let hits = reopened.search_now(&unit(&[0.0, 1.0, 1.0]), 1, None);
        assert_eq!(ids(&hits), ["a"]);
        assert!((hits[0].score - 1.0).abs() < 1e-5);
        // And the reopened writer appends after what it replayed.
        reopened
            .upsert(vec![chunk("e", "doc:e#0", "doc:e", &[0.0, 0.0, 1.0])], "m")
            .await
            .unwrap();
        drop(reopened);
        assert_eq!(EmbeddedStore::open(&path).unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_change_whose_caller_goes_away_lands_in_memory_and_log_alike() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kb.bin");
        let store = EmbeddedStore::open(&path).unwrap();
        store
            .upsert(vec![chunk("a", "doc:a#0", "doc:a", &[1.0, 0.0])], "m")
            .await
            .unwrap();
        // Polled once (it starts appending), then dropped, as a timed-out call is.
        let abandoned = tokio::time::timeout(
            std::time::Duration::ZERO,
            store.upsert(vec![chunk("b", "doc:b#0", "doc:b", &[0.0, 1.0])], "m"),
        )
        .await;
        // The next change waits for the abandoned one to finish.
        store
            .upsert(vec![chunk("c", "doc:c#0", "doc:c", &[1.0, 1.0])], "m")
            .await
            .unwrap();
        let in_memory = contents(&store);
        let held: Vec<_> = in_memory.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(held, ["a", "b", "c"], "abandoned: {}", abandoned.is_err());
        drop(store);
        assert_eq!(contents(&EmbeddedStore::open(&path).unwrap()), in_memory);
    }

    /// A store whose snapshot holds `a` and whose log holds `b` then `c` (one record each).
    async fn store_with_two_records(path: &Path) -> (u64, u64) {
        let store = EmbeddedStore::open(path).unwrap();
        store
            .upsert(vec![chunk("a", "doc:a#0", "doc:a", &[1.0, 0.0])], "m")
            .await
            .unwrap();
        store
            .upsert(vec![chunk("b", "doc:b#0", "doc:b", &[0.0, 1.0])], "m")
            .await
            .unwrap();
        let after_first = file_len(&log_path_of(path));
        store
            .upsert(vec![chunk("c", "doc:c#0", "doc:c", &[1.0, 1.0])], "m")
            .await
            .unwrap();
        (after_first, file_len(&log_path_of(path)))
    }

    #[tokio::test]
    async fn a_torn_last_record_is_dropped_and_cut_away_by_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        for (case, damage) in ["cut short", "bad checksum", "zeros after it", "half a head"]
            .into_iter()
            .enumerate()
        {
            let path = dir.path().join(format!("kb{case}.bin"));
            let log = log_path_of(&path);
            let (after_first, full) = store_with_two_records(&path).await;
            let mut bytes = std::fs::read(&log).unwrap();
            match damage {
                "cut short" => bytes.truncate(full as usize - 5),
                "bad checksum" => *bytes.last_mut().unwrap() ^= 0x01,
                "zeros after it" => {
                    // A crash that extended the file but never wrote the record's bytes.
                    bytes.truncate(after_first as usize);
                    bytes.extend(std::iter::repeat_n(0u8, 100));
                }
                _ => bytes.truncate(after_first as usize + 5),
            }
            std::fs::write(&log, &bytes).unwrap();

            let reader = EmbeddedStore::open_read_only(&path).unwrap();
            let held: Vec<_> = contents(&reader).into_iter().map(|c| c.0).collect();
            assert_eq!(held, ["a", "b"], "{damage}");
            assert_eq!(
                file_len(&log),
                bytes.len() as u64,
                "a reader changes nothing"
            );

            let writer = EmbeddedStore::open(&path).unwrap();
            assert_eq!(writer.len(), 2, "{damage}");
            assert_eq!(
                file_len(&log),
                after_first,
                "{damage}: the tail is cut away"
            );
            writer
                .upsert(vec![chunk("d", "doc:d#0", "doc:d", &[1.0, -1.0])], "m")
                .await
                .unwrap();
            drop(writer);
            let reopened = EmbeddedStore::open(&path).unwrap();
            let held: Vec<_> = contents(&reopened).into_iter().map(|c| c.0).collect();
            assert_eq!(held, ["a", "b", "d"], "{damage}");
        }
    }

    #[tokio::test]
    async fn a_damaged_record_in_the_middle_is_an_error_naming_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kb.bin");
        let log = log_path_of(&path);
        let (after_first, _) = store_with_two_records(&path).await;
        let mut bytes = std::fs::read(&log).unwrap();
        // A byte inside the first record's payload.
        bytes[(LOG_HEADER_LEN + after_first as usize) / 2] ^= 0x10;
        std::fs::write(&log, &bytes).unwrap();
        for error in [
            EmbeddedStore::open(&path).err().unwrap(),
            EmbeddedStore::open_read_only(&path).err().unwrap(),
        ] {
            assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
            let error = error.to_string();
            assert!(error.contains(&log.display().to_string()), "{error}");
            assert!(error.contains("record 1"), "{error}");
            assert!(error.contains("checksum"), "{error}");
        }
        assert_eq!(std::fs::read(&log).unwrap(), bytes, "left untouched");
        // A damaged length is no torn tail either, even though it points past the end.
        bytes[(LOG_HEADER_LEN + after_first as usize) / 2] ^= 0x10;
        bytes[LOG_HEADER_LEN + 3] = 0xff;
        std::fs::write(&log, &bytes).unwrap();
        let error = EmbeddedStore::open(&path).err().unwrap().to_string();
        assert!(
            error.contains("record 1 at byte 20: impossible length"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_single_upsert_writes_about_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kb.bin");
        let log = log_path_of(&path);
        let store = EmbeddedStore::open(&path).unwrap();
        let dim = 384;
        let many: Vec<Chunk> = (0..2000)
            .map(|i| Chunk {
                vector: random_vector(i, dim),
                ..chunk(&format!("c{i}"), "doc:x#0", "doc:x", &[1.0])
            })
            .collect();
        store.upsert(many, "m").await.unwrap();
        let snapshot_len = file_len(&path);
        assert!(snapshot_len > 2000 * dim as u64 * 4);
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        for i in 0..20u64 {
            let before = file_len(&log);
            let one = Chunk {
                vector: random_vector(10_000 + i, dim),
                ..chunk(&format!("new{i}"), "doc:y#0", "doc:y", &[1.0])
            };
            store.upsert(vec![one], "m").await.unwrap();
            let grew = file_len(&log) - before;
            // The vector (1,536 bytes), the chunk's JSON and a 12-byte head.
            assert!(
                grew > dim as u64 * 4 && grew < dim as u64 * 4 + 512,
                "one upsert appended {grew} bytes"
            );
        }
        assert_eq!(
            file_len(&path),
            snapshot_len,
            "the snapshot was not rewritten"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            modified
        );
        let before = file_len(&log);
        assert_eq!(store.delete_ids(&["c7".into()]).await.unwrap(), 1);
        assert!(file_len(&log) - before < 100);
        drop(store);
        assert_eq!(EmbeddedStore::open(&path).unwrap().len(), 2019);
    }

    #[tokio::test]
    async fn compaction_folds_the_log_into_the_snapshot_and_keeps_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kb.bin");
        let log = log_path_of(&path);
        let store = EmbeddedStore::open(&path).unwrap();
        store.set_compact_min(0);
        store
            .upsert(
                vec![chunk("seed", "doc:s#0", "doc:s", &[1.0, 0.0, 0.0, 0.0])],
                "m",
            )
            .await
            .unwrap();
        // One point at a time, as a plugin does: the log is folded in as it outgrows the
        // snapshot, so the files stay proportional to the content.
        let mut compactions = 0;
        for i in 0..300u64 {
            let before = file_len(&log);
            let point = Chunk {
                vector: random_vector(i, 4),
                ..chunk(&format!("p{i}"), "plugin:x/notes", "notes", &[1.0])
            };
            store.upsert(vec![point], "m").await.unwrap();
            if file_len(&log) < before {
                compactions += 1;
                assert_eq!(file_len(&log), LOG_HEADER_LEN as u64);
            }
            if i % 7 == 0 {
                store.delete_ids(&[format!("p{}", i / 2)]).await.unwrap();
            }
            assert!(file_len(&log) <= file_len(&path) + 1024);
        }
        assert!((3..40).contains(&compactions), "{compactions} compactions");
        let expected = contents(&store);
        assert!(
            file_len(&log) > LOG_HEADER_LEN as u64,
            "some changes are in the log"
        );
        store.compact().await.unwrap();
        assert_eq!(file_len(&log), LOG_HEADER_LEN as u64);
        assert_eq!(contents(&store), expected);
        drop(store);
        let reopened = EmbeddedStore::open(&path).unwrap();
        assert_eq!(contents(&reopened), expected);
        let query = random_vector(123, 4);
        assert_eq!(
            ids(&reopened.search_now(&query, 5, None)),
            ids(&EmbeddedStore::open_read_only(&path)
                .unwrap()
                .search_now(&query, 5, None))
        );
    }

    #[tokio::test]
    async fn a_log_continuing_another_snapshot_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kb.bin");
        let log = log_path_of(&path);
        let (_, _) = store_with_two_records(&path).await;
        let old_log = std::fs::read(&log).unwrap();
        // A crash between a compaction's two renames: new snapshot, old log.
        {
            let store = EmbeddedStore::open(&path).unwrap();
            store.delete_ids(&["a".into()]).await.unwrap();
            store.compact().await.unwrap();
        }
        std::fs::write(&log, &old_log).unwrap();
        let store = EmbeddedStore::open(&path).unwrap();
        let held: Vec<_> = contents(&store).into_iter().map(|c| c.0).collect();
        assert_eq!(held, ["b", "c"], "the old log is not applied again");
        // The next change starts a log that continues the snapshot.
        store
            .upsert(vec![chunk("d", "doc:d#0", "doc:d", &[1.0, -1.0])], "m")
            .await
            .unwrap();
        drop(store);
        let held: Vec<_> = contents(&EmbeddedStore::open(&path).unwrap())
            .into_iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(held, ["b", "c", "d"]);
        // A snapshot deleted by hand (to start over) does not come back from its log.
        std::fs::remove_file(&path).unwrap();
        assert!(file_len(&log) > 0);
        assert!(EmbeddedStore::open_read_only(&path).unwrap().is_empty());
        let store = EmbeddedStore::open(&path).unwrap();
        assert!(store.is_empty());
        store
            .upsert(
                vec![chunk("x", "doc:x#0", "doc:x", &[1.0, 0.0, 0.0])],
                "other",
            )
            .await
            .unwrap();
        drop(store);
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(store.stats().await.unwrap().dim, Some(3));
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn a_version_1_file_still_opens_and_is_upgraded_on_the_next_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kb.bin");
        // Version 1 as it was written before the log existed (built by hand here).
        let chunks = [
            chunk("a", "doc:a#0", "doc:a", &[1.0, 0.0]),
            chunk("b", "schema:pg/b", "schema:pg", &[0.0, 1.0]),
        ];
        let header = serde_json::to_vec(&serde_json::json!({
            "model": "old-model",
            "chunks": chunks,
        }))
        .unwrap();
        let mut v1 = Vec::new();
        v1.extend_from_slice(b"DBRAG\0\0\0");
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&2u32.to_le_bytes());
        v1.extend_from_slice(&(header.len() as u64).to_le_bytes());
        v1.extend_from_slice(&header);
        for c in &chunks {
            for v in &c.vector {
                v1.extend_from_slice(&v.to_le_bytes());
            }
        }
        let digest = Sha256::digest(&v1);
        v1.extend_from_slice(&digest);
        std::fs::write(&path, &v1).unwrap();

        let reader = EmbeddedStore::open_read_only(&path).unwrap();
        assert_eq!(reader.len(), 2);
        let store = EmbeddedStore::open(&path).unwrap();
        let stats = store.stats().await.unwrap();
        assert_eq!(
            (stats.dim, stats.model.as_deref()),
            (Some(2), Some("old-model"))
        );
        assert_eq!(ids(&store.search_now(&unit(&[0.1, 1.0]), 1, None)), ["b"]);
        assert_eq!(std::fs::read(&path).unwrap(), v1, "opening changes nothing");
        store
            .upsert(
                vec![chunk("c", "doc:c#0", "doc:c", &[1.0, 1.0])],
                "old-model",
            )
            .await
            .unwrap();
        drop(store);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
            VERSION
        );
        let reopened = EmbeddedStore::open(&path).unwrap();
        assert_eq!(reopened.len(), 3);
        assert_eq!(
            ids(&reopened.search_now(&unit(&[1.0, 1.0]), 1, None)),
            ["c"]
        );
        // A version from the future is refused with what this build reads.
        let mut future = v1.clone();
        future[8..12].copy_from_slice(&9u32.to_le_bytes());
        let body = future.len() - 32;
        let digest = Sha256::digest(&future[..body]);
        future[body..].copy_from_slice(&digest);
        assert!(decode(&future).err().unwrap().contains("format version 9"));
    }
}
