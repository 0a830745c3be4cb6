//! `state` capability: key-value state private to each plugin, persisted under the data dir.
//!
//! Each plugin has its own file, `NAME.state`: a header, then records appended one per
//! change (`set`: key and value bytes as they are; `delete`: the key). A plugin keeps at most
//! `MAX_LIVE_BYTES` of live entries (as a compacted file would hold them). A change appends one
//! record; when the file would pass `MAX_FILE_BYTES` (twice the live limit), it is rewritten
//! with only the live entries first (to a temporary file, renamed over the old one). So the
//! file on disk never passes `MAX_FILE_BYTES`, and since a rewrite leaves at least half the
//! file free, the bytes written stay within twice the bytes changed: a plugin that rewrites a
//! full state over and over cannot make every write rewrite the file. A torn record at the end
//! (the host stopped mid-write) is dropped when the file is next read.
//!
//! Plugins never wait on each other: each has its own lock, and file work runs on the
//! blocking pool, never on the async workers. A change is applied in memory only once it is
//! on disk, so a failed write loses nothing and leaves state and file agreeing.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::contract::GuestError;
use crate::contract::databot::plugin::state::Host;

use super::{StoreState, denied};

/// Largest value one key may hold.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Longest key.
pub const MAX_KEY_BYTES: usize = 1024;
/// Most live state one plugin keeps, in bytes as a compacted file holds it (header and
/// record framing included).
pub const MAX_LIVE_BYTES: u64 = 16 * 1024 * 1024;
/// Largest state file of one plugin on disk: the live limit and as much again of records
/// appended since the last compaction.
pub const MAX_FILE_BYTES: u64 = 2 * MAX_LIVE_BYTES;

/// The first bytes of every state file (format version 1).
const MAGIC: &[u8; 8] = b"DBSTATE1";
const SET: u8 = b'S';
const DELETE: u8 = b'D';
/// A set record's framing: tag, key length (u16), value length (u32).
const SET_FRAMING: u64 = 1 + 2 + 4;
/// A delete record's framing: tag, key length (u16).
const DELETE_FRAMING: u64 = 1 + 2;

type Entries = BTreeMap<String, Arc<[u8]>>;

/// Persisted plugin state; `None` folder keeps state in memory only (tests, benchmarks).
/// Where plugins' state lives: a file per plugin in the data dir, or the shared PostgreSQL
/// store when several replicas run (the Kafka bus).
pub enum StateBackend {
    Files(StateStore),
    Shared(super::shared_state::SharedStateStore),
}

impl StateBackend {
    pub async fn get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, GuestError> {
        match self {
            Self::Files(store) => store.get(plugin, key).await,
            Self::Shared(store) => store.get(plugin, key).await,
        }
    }

    pub async fn keys(&self, plugin: &str, prefix: &str) -> Result<Vec<String>, GuestError> {
        match self {
            Self::Files(store) => store.keys(plugin, prefix).await,
            Self::Shared(store) => store.keys(plugin, prefix).await,
        }
    }

    pub async fn set(&self, plugin: &str, key: String, value: Vec<u8>) -> Result<(), GuestError> {
        match self {
            Self::Files(store) => store.set(plugin, key, value).await,
            Self::Shared(store) => store.set(plugin, key, value).await,
        }
    }

    pub async fn delete(&self, plugin: &str, key: &str) -> Result<(), GuestError> {
        match self {
            Self::Files(store) => store.delete(plugin, key).await,
            Self::Shared(store) => store.delete(plugin, key).await,
        }
    }
}

/// State in files, one per plugin.
pub struct StateStore {
    folder: Option<PathBuf>,
    /// Held only to find or add a plugin's own lock, never across file work.
    plugins: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<PluginState>>>>,
}

#[derive(Default)]
struct PluginState {
    /// `None` until the file was read (on the plugin's first state call).
    entries: Option<Entries>,
    /// The file's length: header and every record appended since the last rewrite.
    file_bytes: u64,
}

