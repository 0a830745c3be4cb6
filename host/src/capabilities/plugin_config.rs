//! `config` capability: the plugin reads its own `plugins.NAME.config` values, nothing else.

use crate::contract::databot::plugin::config::Host;

use super::StoreState;

impl Host for StoreState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.grants.config.get(&key).map(|v| v.to_string()))
    }

    async fn all(&mut self) -> wasmtime::Result<String> {
        Ok(serde_json::to_string(&self.grants.config)?)
    }
}
