//! `state` capability: key-value state private to each plugin, persisted under the data dir
//! (one JSON file per plugin, replaced atomically on every write).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use parking_lot::Mutex;

use crate::runtime::bindings::GuestError;
use crate::runtime::bindings::databot::plugin::state::Host;

use super::{StoreState, denied};

/// Largest value one key may hold.
const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Largest total state of one plugin.
const MAX_PLUGIN_BYTES: usize = 16 * 1024 * 1024;

type PluginState = BTreeMap<String, Vec<u8>>;

/// Persisted plugin state; `None` folder keeps state in memory only (tests, benchmarks).
pub struct StateStore {
    folder: Option<PathBuf>,
    plugins: Mutex<HashMap<String, PluginState>>,
}

impl StateStore {
    pub fn new(folder: Option<PathBuf>) -> Self {
        Self {
            folder,
            plugins: Mutex::default(),
        }
    }

    fn file(&self, plugin: &str) -> Option<PathBuf> {
        self.folder
            .as_ref()
            .map(|f| f.join(format!("{plugin}.json")))
    }

    fn with_plugin<R>(&self, plugin: &str, f: impl FnOnce(&mut PluginState) -> R) -> R {
        let mut plugins = self.plugins.lock();
        let state = plugins.entry(plugin.to_owned()).or_insert_with(|| {
            self.file(plugin)
                .and_then(|path| std::fs::read(path).ok())
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or_default()
        });
        f(state)
    }

    fn persist(&self, plugin: &str, state: &PluginState) -> Result<(), GuestError> {
        let Some(path) = self.file(plugin) else {
            return Ok(());
        };
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let temporary = path.with_extension("json.tmp");
            std::fs::write(&temporary, serde_json::to_vec(state)?)?;
            std::fs::rename(&temporary, &path)
        };
        write().map_err(|e| GuestError::Unavailable(format!("state could not be saved: {e}")))
    }

    pub fn get(&self, plugin: &str, key: &str) -> Option<Vec<u8>> {
        self.with_plugin(plugin, |state| state.get(key).cloned())
    }

    pub fn set(&self, plugin: &str, key: String, value: Vec<u8>) -> Result<(), GuestError> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(GuestError::InvalidInput(format!(
                "state value of {} bytes is over the {MAX_VALUE_BYTES}-byte limit",
                value.len()
            )));
        }
        self.with_plugin(plugin, |state| {
            let previous = state.insert(key.clone(), value);
            let total: usize = state.iter().map(|(k, v)| k.len() + v.len()).sum();
            if total > MAX_PLUGIN_BYTES {
                match previous {
                    Some(previous) => state.insert(key, previous),
                    None => state.remove(&key),
                };
                return Err(GuestError::InvalidInput(format!(
                    "plugin state would exceed {MAX_PLUGIN_BYTES} bytes"
                )));
            }
            self.persist(plugin, state)
        })
    }

    pub fn delete(&self, plugin: &str, key: &str) -> Result<(), GuestError> {
        self.with_plugin(plugin, |state| {
            if state.remove(key).is_some() {
                self.persist(plugin, state)?;
            }
            Ok(())
        })
    }

    pub fn keys(&self, plugin: &str, prefix: &str) -> Vec<String> {
        self.with_plugin(plugin, |state| {
            state
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect()
        })
    }
}

impl StoreState {
    fn state_grant(&self) -> Result<&str, GuestError> {
        let plugin = self.grants.plugin.as_str();
        if self.grants.state {
            Ok(plugin)
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
        Ok(self
            .state_grant()
            .map(|plugin| self.services.state.get(plugin, &key)))
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), GuestError>> {
        Ok(self
            .state_grant()
            .and_then(|plugin| self.services.state.set(plugin, key, value)))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), GuestError>> {
        Ok(self
            .state_grant()
            .and_then(|plugin| self.services.state.delete(plugin, &key)))
    }

    async fn list_keys(
        &mut self,
        prefix: String,
    ) -> wasmtime::Result<Result<Vec<String>, GuestError>> {
        Ok(self
            .state_grant()
            .map(|plugin| self.services.state.keys(plugin, &prefix)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_persists_across_stores() {
        let folder = tempfile::tempdir().unwrap();
        let store = StateStore::new(Some(folder.path().to_owned()));
        store.set("p", "k".into(), b"v".to_vec()).unwrap();
        let reopened = StateStore::new(Some(folder.path().to_owned()));
        assert_eq!(reopened.get("p", "k"), Some(b"v".to_vec()));
        assert_eq!(reopened.keys("p", ""), vec!["k".to_owned()]);
        assert_eq!(reopened.get("other", "k"), None);
    }

    #[test]
    fn oversized_values_are_refused_and_nothing_is_lost() {
        let store = StateStore::new(None);
        store.set("p", "k".into(), b"v".to_vec()).unwrap();
        assert!(
            store
                .set("p", "k".into(), vec![0; MAX_VALUE_BYTES + 1])
                .is_err()
        );
        assert_eq!(store.get("p", "k"), Some(b"v".to_vec()));
    }
}
