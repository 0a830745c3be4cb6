//! Apache Livy REST: batches (`/batches`) and interactive sessions (`/sessions`) with their
//! statements, polled with backoff within the call's time.

use std::time::{Duration, Instant};

use databot_sdk::PluginError;
use databot_sdk::api::Endpoint;
use serde_json::{Map, Value, json};

use crate::args::{
    BatchLogsArgs, CancelStatementArgs, CreateSessionArgs, Id, Kind, ListArgs, RunStatementArgs,
    SessionArgs, StatementArgs, SubmitBatchArgs,
};
use crate::settings::{Settings, merged_conf};

const DEFAULT_LOG_LINES: u32 = 200;
const DEFAULT_LIST: u32 = 20;

pub fn submit_batch(
    api: &Endpoint,
    settings: &Settings,
    args: SubmitBatchArgs,
) -> Result<Value, PluginError> {
    let mut body = Map::new();
    body.insert("file".into(), json!(args.file));
    if let Some(class_name) = args.class_name {
        body.insert("className".into(), json!(class_name));
    }
    if !args.args.is_empty() {
        body.insert("args".into(), json!(args.args));
    }
    if let Some(name) = args.name {
        body.insert("name".into(), json!(name));
    }
    for (key, list) in [
        ("pyFiles", args.py_files),
        ("jars", args.jars),
        ("files", args.files),
    ] {
        if !list.is_empty() {
            body.insert(key.into(), json!(list));
        }
    }
    let conf = merged_conf(&settings.default_conf, &args.conf)?;
    if !conf.is_empty() {
        body.insert("conf".into(), Value::Object(conf));
    }
    let batch = api.post("/batches", &Value::Object(body))?;
    Ok(batch_summary(&batch))
}

pub fn batch_status(api: &Endpoint, id: &Id) -> Result<Value, PluginError> {
    let id = id.livy("batch_id")?;
    let batch = api.get(&format!("/batches/{id}"), &[])?;
    let mut summary = batch_summary(&batch);
    summary["details"] = batch;
    Ok(summary)
}

pub fn batch_logs(api: &Endpoint, id: &Id, args: &BatchLogsArgs) -> Result<Value, PluginError> {
    let id = id.livy("batch_id")?;
    let path = format!("/batches/{id}/log");
    let size = args.lines.unwrap_or(DEFAULT_LOG_LINES);
    let page = |from: u64| {
        api.get(
            &path,
            &[("from", from.to_string()), ("size", size.to_string())],
        )
    };
    let mut log = page(args.from.unwrap_or(0))?;
    let total = log["total"].as_u64().unwrap_or(0);
    // Without `from`, the last `lines` lines: the end of a log is where failures are.
    if args.from.is_none() && total > u64::from(size) {
        log = page(total - u64::from(size))?;
    }
    let lines: Vec<Value> = log["log"].as_array().cloned().unwrap_or_default();
    Ok(json!({
        "batch_id": log.get("id").cloned().unwrap_or_else(|| json!(id)),
        "from": log["from"],
        "total": total,
        "line_count": lines.len(),
        "lines": lines,
    }))
}

pub fn kill_batch(api: &Endpoint, id: &Id) -> Result<Value, PluginError> {
    let id = id.livy("batch_id")?;
    let answer = api.call("DELETE", &format!("/batches/{id}"), &[], None)?;
    Ok(json!({"batch_id": id, "killed": true, "response": answer.body}))
}

pub fn list_batches(api: &Endpoint, args: &ListArgs) -> Result<Value, PluginError> {
    let (total, batches) = newest(api, "/batches", args)?;
    let batches: Vec<Value> = batches.iter().map(batch_summary).collect();
    Ok(json!({"total": total, "count": batches.len(), "batches": batches}))
}

pub fn create_session(
    api: &Endpoint,
    settings: &Settings,
    args: CreateSessionArgs,
) -> Result<Value, PluginError> {
    let mut body = Map::new();
    body.insert("kind".into(), json!(args.kind.unwrap_or(Kind::Pyspark)));
    if let Some(name) = args.name {
        body.insert("name".into(), json!(name));
    }
    let conf = merged_conf(&settings.default_conf, &args.conf)?;
    if !conf.is_empty() {
        body.insert("conf".into(), Value::Object(conf));
    }
    let session = api.post("/sessions", &Value::Object(body))?;
    Ok(session_summary(&session))
}

