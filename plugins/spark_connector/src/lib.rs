//! `spark_connector`: Spark batches and sessions on one cluster, through the operator's `api`
//! endpoint, in one of three modes (`config.mode`):
//!
//! - `livy` (default): Apache Livy REST, batches and interactive sessions;
//! - `yarn`: YARN ResourceManager REST, applications (status, attempts, kill, list);
//! - `k8s`: Kubernetes API server with the Spark Operator, `SparkApplication` objects with
//!   unique generated names, driver logs from the driver pod.
//!
//! Every operation exists in every mode; one a mode cannot do is an invalid-input error naming
//! the modes that can. Run more clusters as more instances (`plugins.NAME.builtin: spark_connector`).

mod args;
mod k8s;
mod livy;
mod names;
mod settings;
mod yarn;

use databot_sdk::api::Endpoint;
use databot_sdk::prelude::*;
use databot_sdk::{Health, HealthStatus};

use args::{
    BatchArgs, BatchLogsArgs, CancelStatementArgs, CreateSessionArgs, ListArgs, RunStatementArgs,
    SessionArgs, StatementArgs, SubmitBatchArgs,
};
use settings::{Mode, Settings};

databot_sdk::manifest! {
    name: "spark_connector",
    kind: "connector",
    description: "Spark on Apache Livy, YARN or Kubernetes (Spark Operator): submit, inspect, kill and list batches; Livy sessions and statements.",
    capabilities: ["http", "config", "logging"],
}

/// The settings and the endpoint, or why not.
fn setup() -> Result<(Settings, Endpoint), PluginError> {
    let settings = Settings::load()?;
    let api = Endpoint::from_config("api")?;
    Ok((settings, api))
}

/// Refuse an operation the configured mode cannot do, naming the modes that can.
fn unsupported(operation: &str, mode: Mode, supported: &[Mode]) -> PluginError {
    let names: Vec<&str> = supported.iter().map(|m| m.name()).collect();
    PluginError::InvalidInput(format!(
        "operation `{operation}` is not available in mode `{}` of this connector; it is supported in mode {} (the operator sets `config.mode`)",
        mode.name(),
        names.join(" and "),
    ))
}

/// The id a mode needs: Livy's batch id or YARN/Kubernetes' application id.
enum Target {
    Livy(args::Id),
    App(String),
}

fn target(
    mode: Mode,
    batch_id: Option<args::Id>,
    app_id: Option<String>,
) -> Result<Target, PluginError> {
    match mode {
        Mode::Livy => batch_id.map(Target::Livy).ok_or_else(|| {
            PluginError::InvalidInput("mode `livy` needs `batch_id` (the Livy batch id)".into())
        }),
        Mode::Yarn | Mode::K8s => app_id
            .filter(|a| !a.is_empty())
            .map(Target::App)
            .ok_or_else(|| {
                PluginError::InvalidInput(format!(
                    "mode `{}` needs `app_id` ({})",
                    mode.name(),
                    if mode == Mode::Yarn {
                        "the YARN application id, `application_...`"
                    } else {
                        "the SparkApplication name"
                    }
                ))
            }),
    }
}

fn livy_only(operation: &str) -> Result<(Settings, Endpoint), PluginError> {
    let (settings, api) = setup()?;
    if settings.mode != Mode::Livy {
        return Err(unsupported(operation, settings.mode, &[Mode::Livy]));
    }
    Ok((settings, api))
}

