//! YARN ResourceManager REST (`/ws/v1/cluster`): applications, their attempts, kill.

use databot_sdk::PluginError;
use databot_sdk::api::{Endpoint, segment};
use serde_json::{Value, json};

use crate::args::ListArgs;

const DEFAULT_LIST: u32 = 20;

pub fn batch_status(api: &Endpoint, app_id: &str) -> Result<Value, PluginError> {
    let answer = api.get(&format!("/ws/v1/cluster/apps/{}", segment(app_id)), &[])?;
    let app = answer.get("app").cloned().unwrap_or(answer);
    let mut summary = app_summary(&app);
    summary["details"] = app;
    Ok(summary)
}

/// The ResourceManager keeps no log text; its attempts name the container log pages.
pub fn batch_logs(api: &Endpoint, app_id: &str) -> Result<Value, PluginError> {
    let answer = api.get(
        &format!("/ws/v1/cluster/apps/{}/appattempts", segment(app_id)),
        &[],
    )?;
    let attempts: Vec<Value> = answer
        .pointer("/appAttempts/appAttempt")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            json!({
                "attempt_id": a["appAttemptId"].as_str().map_or_else(|| a["id"].clone(), |s| json!(s)),
                "container_id": a["containerId"],
                "node_http_address": a["nodeHttpAddress"],
                "logs_link": a["logsLink"],
                "start_time": a["startTime"],
                "finished_time": a["finishedTime"],
                "diagnostics": a["diagnosticsInfo"],
            })
        })
        .collect();
    Ok(json!({
        "app_id": app_id,
        "logs_available": false,
        "attempts": attempts,
        "note": "The YARN ResourceManager REST API serves no log text. Each attempt's `logs_link` is the NodeManager page of its driver/AM container logs; `yarn logs -applicationId <app_id>` prints the aggregated logs once the application has finished.",
    }))
}

pub fn kill_batch(api: &Endpoint, app_id: &str) -> Result<Value, PluginError> {
    let answer = api.call(
        "PUT",
        &format!("/ws/v1/cluster/apps/{}/state", segment(app_id)),
        &[],
        Some(&json!({"state": "KILLED"})),
    )?;
    let state = answer.body["state"].clone();
    Ok(json!({
        "app_id": app_id,
        "state": state,
        "killed": state == "KILLED",
        "accepted": answer.status == 202 || state == "KILLED",
    }))
}

pub fn list_batches(api: &Endpoint, args: &ListArgs) -> Result<Value, PluginError> {
    let limit = args.limit.unwrap_or(DEFAULT_LIST).clamp(1, 500);
    let mut query = vec![("limit", limit.to_string())];
    if let Some(state) = &args.state {
        query.push(("states", state.to_ascii_uppercase()));
    }
    let answer = api.get("/ws/v1/cluster/apps", &query)?;
    // `{"apps": null}` when there are none.
    let mut apps: Vec<Value> = answer
        .pointer("/apps/app")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    apps.sort_by_key(|a| std::cmp::Reverse(a["startedTime"].as_u64().unwrap_or(0)));
    let apps: Vec<Value> = apps.iter().map(app_summary).collect();
    Ok(json!({"count": apps.len(), "batches": apps}))
}

/// `GET /ws/v1/cluster/info`: the ResourceManager's state and version.
pub fn health(api: &Endpoint) -> Result<(bool, String), PluginError> {
    let info = api.get("/ws/v1/cluster/info", &[])?;
    let info = info.get("clusterInfo").cloned().unwrap_or(info);
    let state = info["state"].as_str().unwrap_or("unknown");
    let ha = info["haState"].as_str().unwrap_or("unknown");
    let version = info["resourceManagerVersion"].as_str().unwrap_or("unknown");
    Ok((
        state == "STARTED",
        format!("YARN ResourceManager {version}: state {state}, HA state {ha}"),
    ))
}

fn app_summary(app: &Value) -> Value {
    json!({
        "app_id": app["id"],
        "name": app["name"],
        "state": app["state"],
        "final_status": app["finalStatus"],
        "application_type": app["applicationType"],
        "progress": app["progress"],
        "queue": app["queue"],
        "user": app["user"],
        "tracking_url": app["trackingUrl"],
        "diagnostics": app["diagnostics"],
        "started_time": app["startedTime"],
        "finished_time": app["finishedTime"],
        "elapsed_time": app["elapsedTime"],
        "am_container_logs": app["amContainerLogs"],
    })
}