pub fn session_status(api: &Endpoint, args: &SessionArgs) -> Result<Value, PluginError> {
    let id = args.session_id.livy("session_id")?;
    let session = api.get(&format!("/sessions/{id}"), &[])?;
    let mut summary = session_summary(&session);
    summary["details"] = session;
    Ok(summary)
}

pub fn list_sessions(api: &Endpoint, args: &ListArgs) -> Result<Value, PluginError> {
    let (total, sessions) = newest(api, "/sessions", args)?;
    let sessions: Vec<Value> = sessions.iter().map(session_summary).collect();
    Ok(json!({"total": total, "count": sessions.len(), "sessions": sessions}))
}

pub fn delete_session(api: &Endpoint, args: &SessionArgs) -> Result<Value, PluginError> {
    let id = args.session_id.livy("session_id")?;
    let answer = api.call("DELETE", &format!("/sessions/{id}"), &[], None)?;
    Ok(json!({"session_id": id, "deleted": true, "response": answer.body}))
}

pub fn run_statement(
    api: &Endpoint,
    settings: &Settings,
    args: RunStatementArgs,
) -> Result<Value, PluginError> {
    let session = args.session_id.livy("session_id")?;
    let mut body = json!({"code": args.code});
    if let Some(kind) = args.kind {
        body["kind"] = json!(kind);
    }
    let started = Instant::now();
    let statement = api.post(&format!("/sessions/{session}/statements"), &body)?;
    let statement_id = statement["id"].as_u64().ok_or_else(|| {
        PluginError::Failed(format!("Livy did not return a statement id: {statement}"))
    })?;
    let wait = Duration::from_millis(
        args.wait_ms
            .unwrap_or(settings.statement_wait_ms)
            .min(settings.statement_wait_ms),
    );
    let statement = poll(
        api,
        &session,
        &statement_id.to_string(),
        statement,
        started,
        wait,
    )?;
    Ok(statement_result(&session, &statement, started.elapsed()))
}

pub fn statement_status(
    api: &Endpoint,
    settings: &Settings,
    args: &StatementArgs,
) -> Result<Value, PluginError> {
    let session = args.session_id.livy("session_id")?;
    let statement_id = args.statement_id.livy("statement_id")?;
    let started = Instant::now();
    let statement = api.get(
        &format!("/sessions/{session}/statements/{statement_id}"),
        &[],
    )?;
    let wait = Duration::from_millis(args.wait_ms.unwrap_or(0).min(settings.statement_wait_ms));
    let statement = poll(api, &session, &statement_id, statement, started, wait)?;
    Ok(statement_result(&session, &statement, started.elapsed()))
}

pub fn cancel_statement(api: &Endpoint, args: &CancelStatementArgs) -> Result<Value, PluginError> {
    let session = args.session_id.livy("session_id")?;
    let statement_id = args.statement_id.livy("statement_id")?;
    let answer = api.post(
        &format!("/sessions/{session}/statements/{statement_id}/cancel"),
        &json!({}),
    )?;
    Ok(json!({"session_id": session, "statement_id": statement_id, "response": answer}))
}

/// Poll a statement with backoff (250 ms doubling to 2 s) until it is done or `wait` is spent.
fn poll(
    api: &Endpoint,
    session: &str,
    statement_id: &str,
    mut statement: Value,
    started: Instant,
    wait: Duration,
) -> Result<Value, PluginError> {
    let mut backoff = Duration::from_millis(250);
    while !is_done(&statement) {
        let elapsed = started.elapsed();
        if elapsed >= wait {
            break;
        }
        databot_sdk::http::sleep(backoff.min(wait - elapsed));
        backoff = (backoff * 2).min(Duration::from_secs(2));
        statement = api.get(
            &format!("/sessions/{session}/statements/{statement_id}"),
            &[],
        )?;
    }
    Ok(statement)
}

