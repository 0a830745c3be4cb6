//! The connector's configuration with its defaults applied: a key the operator left out, or
//! set to an empty string or null, takes the default.

use databot_sdk::PluginError;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

/// Which Spark service the `api` endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Apache Livy REST (batches and interactive sessions).
    Livy,
    /// YARN ResourceManager REST (`/ws/v1/cluster`).
    Yarn,
    /// Kubernetes API server with the Spark Operator (`sparkoperator.k8s.io/v1beta2`).
    K8s,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Livy => "livy",
            Mode::Yarn => "yarn",
            Mode::K8s => "k8s",
        }
    }

    pub fn parse(text: &str) -> Result<Self, PluginError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "livy" => Ok(Mode::Livy),
            "yarn" => Ok(Mode::Yarn),
            "k8s" | "kubernetes" => Ok(Mode::K8s),
            other => Err(PluginError::InvalidInput(format!(
                "config `mode` is `{other}`; set it to `livy` (the default), `yarn` or `k8s`"
            ))),
        }
    }
}

pub const DEFAULT_NAMESPACE: &str = "default";
pub const DEFAULT_SPARK_VERSION: &str = "3.5.0";
/// Longest a `run_statement` call waits for its result unless configured otherwise; below the
/// host's default call deadline (10 s) with room for the requests themselves.
pub const DEFAULT_STATEMENT_WAIT_MS: u64 = 5_000;

/// Every setting, defaults applied.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    /// Spark conf merged under each submission's own `conf`.
    pub default_conf: Map<String, Value>,
    pub namespace: String,
    pub image: String,
    pub spark_version: String,
    pub service_account: Option<String>,
    pub driver_spec: Value,
    pub executor_spec: Value,
    pub statement_wait_ms: u64,
}

impl Settings {
    pub fn load() -> Result<Self, PluginError> {
        let mode = Mode::parse(&text("mode")?.unwrap_or_default())?;
        let spark_version = text("spark_version")?.unwrap_or_else(|| DEFAULT_SPARK_VERSION.into());
        Ok(Self {
            mode,
            default_conf: value::<Map<String, Value>>("default_conf")?.unwrap_or_default(),
            namespace: text("namespace")?.unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
            image: text("image")?.unwrap_or_else(|| format!("spark:{spark_version}")),
            spark_version,
            service_account: text("service_account")?,
            driver_spec: value::<Value>("driver_spec")?
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({"cores": 1, "memory": "1g"})),
            executor_spec: value::<Value>("executor_spec")?
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({"cores": 1, "instances": 2, "memory": "1g"})),
            statement_wait_ms: value::<u64>("statement_wait_ms")?
                .unwrap_or(DEFAULT_STATEMENT_WAIT_MS),
        })
    }
}

/// A text setting; empty or blank counts as unset.
fn text(key: &str) -> Result<Option<String>, PluginError> {
    Ok(value::<Option<String>>(key)?
        .flatten()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty()))
}

/// A typed setting; null and `""` count as unset.
fn value<T: DeserializeOwned>(key: &str) -> Result<Option<T>, PluginError> {
    match databot_sdk::config_value::<Value>(key)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(other) => serde_json::from_value(other).map(Some).map_err(|e| {
            PluginError::InvalidInput(format!("config value `{key}` has the wrong shape: {e}"))
        }),
    }
}

/// Spark conf for one submission: `default_conf` overlaid with `conf`, every value as text
/// (Spark conf values are strings).
pub fn merged_conf(
    defaults: &Map<String, Value>,
    conf: &Map<String, Value>,
) -> Result<Map<String, Value>, PluginError> {
    let mut out = Map::new();
    for (key, value) in defaults.iter().chain(conf.iter()) {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => continue,
            _ => {
                return Err(PluginError::InvalidInput(format!(
                    "Spark conf `{key}` must be a string, number or boolean"
                )));
            }
        };
        out.insert(key.clone(), Value::String(text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_with_livy_as_default() {
        assert_eq!(Mode::parse("").ok(), Some(Mode::Livy));
        assert_eq!(Mode::parse("YARN").ok(), Some(Mode::Yarn));
        assert_eq!(Mode::parse("kubernetes").ok(), Some(Mode::K8s));
        assert!(Mode::parse("mesos").is_err());
    }

    #[test]
    fn conf_is_merged_as_text() {
        let defaults =
            json!({"spark.executor.memory": "2g", "spark.dynamicAllocation.enabled": true});
        let conf = json!({"spark.executor.memory": "4g", "spark.sql.shuffle.partitions": 64});
        let merged = merged_conf(
            defaults.as_object().unwrap_or(&Map::new()),
            conf.as_object().unwrap_or(&Map::new()),
        )
        .ok();
        assert_eq!(
            merged.map(Value::Object),
            Some(json!({
                "spark.executor.memory": "4g",
                "spark.dynamicAllocation.enabled": "true",
                "spark.sql.shuffle.partitions": "64"
            }))
        );
        let nested = json!({"a": {"b": 1}});
        assert!(merged_conf(&Map::new(), nested.as_object().unwrap_or(&Map::new())).is_err());
    }
}
