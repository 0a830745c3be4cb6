//! The built-in `kafka_connector` and `kafka` tool through the real sandbox against recording
//! servers speaking Confluent REST Proxy v3 and v2, Schema Registry and Kafka Connect (bodies
//! as in their API references): host-injected credentials and retries on every endpoint, the
//! v2 fallback, write operations, errors, and the native path's refusal when not granted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use databot::contract::HealthStatus;
use databot::runtime::ErrorKind;
use databot_e2e::{ScriptedResponse, SeenRequest, TestHost, serve_scripted};
use serde_json::{Value, json};

/// The first request gets a 503 with `Retry-After: 0`, later ones `respond`.
fn busy_once(
    respond: fn(&SeenRequest) -> ScriptedResponse,
) -> impl Fn(&SeenRequest, usize) -> ScriptedResponse + Send + Sync + 'static {
    let busy = Arc::new(AtomicBool::new(true));
    move |request, _| {
        if busy.swap(false, Ordering::SeqCst) {
            let mut response = ScriptedResponse::json(
                503,
                json!({"error_code": 50301, "message": "service unavailable"}),
            );
            response.headers.push(("retry-after".into(), "0".into()));
            return response;
        }
        respond(request)
    }
}

fn empty(status: u16) -> ScriptedResponse {
    ScriptedResponse {
        status,
        headers: Vec::new(),
        chunks: Vec::new(),
        pause: Duration::ZERO,
    }
}

const BASE: &str = "http://rest-proxy:8082/v3/clusters/lkc-abc123";

fn rest_proxy_v3(request: &SeenRequest) -> ScriptedResponse {
    let ok = |body: Value| ScriptedResponse::json(200, body);
    match request.path.as_str() {
        "/v3/clusters" => ok(json!({
            "kind": "KafkaClusterList",
            "metadata": {"self": "http://rest-proxy:8082/v3/clusters", "next": null},
            "data": [{
                "kind": "KafkaCluster",
                "metadata": {"self": BASE, "resource_name": "crn:///kafka=lkc-abc123"},
                "cluster_id": "lkc-abc123",
                "controller": {"related": format!("{BASE}/brokers/1")},
                "brokers": {"related": format!("{BASE}/brokers")},
                "topics": {"related": format!("{BASE}/topics")},
                "consumer_groups": {"related": format!("{BASE}/consumer-groups")}
            }]
        })),
        "/v3/clusters/lkc-abc123" => ok(json!({
            "kind": "KafkaCluster", "cluster_id": "lkc-abc123",
            "controller": {"related": format!("{BASE}/brokers/1")}
        })),
        "/v3/clusters/lkc-abc123/topics" => ok(json!({
            "kind": "KafkaTopicList",
            "metadata": {"self": format!("{BASE}/topics"), "next": null},
            "data": [
                {"kind": "KafkaTopic", "cluster_id": "lkc-abc123", "topic_name": "orders",
                 "is_internal": false, "replication_factor": 3, "partitions_count": 2,
                 "partitions": {"related": format!("{BASE}/topics/orders/partitions")},
                 "configs": {"related": format!("{BASE}/topics/orders/configs")}},
                {"kind": "KafkaTopic", "cluster_id": "lkc-abc123", "topic_name": "__consumer_offsets",
                 "is_internal": true, "replication_factor": 3, "partitions_count": 50}
            ]
        })),
        "/v3/clusters/lkc-abc123/topics/orders" => ok(json!({
            "kind": "KafkaTopic", "cluster_id": "lkc-abc123", "topic_name": "orders",
            "is_internal": false, "replication_factor": 3, "partitions_count": 2
        })),
        "/v3/clusters/lkc-abc123/topics/orders/partitions" => ok(json!({
            "kind": "KafkaPartitionList",
            "data": [
                {"kind": "KafkaPartition", "cluster_id": "lkc-abc123", "topic_name": "orders", "partition_id": 0,
                 "leader": {"related": format!("{BASE}/topics/orders/partitions/0/replicas/1")},
                 "replicas": {"related": format!("{BASE}/topics/orders/partitions/0/replicas")}},
                {"kind": "KafkaPartition", "cluster_id": "lkc-abc123", "topic_name": "orders", "partition_id": 1,
                 "leader": {"related": format!("{BASE}/topics/orders/partitions/1/replicas/2")},
                 "replicas": {"related": format!("{BASE}/topics/orders/partitions/1/replicas")}}
            ]
        })),
        "/v3/clusters/lkc-abc123/topics/orders/configs" => ok(json!({
            "kind": "KafkaTopicConfigList",
            "data": [
                {"kind": "KafkaTopicConfig", "name": "cleanup.policy", "value": "delete",
                 "is_default": true, "is_read_only": false, "is_sensitive": false, "source": "DEFAULT_CONFIG"},
                {"kind": "KafkaTopicConfig", "name": "retention.ms", "value": "604800000",
                 "is_default": false, "is_read_only": false, "is_sensitive": false, "source": "DYNAMIC_TOPIC_CONFIG"}
            ]
        })),
        "/v3/clusters/lkc-abc123/consumer-groups" => ok(json!({
            "kind": "KafkaConsumerGroupList",
            "data": [{
                "kind": "KafkaConsumerGroup", "cluster_id": "lkc-abc123",
                "consumer_group_id": "billing", "is_simple": false,
                "partition_assignor": "range", "state": "STABLE",
                "coordinator": {"related": format!("{BASE}/brokers/2")},
                "consumers": {"related": format!("{BASE}/consumer-groups/billing/consumers")},
                "lag_summary": {"related": format!("{BASE}/consumer-groups/billing/lag-summary")}
            }]
        })),
        "/v3/clusters/lkc-abc123/consumer-groups/billing/lags" => ok(json!({
            "kind": "KafkaConsumerLagList",
            "data": [
                {"kind": "KafkaConsumerLag", "cluster_id": "lkc-abc123", "consumer_group_id": "billing",
                 "topic_name": "orders", "partition_id": 0, "current_offset": 100,
                 "log_end_offset": 150, "lag": 50, "consumer_id": "consumer-1-7b2f",
                 "instance_id": null, "client_id": "billing-1"},
                {"kind": "KafkaConsumerLag", "cluster_id": "lkc-abc123", "consumer_group_id": "billing",
                 "topic_name": "orders", "partition_id": 1, "current_offset": 95,
                 "log_end_offset": 100, "lag": 5, "consumer_id": "consumer-1-7b2f",
                 "instance_id": null, "client_id": "billing-1"}
            ]
        })),
        _ => ScriptedResponse::json(
            404,
            json!({"error_code": 404, "message": "This server does not host this topic-partition."}),
        ),
    }
}

