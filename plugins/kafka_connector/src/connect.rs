//! Kafka Connect REST API (endpoint `connect`): connectors with their status, and the write
//! operations pause, resume and restart, each its own operation.

use databot_sdk::PluginError;
use databot_sdk::api::{ApiResponse, Endpoint, api_error, segment};
use databot_sdk::http::{Request, send_with_retries};
use serde_json::{Value, json};

fn connect() -> Result<Endpoint, PluginError> {
    Endpoint::from_config("connect")
}

fn summary(name: &str, status: &Value) -> Value {
    let tasks = status.get("tasks").and_then(Value::as_array);
    let failed: Vec<Value> = tasks
        .map(|tasks| {
            tasks
                .iter()
                .filter(|t| t["state"] == json!("FAILED"))
                .map(|t| t["id"].clone())
                .collect()
        })
        .unwrap_or_default();
    json!({
        "name": name,
        "type": status.get("type"),
        "state": status.pointer("/connector/state"),
        "worker_id": status.pointer("/connector/worker_id"),
        "tasks": tasks.map_or(0, Vec::len),
        "failed_tasks": failed,
    })
}

pub fn list_connectors() -> Result<Value, PluginError> {
    let answer = connect()?.get("/connectors", &[("expand", "status".to_owned())])?;
    let connectors: Vec<Value> = match &answer {
        // `?expand=status`: {"name": {"status": {...}}}.
        Value::Object(map) => map
            .iter()
            .map(|(name, info)| summary(name, info.get("status").unwrap_or(&Value::Null)))
            .collect(),
        // Workers older than 2.3 ignore `expand` and list names only.
        Value::Array(names) => names
            .iter()
            .filter_map(Value::as_str)
            .map(|n| json!({"name": n}))
            .collect(),
        _ => Vec::new(),
    };
    Ok(json!({"count": connectors.len(), "connectors": connectors}))
}

pub fn connector_status(name: &str) -> Result<Value, PluginError> {
    let status = connect()?.get(&format!("/connectors/{}/status", segment(name)), &[])?;
    let mut out = summary(name, &status);
    out["task_states"] = status.get("tasks").cloned().unwrap_or(json!([]));
    Ok(out)
}

/// A bodiless write, sent with `Content-Length: 0` (some proxies refuse a chunked empty body).
fn write(
    method: &'static str,
    name: &str,
    action: &str,
    query: &[(&str, String)],
) -> Result<Value, PluginError> {
    let endpoint = connect()?;
    let path = format!("/connectors/{}/{action}", segment(name));
    let request = Request {
        method,
        url: endpoint.url(&path, query),
        headers: vec![("accept".into(), "application/json".into())],
        body: Some(Vec::new()),
        timeout: endpoint.timeout,
    };
    let response = send_with_retries(&request, endpoint.retry)?;
    let status = response.status;
    let text = response.text(endpoint.max_response_bytes)?;
    let body = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if !(200..300).contains(&status) {
        return Err(api_error(
            &endpoint.name,
            method,
            &path,
            &ApiResponse {
                status,
                body,
                link: None,
            },
        ));
    }
    Ok(json!({
        "connector": name,
        "action": action,
        "status": status,
        "accepted": true,
        "answer": body,
    }))
}

pub fn pause(name: &str) -> Result<Value, PluginError> {
    write("PUT", name, "pause", &[])
}

pub fn resume(name: &str) -> Result<Value, PluginError> {
    write("PUT", name, "resume", &[])
}

pub fn restart(name: &str, include_tasks: bool, only_failed: bool) -> Result<Value, PluginError> {
    write(
        "POST",
        name,
        "restart",
        &[
            ("includeTasks", include_tasks.to_string()),
            ("onlyFailed", only_failed.to_string()),
        ],
    )
}
