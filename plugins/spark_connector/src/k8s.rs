//! Spark Operator on Kubernetes: `SparkApplication` objects (`sparkoperator.k8s.io/v1beta2`)
//! through the API server, and driver logs from the driver pod.

use databot_sdk::PluginError;
use databot_sdk::api::{Endpoint, api_error, segment};
use serde_json::{Map, Value, json};

use crate::args::{ListArgs, SubmitBatchArgs};
use crate::names;
use crate::settings::{Settings, merged_conf};

const GROUP_VERSION: &str = "sparkoperator.k8s.io/v1beta2";
const DEFAULT_LIST: u32 = 20;
const DEFAULT_LOG_LINES: u32 = 200;

fn applications(settings: &Settings) -> String {
    format!(
        "/apis/{GROUP_VERSION}/namespaces/{}/sparkapplications",
        segment(&settings.namespace)
    )
}

/// The SparkApplication manifest of one submission, under `name`.
pub fn manifest(
    settings: &Settings,
    args: SubmitBatchArgs,
    name: &str,
) -> Result<Value, PluginError> {
    let lower = args.file.to_ascii_lowercase();
    let kind = if lower.ends_with(".py") {
        "Python"
    } else if lower.ends_with(".r") {
        "R"
    } else if args.class_name.is_some() || lower.ends_with(".jar") {
        "Scala"
    } else {
        return Err(PluginError::InvalidInput(format!(
            "cannot tell the application type of `{}`: give a `.py` or `.R` file, or a jar with `class_name`",
            args.file
        )));
    };
    let mut spec = Map::new();
    spec.insert("type".into(), json!(kind));
    if kind == "Python" {
        spec.insert("pythonVersion".into(), json!("3"));
    }
    spec.insert("mode".into(), json!("cluster"));
    spec.insert("image".into(), json!(settings.image));
    spec.insert("sparkVersion".into(), json!(settings.spark_version));
    spec.insert("mainApplicationFile".into(), json!(args.file));
    if let Some(class_name) = args.class_name {
        spec.insert("mainClass".into(), json!(class_name));
    }
    if !args.args.is_empty() {
        spec.insert("arguments".into(), json!(args.args));
    }
    let conf = merged_conf(&settings.default_conf, &args.conf)?;
    if !conf.is_empty() {
        spec.insert("sparkConf".into(), Value::Object(conf));
    }
    let mut deps = Map::new();
    for (key, list) in [
        ("pyFiles", args.py_files),
        ("jars", args.jars),
        ("files", args.files),
    ] {
        if !list.is_empty() {
            deps.insert(key.into(), json!(list));
        }
    }
    if !deps.is_empty() {
        spec.insert("deps".into(), Value::Object(deps));
    }
    spec.insert("restartPolicy".into(), json!({"type": "Never"}));
    let mut driver = settings.driver_spec.clone();
    if let (Some(account), Some(driver)) = (&settings.service_account, driver.as_object_mut()) {
        driver
            .entry("serviceAccount")
            .or_insert_with(|| json!(account));
    }
    spec.insert("driver".into(), driver);
    spec.insert("executor".into(), settings.executor_spec.clone());
    Ok(json!({
        "apiVersion": GROUP_VERSION,
        "kind": "SparkApplication",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": {"app.kubernetes.io/managed-by": "databot"},
        },
        "spec": spec,
    }))
}

pub fn submit_batch(
    api: &Endpoint,
    settings: &Settings,
    args: SubmitBatchArgs,
) -> Result<Value, PluginError> {
    let base = names::base_name(args.name.as_deref());
    let name = names::unique_name(&base, wasip2::random::random::get_random_u64());
    let manifest = manifest(settings, args, &name)?;
    let created = api.post(&applications(settings), &manifest)?;
    let mut summary = app_summary(&created);
    summary["app_id"] = json!(name);
    Ok(summary)
}

pub fn batch_status(api: &Endpoint, settings: &Settings, app: &str) -> Result<Value, PluginError> {
    let object = api.get(&format!("{}/{}", applications(settings), segment(app)), &[])?;
    let mut summary = app_summary(&object);
    summary["details"] = json!({"spec": object["spec"], "status": object["status"]});
    Ok(summary)
}

