//! Which connector instance a delegating tool calls: the `connector` argument when given,
//! else the only name in the tool's config `connectors` list, else the built-in's default
//! instance name when the operator listed none. The host still checks each call against
//! `permissions.connectors`, so a name here grants nothing by itself.

use databot_sdk::PluginError;
use serde_json::Value;

/// The instance to call. `default_name` is the built-in connector's own name.
pub fn connector(explicit: Option<&str>, default_name: &str) -> Result<String, PluginError> {
    let listed = databot_sdk::config_value::<Vec<String>>("connectors")?;
    if let Some(name) = explicit.map(str::trim).filter(|n| !n.is_empty()) {
        if let Some(listed) = &listed
            && !listed.iter().any(|l| l == name)
        {
            return Err(PluginError::InvalidInput(format!(
                "connector `{name}` is not one of this tool's connectors ({}); pick one of those or ask the operator to add it to `config.connectors` and `permissions.connectors`",
                listed.join(", ")
            )));
        }
        return Ok(name.to_owned());
    }
    match listed {
        None => Ok(default_name.to_owned()),
        Some(listed) => match listed.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(PluginError::NotFound(format!(
                "no {default_name} instance is configured for this tool; the operator lists one in this tool's `config.connectors` and `permissions.connectors`"
            ))),
            many => Err(PluginError::InvalidInput(format!(
                "several connectors are configured ({}); pass `connector` to pick one",
                many.join(", ")
            ))),
        },
    }
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
    let text = databot_sdk::connectors::execute(connector, operation, &params.to_string())?;
    serde_json::from_str(&text).map_err(|e| {
        PluginError::Failed(format!(
            "connector `{connector}` answered `{operation}` with something that is not JSON: {e}"
        ))
    })
}
