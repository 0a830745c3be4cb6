//! `airflow`: tools over Apache Airflow's REST API for agents: DAGs, runs, task instances,
//! task logs, triggering and pausing. Speaks the Airflow 2 stable API (`/api/v1`, default) or
//! the Airflow 3 API (`/api/v2`, `config.api_version: v2`); the base URL is
//! `endpoints.api.url` with or without the `/api/vN` suffix, and the host adds credentials.

mod client;
mod shape;

use databot_sdk::api::segment;
use databot_sdk::prelude::*;
use serde_json::Map;

use client::{Airflow, Version};

databot_sdk::manifest! {
    name: "airflow",
    kind: "tool",
    description: "Apache Airflow: list and inspect DAGs, runs and task instances, read task logs, trigger runs, pause and unpause DAGs.",
    capabilities: ["http", "config", "logging"],
}

const DEFAULT_LIST_LIMIT: u32 = 25;
const DEFAULT_RUN_LIMIT: u32 = 10;
const DEFAULT_LOG_BYTES: u64 = 20_000;
const MAX_LOG_BYTES: u64 = 1024 * 1024;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListDagsArgs {
    /// Only DAGs whose files still exist (not stale/deleted); default true.
    #[serde(default = "yes")]
    only_active: bool,
    /// Only paused (`true`) or only unpaused (`false`) DAGs; default both.
    #[serde(default)]
    paused: Option<bool>,
    /// Only DAGs whose id contains this text (SQL LIKE pattern, `%` and `_` allowed).
    #[serde(default)]
    dag_id_pattern: Option<String>,
    /// Only DAGs with all of these tags.
    #[serde(default)]
    tags: Vec<String>,
    /// Most DAGs to return (default 25, or the operator's `default_limit`; at most 1000).
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<u32>,
    /// DAGs to skip, to go on from a previous call.
    #[serde(default)]
    offset: Option<u32>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DagArgs {
    /// The DAG id.
    dag_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListRunsArgs {
    /// The DAG id (`~` for the runs of every DAG).
    dag_id: String,
    /// Most runs to return, newest first (default 10, at most 1000).
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<u32>,
    /// Only runs in these states (`queued`, `running`, `success`, `failed`).
    #[serde(default)]
    states: Vec<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RunArgs {
    /// The DAG id.
    dag_id: String,
    /// The DAG run id, e.g. `scheduled__2024-05-01T00:00:00+00:00`.
    run_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TaskInstancesArgs {
    /// The DAG id.
    dag_id: String,
    /// The DAG run id.
    run_id: String,
    /// Most task instances to return (default 100, at most 1000).
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TaskLogArgs {
    /// The DAG id.
    dag_id: String,
    /// The DAG run id.
    run_id: String,
    /// The task id.
    task_id: String,
    /// Which try's log (1 is the first); default the task instance's latest try.
    #[serde(default)]
    #[schemars(range(min = 1))]
    try_number: Option<u32>,
    /// Map index of a mapped task instance (leave out for unmapped tasks).
    #[serde(default)]
    #[schemars(range(min = 0))]
    map_index: Option<i64>,
    /// Return at most this many bytes from the end of the log (default 20000, at most 1048576).
    #[serde(default)]
    #[schemars(range(min = 1, max = 1048576))]
    max_bytes: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TriggerArgs {
    /// The DAG id.
    dag_id: String,
    /// Run configuration passed to the DAG (`dag_run.conf`).
    #[serde(default)]
    conf: Map<String, Value>,
    /// Logical date of the run (RFC 3339, e.g. `2024-05-01T00:00:00Z`); default now (v1) or
    /// none (v2).
    #[serde(default)]
    logical_date: Option<String>,
    /// Run id to use instead of a generated `manual__...` one.
    #[serde(default)]
    run_id: Option<String>,
    /// A note to attach to the run.
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PauseArgs {
    /// The DAG id.
    dag_id: String,
    /// `true` to pause the DAG (no new scheduled runs), `false` to unpause it.
    paused: bool,
}

databot_sdk::tools! {
    /// List Airflow DAGs with their paused state, schedule, next run, owners and tags.
    /// Results are paginated: `truncated` says more exist; pass `offset` to go on.
    fn airflow_list_dags(args: ListDagsArgs) -> Result<Value, PluginError> {
        let airflow = Airflow::from_config()?;
        let default_limit: u32 = databot_sdk::config_value("default_limit")?.unwrap_or(DEFAULT_LIST_LIMIT);
        let limit = args.limit.unwrap_or(default_limit).clamp(1, 1000);
        let offset = args.offset.unwrap_or(0);
        let mut query: Vec<(&str, String)> = Vec::new();
        match airflow.version {
            Version::V1 => query.push(("only_active", args.only_active.to_string())),
            Version::V2 => query.push(("exclude_stale", args.only_active.to_string())),
        }
        if let Some(paused) = args.paused {
            query.push(("paused", paused.to_string()));
        }
        if let Some(pattern) = args.dag_id_pattern.filter(|p| !p.is_empty()) {
            query.push(("dag_id_pattern", pattern));
        }
        for tag in args.tags {
            query.push(("tags", tag));
        }
        let page = airflow.list("/dags", &query, "dags", limit, offset)?;
        let dags: Vec<Value> = page.items.iter().map(|d| shape::dag(d, airflow.version)).collect();
        let truncated = page.total_entries.is_some_and(|t| u64::from(offset) + (dags.len() as u64) < t);
        Ok(json!({
            "total_entries": page.total_entries,
            "count": dags.len(),
            "offset": offset,
            "truncated": truncated,
            "dags": dags,
        }))
    }

    /// Details of one Airflow DAG: schedule, paused state, owners, tags, file and more.
    fn airflow_get_dag(args: DagArgs) -> Result<Value, PluginError> {
        let airflow = Airflow::from_config()?;
        let dag = airflow.get(&format!("/dags/{}", segment(&args.dag_id)), &[])?;
        Ok(json!({"dag": shape::dag(&dag, airflow.version), "details": dag}))
    }

    /// The most recent runs of an Airflow DAG, newest first, with state, dates and duration.
    fn airflow_list_dag_runs(args: ListRunsArgs) -> Result<Value, PluginError> {
        let airflow = Airflow::from_config()?;
        let limit = args.limit.unwrap_or(DEFAULT_RUN_LIMIT).clamp(1, 1000);
        let order = match airflow.version {
            Version::V1 => "-execution_date",
            Version::V2 => "-logical_date",
        };
        let mut query = vec![("order_by", order.to_owned())];
        for state in args.states {
            query.push(("state", state));
        }
        let path = format!("/dags/{}/dagRuns", segment(&args.dag_id));
        let page = airflow.list(&path, &query, "dag_runs", limit, 0)?;
        let runs: Vec<Value> = page.items.iter().map(shape::dag_run).collect();
        Ok(json!({"total_entries": page.total_entries, "count": runs.len(), "dag_runs": runs}))
    }

    /// One run of an Airflow DAG: state, dates, duration, conf and note.
    fn airflow_get_dag_run(args: RunArgs) -> Result<Value, PluginError> {
        let airflow = Airflow::from_config()?;
        let run = airflow.get(&format!("/dags/{}/dagRuns/{}", segment(&args.dag_id), segment(&args.run_id)), &[])?;
        Ok(shape::dag_run(&run))
    }

    /// The task instances of one DAG run with state, try number and duration, plus a count
    /// per state.
    fn airflow_list_task_instances(args: TaskInstancesArgs) -> Result<Value, PluginError> {
        let airflow = Airflow::from_config()?;
        let limit = args.limit.unwrap_or(100).clamp(1, 1000);
        let path = format!("/dags/{}/dagRuns/{}/taskInstances", segment(&args.dag_id), segment(&args.run_id));
        let page = airflow.list(&path, &[], "task_instances", limit, 0)?;
        let tasks: Vec<Value> = page.items.iter().map(shape::task_instance).collect();
        let mut states = Map::new();
        for task in &tasks {
            let state = task["state"].as_str().unwrap_or("none").to_owned();
            let count = states.get(&state).and_then(Value::as_u64).unwrap_or(0);
            states.insert(state, json!(count + 1));
        }
        Ok(json!({
            "total_entries": page.total_entries,
            "count": tasks.len(),
            "states": states,
            "task_instances": tasks,
        }))
    }

    /// The log of one task instance try (default the latest try), cut to its last
    /// `max_bytes` bytes; `truncated` says whether the start was cut off.
    fn airflow_task_log(args: TaskLogArgs) -> Result<Value, PluginError> {
        task_log(args)
    }

    /// Trigger a new run of an Airflow DAG, with an optional conf object, logical date and
    /// run id. Returns the created run. The DAG must be unpaused for the run to start.
    fn airflow_trigger_dag(args: TriggerArgs) -> Result<Value, PluginError> {
        let airflow = Airflow::from_config()?;
        let mut body = json!({"conf": args.conf});
        match (airflow.version, args.logical_date) {
            (_, Some(date)) => body["logical_date"] = json!(date),
            // Airflow 3 requires the field; null means "no logical date".
            (Version::V2, None) => body["logical_date"] = Value::Null,
            (Version::V1, None) => {}
        }
        if let Some(run_id) = args.run_id {
            body["dag_run_id"] = json!(run_id);
        }
        if let Some(note) = args.note {
            body["note"] = json!(note);
        }
        let answer = airflow.call("POST", &format!("/dags/{}/dagRuns", segment(&args.dag_id)), &[], Some(&body))?;
        Ok(shape::dag_run(&answer.body))
    }

    /// Pause (`paused: true`) or unpause (`paused: false`) an Airflow DAG.
    fn airflow_set_dag_paused(args: PauseArgs) -> Result<Value, PluginError> {
        let airflow = Airflow::from_config()?;
        let answer = airflow.call(
            "PATCH",
            &format!("/dags/{}", segment(&args.dag_id)),
            &[("update_mask", "is_paused".to_owned())],
            Some(&json!({"is_paused": args.paused})),
        )?;
        Ok(json!({"dag_id": answer.body["dag_id"], "is_paused": answer.body["is_paused"]}))
    }
}

fn task_log(args: TaskLogArgs) -> Result<Value, PluginError> {
    let airflow = Airflow::from_config()?;
    let instance = format!(
        "/dags/{}/dagRuns/{}/taskInstances/{}",
        segment(&args.dag_id),
        segment(&args.run_id),
        segment(&args.task_id)
    );
    let (try_number, chosen) = match args.try_number {
        Some(n) => (n, false),
        None => {
            let ti_path = match args.map_index {
                Some(index) => format!("{instance}/{index}"),
                None => instance.clone(),
            };
            let ti = airflow.get(&ti_path, &[])?;
            let latest = ti["try_number"].as_u64().unwrap_or(0);
            if latest == 0 {
                return Err(PluginError::NotFound(format!(
                    "task `{}` of run `{}` has not run yet (state {}), so it has no log",
                    args.task_id,
                    args.run_id,
                    ti["state"].as_str().unwrap_or("none")
                )));
            }
            (u32::try_from(latest).unwrap_or(u32::MAX), true)
        }
    };
    let mut query = vec![("full_content", "true".to_owned())];
    if let Some(index) = args.map_index {
        query.push(("map_index", index.to_string()));
    }
    let mut used = try_number;
    let mut body = airflow.get_text(&format!("{instance}/logs/{used}"), &query)?;
    // Airflow before 2.10 reports a finished task's next try as its try_number.
    if body.is_none() && chosen && used > 1 {
        used -= 1;
        body = airflow.get_text(&format!("{instance}/logs/{used}"), &query)?;
    }
    let body = body.ok_or_else(|| {
        PluginError::NotFound(format!(
            "no log for try {try_number} of task `{}` in run `{}` of DAG `{}`",
            args.task_id, args.run_id, args.dag_id
        ))
    })?;
    let text = shape::log_text(&body);
    let max_bytes = args
        .max_bytes
        .unwrap_or(DEFAULT_LOG_BYTES)
        .clamp(1, MAX_LOG_BYTES);
    let (content, truncated) = shape::tail(&text, usize::try_from(max_bytes).unwrap_or(usize::MAX));
    Ok(json!({
        "dag_id": args.dag_id,
        "run_id": args.run_id,
        "task_id": args.task_id,
        "map_index": args.map_index,
        "try_number": used,
        "total_bytes": text.len(),
        "truncated": truncated,
        "content": content,
    }))
}
