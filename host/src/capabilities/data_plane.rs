//! Capabilities that reach data: `connectors` (tool -> connector calls), `stream-sink`, the
//! named-grant check shared by `sql` and `kafka` (their own modules), and the `vectors`
//! interface: granted collections are embedded vector stores in the plugin's own namespace
//! (`crate::rag::plugin_vectors`); an ungranted one is `denied`.

use crate::runtime::bindings::GuestError;
use crate::runtime::bindings::databot::plugin::{connectors, stream_sink, vectors};

use super::{StoreState, denied};

/// Deepest chain of plugin-to-plugin calls (tool -> connector -> ...).
pub const MAX_CALL_DEPTH: u8 = 4;

impl StoreState {
    pub(crate) fn check_named_grant(
        &self,
        granted: &[String],
        capability: &str,
        name: &str,
    ) -> Result<(), GuestError> {
        if granted.iter().any(|g| g == name) {
            return Ok(());
        }
        let plugin = &self.grants.plugin;
        Err(denied(
            plugin,
            &format!("use {capability} `{name}`"),
            &format!("plugins.{plugin}.permissions.{capability}: [\"{name}\"]"),
        ))
    }
}

impl connectors::Host for StoreState {
    async fn execute(
        &mut self,
        name: String,
        operation: String,
        params: String,
    ) -> wasmtime::Result<Result<String, GuestError>> {
        if let Err(error) = self.check_named_grant(&self.grants.connectors, "connectors", &name) {
            return Ok(Err(error));
        }
        if self.depth >= MAX_CALL_DEPTH {
            return Ok(Err(GuestError::Failed(format!(
                "plugin calls nest deeper than {MAX_CALL_DEPTH}; refusing to call connector `{name}`"
            ))));
        }
        let router = self.services.connector_router.read().clone();
        let Some(router) = router else {
            return Ok(Err(GuestError::Unavailable(
                "the runtime is shutting down".into(),
            )));
        };
        Ok(router
            .execute(
                &name,
                &operation,
                &params,
                self.depth + 1,
                &self.trace().context(),
            )
            .await)
    }
}

/// Granted collections live in the plugin's own namespace (`crate::rag::plugin_vectors`).
impl vectors::Host for StoreState {
    async fn upsert(
        &mut self,
        collection: String,
        id: String,
        vector: Vec<f32>,
        payload: String,
    ) -> wasmtime::Result<Result<(), GuestError>> {
        if let Err(error) = crate::rag::plugin_vectors::check_collection_name(&collection)
            .and_then(|()| self.check_named_grant(&self.grants.vectors, "vectors", &collection))
        {
            return Ok(Err(error));
        }
        Ok(self
            .services
            .vectors
            .upsert(
                &self.services.data_dir,
                &self.grants.plugin,
                &collection,
                id,
                vector,
                payload,
            )
            .await)
    }

    async fn search(
        &mut self,
        collection: String,
        vector: Vec<f32>,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<vectors::Match>, GuestError>> {
        if let Err(error) = crate::rag::plugin_vectors::check_collection_name(&collection)
            .and_then(|()| self.check_named_grant(&self.grants.vectors, "vectors", &collection))
        {
            return Ok(Err(error));
        }
        let hits = self
            .services
            .vectors
            .search(
                &self.services.data_dir,
                &self.grants.plugin,
                &collection,
                vector,
                limit,
            )
            .await;
        Ok(hits.map(|hits| {
            hits.into_iter()
                .map(|m| vectors::Match {
                    id: m.id,
                    score: m.score,
                    payload: m.payload,
                })
                .collect()
        }))
    }
}

impl stream_sink::Host for StoreState {
    async fn emit(&mut self, event: String) -> wasmtime::Result<()> {
        let Some(sink) = &self.sink else {
            return Ok(());
        };
        if let Err(error) = sink.send(event).await {
            let message = error.to_string();
            self.output_breach = Some(message.clone());
            return Err(wasmtime::Error::msg(message));
        }
        Ok(())
    }
}
