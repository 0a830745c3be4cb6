//! The built-in `airflow` tool through the real sandbox against servers speaking the Airflow 2
//! stable REST API (`/api/v1`) and the Airflow 3 REST API (`/api/v2`): requests as sent,
//! pagination, encoded path parameters, logs, errors and retries.

use std::time::{Duration, Instant};

use databot::runtime::ErrorKind;
use databot_e2e::{ScriptedResponse, SeenRequest, TestHost, serve_scripted};
use serde_json::{Value, json};

const RUN: &str = "scheduled__2024-05-01T00:00:00+00:00";
/// `RUN` as one encoded path segment.
const RUN_SEGMENT: &str = "scheduled__2024-05-01T00%3A00%3A00%2B00%3A00";

/// A DAG as Airflow 2.9's `GET /api/v1/dags` returns it.
fn v1_dag(dag_id: &str) -> Value {
    json!({
        "dag_id": dag_id, "dag_display_name": dag_id, "root_dag_id": null,
        "is_paused": false, "is_active": true, "is_subdag": false,
        "last_parsed_time": "2024-05-01T09:58:12.345678+00:00", "last_pickled": null,
        "last_expired": null, "scheduler_lock": null, "pickle_id": null, "default_view": "grid",
        "fileloc": format!("/opt/airflow/dags/{dag_id}.py"),
        "file_token": "Ii9vcHQvYWlyZmxvdy9kYWdzL2V4YW1wbGUucHki.dz9ZbNrWQkVvUfrWDcCfQwHfIlg",
        "owners": ["airflow"], "description": null,
        "schedule_interval": {"__type": "CronExpression", "value": "0 0 * * *"},
        "timetable_description": "At 00:00", "tags": [{"name": "example"}],
        "max_active_tasks": 16, "max_active_runs": 16,
        "has_task_concurrency_limits": false, "has_import_errors": false,
        "next_dagrun": "2024-05-02T00:00:00+00:00",
        "next_dagrun_data_interval_start": "2024-05-02T00:00:00+00:00",
        "next_dagrun_data_interval_end": "2024-05-03T00:00:00+00:00",
        "next_dagrun_create_after": "2024-05-03T00:00:00+00:00"
    })
}

fn v1_run(run_id: &str, state: &str) -> Value {
    json!({
        "conf": {}, "dag_id": "example_bash_operator", "dag_run_id": run_id,
        "data_interval_start": "2024-04-30T00:00:00+00:00",
        "data_interval_end": "2024-05-01T00:00:00+00:00",
        "execution_date": "2024-05-01T00:00:00+00:00",
        "logical_date": "2024-05-01T00:00:00+00:00",
        "start_date": "2024-05-01T00:00:01.500000+00:00",
        "end_date": "2024-05-01T00:05:12.000000+00:00",
        "external_trigger": false, "last_scheduling_decision": "2024-05-01T00:05:11.900000+00:00",
        "note": null, "run_type": "scheduled", "state": state
    })
}

fn v1_task(task_id: &str, state: &str, try_number: u32) -> Value {
    json!({
        "task_id": task_id, "task_display_name": task_id, "dag_id": "example_bash_operator",
        "dag_run_id": RUN, "execution_date": "2024-05-01T00:00:00+00:00",
        "start_date": "2024-05-01T00:00:02+00:00", "end_date": "2024-05-01T00:00:05.2+00:00",
        "duration": 3.2, "state": state, "try_number": try_number, "map_index": -1,
        "max_tries": 1, "hostname": "worker-1", "unixname": "airflow", "pool": "default_pool",
        "pool_slots": 1, "queue": "default", "priority_weight": 3, "operator": "BashOperator",
        "queued_when": "2024-05-01T00:00:01.9+00:00", "pid": 4242, "executor_config": "{}",
        "sla_miss": null, "rendered_fields": {}, "trigger": null, "triggerer_job": null, "note": null
    })
}

