//! Which spark connector instance a call goes to, and the call itself.
//!
//! A call names its connector with `connector`; without it the tool uses the only one it may
//! use (`databot_sdk::pick_connector`). Zero or several is an error that says what to do.

use databot_sdk::prelude::*;

/// Arguments that may name the connector to use.
pub trait Targeted: Serialize {
    fn connector(&self) -> Option<&str>;
}

/// Run `operation` on the resolved connector with `args` (minus `connector`); the answer is
/// `{connector, result}`.
pub fn call<T: Targeted>(operation: &str, args: &T) -> Result<Value, PluginError> {
    let connector = databot_sdk::pick_connector(args.connector(), "Spark", "connector")?;
    let params = serde_json::to_value(args)
        .map_err(|e| PluginError::Failed(format!("encoding the parameters: {e}")))?;
    let result: Value = databot_sdk::call_connector(&connector, operation, &params)?;
    Ok(json!({"connector": connector, "result": result}))
}