fn is_done(statement: &Value) -> bool {
    matches!(
        statement["state"].as_str(),
        Some("available" | "error" | "cancelled")
    )
}

/// A statement as the caller sees it: state, whether it finished, its output or error, and
/// what to do when it is still running.
pub fn statement_result(session: &str, statement: &Value, waited: Duration) -> Value {
    let state = statement["state"].as_str().unwrap_or("unknown");
    let done = is_done(statement);
    let output = &statement["output"];
    let mut result = json!({
        "session_id": session,
        "statement_id": statement["id"],
        "state": state,
        "done": done,
        "progress": statement["progress"],
    });
    if output.is_object() {
        let succeeded = output["status"].as_str() == Some("ok");
        result["succeeded"] = json!(succeeded);
        result["execution_count"] = output["execution_count"].clone();
        if let Some(text) = output.pointer("/data/text~1plain") {
            result["text"] = text.clone();
        }
        if output["data"].is_object() {
            result["data"] = output["data"].clone();
        }
        if !succeeded {
            result["error"] = json!(format!(
                "{}: {}",
                output["ename"].as_str().unwrap_or("Error"),
                output["evalue"].as_str().unwrap_or("")
            ));
            result["traceback"] = output["traceback"].clone();
        }
    } else if state == "cancelled" {
        result["succeeded"] = json!(false);
    }
    if !done {
        result["message"] = json!(format!(
            "statement {} of session {session} is still {state} after {} ms; call `statement_status` with session_id {session} and statement_id {} to get its result later (with `wait_ms` to wait for it)",
            statement["id"],
            waited.as_millis(),
            statement["id"],
        ));
    }
    result
}

/// The newest `limit` entries of a Livy list (`from`/`size` paging counts from the oldest).
fn newest(api: &Endpoint, path: &str, args: &ListArgs) -> Result<(u64, Vec<Value>), PluginError> {
    let limit = u64::from(args.limit.unwrap_or(DEFAULT_LIST).clamp(1, 500));
    let page = |from: u64| {
        api.get(
            path,
            &[("from", from.to_string()), ("size", limit.to_string())],
        )
    };
    let mut list = page(0)?;
    let total = list["total"].as_u64().unwrap_or(0);
    if total > limit {
        list = page(total - limit)?;
    }
    let mut entries: Vec<Value> = list["sessions"].as_array().cloned().unwrap_or_default();
    entries.reverse();
    if let Some(state) = &args.state {
        entries.retain(|e| {
            e["state"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(state))
        });
    }
    Ok((total, entries))
}

fn batch_summary(batch: &Value) -> Value {
    json!({
        "batch_id": batch["id"],
        "name": batch["name"],
        "state": batch["state"],
        "app_id": batch["appId"],
        "app_info": batch["appInfo"],
    })
}

fn session_summary(session: &Value) -> Value {
    json!({
        "session_id": session["id"],
        "name": session["name"],
        "kind": session["kind"],
        "state": session["state"],
        "app_id": session["appId"],
        "app_info": session["appInfo"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_statements_carry_output_or_error() {
        let ok = json!({"id": 3, "state": "available", "progress": 1.0,
            "output": {"status": "ok", "execution_count": 3, "data": {"text/plain": "2"}}});
        let result = statement_result("0", &ok, Duration::from_millis(10));
        assert_eq!(result["done"], true);
        assert_eq!(result["succeeded"], true);
        assert_eq!(result["text"], "2");
        assert!(result.get("message").is_none());

        let failed = json!({"id": 4, "state": "available",
            "output": {"status": "error", "ename": "NameError", "evalue": "name 'x' is not defined", "traceback": []}});
        let result = statement_result("0", &failed, Duration::ZERO);
        assert_eq!(result["succeeded"], false);
        assert_eq!(result["error"], "NameError: name 'x' is not defined");

        let running = json!({"id": 5, "state": "running", "output": null, "progress": 0.5});
        let result = statement_result("7", &running, Duration::from_millis(5000));
        assert_eq!(result["done"], false);
        let message = result["message"].as_str().unwrap_or_default();
        assert!(message.contains("statement_status"), "{message}");
        assert!(message.contains("statement_id 5"), "{message}");
    }
}