fn rest_proxy_v2(request: &SeenRequest) -> ScriptedResponse {
    match request.path.as_str() {
        "/topics" => ScriptedResponse::json(200, json!(["orders", "__confluent.support.metrics"])),
        "/topics/orders" => ScriptedResponse::json(
            200,
            json!({
                "name": "orders",
                "configs": {"cleanup.policy": "delete"},
                "partitions": [{"partition": 0, "leader": 1, "replicas": [
                    {"broker": 1, "leader": true, "in_sync": true},
                    {"broker": 2, "leader": false, "in_sync": false}
                ]}]
            }),
        ),
        _ => ScriptedResponse::json(
            404,
            json!({"error_code": 404, "message": "HTTP 404 Not Found"}),
        ),
    }
}

const ORDER_SCHEMA: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"long"},{"name":"amount","type":"double"}]}"#;

fn schema_registry(request: &SeenRequest) -> ScriptedResponse {
    let ok = |body: Value| ScriptedResponse::json(200, body);
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/subjects") => ok(json!(["orders-value", "payments-value"])),
        ("GET", "/subjects?subjectPrefix=orders") => ok(json!(["orders-value"])),
        ("GET", "/subjects/orders-value/versions") => ok(json!([1, 2])),
        ("GET", "/subjects/orders-value/versions/latest") => ok(json!({
            "subject": "orders-value", "id": 3, "version": 2, "schema": ORDER_SCHEMA
        })),
        ("POST", "/compatibility/subjects/orders-value/versions/latest?verbose=true") => {
            ok(json!({
                "is_compatible": false,
                "messages": ["Incompatibility{type:TYPE_MISMATCH, location:/fields/0/type, message:reader type: STRING not compatible with writer type: LONG}"]
            }))
        }
        _ => ScriptedResponse::json(
            404,
            json!({"error_code": 40401, "message": "Subject 'nope-value' not found."}),
        ),
    }
}