/// A set record's size on disk.
fn set_record_bytes(key: &str, value: &[u8]) -> u64 {
    SET_FRAMING + key.len() as u64 + value.len() as u64
}

/// The size of a file holding exactly `entries`.
fn compacted_bytes(entries: &Entries) -> u64 {
    MAGIC.len() as u64
        + entries
            .iter()
            .map(|(k, v)| set_record_bytes(k, v))
            .sum::<u64>()
}

fn encode_set(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    out.push(SET);
    // Bounded by MAX_KEY_BYTES and MAX_VALUE_BYTES, checked before any record is made.
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(value);
}

fn encode_delete(out: &mut Vec<u8>, key: &str) {
    out.push(DELETE);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
}

/// The first `n` bytes of `body` and the rest, if it has `n`.
fn take(body: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (body.len() >= n).then(|| body.split_at(n))
}

/// The entries of a state file and the length of its intact part (a torn last record is
/// not counted).
fn decode(bytes: &[u8]) -> Result<(Entries, u64), String> {
    let Some(mut rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Err("not a databot state file (bad header)".into());
    };
    let mut entries = Entries::new();
    let mut intact = MAGIC.len();
    while let Some((&tag, body)) = rest.split_first() {
        let Some((key_len, body)) = take(body, 2) else {
            break;
        };
        let key_len = usize::from(u16::from_le_bytes([key_len[0], key_len[1]]));
        let (value_len, body) = match tag {
            SET => {
                let Some((len, body)) = take(body, 4) else {
                    break;
                };
                let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
                (usize::try_from(len).unwrap_or(usize::MAX), body)
            }
            DELETE => (0, body),
            other => return Err(format!("unknown record tag {other:#04x} at byte {intact}")),
        };
        let Some((key, body)) = take(body, key_len) else {
            break;
        };
        let Some((value, body)) = take(body, value_len) else {
            break;
        };
        let Ok(key) = std::str::from_utf8(key) else {
            return Err(format!("a key that is not UTF-8 at byte {intact}"));
        };
        if tag == SET {
            entries.insert(key.to_owned(), Arc::from(value));
        } else {
            entries.remove(key);
        }
        intact = bytes.len() - body.len();
        rest = body;
    }
    Ok((entries, intact as u64))
}

/// Read a plugin's state file, importing the JSON file of earlier versions when there is no
/// state file yet. Runs on the blocking pool.
fn load(folder: &Path, plugin: &str) -> Result<(Entries, u64), GuestError> {
    let path = folder.join(format!("{plugin}.state"));
    let unavailable =
        |what: &str, e: &dyn std::fmt::Display| GuestError::Unavailable(format!("{what}: {e}"));
    match std::fs::read(&path) {
        Ok(bytes) => {
            let (entries, intact) = decode(&bytes).map_err(|e| {
                GuestError::Unavailable(format!("state file {} is damaged: {e}", path.display()))
            })?;
            if intact < bytes.len() as u64 {
                tracing::warn!(
                    plugin,
                    kept_bytes = intact,
                    dropped_bytes = bytes.len() as u64 - intact,
                    "the state file ended in a torn record (the host stopped mid-write); it was dropped"
                );
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| unavailable("state file could not be repaired", &e))?;
                file.set_len(intact)
                    .map_err(|e| unavailable("state file could not be repaired", &e))?;
            }
            Ok((entries, intact))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let legacy = folder.join(format!("{plugin}.json"));
            let Ok(bytes) = std::fs::read(&legacy) else {
                return Ok((Entries::new(), 0));
            };
            let old: BTreeMap<String, Vec<u8>> = serde_json::from_slice(&bytes)
                .map_err(|e| unavailable("the old state file could not be read", &e))?;
            let entries: Entries = old
                .into_iter()
                .map(|(k, v)| (k, Arc::from(v.into_boxed_slice())))
                .collect();
            let written = rewrite(folder, plugin, &entries)?;
            std::fs::remove_file(&legacy)
                .map_err(|e| unavailable("the old state file could not be removed", &e))?;
            tracing::info!(
                plugin,
                keys = entries.len(),
                "plugin state moved from NAME.json to NAME.state"
            );
            Ok((entries, written))
        }
        Err(e) => Err(unavailable("state could not be read", &e)),
    }
}