const LOG: &str = "[2024-05-01, 00:00:02 UTC] {taskinstance.py:1979} INFO - Dependencies all met\n[2024-05-01, 00:00:03 UTC] {subprocess.py:93} INFO - Running command: ['bash', '-c', 'exit 1']\n[2024-05-01, 00:00:05 UTC] {taskinstance.py:2731} ERROR - Task failed with exception\n";

fn text(body: &str) -> ScriptedResponse {
    ScriptedResponse {
        status: 200,
        headers: vec![("content-type".into(), "text/plain".into())],
        chunks: vec![body.to_owned()],
        pause: Duration::ZERO,
    }
}

fn not_found(detail: &str) -> ScriptedResponse {
    ScriptedResponse::json(
        404,
        json!({"detail": detail, "status": 404, "title": "DAG not found",
               "type": "https://airflow.apache.org/docs/apache-airflow/2.9.0/stable-rest-api-ref.html#section/Errors/NotFound"}),
    )
}

/// Airflow 2.9 stable REST API.
fn airflow_v1(request: &SeenRequest, _: usize) -> ScriptedResponse {
    let path = request.path.as_str();
    let dag = "/api/v1/dags/example_bash_operator";
    let tis = format!("{dag}/dagRuns/{RUN_SEGMENT}/taskInstances");
    match (request.method.as_str(), path) {
        ("GET", "/api/v1/dags?only_active=true&limit=100&offset=0") => ScriptedResponse::json(
            200,
            json!({"dags": (0..100).map(|i| v1_dag(&format!("dag_{i:03}"))).collect::<Vec<_>>(),
                   "total_entries": 120}),
        ),
        ("GET", "/api/v1/dags?only_active=true&limit=50&offset=100") => ScriptedResponse::json(
            200,
            json!({"dags": (100..120).map(|i| v1_dag(&format!("dag_{i:03}"))).collect::<Vec<_>>(),
                   "total_entries": 120}),
        ),
        ("GET", p) if p == dag => ScriptedResponse::json(200, v1_dag("example_bash_operator")),
        ("GET", p) if p == format!("{dag}/dagRuns?order_by=-execution_date&limit=10&offset=0") => {
            ScriptedResponse::json(
                200,
                json!({"dag_runs": [v1_run(RUN, "failed"), v1_run("scheduled__2024-04-30T00:00:00+00:00", "success")],
                       "total_entries": 2}),
            )
        }
        ("GET", p) if p == format!("{dag}/dagRuns/{RUN_SEGMENT}") => {
            ScriptedResponse::json(200, v1_run(RUN, "failed"))
        }
        ("GET", p) if p == format!("{tis}?limit=100&offset=0") => ScriptedResponse::json(
            200,
            json!({"task_instances": [v1_task("runme_0", "success", 1), v1_task("also_run_this", "failed", 2)],
                   "total_entries": 2}),
        ),
        ("GET", p) if p == format!("{tis}/also_run_this") => {
            ScriptedResponse::json(200, v1_task("also_run_this", "failed", 2))
        }
        ("GET", p) if p == format!("{tis}/also_run_this/logs/2?full_content=true") => text(LOG),
        // Airflow before 2.10 reports a finished task's *next* try; that log does not exist.
        ("GET", p) if p == format!("{tis}/runme_0") => {
            ScriptedResponse::json(200, v1_task("runme_0", "success", 2))
        }
        ("GET", p) if p == format!("{tis}/runme_0/logs/2?full_content=true") => {
            ScriptedResponse::json(
                404,
                json!({"detail": "TaskInstance not found", "status": 404, "title": "TaskInstance not found", "type": "about:blank"}),
            )
        }
        ("GET", p) if p == format!("{tis}/runme_0/logs/1?full_content=true") => {
            text("[2024-05-01, 00:00:04 UTC] {subprocess.py:93} INFO - hello\n")
        }
        ("POST", p) if p == format!("{dag}/dagRuns") => {
            let mut run = v1_run("manual_backfill_1", "queued");
            run["conf"] = request.json()["conf"].clone();
            run["external_trigger"] = json!(true);
            run["run_type"] = json!("manual");
            run["start_date"] = Value::Null;
            run["end_date"] = Value::Null;
            ScriptedResponse::json(200, run)
        }
        ("PATCH", p) if p == format!("{dag}?update_mask=is_paused") => {
            let mut dag = v1_dag("example_bash_operator");
            dag["is_paused"] = request.json()["is_paused"].clone();
            ScriptedResponse::json(200, dag)
        }
        ("GET", p) if p.starts_with("/api/v1/dags/") => {
            not_found("The DAG with dag_id: `team/etl daily` was not found")
        }
        (method, p) => {
            ScriptedResponse::json(500, json!({"detail": format!("unscripted {method} {p}")}))
        }
    }
}

