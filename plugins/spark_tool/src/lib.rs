//! `spark`: tools over a Spark cluster for agents, each delegating to an instance of the
//! `spark_connector` connector (Livy, YARN or Kubernetes Spark Operator) through
//! `connectors.execute`. Every tool takes an optional `connector`; see `delegate` for how one
//! is chosen when it is left out.

mod delegate;

use databot_sdk::prelude::*;
use serde_json::Map;

use delegate::Targeted;

databot_sdk::manifest! {
    name: "spark",
    kind: "tool",
    description: "Submit, inspect, kill and list Spark batch jobs; run code in Livy sessions (through a spark connector).",
    capabilities: ["connectors", "config", "logging"],
}

/// A Livy batch, session or statement id: a number, or its text.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
enum Id {
    Number(u64),
    Text(String),
}

/// Interpreter of a Livy session or statement.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Pyspark,
    Spark,
    Sparkr,
    Sql,
}

macro_rules! targeted {
    ($($ty:ty),+) => {
        $(impl Targeted for $ty {
            fn connector(&self) -> Option<&str> {
                self.connector.as_deref()
            }
        })+
    };
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SubmitBatchArgs {
    /// Spark connector instance to use; may be left out when only one is available.
    #[serde(default, skip_serializing)]
    connector: Option<String>,
    /// The application file, a `.py` file or a jar at a path the cluster can read
    /// (e.g. `s3a://bucket/jobs/etl.py`, `local:///opt/app.jar`).
    file: String,
    /// Main class of a JVM application (leave out for Python).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    class_name: Option<String>,
    /// Command-line arguments of the application.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    args: Vec<String>,
    /// Spark conf for this job, e.g. `{"spark.executor.memory": "4g"}`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    conf: Map<String, Value>,
    /// A name for the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Extra Python files (`.py`, `.zip`, `.egg`) to ship.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    py_files: Vec<String>,
    /// Extra jars for the classpath.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    jars: Vec<String>,
    /// Extra files to ship to the working directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    files: Vec<String>,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct BatchArgs {
    /// Spark connector instance to use; may be left out when only one is available.
    #[serde(default, skip_serializing)]
    connector: Option<String>,
    /// Livy batch id (Livy clusters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    batch_id: Option<Id>,
    /// Application id: the YARN `application_...` id, or the SparkApplication name on Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    app_id: Option<String>,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct BatchLogsArgs {
    /// Spark connector instance to use; may be left out when only one is available.
    #[serde(default, skip_serializing)]
    connector: Option<String>,
    /// Livy batch id (Livy clusters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    batch_id: Option<Id>,
    /// Application id: the YARN `application_...` id, or the SparkApplication name on Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    app_id: Option<String>,
    /// Log lines to return, from the end (default 200, at most 5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5000))]
    lines: Option<u32>,
    /// Livy only: the first line to return, instead of the last `lines`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<u64>,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    /// Spark connector instance to use; may be left out when only one is available.
    #[serde(default, skip_serializing)]
    connector: Option<String>,
    /// Most entries to return, newest first (default 20, at most 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 500))]
    limit: Option<u32>,
    /// Only entries in this state (e.g. `running`, `dead`, `FAILED`, `COMPLETED`); case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<String>,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateSessionArgs {
    /// Spark connector instance to use; may be left out when only one is available.
    #[serde(default, skip_serializing)]
    connector: Option<String>,
    /// Session interpreter: `pyspark` (default), `spark` (Scala), `sparkr` or `sql`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<Kind>,
    /// Spark conf for the session.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    conf: Map<String, Value>,
    /// A name for the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RunStatementArgs {
    /// Spark connector instance to use; may be left out when only one is available.
    #[serde(default, skip_serializing)]
    connector: Option<String>,
    /// Livy session id (the session must be `idle`).
    session_id: Id,
    /// Code to run, in the session's language unless `kind` says otherwise.
    code: String,
    /// Interpreter for this statement when it differs from the session's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<Kind>,
    /// Longest wait for the result in milliseconds (capped by the operator's setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wait_ms: Option<u64>,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct StatementArgs {
    /// Spark connector instance to use; may be left out when only one is available.
    #[serde(default, skip_serializing)]
    connector: Option<String>,
    /// Livy session id.
    session_id: Id,
    /// Statement id, as `spark_run_statement` returned it.
    statement_id: Id,
    /// Wait up to this many milliseconds for the statement to finish (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wait_ms: Option<u64>,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CancelStatementArgs {
    /// Spark connector instance to use; may be left out when only one is available.
    #[serde(default, skip_serializing)]
    connector: Option<String>,
    /// Livy session id.
    session_id: Id,
    /// Statement id, as `spark_run_statement` returned it.
    statement_id: Id,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SessionArgs {
    /// Spark connector instance to use; may be left out when only one is available.
    #[serde(default, skip_serializing)]
    connector: Option<String>,
    /// Livy session id.
    session_id: Id,
}

targeted!(
    SubmitBatchArgs,
    BatchArgs,
    BatchLogsArgs,
    ListArgs,
    CreateSessionArgs,
    RunStatementArgs,
    StatementArgs,
    CancelStatementArgs,
    SessionArgs
);

databot_sdk::tools! {
    /// Submit a Spark batch job (a `.py` file or a jar with its main class) to the cluster:
    /// a Livy batch, or a SparkApplication on Kubernetes. Returns its `batch_id` (Livy) or
    /// `app_id` (Kubernetes) and state; follow it with `spark_batch_status`.
    fn spark_submit_batch(args: SubmitBatchArgs) -> Result<Value, PluginError> {
        delegate::call("submit_batch", &args)
    }

    /// State of one Spark batch job (`batch_id` on Livy, `app_id` on YARN and Kubernetes).
    fn spark_batch_status(args: BatchArgs) -> Result<Value, PluginError> {
        delegate::call("batch_status", &args)
    }

    /// The last log lines of a Spark batch job: Livy batch log, or the driver pod's log on
    /// Kubernetes. On YARN, the application attempts with links to their container logs.
    fn spark_batch_logs(args: BatchLogsArgs) -> Result<Value, PluginError> {
        delegate::call("batch_logs", &args)
    }

    /// Kill a running Spark batch job (`batch_id` on Livy, `app_id` on YARN and Kubernetes).
    fn spark_kill_batch(args: BatchArgs) -> Result<Value, PluginError> {
        delegate::call("kill_batch", &args)
    }

    /// The most recent Spark batch jobs on the cluster, newest first, optionally in one state.
    fn spark_list_batches(args: ListArgs) -> Result<Value, PluginError> {
        delegate::call("list_batches", &args)
    }

    /// Start an interactive Livy session (Livy clusters only). It starts in the background:
    /// wait until `spark_session_status` says `idle` before running statements.
    fn spark_create_session(args: CreateSessionArgs) -> Result<Value, PluginError> {
        delegate::call("create_session", &args)
    }

    /// Run code in an idle Livy session and return its output. A statement that takes longer
    /// than the wait comes back with `done: false` and its `statement_id`: check it later
    /// with `spark_statement_status`.
    fn spark_run_statement(args: RunStatementArgs) -> Result<Value, PluginError> {
        delegate::call("run_statement", &args)
    }

    /// State and output of a statement started with `spark_run_statement`.
    fn spark_statement_status(args: StatementArgs) -> Result<Value, PluginError> {
        delegate::call("statement_status", &args)
    }

    /// Cancel a running statement of a Livy session.
    fn spark_cancel_statement(args: CancelStatementArgs) -> Result<Value, PluginError> {
        delegate::call("cancel_statement", &args)
    }

    /// State of one Livy session (`starting`, `idle`, `busy`, `dead`, ...).
    fn spark_session_status(args: SessionArgs) -> Result<Value, PluginError> {
        delegate::call("session_status", &args)
    }

    /// The most recent Livy sessions, newest first.
    fn spark_list_sessions(args: ListArgs) -> Result<Value, PluginError> {
        delegate::call("list_sessions", &args)
    }

    /// Stop a Livy session and free its cluster resources.
    fn spark_delete_session(args: SessionArgs) -> Result<Value, PluginError> {
        delegate::call("delete_session", &args)
    }
}
