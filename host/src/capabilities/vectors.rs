//! `vectors` capability: granted collections (`plugins.NAME.permissions.vectors`) are embedded
//! vector stores in the plugin's own namespace (`crate::vectors::plugin`); an ungranted one is
//! `denied`.

use crate::contract::GuestError;
use crate::contract::databot::plugin::vectors;

use super::StoreState;

/// Granted collections live in the plugin's own namespace (`crate::vectors::plugin`).
impl vectors::Host for StoreState {
    async fn upsert(
        &mut self,
        collection: String,
        id: String,
        vector: Vec<f32>,
        payload: String,
    ) -> wasmtime::Result<Result<(), GuestError>> {
        if let Err(error) = crate::vectors::plugin::check_collection_name(&collection)
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
        if let Err(error) = crate::vectors::plugin::check_collection_name(&collection)
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