fn v1_config(port: u16, suffix: &str) -> String {
    format!(
        "plugins:\n  airflow:\n    endpoints:\n      api:\n        url: http://127.0.0.1:{port}{suffix}\n        auth: {{type: basic, username: admin, password: admin}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn airflow_2_dags_runs_tasks_logs_trigger_and_pause() {
    let (port, seen) = serve_scripted(airflow_v1).await;
    // The base URL already ends in /api/v1: it must not be doubled.
    let host = TestHost::start(&v1_config(port, "/api/v1"), &[])
        .await
        .unwrap();
    host.load_builtin("airflow").await;

    let dags = host
        .tool_ok("airflow_list_dags", json!({"limit": 150}))
        .await;
    assert_eq!(dags["count"], 120);
    assert_eq!(dags["total_entries"], 120);
    assert_eq!(dags["truncated"], false);
    assert_eq!(dags["dags"][0]["dag_id"], "dag_000");
    assert_eq!(dags["dags"][0]["schedule"], "0 0 * * *");
    assert_eq!(dags["dags"][0]["tags"], json!(["example"]));
    let first = &seen.all()[0];
    assert_eq!(
        first.path,
        "/api/v1/dags?only_active=true&limit=100&offset=0"
    );
    // base64("admin:admin"), added by the host.
    assert_eq!(
        first.header("authorization"),
        Some("Basic YWRtaW46YWRtaW4=")
    );

    let dag = host
        .tool_ok(
            "airflow_get_dag",
            json!({"dag_id": "example_bash_operator"}),
        )
        .await;
    assert_eq!(dag["dag"]["is_paused"], false);
    assert_eq!(
        dag["details"]["fileloc"],
        "/opt/airflow/dags/example_bash_operator.py"
    );

    let runs = host
        .tool_ok(
            "airflow_list_dag_runs",
            json!({"dag_id": "example_bash_operator"}),
        )
        .await;
    assert_eq!(runs["count"], 2);
    assert_eq!(runs["dag_runs"][0]["run_id"], RUN);
    assert_eq!(runs["dag_runs"][0]["state"], "failed");
    assert_eq!(
        runs["dag_runs"][0]["logical_date"],
        "2024-05-01T00:00:00+00:00"
    );
    assert_eq!(runs["dag_runs"][0]["duration_seconds"], 310.5);

    let run = host
        .tool_ok(
            "airflow_get_dag_run",
            json!({"dag_id": "example_bash_operator", "run_id": RUN}),
        )
        .await;
    assert_eq!(run["state"], "failed");
    assert_eq!(
        seen.all().last().unwrap().path,
        format!("/api/v1/dags/example_bash_operator/dagRuns/{RUN_SEGMENT}")
    );

    let tasks = host
        .tool_ok(
            "airflow_list_task_instances",
            json!({"dag_id": "example_bash_operator", "run_id": RUN}),
        )
        .await;
    assert_eq!(tasks["count"], 2);
    assert_eq!(tasks["states"], json!({"success": 1, "failed": 1}));
    assert_eq!(tasks["task_instances"][1]["try_number"], 2);

    // The latest try by default, tailed to max_bytes with the flag set.
    let log = host.tool_ok("airflow_task_log",
        json!({"dag_id": "example_bash_operator", "run_id": RUN, "task_id": "also_run_this", "max_bytes": 100}),
    )
    .await;
    assert_eq!(log["try_number"], 2);
    assert_eq!(log["truncated"], true);
    assert_eq!(log["total_bytes"], LOG.len());
    let content = log["content"].as_str().unwrap();
    assert!(content.len() <= 100, "{content}");
    assert!(
        content.ends_with("ERROR - Task failed with exception\n"),
        "{content}"
    );
    let log_request = seen.all().last().cloned().unwrap();
    assert_eq!(log_request.header("accept"), Some("text/plain"));

    let log = host.tool_ok("airflow_task_log",
        json!({"dag_id": "example_bash_operator", "run_id": RUN, "task_id": "also_run_this", "try_number": 2}),
    )
    .await;
    assert_eq!(log["truncated"], false);
    assert_eq!(log["content"], LOG);

    // A server that reports the next try: the last existing try's log is returned.
    let log = host
        .tool_ok(
            "airflow_task_log",
            json!({"dag_id": "example_bash_operator", "run_id": RUN, "task_id": "runme_0"}),
        )
        .await;
    assert_eq!(log["try_number"], 1);
    assert!(log["content"].as_str().unwrap().contains("hello"));

    let triggered = host
        .tool_ok(
            "airflow_trigger_dag",
            json!({"dag_id": "example_bash_operator", "conf": {"date": "2024-05-01"},
               "run_id": "manual_backfill_1", "note": "from databot"}),
        )
        .await;
    assert_eq!(triggered["run_id"], "manual_backfill_1");
    assert_eq!(triggered["state"], "queued");
    let posted = seen.all().last().cloned().unwrap();
    assert_eq!(posted.method, "POST");
    assert_eq!(
        posted.json(),
        json!({"conf": {"date": "2024-05-01"}, "dag_run_id": "manual_backfill_1", "note": "from databot"})
    );

    let paused = host
        .tool_ok(
            "airflow_set_dag_paused",
            json!({"dag_id": "example_bash_operator", "paused": true}),
        )
        .await;
    assert_eq!(
        paused,
        json!({"dag_id": "example_bash_operator", "is_paused": true})
    );
    let patch = seen.all().last().cloned().unwrap();
    assert_eq!(patch.method, "PATCH");
    assert_eq!(patch.json(), json!({"is_paused": true}));

    // Path parameters are encoded: a slash or space cannot change the path.
    let error = host
        .tool_err("airflow_get_dag", json!({"dag_id": "team/etl daily"}))
        .await;
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert!(error.message.contains("was not found"), "{error}");
    assert_eq!(
        seen.all().last().unwrap().path,
        "/api/v1/dags/team%2Fetl%20daily"
    );

    // Arguments are checked before anything is sent.
    let count = seen.all().len();
    for (tool, args) in [
        (
            "airflow_task_log",
            json!({"dag_id": "d", "run_id": "r", "task_id": "t", "try_number": 0}),
        ),
        (
            "airflow_trigger_dag",
            json!({"dag_id": "d", "conf": "not an object"}),
        ),
        ("airflow_get_dag", json!({"dag_id": "d", "extra": 1})),
        ("airflow_set_dag_paused", json!({"dag_id": "d"})),
    ] {
        let error = host.tool_err(tool, args.clone()).await;
        assert_eq!(
            error.kind,
            ErrorKind::InvalidInput,
            "{tool} {args}: {error}"
        );
    }
    assert_eq!(seen.all().len(), count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_retries() {
    let (port, seen) = serve_scripted(|request, index| match index {
        0 => {
            let mut busy = ScriptedResponse::json(
                503,
                json!({"detail": "The scheduler is restarting", "status": 503, "title": "Service Unavailable", "type": "about:blank"}),
            );
            busy.headers.push(("retry-after".into(), "1".into()));
            busy
        }
        _ if request.path.contains("secret_dag") => ScriptedResponse::json(
            403,
            json!({"detail": null, "status": 403, "title": "Forbidden", "type": "https://airflow.apache.org/docs/apache-airflow/2.9.0/stable-rest-api-ref.html#section/Errors/PermissionDenied"}),
        ),
        _ => airflow_v1(request, index),
    })
    .await;
    let host = TestHost::start(&v1_config(port, ""), &[]).await.unwrap();
    host.load_builtin("airflow").await;

    let started = Instant::now();
    let dag = host
        .tool_ok(
            "airflow_get_dag",
            json!({"dag_id": "example_bash_operator"}),
        )
        .await;
    assert_eq!(dag["dag"]["dag_id"], "example_bash_operator");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(seen.all().len(), 2);
    assert_eq!(seen.all()[1].path, "/api/v1/dags/example_bash_operator");

    let error = host
        .tool_err("airflow_get_dag", json!({"dag_id": "secret_dag"}))
        .await;
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    assert!(error.message.contains("endpoints.api.auth"), "{error}");

    // No endpoint configured: say which config line to add.
    let host = TestHost::start("plugins:\n  airflow:\n    config: {}\n", &[])
        .await
        .unwrap();
    host.load_builtin("airflow").await;
    let error = host.tool_err("airflow_list_dags", json!({})).await;
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert!(error.message.contains("endpoints.api.url"), "{error}");

    // A version setting that contradicts the URL is a configuration error.
    let host = TestHost::start(
        &format!(
            "plugins:\n  airflow:\n    config: {{api_version: v2}}\n    endpoints:\n      api: {{url: \"http://127.0.0.1:{port}/api/v1\"}}\n"
        ),
        &[],
    )
    .await
    .unwrap();
    host.load_builtin("airflow").await;
    let count = seen.all().len();
    let error = host.tool_err("airflow_list_dags", json!({})).await;
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("api_version"), "{error}");
    assert_eq!(seen.all().len(), count);
}

/// A DAG as Airflow 3's `GET /api/v2/dags` returns it.
fn v2_dag(dag_id: &str) -> Value {
    json!({
        "dag_id": dag_id, "dag_display_name": dag_id, "is_paused": false, "is_stale": false,
        "last_parsed_time": "2025-05-01T09:58:12.345678Z", "last_expired": null,
        "bundle_name": "dags-folder", "bundle_version": null,
        "relative_fileloc": format!("{dag_id}.py"), "fileloc": format!("/opt/airflow/dags/{dag_id}.py"),
        "description": "Daily sales rollup", "timetable_summary": "0 2 * * *",
        "timetable_description": "At 02:00", "tags": [{"name": "sales", "dag_id": dag_id}],
        "max_active_tasks": 16, "max_active_runs": 16, "max_consecutive_failed_dag_runs": 0,
        "has_task_concurrency_limits": false, "has_import_errors": false,
        "next_dagrun_logical_date": "2025-05-02T02:00:00Z",
        "next_dagrun_data_interval_start": "2025-05-02T02:00:00Z",
        "next_dagrun_data_interval_end": "2025-05-03T02:00:00Z",
        "next_dagrun_run_after": "2025-05-03T02:00:00Z",
        "owners": ["data-eng"], "file_token": "eyJidW5kbGVfbmFtZSI6ImRhZ3MtZm9sZGVyIn0"
    })
}

fn v2_run(run_id: &str, state: &str, logical_date: Value) -> Value {
    json!({
        "dag_run_id": run_id, "dag_id": "sales_rollup", "logical_date": logical_date,
        "queued_at": "2025-05-01T02:00:00.100000Z", "start_date": "2025-05-01T02:00:01Z",
        "end_date": "2025-05-01T02:10:01Z", "data_interval_start": "2025-04-30T02:00:00Z",
        "data_interval_end": "2025-05-01T02:00:00Z", "run_after": "2025-05-01T02:00:00Z",
        "last_scheduling_decision": "2025-05-01T02:10:00Z", "run_type": "scheduled",
        "state": state, "triggered_by": "timetable", "conf": {}, "note": null,
        "dag_versions": [], "bundle_version": null
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn airflow_3_speaks_api_v2() {
    let (port, seen) = serve_scripted(|request, _| {
        let path = request.path.as_str();
        match (request.method.as_str(), path) {
            ("GET", "/api/v2/dags?exclude_stale=true&paused=false&tags=sales&limit=25&offset=0") => {
                ScriptedResponse::json(200, json!({"dags": [v2_dag("sales_rollup")], "total_entries": 1}))
            }
            ("GET", "/api/v2/dags/sales_rollup/dagRuns?order_by=-logical_date&state=failed&limit=10&offset=0") => {
                ScriptedResponse::json(
                    200,
                    json!({"dag_runs": [v2_run("scheduled__2025-05-01T02:00:00+00:00", "failed", json!("2025-05-01T02:00:00Z"))],
                           "total_entries": 1}),
                )
            }
            ("POST", "/api/v2/dags/sales_rollup/dagRuns") => {
                let mut run = v2_run("manual__2025-05-01T10:00:00+00:00", "queued", Value::Null);
                run["run_type"] = json!("manual");
                run["triggered_by"] = json!("rest_api");
                run["conf"] = request.json()["conf"].clone();
                ScriptedResponse::json(200, run)
            }
            ("GET", "/api/v2/dags/sales_rollup/dagRuns/manual__1/taskInstances/load/logs/1?full_content=true") => {
                // Airflow 3 answers structured log lines as JSON.
                ScriptedResponse::json(
                    200,
                    json!({"content": [
                        {"timestamp": "2025-05-01T10:00:02.123Z", "event": "Task instance is in running state", "level": "info", "logger": "task.stdout"},
                        {"timestamp": "2025-05-01T10:00:04.500Z", "event": "Loaded 1204 rows", "level": "info", "logger": "task.stdout"}
                    ], "continuation_token": null}),
                )
            }
            (method, p) => ScriptedResponse::json(404, json!({"detail": format!("Not Found: {method} {p}")})),
        }
    })
    .await;
    let config = format!(
        "plugins:\n  airflow:\n    config: {{api_version: v2}}\n    endpoints:\n      api:\n        url: http://127.0.0.1:{port}\n        auth: {{type: bearer, token: jwt-abc}}\n"
    );
    let host = TestHost::start(&config, &[]).await.unwrap();
    host.load_builtin("airflow").await;

    let dags = host
        .tool_ok(
            "airflow_list_dags",
            json!({"paused": false, "tags": ["sales"]}),
        )
        .await;
    assert_eq!(dags["count"], 1);
    let dag = &dags["dags"][0];
    assert_eq!(dag["schedule"], "0 2 * * *");
    assert_eq!(dag["is_active"], true);
    assert_eq!(dag["next_run"], "2025-05-02T02:00:00Z");
    assert_eq!(
        seen.all()[0].header("authorization"),
        Some("Bearer jwt-abc")
    );

    let runs = host
        .tool_ok(
            "airflow_list_dag_runs",
            json!({"dag_id": "sales_rollup", "states": ["failed"]}),
        )
        .await;
    assert_eq!(runs["dag_runs"][0]["logical_date"], "2025-05-01T02:00:00Z");
    assert_eq!(runs["dag_runs"][0]["duration_seconds"], 600.0);

    let triggered = host
        .tool_ok(
            "airflow_trigger_dag",
            json!({"dag_id": "sales_rollup", "conf": {"region": "emea"}}),
        )
        .await;
    assert_eq!(triggered["state"], "queued");
    assert_eq!(triggered["conf"], json!({"region": "emea"}));
    let posted = seen.all().last().cloned().unwrap();
    // Airflow 3 requires `logical_date`; null asks for a run without one.
    assert_eq!(
        posted.json(),
        json!({"conf": {"region": "emea"}, "logical_date": null})
    );

    let log = host.tool_ok("airflow_task_log",
        json!({"dag_id": "sales_rollup", "run_id": "manual__1", "task_id": "load", "try_number": 1}),
    )
    .await;
    assert_eq!(
        log["content"],
        "[2025-05-01T10:00:02.123Z] [info] Task instance is in running state\n[2025-05-01T10:00:04.500Z] [info] Loaded 1204 rows"
    );
    assert_eq!(log["truncated"], false);

    let error = host
        .tool_err(
            "airflow_get_dag_run",
            json!({"dag_id": "sales_rollup", "run_id": "nope"}),
        )
        .await;
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert_eq!(
        seen.all().last().unwrap().path,
        "/api/v2/dags/sales_rollup/dagRuns/nope"
    );
}
