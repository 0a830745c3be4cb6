//! Which connector instance a delegating tool calls and the call itself, over the SDK's
//! `pick_connector` and `call_connector` (shared by the `catalog` and `kafka` tools).

use databot_sdk::PluginError;
use serde_json::Value;

/// The instance to call: the `connector` argument, else the only one this tool may use. A
/// named connector outside the tool's list is refused here, with the list, so the model can
/// correct itself.
pub fn connector(explicit: Option<&str>, what: &str) -> Result<String, PluginError> {
    let name = databot_sdk::pick_connector(explicit, what, "connector")?;
    let listed: Vec<String> = databot_sdk::config_value("connectors")?.unwrap_or_default();
    if !listed.is_empty() && !listed.contains(&name) {
        return Err(PluginError::InvalidInput(format!(
            "connector `{name}` is not one of this tool's connectors ({}); pick one of those or ask the operator to add it to `permissions.connectors`",
            listed.join(", ")
        )));
    }
    Ok(name)
}

/// Run `operation` of `connector` with `params` (a serialisable argument struct; its
/// `connector` field, which is the tool's own, is dropped).
pub fn execute<T: serde::Serialize>(
    connector: &str,
    operation: &str,
    params: &T,
) -> Result<Value, PluginError> {
    let mut params = serde_json::to_value(params)
        .map_err(|e| PluginError::Failed(format!("arguments of `{operation}`: {e}")))?;
    if let Some(map) = params.as_object_mut() {
        map.remove("connector");
    }
    databot_sdk::call_connector(connector, operation, &params)
}