/// Write a file holding exactly `entries` and put it in place; its length. Blocking.
fn rewrite(folder: &Path, plugin: &str, entries: &Entries) -> Result<u64, GuestError> {
    let write = || -> std::io::Result<u64> {
        std::fs::create_dir_all(folder)?;
        let path = folder.join(format!("{plugin}.state"));
        let temporary = folder.join(format!("{plugin}.state.tmp"));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&temporary)?);
        file.write_all(MAGIC)?;
        let mut record = Vec::new();
        for (key, value) in entries {
            record.clear();
            encode_set(&mut record, key, value);
            file.write_all(&record)?;
        }
        file.into_inner().map_err(|e| e.into_error())?.sync_data()?;
        std::fs::rename(&temporary, &path)?;
        Ok(compacted_bytes(entries))
    };
    write().map_err(|e| GuestError::Unavailable(format!("state could not be saved: {e}")))
}

/// Append one record to the plugin's file (made with its header if missing). Blocking.
fn append(folder: &Path, plugin: &str, record: &[u8], file_bytes: u64) -> Result<(), GuestError> {
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(folder)?;
        let path = folder.join(format!("{plugin}.state"));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        if file_bytes == 0 {
            file.write_all(MAGIC)?;
        }
        file.write_all(record)
    };
    write().map_err(|e| GuestError::Unavailable(format!("state could not be saved: {e}")))
}

/// Run blocking file work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, GuestError> + Send + 'static,
) -> Result<T, GuestError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(GuestError::Unavailable(format!("state work failed: {e}"))))
}

/// How one change alters the file: append this record, or rewrite the whole state.
enum StateWrite {
    Append(Vec<u8>),
    Rewrite(Entries),
}

impl StateStore {
    pub fn new(folder: Option<PathBuf>) -> Self {
        Self {
            folder,
            plugins: parking_lot::Mutex::default(),
        }
    }

    fn plugin_lock(&self, plugin: &str) -> Arc<tokio::sync::Mutex<PluginState>> {
        let mut plugins = self.plugins.lock();
        Arc::clone(plugins.entry(plugin.to_owned()).or_default())
    }