databot_sdk::connector! {
    health: check_health,

    /// Submit a batch application: a Livy batch (mode livy) or a SparkApplication with a
    /// unique generated name (mode k8s). Not available on YARN's REST API. Returns its id
    /// (`batch_id` or `app_id`) and state.
    fn submit_batch(args: SubmitBatchArgs) -> Result<Value, PluginError> {
        let (settings, api) = setup()?;
        match settings.mode {
            Mode::Livy => livy::submit_batch(&api, &settings, args),
            Mode::K8s => k8s::submit_batch(&api, &settings, args),
            Mode::Yarn => Err(unsupported("submit_batch", Mode::Yarn, &[Mode::Livy, Mode::K8s])),
        }
    }

    /// State of one batch application (`batch_id` for livy, `app_id` for yarn and k8s).
    fn batch_status(args: BatchArgs) -> Result<Value, PluginError> {
        let (settings, api) = setup()?;
        match target(settings.mode, args.batch_id, args.app_id)? {
            Target::Livy(id) => livy::batch_status(&api, &id),
            Target::App(app) if settings.mode == Mode::Yarn => yarn::batch_status(&api, &app),
            Target::App(app) => k8s::batch_status(&api, &settings, &app),
        }
    }

    /// Logs of one batch application: the last `lines` Livy log lines (livy), the driver pod's
    /// log tail (k8s), or on YARN the application attempts with links to their container logs
    /// (the ResourceManager serves no log text).
    fn batch_logs(args: BatchLogsArgs) -> Result<Value, PluginError> {
        let (settings, api) = setup()?;
        match target(settings.mode, args.batch_id.clone(), args.app_id.clone())? {
            Target::Livy(id) => livy::batch_logs(&api, &id, &args),
            Target::App(app) if settings.mode == Mode::Yarn => yarn::batch_logs(&api, &app),
            Target::App(app) => k8s::batch_logs(&api, &settings, &app, args.lines),
        }
    }

    /// Kill one batch application: delete the Livy batch, set the YARN application state to
    /// KILLED, or delete the SparkApplication.
    fn kill_batch(args: BatchArgs) -> Result<Value, PluginError> {
        let (settings, api) = setup()?;
        match target(settings.mode, args.batch_id, args.app_id)? {
            Target::Livy(id) => livy::kill_batch(&api, &id),
            Target::App(app) if settings.mode == Mode::Yarn => yarn::kill_batch(&api, &app),
            Target::App(app) => k8s::kill_batch(&api, &settings, &app),
        }
    }

    /// The most recent batch applications (newest first), optionally only those in one state.
    fn list_batches(args: ListArgs) -> Result<Value, PluginError> {
        let (settings, api) = setup()?;
        match settings.mode {
            Mode::Livy => livy::list_batches(&api, &args),
            Mode::Yarn => yarn::list_batches(&api, &args),
            Mode::K8s => k8s::list_batches(&api, &settings, &args),
        }
    }

    /// Start a Livy interactive session (mode livy): `pyspark` (default), `spark`, `sparkr` or
    /// `sql`. It starts asynchronously; wait for state `idle` with `session_status`.
    fn create_session(args: CreateSessionArgs) -> Result<Value, PluginError> {
        let (settings, api) = livy_only("create_session")?;
        livy::create_session(&api, &settings, args)
    }

    /// Run code in a Livy session (mode livy) and wait for its result, polling with backoff up
    /// to `wait_ms`. A statement still running then comes back with `done: false` and its
    /// `statement_id`, to check later with `statement_status`.
    fn run_statement(args: RunStatementArgs) -> Result<Value, PluginError> {
        let (settings, api) = livy_only("run_statement")?;
        livy::run_statement(&api, &settings, args)
    }

    /// State and result of one statement of a Livy session (mode livy), optionally waiting up
    /// to `wait_ms` for it to finish.
    fn statement_status(args: StatementArgs) -> Result<Value, PluginError> {
        let (settings, api) = livy_only("statement_status")?;
        livy::statement_status(&api, &settings, &args)
    }

    /// Cancel a running statement of a Livy session (mode livy).
    fn cancel_statement(args: CancelStatementArgs) -> Result<Value, PluginError> {
        let (_, api) = livy_only("cancel_statement")?;
        livy::cancel_statement(&api, &args)
    }

    /// State of one Livy session (mode livy).
    fn session_status(args: SessionArgs) -> Result<Value, PluginError> {
        let (_, api) = livy_only("session_status")?;
        livy::session_status(&api, &args)
    }

    /// The most recent Livy sessions, newest first (mode livy).
    fn list_sessions(args: ListArgs) -> Result<Value, PluginError> {
        let (_, api) = livy_only("list_sessions")?;
        livy::list_sessions(&api, &args)
    }

    /// Stop a Livy session and free its resources (mode livy).
    fn delete_session(args: SessionArgs) -> Result<Value, PluginError> {
        let (_, api) = livy_only("delete_session")?;
        livy::delete_session(&api, &args)
    }
}

/// Per mode: Livy `GET /batches?from=0&size=1`, YARN `GET /ws/v1/cluster/info` (state
/// STARTED), Kubernetes listing the namespace's SparkApplications.
fn check_health() -> Health {
    let health = |status, message: String| Health { status, message };
    let (settings, mut api) = match setup() {
        Ok(setup) => setup,
        Err(error) => return health(HealthStatus::NotConfigured, message_of(&error)),
    };
    api.retry.retries = 0;
    let probe = match settings.mode {
        Mode::Livy => api
            .get("/batches", &[("from", "0".into()), ("size", "1".into())])
            .map(|list| {
                (
                    true,
                    format!(
                        "Livy reachable: {} batches",
                        list["total"].as_u64().unwrap_or(0)
                    ),
                )
            }),
        Mode::Yarn => yarn::health(&api),
        Mode::K8s => k8s::health(&api, &settings).map(|message| (true, message)),
    };
    match probe {
        Ok((true, message)) => health(HealthStatus::Healthy, message),
        Ok((false, message)) => health(HealthStatus::Degraded, message),
        Err(PluginError::Denied(message)) => health(HealthStatus::NotConfigured, message),
        Err(error @ (PluginError::Unavailable(_) | PluginError::Timeout(_))) => {
            let message = message_of(&error);
            // A 5xx answer is a service that is up but unwell; no answer at all is unreachable.
            if message.contains(" answered ") {
                health(HealthStatus::Degraded, message)
            } else {
                health(HealthStatus::Unreachable, message)
            }
        }
        Err(error) => health(HealthStatus::Degraded, message_of(&error)),
    }
}

fn message_of(error: &PluginError) -> String {
    match error {
        PluginError::InvalidInput(m)
        | PluginError::Denied(m)
        | PluginError::NotFound(m)
        | PluginError::Unavailable(m)
        | PluginError::Timeout(m)
        | PluginError::Failed(m) => m.clone(),
    }
}