fn kafka_connect(request: &SeenRequest) -> ScriptedResponse {
    let status = json!({
        "name": "jdbc-source",
        "connector": {"state": "RUNNING", "worker_id": "10.0.0.5:8083"},
        "tasks": [
            {"id": 0, "state": "RUNNING", "worker_id": "10.0.0.5:8083"},
            {"id": 1, "state": "FAILED", "worker_id": "10.0.0.6:8083",
             "trace": "org.apache.kafka.connect.errors.ConnectException: timeout"}
        ],
        "type": "source"
    });
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/connectors?expand=status") => ScriptedResponse::json(
            200,
            json!({"jdbc-source": {"status": status}, "s3-sink": {"status": {
                "name": "s3-sink", "connector": {"state": "PAUSED", "worker_id": "10.0.0.6:8083"},
                "tasks": [], "type": "sink"}}}),
        ),
        ("GET", "/connectors/jdbc-source/status") => ScriptedResponse::json(200, status),
        ("PUT", "/connectors/jdbc-source/pause" | "/connectors/jdbc-source/resume") => empty(202),
        ("POST", "/connectors/jdbc-source/restart?includeTasks=true&onlyFailed=true") => {
            ScriptedResponse::json(
                202,
                json!({"name": "jdbc-source", "connector": {"state": "RESTARTING", "worker_id": "10.0.0.5:8083"},
                       "tasks": [{"id": 1, "state": "RESTARTING", "worker_id": "10.0.0.6:8083"}], "type": "source"}),
            )
        }
        ("GET", "/") => ScriptedResponse::json(
            200,
            json!({"version": "3.7.0", "commit": "2ae524ed625438c5", "kafka_cluster_id": "lkc-abc123"}),
        ),
        _ => ScriptedResponse::json(
            404,
            json!({"error_code": 404, "message": "Connector nope not found"}),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_proxy_schema_registry_and_connect_with_auth_and_retries() {
    let (proxy, proxy_seen) = serve_scripted(busy_once(rest_proxy_v3)).await;
    let (registry, registry_seen) = serve_scripted(busy_once(schema_registry)).await;
    let (connect, connect_seen) = serve_scripted(busy_once(kafka_connect)).await;
    let (legacy, legacy_seen) = serve_scripted(|request, _| rest_proxy_v2(request)).await;
    let config = format!(
        "plugins:
  kafka_connector:
    config:
      max_retries: 2
    endpoints:
      api:
        url: http://127.0.0.1:{proxy}
        auth: {{type: basic, username: svc, password: proxy-pass}}
      schema_registry:
        url: http://127.0.0.1:{registry}
        auth: {{type: basic, username: sr-key, password: sr-secret}}
      connect:
        url: http://127.0.0.1:{connect}
        auth: {{type: bearer, token: connect-token}}
  kafka_v2:
    builtin: kafka_connector
    endpoints:
      api:
        url: http://127.0.0.1:{legacy}
  kafka:
    config:
      connectors: [kafka_connector, kafka_v2]
    permissions:
      connectors: [kafka_connector, kafka_v2]
"
    );
    let host = TestHost::start(&config, &[]).await.unwrap();
    host.load_builtin("kafka_connector").await;
    host.load_builtin("kafka").await;
    let k = "kafka_connector";

    let topics = host.connector_ok(k, "list_topics", json!({})).await;
    assert_eq!(topics["api"], "v3");
    assert_eq!(topics["cluster_id"], "lkc-abc123");
    assert_eq!(
        topics["topics"],
        json!([{"name": "orders", "partitions": 2, "replication_factor": 3, "internal": false}])
    );
    let all = host
        .connector_ok(k, "list_topics", json!({"include_internal": true}))
        .await;
    assert_eq!(all["count"], 2);

    let topic = host
        .connector_ok(k, "describe_topic", json!({"topic": "orders"}))
        .await;
    assert_eq!(
        topic["partitions"],
        json!([{"partition": 0, "leader": 1}, {"partition": 1, "leader": 2}])
    );
    assert_eq!(topic["configs"], json!({"retention.ms": "604800000"}));

    let groups = host
        .connector_ok(k, "list_consumer_groups", json!({}))
        .await;
    assert_eq!(groups["groups"][0]["group"], "billing");
    assert_eq!(groups["groups"][0]["state"], "STABLE");
    assert_eq!(groups["groups"][0]["coordinator"], 2);

    let lag = host
        .connector_ok(k, "consumer_group_lag", json!({"group": "billing"}))
        .await;
    assert_eq!(lag["total_lag"], 55);
    assert_eq!(lag["max_lag"], 50);
    assert_eq!(lag["partitions"][0]["log_end_offset"], 150);

    let error = host
        .runtime
        .execute_connector(k, "describe_topic", r#"{"topic": "missing/../x"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert!(error.message.contains("does not host"), "{error}");

    // Schema Registry.
    let subjects = host.connector_ok(k, "list_subjects", json!({})).await;
    assert_eq!(
        subjects["subjects"],
        json!(["orders-value", "payments-value"])
    );
    let filtered = host
        .connector_ok(k, "list_subjects", json!({"prefix": "orders"}))
        .await;
    assert_eq!(filtered["count"], 1);
    let versions = host
        .connector_ok(
            k,
            "list_schema_versions",
            json!({"subject": "orders-value"}),
        )
        .await;
    assert_eq!(versions["versions"], json!([1, 2]));
    let schema = host
        .connector_ok(k, "get_schema", json!({"subject": "orders-value"}))
        .await;
    assert_eq!(schema["id"], 3);
    assert_eq!(schema["schema_type"], "AVRO");
    assert_eq!(schema["schema_parsed"]["fields"][0]["name"], "id");
    let compatible = host.connector_ok(k,
        "check_compatibility",
        json!({"subject": "orders-value", "schema": r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}"#}),
    )
    .await;
    assert_eq!(compatible["is_compatible"], false);
    assert!(
        compatible["messages"][0]
            .as_str()
            .unwrap()
            .contains("TYPE_MISMATCH")
    );
    let error = host
        .runtime
        .execute_connector(k, "get_schema", r#"{"subject": "nope-value"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert!(
        error.message.contains("Subject 'nope-value' not found"),
        "{error}"
    );
    let error = host
        .runtime
        .execute_connector(
            k,
            "get_schema",
            r#"{"subject": "orders-value", "version": "../1"}"#,
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");

    // Kafka Connect.
    let connectors = host.connector_ok(k, "list_connectors", json!({})).await;
    assert_eq!(connectors["count"], 2);
    let jdbc = connectors["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "jdbc-source")
        .unwrap();
    assert_eq!(jdbc["state"], "RUNNING");
    assert_eq!(jdbc["failed_tasks"], json!([1]));
    let status = host
        .connector_ok(
            k,
            "connector_status",
            json!({"connector_name": "jdbc-source"}),
        )
        .await;
    assert_eq!(status["task_states"][1]["state"], "FAILED");
    let paused = host
        .connector_ok(
            k,
            "pause_connector",
            json!({"connector_name": "jdbc-source"}),
        )
        .await;
    assert_eq!(paused["status"], 202);
    let resumed = host
        .connector_ok(
            k,
            "resume_connector",
            json!({"connector_name": "jdbc-source"}),
        )
        .await;
    assert_eq!(resumed["action"], "resume");
    let restarted = host
        .connector_ok(
            k,
            "restart_connector",
            json!({"connector_name": "jdbc-source", "include_tasks": true, "only_failed": true}),
        )
        .await;
    assert_eq!(restarted["answer"]["connector"]["state"], "RESTARTING");
    let error = host
        .runtime
        .execute_connector(k, "connector_status", r#"{"connector_name": "nope"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");

    let health = host.runtime.connector_health(k).await.unwrap();
    assert_eq!(health.status, HealthStatus::Healthy, "{}", health.message);

    // Each endpoint: the host's credentials on every request, the 503 retried.
    for (seen, auth, first) in [
        (&proxy_seen, "Basic c3ZjOnByb3h5LXBhc3M=", "/v3/clusters"),
        (
            &registry_seen,
            "Basic c3Ita2V5OnNyLXNlY3JldA==",
            "/subjects",
        ),
        (
            &connect_seen,
            "Bearer connect-token",
            "/connectors?expand=status",
        ),
    ] {
        let requests = seen.all();
        assert_eq!(requests[0].path, first);
        assert_eq!(requests[1].path, first, "the 503 was retried");
        for request in &requests {
            assert_eq!(
                request.header("authorization"),
                Some(auth),
                "{}",
                request.path
            );
        }
    }
    let proxy_requests = proxy_seen.all();
    assert!(
        proxy_requests
            .iter()
            .any(|r| r.path == "/v3/clusters/lkc-abc123/topics/missing%2F..%2Fx")
    );
    // One cluster lookup per call: describe_topic made one and three topic reads.
    let describe_start = proxy_requests
        .iter()
        .position(|r| r.path == "/v3/clusters/lkc-abc123/topics/orders")
        .unwrap();
    assert_eq!(proxy_requests[describe_start - 1].path, "/v3/clusters");
    assert_eq!(
        proxy_requests[describe_start + 2].path,
        "/v3/clusters/lkc-abc123/topics/orders/configs"
    );
    let registry_requests = registry_seen.all();
    let compat = registry_requests
        .iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(
        compat.json(),
        json!({"schema": r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}"#})
    );
    let connect_requests = connect_seen.all();
    let writes: Vec<(String, String)> = connect_requests
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        writes,
        [
            (
                "PUT".to_string(),
                "/connectors/jdbc-source/pause".to_string()
            ),
            (
                "PUT".to_string(),
                "/connectors/jdbc-source/resume".to_string()
            ),
            (
                "POST".to_string(),
                "/connectors/jdbc-source/restart?includeTasks=true&onlyFailed=true".to_string()
            ),
        ]
    );

    // The v2 fallback (no /v3/clusters): topic names and the v2 topic description.
    let topics = host
        .connector_ok("kafka_v2", "list_topics", json!({}))
        .await;
    assert_eq!(topics["api"], "v2");
    assert_eq!(topics["topics"], json!([{"name": "orders"}]));
    let topic = host
        .connector_ok("kafka_v2", "describe_topic", json!({"topic": "orders"}))
        .await;
    assert_eq!(topic["partitions"][0]["replicas"], json!([1, 2]));
    assert_eq!(topic["partitions"][0]["in_sync"], json!([1]));
    let error = host
        .runtime
        .execute_connector("kafka_v2", "consumer_group_lag", r#"{"group": "billing"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("v3"), "{error}");
    let error = host
        .runtime
        .execute_connector("kafka_v2", "list_subjects", "{}")
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert!(
        error.message.contains("endpoints.schema_registry.url"),
        "{error}"
    );
    let legacy_paths: Vec<String> = legacy_seen.all().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        &legacy_paths[..3],
        ["/v3/clusters", "/topics", "/v3/clusters"]
    );

    // The tool: `kafka_<op>` for every connector operation, the instance picked by argument.
    let connector_ops = host.runtime.plugin(k).unwrap().current();
    let tools: Vec<_> = host
        .runtime
        .tools()
        .into_iter()
        .filter(|t| t.plugin == "kafka")
        .collect();
    assert_eq!(tools.len(), connector_ops.operations.len());
    for tool in &tools {
        let op = tool.name.strip_prefix("kafka_").unwrap();
        assert!(connector_ops.operation(op).is_some(), "{}", tool.name);
    }
    let error = host
        .runtime
        .call_tool("kafka_list_topics", "{}")
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("pass `connector`"), "{error}");
    let lag = host
        .tool_ok(
            "kafka_consumer_group_lag",
            json!({"group": "billing", "connector": "kafka_connector"}),
        )
        .await;
    assert_eq!(lag["total_lag"], 55);
    let topics = host
        .tool_ok("kafka_list_topics", json!({"connector": "kafka_v2"}))
        .await;
    assert_eq!(topics["api"], "v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_path_goes_to_the_host_kafka_capability() {
    let config = "data:
  kafka:
    main:
      bootstrap_servers: 127.0.0.1:1
      timeout_ms: 500
plugins:
  kafka_connector:
    config:
      cluster: main
    permissions:
      kafka: [main]
  kafka_ungranted:
    builtin: kafka_connector
    config:
      cluster: main
  kafka_rest_only:
    builtin: kafka_connector
";
    let host = TestHost::start(config, &[]).await.unwrap();
    host.load_builtin("kafka_connector").await;

    // Not granted: the host refuses and says which line grants it.
    let error = host
        .runtime
        .execute_connector("kafka_ungranted", "list_topics", "{}")
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    assert!(error.message.contains("permissions.kafka"), "{error}");
    let error = host
        .runtime
        .execute_connector("kafka_ungranted", "peek_messages", r#"{"topic": "orders"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");

    // Granted: whatever the host answers for a cluster with no broker, it is not a made-up
    // topic list.
    let answer = host
        .runtime
        .execute_connector("kafka_connector", "list_topics", "{}")
        .await;
    assert!(answer.is_err(), "{answer:?}");

    // Without `cluster`, peeking is refused with what to configure.
    let error = host
        .runtime
        .execute_connector("kafka_rest_only", "peek_messages", r#"{"topic": "orders"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("permissions.kafka"), "{error}");
    let health = host
        .runtime
        .connector_health("kafka_rest_only")
        .await
        .unwrap();
    assert_eq!(health.status, HealthStatus::NotConfigured);
}