    /// The plugin's entries, read from its file on first use.
    async fn loaded<'s>(
        &self,
        plugin: &str,
        state: &'s mut PluginState,
    ) -> Result<&'s mut Entries, GuestError> {
        if state.entries.is_none() {
            let (entries, file_bytes) = match &self.folder {
                Some(folder) => {
                    let (folder, name) = (folder.clone(), plugin.to_owned());
                    blocking(move || load(&folder, &name)).await?
                }
                None => (Entries::new(), 0),
            };
            state.file_bytes = file_bytes;
            state.entries = Some(entries);
        }
        Ok(state.entries.get_or_insert_default())
    }

    pub async fn get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, GuestError> {
        let lock = self.plugin_lock(plugin);
        let mut state = lock.lock().await;
        let entries = self.loaded(plugin, &mut state).await?;
        Ok(entries.get(key).map(|v| v.to_vec()))
    }

    pub async fn keys(&self, plugin: &str, prefix: &str) -> Result<Vec<String>, GuestError> {
        let lock = self.plugin_lock(plugin);
        let mut state = lock.lock().await;
        let entries = self.loaded(plugin, &mut state).await?;
        Ok(entries
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    pub async fn set(&self, plugin: &str, key: String, value: Vec<u8>) -> Result<(), GuestError> {
        check_entry(&key, &value)?;
        let lock = self.plugin_lock(plugin);
        let mut state = lock.lock().await;
        let file_bytes = state.file_bytes;
        let entries = self.loaded(plugin, &mut state).await?;
        let value: Arc<[u8]> = Arc::from(value.into_boxed_slice());
        let record_bytes = set_record_bytes(&key, &value);
        let live_after = compacted_bytes(entries)
            - entries
                .get(&key)
                .map_or(0, |old| set_record_bytes(&key, old))
            + record_bytes;
        if live_after > MAX_LIVE_BYTES {
            return Err(GuestError::InvalidInput(format!(
                "plugin state would take {live_after} bytes, over the limit of {MAX_LIVE_BYTES} bytes a plugin; delete keys it no longer needs"
            )));
        }
        let write = if file_bytes.max(MAGIC.len() as u64) + record_bytes <= MAX_FILE_BYTES {
            let mut record = Vec::with_capacity(usize::try_from(record_bytes).unwrap_or(0));
            encode_set(&mut record, &key, &value);
            StateWrite::Append(record)
        } else {
            let mut after = entries.clone();
            after.insert(key.clone(), Arc::clone(&value));
            StateWrite::Rewrite(after)
        };
        let written = self.write(plugin, write, file_bytes).await?;
        let entries = state.entries.get_or_insert_default();
        entries.insert(key, value);
        state.file_bytes = written;
        Ok(())
    }

    pub async fn delete(&self, plugin: &str, key: &str) -> Result<(), GuestError> {
        let lock = self.plugin_lock(plugin);
        let mut state = lock.lock().await;
        let file_bytes = state.file_bytes;
        let entries = self.loaded(plugin, &mut state).await?;
        if !entries.contains_key(key) {
            return Ok(());
        }
        let record_bytes = DELETE_FRAMING + key.len() as u64;
        let write = if file_bytes + record_bytes <= MAX_FILE_BYTES {
            let mut record = Vec::new();
            encode_delete(&mut record, key);
            StateWrite::Append(record)
        } else {
            let mut after = entries.clone();
            after.remove(key);
            StateWrite::Rewrite(after)
        };
        let written = self.write(plugin, write, file_bytes).await?;
        state.entries.get_or_insert_default().remove(key);
        state.file_bytes = written;
        Ok(())
    }

    /// Put one change on disk; the file's new length. In memory only, nothing is written.
    async fn write(
        &self,
        plugin: &str,
        write: StateWrite,
        file_bytes: u64,
    ) -> Result<u64, GuestError> {
        let Some(folder) = self.folder.clone() else {
            return Ok(match write {
                StateWrite::Append(record) => {
                    file_bytes.max(MAGIC.len() as u64) + record.len() as u64
                }
                StateWrite::Rewrite(entries) => compacted_bytes(&entries),
            });
        };
        let plugin = plugin.to_owned();
        blocking(move || match write {
            StateWrite::Append(record) => {
                append(&folder, &plugin, &record, file_bytes)?;
                Ok(file_bytes.max(MAGIC.len() as u64) + record.len() as u64)
            }
            StateWrite::Rewrite(entries) => rewrite(&folder, &plugin, &entries),
        })
        .await
    }
}

/// A key and value within the per-entry limits.
pub(super) fn check_entry(key: &str, value: &[u8]) -> Result<(), GuestError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(GuestError::InvalidInput(format!(
            "a state value of {} bytes is over the limit of {MAX_VALUE_BYTES} bytes a value; store it in parts under several keys",
            value.len()
        )));
    }
    check_key(key)
}

fn check_key(key: &str) -> Result<(), GuestError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(GuestError::InvalidInput(format!(
            "a state key of {} bytes is over the limit of {MAX_KEY_BYTES} bytes; use a shorter key",
            key.len()
        )));
    }
    Ok(())
}

