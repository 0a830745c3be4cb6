//! Typed arguments of the connector's operations (their JSON Schemas are what callers see).

use databot_sdk::prelude::*;
use serde_json::Map;

/// A Livy batch or session id: a number, or its text.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Id {
    Number(u64),
    Text(String),
}

impl Id {
    /// The id as a path segment, checked to be a number (Livy ids are integers).
    pub fn livy(&self, what: &str) -> Result<String, PluginError> {
        match self {
            Id::Number(n) => Ok(n.to_string()),
            Id::Text(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => Ok(t.clone()),
            Id::Text(t) => Err(PluginError::InvalidInput(format!(
                "`{what}` must be a Livy id (a number), not `{t}`"
            ))),
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatchArgs {
    /// The application file: a jar or a `.py` file, as a path the cluster can read
    /// (e.g. `s3a://bucket/jobs/etl.py`, `local:///opt/app.jar`, `hdfs:///apps/job.jar`).
    pub file: String,
    /// Main class of a JVM application (omit for Python).
    #[serde(default)]
    pub class_name: Option<String>,
    /// Command-line arguments of the application.
    #[serde(default)]
    pub args: Vec<String>,
    /// Spark conf for this submission, over the operator's `default_conf`.
    #[serde(default)]
    pub conf: Map<String, Value>,
    /// A name for the job (on Kubernetes the base of the generated unique application name).
    #[serde(default)]
    pub name: Option<String>,
    /// Extra Python files (`.py`, `.zip`, `.egg`) to ship.
    #[serde(default)]
    pub py_files: Vec<String>,
    /// Extra jars to put on the classpath.
    #[serde(default)]
    pub jars: Vec<String>,
    /// Extra files to ship to the working directory.
    #[serde(default)]
    pub files: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchArgs {
    /// Livy batch id (mode livy).
    #[serde(default)]
    pub batch_id: Option<Id>,
    /// Application id: YARN `application_...` id (mode yarn) or SparkApplication name (mode k8s).
    #[serde(default)]
    pub app_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchLogsArgs {
    /// Livy batch id (mode livy).
    #[serde(default)]
    pub batch_id: Option<Id>,
    /// Application id: YARN `application_...` id (mode yarn) or SparkApplication name (mode k8s).
    #[serde(default)]
    pub app_id: Option<String>,
    /// Number of log lines to return, from the end (default 200, at most 5000).
    #[serde(default)]
    #[schemars(range(min = 1, max = 5000))]
    pub lines: Option<u32>,
    /// Livy only: first line to return instead of the last `lines`.
    #[serde(default)]
    pub from: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// Most entries to return, newest first where the service allows (default 20, at most 500).
    #[serde(default)]
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
    /// Only entries in this state (e.g. `running`, `dead`, `FINISHED`, `COMPLETED`); case-insensitive.
    #[serde(default)]
    pub state: Option<String>,
}

/// Interpreter of a Livy session or statement.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Pyspark,
    Spark,
    Sparkr,
    Sql,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionArgs {
    /// Session interpreter (default `pyspark`).
    #[serde(default)]
    pub kind: Option<Kind>,
    /// Spark conf for this session, over the operator's `default_conf`.
    #[serde(default)]
    pub conf: Map<String, Value>,
    /// A name for the session (unique among Livy's sessions).
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunStatementArgs {
    /// Livy session id.
    pub session_id: Id,
    /// Code to run in the session.
    pub code: String,
    /// Interpreter for this statement when it differs from the session's.
    #[serde(default)]
    pub kind: Option<Kind>,
    /// Longest wait for the result in milliseconds (default and ceiling: the operator's
    /// `statement_wait_ms`, 5000 unless configured). A statement still running then is
    /// returned with `done: false`; check it later with `statement_status`.
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatementArgs {
    /// Livy session id.
    pub session_id: Id,
    /// Statement id (as returned by `run_statement`).
    pub statement_id: Id,
    /// Wait up to this many milliseconds for the statement to finish (default 0: answer at
    /// once; ceiling: the operator's `statement_wait_ms`).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelStatementArgs {
    /// Livy session id.
    pub session_id: Id,
    /// Statement id (as returned by `run_statement`).
    pub statement_id: Id,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionArgs {
    /// Livy session id.
    pub session_id: Id,
}
