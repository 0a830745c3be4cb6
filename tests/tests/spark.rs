//! The built-in `spark_connector` (Livy, YARN ResourceManager and Spark Operator modes) and
//! the `spark` tool that delegates to it, through the real sandbox against servers that speak
//! each service's documented wire format.

use std::time::{Duration, Instant};

use databot::contract::HealthStatus;
use databot::runtime::{ErrorKind, PluginSource};
use databot_e2e::{ScriptedResponse, SeenRequest, TestHost, serve_scripted};
use serde_json::{Value, json};

fn livy_batch(id: u64, state: &str, app_id: Option<&str>) -> Value {
    json!({
        "id": id,
        "name": format!("job-{id}"),
        "owner": null,
        "proxyUser": null,
        "state": state,
        "appId": app_id,
        "appInfo": {"driverLogUrl": null, "sparkUiUrl": app_id.map(|a| format!("http://rm:8088/proxy/{a}/"))},
        "log": ["stdout: ", "\nstderr: "]
    })
}

/// Livy 0.8 REST as documented: batches, sessions, statements.
fn livy(request: &SeenRequest, _: usize) -> ScriptedResponse {
    let path = request.path.as_str();
    match (request.method.as_str(), path) {
        ("GET", "/livy/batches?from=0&size=1") => ScriptedResponse::json(
            200,
            json!({"from": 0, "total": 3, "sessions": [livy_batch(0, "success", None)]}),
        ),
        ("POST", "/livy/batches") => ScriptedResponse::json(201, livy_batch(7, "starting", None)),
        ("GET", "/livy/batches/7") => ScriptedResponse::json(
            200,
            livy_batch(7, "running", Some("application_1700000000000_0007")),
        ),
        ("GET", "/livy/batches/99") => {
            ScriptedResponse::json(404, json!({"msg": "Session '99' not found."}))
        }
        ("GET", "/livy/batches/7/log?from=0&size=3") => ScriptedResponse::json(
            200,
            json!({"id": 7, "from": 0, "total": 5, "log": ["stdout: ", "Pi is roughly", "3.14"]}),
        ),
        ("GET", "/livy/batches/7/log?from=2&size=3") => ScriptedResponse::json(
            200,
            json!({"id": 7, "from": 2, "total": 5, "log": ["3.14", "\nstderr: ", "INFO SparkContext: Successfully stopped SparkContext"]}),
        ),
        ("DELETE", "/livy/batches/7") => ScriptedResponse::json(200, json!({"msg": "deleted"})),
        ("GET", "/livy/batches?from=0&size=2") => ScriptedResponse::json(
            200,
            json!({"from": 0, "total": 3, "sessions": [livy_batch(0, "success", None), livy_batch(1, "dead", None)]}),
        ),
        ("GET", "/livy/batches?from=1&size=2") => ScriptedResponse::json(
            200,
            json!({"from": 1, "total": 3, "sessions": [livy_batch(1, "dead", None), livy_batch(2, "running", None)]}),
        ),
        ("POST", "/livy/sessions") => ScriptedResponse::json(
            201,
            json!({"id": 0, "name": "explore", "appId": null, "owner": null, "proxyUser": null,
                   "state": "starting", "kind": "pyspark",
                   "appInfo": {"driverLogUrl": null, "sparkUiUrl": null}, "log": []}),
        ),
        ("POST", "/livy/sessions/0/statements") => {
            let id = if request.json()["code"] == "1 + 1" {
                0
            } else {
                1
            };
            ScriptedResponse::json(
                201,
                json!({"id": id, "code": request.json()["code"], "state": "waiting", "output": null,
                       "progress": 0.0, "started": 0, "completed": 0}),
            )
        }
        ("GET", "/livy/sessions/0/statements/0") => ScriptedResponse::json(
            200,
            json!({"id": 0, "code": "1 + 1", "state": "available", "progress": 1.0,
                   "started": 1700000000100_u64, "completed": 1700000000200_u64,
                   "output": {"status": "ok", "execution_count": 0, "data": {"text/plain": "2"}}}),
        ),
        ("GET", "/livy/sessions/0/statements/1") => ScriptedResponse::json(
            200,
            json!({"id": 1, "code": "spark.range(10**10).count()", "state": "running",
                   "output": null, "progress": 0.25, "started": 1700000000100_u64, "completed": 0}),
        ),
        _ => ScriptedResponse::json(
            500,
            json!({"msg": format!("unscripted {} {path}", request.method)}),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livy_is_the_default_mode_and_every_operation_speaks_its_api() {
    let (port, seen) = serve_scripted(livy).await;
    // No `mode`: the default (livy) applies, never another mode.
    let config = format!(
        "plugins:\n  spark_connector:\n    config:\n      default_conf: {{spark.eventLog.enabled: true, spark.executor.memory: 2g}}\n    endpoints:\n      api:\n        url: http://127.0.0.1:{port}/livy\n        auth: {{type: basic, username: livy, password: s3cret}}\n"
    );
    let host = TestHost::start(&config, &[]).await.unwrap();
    host.load_builtin("spark_connector").await;

    let health = host
        .runtime
        .connector_health("spark_connector")
        .await
        .unwrap();
    assert_eq!(health.status, HealthStatus::Healthy, "{}", health.message);
    assert_eq!(seen.all()[0].path, "/livy/batches?from=0&size=1");

    let batch = host
        .connector_ok(
            "spark_connector",
            "submit_batch",
            json!({
                "file": "s3a://jobs/pi.py",
                "args": ["100"],
                "conf": {"spark.executor.memory": "4g"},
                "name": "pi",
                "py_files": ["s3a://jobs/lib.zip"]
            }),
        )
        .await;
    assert_eq!(batch["batch_id"], 7);
    assert_eq!(batch["state"], "starting");
    let sent = seen.all().last().cloned().unwrap();
    assert_eq!(sent.method, "POST");
    assert_eq!(
        sent.json(),
        json!({
            "file": "s3a://jobs/pi.py",
            "args": ["100"],
            "name": "pi",
            "pyFiles": ["s3a://jobs/lib.zip"],
            "conf": {"spark.eventLog.enabled": "true", "spark.executor.memory": "4g"}
        })
    );
    // base64("livy:s3cret"), added by the host.
    assert_eq!(sent.header("authorization"), Some("Basic bGl2eTpzM2NyZXQ="));

    let status = host
        .connector_ok("spark_connector", "batch_status", json!({"batch_id": 7}))
        .await;
    assert_eq!(status["state"], "running");
    assert_eq!(status["app_id"], "application_1700000000000_0007");

    let logs = host
        .connector_ok(
            "spark_connector",
            "batch_logs",
            json!({"batch_id": "7", "lines": 3}),
        )
        .await;
    assert_eq!(logs["total"], 5);
    assert_eq!(logs["from"], 2);
    assert_eq!(
        logs["lines"][2],
        "INFO SparkContext: Successfully stopped SparkContext"
    );

    let killed = host
        .connector_ok("spark_connector", "kill_batch", json!({"batch_id": 7}))
        .await;
    assert_eq!(killed["killed"], true);
    assert_eq!(seen.all().last().unwrap().method, "DELETE");

    let list = host
        .connector_ok("spark_connector", "list_batches", json!({"limit": 2}))
        .await;
    assert_eq!(list["total"], 3);
    let ids: Vec<&Value> = list["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["batch_id"])
        .collect();
    assert_eq!(ids, [&json!(2), &json!(1)], "newest first");

    let error = host
        .connector_err("spark_connector", "batch_status", json!({"batch_id": 99}))
        .await;
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert!(error.message.contains("Session '99' not found"), "{error}");

    let error = host
        .connector_err("spark_connector", "batch_status", json!({"app_id": "x"}))
        .await;
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("batch_id"), "{error}");
    let error = host
        .connector_err(
            "spark_connector",
            "batch_status",
            json!({"batch_id": "../x"}),
        )
        .await;
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");

    let session = host
        .connector_ok(
            "spark_connector",
            "create_session",
            json!({"name": "explore"}),
        )
        .await;
    assert_eq!(session["session_id"], 0);
    assert_eq!(
        seen.all().last().unwrap().json(),
        json!({"kind": "pyspark", "name": "explore",
               "conf": {"spark.eventLog.enabled": "true", "spark.executor.memory": "2g"}})
    );

    let result = host
        .connector_ok(
            "spark_connector",
            "run_statement",
            json!({"session_id": 0, "code": "1 + 1"}),
        )
        .await;
    assert_eq!(result["done"], true);
    assert_eq!(result["succeeded"], true);
    assert_eq!(result["text"], "2");
    assert_eq!(result["statement_id"], 0);

    // A long statement: the call gives up within its wait and says how to check later.
    let started = Instant::now();
    let result = host
        .connector_ok(
            "spark_connector",
            "run_statement",
            json!({"session_id": 0, "code": "spark.range(10**10).count()", "wait_ms": 800}),
        )
        .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(result["done"], false);
    assert_eq!(result["statement_id"], 1);
    let message = result["message"].as_str().unwrap();
    assert!(
        message.contains("statement_status") && message.contains("statement_id 1"),
        "{message}"
    );
    let polls = seen
        .all()
        .iter()
        .filter(|r| r.path == "/livy/sessions/0/statements/1")
        .count();
    assert!(
        (1..=4).contains(&polls),
        "backoff, not a busy loop: {polls} polls"
    );

    let status = host
        .connector_ok(
            "spark_connector",
            "statement_status",
            json!({"session_id": 0, "statement_id": 1}),
        )
        .await;
    assert_eq!(status["state"], "running");
    assert_eq!(status["progress"], 0.25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livy_retries_an_unavailable_answer_after_retry_after() {
    let (port, seen) = serve_scripted(|request, index| {
        if index == 0 {
            let mut busy = ScriptedResponse::json(503, json!({"msg": "Livy is starting"}));
            busy.headers.push(("retry-after".into(), "1".into()));
            return busy;
        }
        livy(request, index)
    })
    .await;
    let config = format!(
        "plugins:\n  spark_connector:\n    config: {{mode: livy}}\n    endpoints:\n      api: {{url: \"http://127.0.0.1:{port}/livy\"}}\n"
    );
    let host = TestHost::start(&config, &[]).await.unwrap();
    host.load_builtin("spark_connector").await;
    let started = Instant::now();
    let status = host
        .connector_ok("spark_connector", "batch_status", json!({"batch_id": 7}))
        .await;
    assert_eq!(status["state"], "running");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(seen.all().len(), 2);
    assert_eq!(seen.all()[1].path, "/livy/batches/7");
}

/// YARN ResourceManager REST (`/ws/v1/cluster`) as in the Hadoop documentation.
fn yarn(request: &SeenRequest, _: usize) -> ScriptedResponse {
    let app = json!({
        "id": "application_1326821518301_0005", "user": "user1", "name": "Spark Pi",
        "queue": "a1", "state": "RUNNING", "finalStatus": "UNDEFINED", "progress": 10.0,
        "trackingUI": "ApplicationMaster",
        "trackingUrl": "http://host.domain.com:8088/proxy/application_1326821518301_0005/jobhistory/job/job_1326821518301_5_5",
        "diagnostics": "", "clusterId": 1326821518301_u64, "applicationType": "SPARK",
        "startedTime": 1326824544552_u64, "finishedTime": 0, "elapsedTime": 446748,
        "amContainerLogs": "http://host.domain.com:8042/node/containerlogs/container_1326821518301_0005_01_000001",
        "amHostHttpAddress": "host.domain.com:8042", "allocatedMB": 4096, "allocatedVCores": 2,
        "runningContainers": 2
    });
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/ws/v1/cluster/info") => ScriptedResponse::json(
            200,
            json!({"clusterInfo": {"id": 1324053971963_u64, "startedOn": 1324053971963_u64,
                   "state": "STARTED", "haState": "ACTIVE", "resourceManagerVersion": "3.3.6",
                   "hadoopVersion": "3.3.6"}}),
        ),
        ("GET", "/ws/v1/cluster/apps/application_1326821518301_0005") => {
            ScriptedResponse::json(200, json!({"app": app}))
        }
        ("GET", "/ws/v1/cluster/apps/application_1326821518301_0005/appattempts") => {
            ScriptedResponse::json(
                200,
                json!({"appAttempts": {"appAttempt": [{
                    "nodeId": "host.domain.com:8041", "nodeHttpAddress": "host.domain.com:8042",
                    "startTime": 1326381444693_u64, "id": 1,
                    "logsLink": "http://host.domain.com:8042/node/containerlogs/container_1326821518301_0005_01_000001/user1",
                    "containerId": "container_1326821518301_0005_01_000001"}]}}),
            )
        }
        ("PUT", "/ws/v1/cluster/apps/application_1326821518301_0005/state") => {
            ScriptedResponse::json(200, json!({"state": "KILLED"}))
        }
        ("GET", "/ws/v1/cluster/apps?limit=5&states=RUNNING") => {
            ScriptedResponse::json(200, json!({"apps": {"app": [app]}}))
        }
        ("GET", "/ws/v1/cluster/apps/application_0_0000") => ScriptedResponse::json(
            404,
            json!({"RemoteException": {"exception": "NotFoundException",
                   "message": "java.lang.Exception: app with id: application_0_0000 not found",
                   "javaClassName": "org.apache.hadoop.yarn.webapp.NotFoundException"}}),
        ),
        (method, path) => ScriptedResponse::json(
            404,
            json!({"RemoteException": {"exception": "NotFoundException",
                   "message": format!("java.lang.Exception: no resource for {method} {path}"),
                   "javaClassName": "org.apache.hadoop.yarn.webapp.NotFoundException"}}),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yarn_instance_under_its_own_name_speaks_the_resource_manager_api() {
    let (port, seen) = serve_scripted(yarn).await;
    let config = format!(
        "plugins:\n  spark_b:\n    builtin: spark_connector\n    config: {{mode: yarn}}\n    endpoints:\n      api:\n        url: http://127.0.0.1:{port}\n        auth: {{type: api_key, header: X-Gateway-Key, key: k-123}}\n"
    );
    let host = TestHost::start(&config, &[]).await.unwrap();
    let bytes = databot::runtime::builtin::builtin_bytes("spark_connector").unwrap();
    let revision = host
        .runtime
        .load_instance(bytes.to_vec(), PluginSource::Builtin, Some("spark_b"))
        .await
        .unwrap();
    assert_eq!(revision.manifest.name, "spark_b");
    assert!(host.runtime.plugin("spark_connector").is_none());

    let health = host.runtime.connector_health("spark_b").await.unwrap();
    assert_eq!(health.status, HealthStatus::Healthy, "{}", health.message);
    assert!(health.message.contains("3.3.6"), "{}", health.message);

    let app = "application_1326821518301_0005";
    let status = host
        .connector_ok("spark_b", "batch_status", json!({"app_id": app}))
        .await;
    assert_eq!(status["state"], "RUNNING");
    assert_eq!(status["final_status"], "UNDEFINED");
    assert_eq!(status["application_type"], "SPARK");
    assert_eq!(
        seen.all().last().unwrap().header("x-gateway-key"),
        Some("k-123")
    );

    let logs = host
        .connector_ok("spark_b", "batch_logs", json!({"app_id": app}))
        .await;
    assert_eq!(logs["logs_available"], false);
    assert_eq!(
        logs["attempts"][0]["logs_link"],
        "http://host.domain.com:8042/node/containerlogs/container_1326821518301_0005_01_000001/user1"
    );

    let killed = host
        .connector_ok("spark_b", "kill_batch", json!({"app_id": app}))
        .await;
    assert_eq!(killed["killed"], true);
    let put = seen.all().last().cloned().unwrap();
    assert_eq!(put.method, "PUT");
    assert_eq!(put.json(), json!({"state": "KILLED"}));

    let list = host
        .connector_ok(
            "spark_b",
            "list_batches",
            json!({"limit": 5, "state": "running"}),
        )
        .await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["batches"][0]["name"], "Spark Pi");

    let error = host
        .connector_err(
            "spark_b",
            "batch_status",
            json!({"app_id": "application_0_0000"}),
        )
        .await;
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");

    // Operations YARN's REST API cannot do name the modes that can.
    let count = seen.all().len();
    let error = host
        .connector_err(
            "spark_b",
            "submit_batch",
            json!({"file": "hdfs:///a.jar", "class_name": "A"}),
        )
        .await;
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("livy and k8s"), "{error}");
    let error = host
        .connector_err(
            "spark_b",
            "run_statement",
            json!({"session_id": 0, "code": "1"}),
        )
        .await;
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(
        error.message.contains("mode `yarn`") && error.message.contains("livy"),
        "{error}"
    );
    let error = host
        .connector_err("spark_b", "batch_status", json!({"batch_id": 3}))
        .await;
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("app_id"), "{error}");
    // The app id is one path segment, whatever it contains.
    let error = host
        .connector_err("spark_b", "batch_status", json!({"app_id": "../../info"}))
        .await;
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert_eq!(
        seen.all().last().unwrap().path,
        "/ws/v1/cluster/apps/..%2F..%2Finfo"
    );
    assert_eq!(seen.all().len(), count + 1);
}

/// The Kubernetes API server with the Spark Operator's CRD.
fn k8s(request: &SeenRequest, _: usize) -> ScriptedResponse {
    let base = "/apis/sparkoperator.k8s.io/v1beta2/namespaces/spark-jobs/sparkapplications";
    let path = request.path.as_str();
    if request.method == "POST" && path == base {
        let mut created = request.json();
        created["metadata"]["uid"] = json!("0f6e1f9a-2b1d-4c1e-9a53-6d7b3f1c2e10");
        created["metadata"]["creationTimestamp"] = json!("2024-05-01T10:00:00Z");
        created["metadata"]["resourceVersion"] = json!("48213");
        return ScriptedResponse::json(201, created);
    }
    if request.method == "GET" && path == format!("{base}?limit=1") {
        return ScriptedResponse::json(
            200,
            json!({"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplicationList",
                   "items": [], "metadata": {"resourceVersion": "48213"}}),
        );
    }
    if request.method == "GET" && path == format!("{base}/pi-etl-x1") {
        return ScriptedResponse::json(
            200,
            json!({"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
                   "metadata": {"name": "pi-etl-x1", "namespace": "spark-jobs",
                                "creationTimestamp": "2024-05-01T10:00:00Z"},
                   "spec": {"type": "Python", "mode": "cluster"},
                   "status": {
                       "applicationState": {"state": "RUNNING"},
                       "driverInfo": {"podName": "pi-etl-x1-driver",
                                      "webUIAddress": "10.0.0.12:4040", "webUIPort": 4040},
                       "executorState": {"pi-etl-x1-exec-1": "RUNNING"},
                       "lastSubmissionAttemptTime": "2024-05-01T10:00:02Z",
                       "sparkApplicationId": "spark-5a3c2b1d0e9f",
                       "submissionAttempts": 1, "terminationTime": null}}),
        );
    }
    if request.method == "GET"
        && path == "/api/v1/namespaces/spark-jobs/pods/pi-etl-x1-driver/log?tailLines=50"
    {
        return ScriptedResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            chunks: vec!["24/05/01 10:00:05 INFO SparkContext: Running Spark version 3.5.0\n24/05/01 10:01:00 INFO DAGScheduler: Job 0 finished\nPi is roughly 3.1418\n".into()],
            pause: Duration::ZERO,
        };
    }
    if request.method == "DELETE" && path == format!("{base}/pi-etl-x1") {
        return ScriptedResponse::json(
            200,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                   "details": {"name": "pi-etl-x1", "group": "sparkoperator.k8s.io",
                               "kind": "sparkapplications", "uid": "0f6e1f9a"}}),
        );
    }
    ScriptedResponse::json(
        404,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": format!("the server could not find the requested resource ({path})"),
               "reason": "NotFound", "code": 404}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k8s_mode_submits_uniquely_named_spark_applications() {
    let (port, seen) = serve_scripted(k8s).await;
    let config = format!(
        "plugins:\n  spark_k8s:\n    builtin: spark_connector\n    config:\n      mode: k8s\n      namespace: spark-jobs\n      service_account: spark\n      default_conf: {{spark.eventLog.enabled: \"true\"}}\n      executor_spec: {{cores: 2, instances: 4, memory: 4g}}\n    endpoints:\n      api:\n        url: http://127.0.0.1:{port}\n        auth: {{type: bearer, token: sa-token}}\n"
    );
    let host = TestHost::start(&config, &[]).await.unwrap();
    let bytes = databot::runtime::builtin::builtin_bytes("spark_connector").unwrap();
    host.runtime
        .load_instance(bytes.to_vec(), PluginSource::Builtin, Some("spark_k8s"))
        .await
        .unwrap();

    let health = host.runtime.connector_health("spark_k8s").await.unwrap();
    assert_eq!(health.status, HealthStatus::Healthy, "{}", health.message);

    let submit = json!({"file": "local:///opt/spark/examples/src/main/python/pi.py",
                        "args": ["1000"], "name": "Pi ETL", "conf": {"spark.executor.memory": "4g"}});
    let first = host
        .connector_ok("spark_k8s", "submit_batch", submit.clone())
        .await;
    let second = host.connector_ok("spark_k8s", "submit_batch", submit).await;
    let (a, b) = (
        first["app_id"].as_str().unwrap(),
        second["app_id"].as_str().unwrap(),
    );
    assert!(
        a.starts_with("pi-etl-") && b.starts_with("pi-etl-"),
        "{a} {b}"
    );
    assert_ne!(a, b, "two submissions never share a name");

    let posted = seen.all().into_iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(posted.header("authorization"), Some("Bearer sa-token"));
    let manifest = posted.json();
    assert_eq!(manifest["apiVersion"], "sparkoperator.k8s.io/v1beta2");
    assert_eq!(manifest["kind"], "SparkApplication");
    assert_eq!(manifest["metadata"]["name"], a);
    assert_eq!(manifest["metadata"]["namespace"], "spark-jobs");
    let spec = &manifest["spec"];
    assert_eq!(spec["type"], "Python");
    assert_eq!(spec["mode"], "cluster");
    assert_eq!(
        spec["image"], "spark:3.5.0",
        "default image follows spark_version"
    );
    assert_eq!(spec["sparkVersion"], "3.5.0");
    assert_eq!(
        spec["mainApplicationFile"],
        "local:///opt/spark/examples/src/main/python/pi.py"
    );
    assert!(spec.get("mainClass").is_none());
    assert_eq!(spec["arguments"], json!(["1000"]));
    assert_eq!(
        spec["sparkConf"],
        json!({"spark.eventLog.enabled": "true", "spark.executor.memory": "4g"})
    );
    assert_eq!(
        spec["driver"],
        json!({"cores": 1, "memory": "1g", "serviceAccount": "spark"})
    );
    assert_eq!(
        spec["executor"],
        json!({"cores": 2, "instances": 4, "memory": "4g"})
    );

    let status = host
        .connector_ok("spark_k8s", "batch_status", json!({"app_id": "pi-etl-x1"}))
        .await;
    assert_eq!(status["state"], "RUNNING");
    assert_eq!(status["driver_pod"], "pi-etl-x1-driver");
    assert_eq!(status["spark_application_id"], "spark-5a3c2b1d0e9f");

    let logs = host
        .connector_ok(
            "spark_k8s",
            "batch_logs",
            json!({"app_id": "pi-etl-x1", "lines": 50}),
        )
        .await;
    assert_eq!(logs["pod"], "pi-etl-x1-driver");
    assert_eq!(logs["line_count"], 3);
    assert_eq!(logs["lines"][2], "Pi is roughly 3.1418");

    let deleted = host
        .connector_ok("spark_k8s", "kill_batch", json!({"app_id": "pi-etl-x1"}))
        .await;
    assert_eq!(deleted["deleted"], true);
    assert_eq!(seen.all().last().unwrap().method, "DELETE");

    let error = host
        .connector_err("spark_k8s", "batch_status", json!({"app_id": "nope"}))
        .await;
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    let error = host
        .connector_err("spark_k8s", "create_session", json!({}))
        .await;
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(
        error.message.contains("mode `k8s`") && error.message.contains("livy"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spark_tool_delegates_to_its_granted_connector() {
    let (port, seen) = serve_scripted(livy).await;
    let (other_port, other_seen) = serve_scripted(yarn).await;
    let config = format!(
        "plugins:\n  spark:\n    config:\n      connectors: [spark_connector]\n    permissions:\n      connectors: [spark_connector]\n  spark_connector:\n    endpoints:\n      api: {{url: \"http://127.0.0.1:{port}/livy\"}}\n  spark_b:\n    builtin: spark_connector\n    config: {{mode: yarn}}\n    endpoints:\n      api: {{url: \"http://127.0.0.1:{other_port}\"}}\n"
    );
    let host = TestHost::start(&config, &[]).await.unwrap();
    host.load_builtin("spark_connector").await;
    host.load_builtin("spark").await;
    let tools: Vec<String> = host.runtime.tools().into_iter().map(|t| t.name).collect();
    for tool in [
        "spark_submit_batch",
        "spark_batch_status",
        "spark_run_statement",
        "spark_statement_status",
    ] {
        assert!(tools.contains(&tool.to_owned()), "{tool} in {tools:?}");
    }

    // No `connector`: the only listed one is used.
    let output = host
        .runtime
        .call_tool("spark_batch_status", r#"{"batch_id": 7}"#)
        .await
        .unwrap();
    let value: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(value["connector"], "spark_connector");
    assert_eq!(value["result"]["state"], "running");
    assert_eq!(seen.all().last().unwrap().path, "/livy/batches/7");

    let output = host
        .runtime
        .call_tool(
            "spark_run_statement",
            r#"{"connector": "spark_connector", "session_id": 0, "code": "1 + 1"}"#,
        )
        .await
        .unwrap();
    let value: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(value["result"]["text"], "2");
    let posted = seen.all().into_iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(
        posted.json(),
        json!({"code": "1 + 1"}),
        "`connector` is not forwarded"
    );

    // Errors of the connector come back with their kind.
    let error = host
        .runtime
        .call_tool("spark_batch_status", r#"{"batch_id": 99}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");

    // A connector instance the tool was not granted is refused by the host.
    let error = host
        .runtime
        .call_tool(
            "spark_batch_status",
            r#"{"connector": "spark_b", "app_id": "application_1326821518301_0005"}"#,
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    assert!(other_seen.all().is_empty());

    // Bad arguments never reach the connector.
    let error = host
        .runtime
        .call_tool("spark_submit_batch", r#"{"class_name": "A"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_says_how_to_choose_when_no_connector_is_listed() {
    let host = TestHost::start(
        "plugins:\n  spark:\n    config:\n      connectors: [spark_a, spark_b]\n",
        &[],
    )
    .await
    .unwrap();
    host.load_builtin("spark").await;
    let error = host
        .runtime
        .call_tool("spark_list_batches", "{}")
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("spark_a, spark_b"), "{error}");

    let host = TestHost::start("plugins:\n  spark: {}\n", &[])
        .await
        .unwrap();
    host.load_builtin("spark").await;
    let error = host
        .runtime
        .call_tool("spark_list_batches", "{}")
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("pass `connector`"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_each_failure_kind() {
    // No endpoint: not configured.
    let host = TestHost::start("plugins:\n  spark_connector: {}\n", &[])
        .await
        .unwrap();
    host.load_builtin("spark_connector").await;
    let health = host
        .runtime
        .connector_health("spark_connector")
        .await
        .unwrap();
    assert_eq!(
        health.status,
        HealthStatus::NotConfigured,
        "{}",
        health.message
    );

    // An unknown mode: not configured, saying which modes exist; operations refuse too.
    let host = TestHost::start(
        "plugins:\n  spark_connector:\n    config: {mode: mesos}\n    endpoints:\n      api: {url: \"http://127.0.0.1:9\"}\n",
        &[],
    )
    .await
    .unwrap();
    host.load_builtin("spark_connector").await;
    let health = host
        .runtime
        .connector_health("spark_connector")
        .await
        .unwrap();
    assert_eq!(
        health.status,
        HealthStatus::NotConfigured,
        "{}",
        health.message
    );
    assert!(health.message.contains("livy"), "{}", health.message);
    let error = host
        .connector_err("spark_connector", "list_batches", json!({}))
        .await;
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");

    // Nothing listening: unreachable.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let host = TestHost::start(
        &format!("plugins:\n  spark_connector:\n    endpoints:\n      api: {{url: \"http://127.0.0.1:{closed}\"}}\n"),
        &[],
    )
    .await
    .unwrap();
    host.load_builtin("spark_connector").await;
    let health = host
        .runtime
        .connector_health("spark_connector")
        .await
        .unwrap();
    assert_eq!(
        health.status,
        HealthStatus::Unreachable,
        "{}",
        health.message
    );

    // A ResourceManager in standby/stopped state: degraded.
    let (port, _) = serve_scripted(|_, _| {
        ScriptedResponse::json(
            200,
            json!({"clusterInfo": {"state": "STOPPED", "haState": "STANDBY", "resourceManagerVersion": "3.3.6"}}),
        )
    })
    .await;
    let host = TestHost::start(
        &format!("plugins:\n  spark_connector:\n    config: {{mode: yarn}}\n    endpoints:\n      api: {{url: \"http://127.0.0.1:{port}\"}}\n"),
        &[],
    )
    .await
    .unwrap();
    host.load_builtin("spark_connector").await;
    let health = host
        .runtime
        .connector_health("spark_connector")
        .await
        .unwrap();
    assert_eq!(health.status, HealthStatus::Degraded, "{}", health.message);
}