impl StoreState {
    fn state_grant(&self) -> Result<String, GuestError> {
        let plugin = self.grants.plugin.as_str();
        if self.grants.state {
            Ok(plugin.to_owned())
        } else {
            Err(denied(
                plugin,
                "keep state",
                &format!("plugins.{plugin}.permissions.state: true"),
            ))
        }
    }
}

impl Host for StoreState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, GuestError>> {
        let plugin = match self.state_grant() {
            Ok(plugin) => plugin,
            Err(e) => return Ok(Err(e)),
        };
        Ok(self.services.state.get(&plugin, &key).await)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), GuestError>> {
        let plugin = match self.state_grant() {
            Ok(plugin) => plugin,
            Err(e) => return Ok(Err(e)),
        };
        Ok(self.services.state.set(&plugin, key, value).await)
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), GuestError>> {
        let plugin = match self.state_grant() {
            Ok(plugin) => plugin,
            Err(e) => return Ok(Err(e)),
        };
        Ok(self.services.state.delete(&plugin, &key).await)
    }

    async fn list_keys(
        &mut self,
        prefix: String,
    ) -> wasmtime::Result<Result<Vec<String>, GuestError>> {
        let plugin = match self.state_grant() {
            Ok(plugin) => plugin,
            Err(e) => return Ok(Err(e)),
        };
        Ok(self.services.state.keys(&plugin, &prefix).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_len(folder: &Path, plugin: &str) -> u64 {
        std::fs::metadata(folder.join(format!("{plugin}.state")))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn state_persists_across_stores() {
        let folder = tempfile::tempdir().unwrap();
        let store = StateStore::new(Some(folder.path().to_owned()));
        store.set("p", "k".into(), b"v".to_vec()).await.unwrap();
        store.set("p", "k2".into(), b"w".to_vec()).await.unwrap();
        store.delete("p", "k2").await.unwrap();
        let reopened = StateStore::new(Some(folder.path().to_owned()));
        assert_eq!(reopened.get("p", "k").await.unwrap(), Some(b"v".to_vec()));
        assert_eq!(reopened.keys("p", "").await.unwrap(), vec!["k".to_owned()]);
        assert_eq!(reopened.get("other", "k").await.unwrap(), None);
    }

    #[tokio::test]
    async fn oversized_values_and_keys_are_refused_and_nothing_is_lost() {
        let store = StateStore::new(None);
        store.set("p", "k".into(), b"v".to_vec()).await.unwrap();
        let too_big = store
            .set("p", "k".into(), vec![0; MAX_VALUE_BYTES + 1])
            .await
            .unwrap_err();
        assert!(matches!(too_big, GuestError::InvalidInput(m) if m.contains("a value")));
        let long_key = store
            .set("p", "k".repeat(MAX_KEY_BYTES + 1), b"v".to_vec())
            .await
            .unwrap_err();
        assert!(matches!(long_key, GuestError::InvalidInput(m) if m.contains("key")));
        assert_eq!(store.get("p", "k").await.unwrap(), Some(b"v".to_vec()));
    }

    /// The file on disk stays within its limit: rewriting the same keys over and over compacts
    /// the file instead of growing it, and values are stored as their bytes.
    #[tokio::test]
    async fn the_file_never_passes_the_limit_and_stores_bytes_compactly() {
        let folder = tempfile::tempdir().unwrap();
        let store = StateStore::new(Some(folder.path().to_owned()));
        let value = vec![7u8; MAX_VALUE_BYTES];
        for round in 0..40 {
            for key in 0..4 {
                store
                    .set("p", format!("key{key}"), value.clone())
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
                assert!(file_len(folder.path(), "p") <= MAX_FILE_BYTES);
            }
        }
        // 160 MiB written; the file holds four values of 1 MiB and what was appended since
        // the last compaction.
        let live = file_len(folder.path(), "p");
        assert!(live <= MAX_FILE_BYTES, "{live}");
        let reopened = StateStore::new(Some(folder.path().to_owned()));
        assert_eq!(reopened.keys("p", "key").await.unwrap().len(), 4);
        assert_eq!(
            reopened.get("p", "key3").await.unwrap(),
            Some(value.clone())
        );

        // Filling the state to its limit is refused with the limit named, and keeps all.
        let mut refused = None;
        for key in 4..40 {
            if let Err(e) = store.set("p", format!("key{key}"), value.clone()).await {
                refused = Some((key, e));
                break;
            }
        }
        let (stopped_at, error) = refused.expect("the limit is reached");
        assert!(
            matches!(&error, GuestError::InvalidInput(m) if m.contains("over the limit of 16777216 bytes a plugin"))
        );
        assert!(file_len(folder.path(), "p") <= MAX_FILE_BYTES);
        assert_eq!(
            store.keys("p", "key").await.unwrap().len(),
            usize::try_from(stopped_at).unwrap()
        );
    }

    #[tokio::test]
    async fn a_torn_last_record_is_dropped_and_the_rest_kept() {
        let folder = tempfile::tempdir().unwrap();
        let store = StateStore::new(Some(folder.path().to_owned()));
        store.set("p", "a".into(), b"1".to_vec()).await.unwrap();
        store.set("p", "b".into(), b"2".to_vec()).await.unwrap();
        let path = folder.path().join("p.state");
        let len = std::fs::metadata(&path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 1).unwrap();
        let reopened = StateStore::new(Some(folder.path().to_owned()));
        assert_eq!(reopened.keys("p", "").await.unwrap(), vec!["a".to_owned()]);
        reopened.set("p", "c".into(), b"3".to_vec()).await.unwrap();
        let again = StateStore::new(Some(folder.path().to_owned()));
        assert_eq!(
            again.keys("p", "").await.unwrap(),
            vec!["a".to_owned(), "c".to_owned()]
        );
    }

    #[tokio::test]
    async fn the_json_state_of_earlier_versions_is_imported() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("p.json"), br#"{"k":[1,2,3]}"#).unwrap();
        let store = StateStore::new(Some(folder.path().to_owned()));
        assert_eq!(store.get("p", "k").await.unwrap(), Some(vec![1, 2, 3]));
        assert!(!folder.path().join("p.json").exists());
        let reopened = StateStore::new(Some(folder.path().to_owned()));
        assert_eq!(reopened.get("p", "k").await.unwrap(), Some(vec![1, 2, 3]));
    }

    #[tokio::test]
    async fn a_damaged_file_is_an_error_and_is_left_as_it_is() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("p.state"), b"not state").unwrap();
        let store = StateStore::new(Some(folder.path().to_owned()));
        let error = store.get("p", "k").await.unwrap_err();
        assert!(matches!(error, GuestError::Unavailable(m) if m.contains("damaged")));
        assert_eq!(
            std::fs::read(folder.path().join("p.state")).unwrap(),
            b"not state"
        );
    }

    /// One plugin's writes never hold another plugin's state calls.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plugins_do_not_wait_on_each_other() {
        let folder = tempfile::tempdir().unwrap();
        let store = Arc::new(StateStore::new(Some(folder.path().to_owned())));
        let mut writers = Vec::new();
        for writer in 0..4 {
            let store = Arc::clone(&store);
            writers.push(tokio::spawn(async move {
                for round in 0..30 {
                    let _ = store
                        .set(
                            &format!("busy{writer}"),
                            format!("k{}", round % 8),
                            vec![1; MAX_VALUE_BYTES],
                        )
                        .await;
                }
            }));
        }
        let mut slowest = std::time::Duration::ZERO;
        for round in 0..50 {
            let started = std::time::Instant::now();
            store
                .set("quiet", "k".into(), vec![round; 16])
                .await
                .unwrap();
            slowest = slowest.max(started.elapsed());
        }
        for writer in writers {
            writer.await.unwrap();
        }
        assert!(
            slowest < std::time::Duration::from_millis(500),
            "a small write waited {slowest:?} behind other plugins"
        );
    }
}
