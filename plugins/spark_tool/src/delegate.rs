//! Which spark connector instance a call goes to, and the call itself.
//!
//! A call names its connector with `connector`; without it the tool uses the only one the
//! operator listed in `plugins.<this tool>.config.connectors` (the same names the operator
//! grants in `permissions.connectors`). Zero or several listed is an error that says what to do.

use databot_sdk::prelude::*;

/// Arguments that may name the connector to use.
pub trait Targeted: Serialize {
    fn connector(&self) -> Option<&str>;
}

/// The connector instance to call.
pub fn resolve(explicit: Option<&str>) -> Result<String, PluginError> {
    if let Some(name) = explicit.map(str::trim).filter(|n| !n.is_empty()) {
        return Ok(name.to_owned());
    }
    let listed: Vec<String> = databot_sdk::config_value("connectors")?.unwrap_or_default();
    pick(&listed)
}

/// The only listed connector, or an error that says how to choose.
pub fn pick(listed: &[String]) -> Result<String, PluginError> {
    match listed {
        [only] => Ok(only.clone()),
        [] => Err(PluginError::InvalidInput(
            "no Spark connector to use: pass `connector` (a spark_connector instance name), or have the operator list exactly one under `config.connectors` of this tool and grant it in `permissions.connectors`".into(),
        )),
        several => Err(PluginError::InvalidInput(format!(
            "several Spark connectors are available ({}); pass `connector` with one of them",
            several.join(", ")
        ))),
    }
}

/// Run `operation` on the resolved connector with `args` (minus `connector`); the answer is
/// `{connector, result}`.
pub fn call<T: Targeted>(operation: &str, args: &T) -> Result<Value, PluginError> {
    let connector = resolve(args.connector())?;
    let params = serde_json::to_string(args)
        .map_err(|e| PluginError::Failed(format!("encoding the parameters: {e}")))?;
    let answer = databot_sdk::connectors::execute(&connector, operation, &params)?;
    let result: Value = serde_json::from_str(&answer).map_err(|e| {
        PluginError::Failed(format!(
            "connector `{connector}` answered something that is not JSON: {e}"
        ))
    })?;
    Ok(json!({"connector": connector, "result": result}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_listed_connector_is_picked_else_the_caller_must_choose() {
        assert_eq!(
            pick(&["spark_prod".into()]).ok().as_deref(),
            Some("spark_prod")
        );
        assert!(matches!(pick(&[]), Err(PluginError::InvalidInput(_))));
        match pick(&["a".into(), "b".into()]) {
            Err(PluginError::InvalidInput(message)) => {
                assert!(message.contains("a, b"), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