/// The driver pod's log tail (`GET /api/v1/namespaces/{ns}/pods/{driver}/log?tailLines=N`).
pub fn batch_logs(
    api: &Endpoint,
    settings: &Settings,
    app: &str,
    lines: Option<u32>,
) -> Result<Value, PluginError> {
    let object = api.get(&format!("{}/{}", applications(settings), segment(app)), &[])?;
    let pod = object
        .pointer("/status/driverInfo/podName")
        .and_then(Value::as_str)
        .map_or_else(|| format!("{app}-driver"), str::to_owned);
    let lines = lines.unwrap_or(DEFAULT_LOG_LINES).clamp(1, 5000);
    let path = format!(
        "/api/v1/namespaces/{}/pods/{}/log",
        segment(&settings.namespace),
        segment(&pod)
    );
    let response = api.send(
        "GET",
        &path,
        &[("tailLines", lines.to_string())],
        None,
        "text/plain",
    )?;
    if response.status == 404 {
        return Err(PluginError::NotFound(format!(
            "driver pod `{pod}` of SparkApplication `{app}` does not exist (yet, or any more): the application may still be submitting, or its pod was cleaned up"
        )));
    }
    if !(200..300).contains(&response.status) {
        return Err(api_error(&api.name, "GET", &path, &response));
    }
    let text = match &response.body {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let lines: Vec<&str> = text.lines().collect();
    Ok(json!({
        "app_id": app,
        "pod": pod,
        "line_count": lines.len(),
        "lines": lines,
    }))
}

pub fn kill_batch(api: &Endpoint, settings: &Settings, app: &str) -> Result<Value, PluginError> {
    let answer = api.call(
        "DELETE",
        &format!("{}/{}", applications(settings), segment(app)),
        &[],
        None,
    )?;
    Ok(
        json!({"app_id": app, "deleted": true, "status": answer.body.get("status").cloned().unwrap_or(Value::Null)}),
    )
}

pub fn list_batches(
    api: &Endpoint,
    settings: &Settings,
    args: &ListArgs,
) -> Result<Value, PluginError> {
    let limit = args.limit.unwrap_or(DEFAULT_LIST).clamp(1, 500);
    let list = api.get(&applications(settings), &[("limit", limit.to_string())])?;
    let mut items: Vec<Value> = list["items"].as_array().cloned().unwrap_or_default();
    items.sort_by(|a, b| {
        let created = |v: &Value| {
            v.pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        created(b).cmp(&created(a))
    });
    let mut apps: Vec<Value> = items.iter().map(app_summary).collect();
    if let Some(state) = &args.state {
        apps.retain(|a| {
            a["state"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(state))
        });
    }
    Ok(json!({
        "count": apps.len(),
        "batches": apps,
        "more": list.pointer("/metadata/continue").and_then(Value::as_str).is_some_and(|c| !c.is_empty()),
    }))
}

/// The operator's applications in the namespace can be listed.
pub fn health(api: &Endpoint, settings: &Settings) -> Result<String, PluginError> {
    api.get(&applications(settings), &[("limit", "1".into())])?;
    Ok(format!(
        "Spark Operator reachable: SparkApplications in namespace `{}` can be listed",
        settings.namespace
    ))
}

fn app_summary(object: &Value) -> Value {
    let status = &object["status"];
    json!({
        "app_id": object.pointer("/metadata/name"),
        "namespace": object.pointer("/metadata/namespace"),
        "state": status.pointer("/applicationState/state").cloned().unwrap_or(json!("SUBMITTING")),
        "error_message": status.pointer("/applicationState/errorMessage"),
        "spark_application_id": status["sparkApplicationId"],
        "driver_pod": status.pointer("/driverInfo/podName"),
        "web_ui": status.pointer("/driverInfo/webUIAddress"),
        "submission_time": status["lastSubmissionAttemptTime"],
        "termination_time": status["terminationTime"],
        "executor_state": status["executorState"],
        "created": object.pointer("/metadata/creationTimestamp"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Mode;

    fn settings() -> Settings {
        Settings {
            mode: Mode::K8s,
            default_conf: json!({"spark.eventLog.enabled": true})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            namespace: "spark-jobs".into(),
            image: "spark:3.5.0".into(),
            spark_version: "3.5.0".into(),
            service_account: Some("spark".into()),
            driver_spec: json!({"cores": 1, "memory": "1g"}),
            executor_spec: json!({"cores": 1, "instances": 2, "memory": "1g"}),
            statement_wait_ms: 5000,
        }
    }

    fn submit(file: &str, class_name: Option<&str>) -> SubmitBatchArgs {
        SubmitBatchArgs {
            file: file.into(),
            class_name: class_name.map(str::to_owned),
            args: vec!["--date".into(), "2024-01-01".into()],
            conf: Map::new(),
            name: None,
            py_files: vec![],
            jars: vec![],
            files: vec![],
        }
    }

    #[test]
    fn manifests_follow_the_operator_schema() {
        let m =
            manifest(&settings(), submit("s3a://b/etl.py", None), "etl-abc").unwrap_or_default();
        assert_eq!(m["spec"]["type"], "Python");
        assert_eq!(m["spec"]["mainApplicationFile"], "s3a://b/etl.py");
        assert!(m["spec"].get("mainClass").is_none());
        assert_eq!(m["spec"]["sparkConf"]["spark.eventLog.enabled"], "true");
        assert_eq!(m["spec"]["driver"]["serviceAccount"], "spark");
        assert_eq!(m["metadata"]["namespace"], "spark-jobs");
        let m = manifest(
            &settings(),
            submit("local:///opt/app.jar", Some("com.x.Main")),
            "n",
        )
        .unwrap_or_default();
        assert_eq!(m["spec"]["type"], "Scala");
        assert_eq!(m["spec"]["mainClass"], "com.x.Main");
        assert!(manifest(&settings(), submit("s3a://b/app.bin", None), "n").is_err());
    }
}
