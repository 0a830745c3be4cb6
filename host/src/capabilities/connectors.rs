//! `connectors` capability: a tool calls an operation of a connector instance it was granted
//! (`plugins.NAME.permissions.connectors`), through the runtime's `ConnectorRouter`, with the
//! connector's own budgets; chains of such calls are at most `MAX_CALL_DEPTH` deep.

use crate::contract::GuestError;
use crate::contract::databot::plugin::connectors;

use super::StoreState;

/// Deepest chain of plugin-to-plugin calls (tool -> connector -> ...).
pub const MAX_CALL_DEPTH: u8 = 4;

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
