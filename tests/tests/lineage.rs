//! The built-in `lineage` tool through the real sandbox: against a recording server speaking
//! the Marquez API (lineage graph with in/out edges, search, datasets, runs, shaped as in the
//! Marquez API reference) and against a local graph file in a granted folder. Upstream and
//! downstream must differ, paths must be real paths, misses must suggest names.

use databot::runtime::ErrorKind;
use databot_e2e::{ScriptedResponse, SeenRequest, TestHost, serve_scripted};
use serde_json::{Value, json};

const NS: &str = "food_delivery";

/// Dataset and job edges of the Marquez food-delivery example, in data-flow direction.
const EDGES: &[(&str, &str)] = &[
    ("dataset:public.orders", "job:example.etl_orders_7_days"),
    ("dataset:public.customers", "job:example.etl_orders_7_days"),
    (
        "job:example.etl_orders_7_days",
        "dataset:public.orders_7_days",
    ),
    (
        "dataset:public.orders_7_days",
        "job:example.etl_delivery_7_days",
    ),
    ("dataset:public.drivers", "job:example.etl_delivery_7_days"),
    (
        "job:example.etl_delivery_7_days",
        "dataset:public.delivery_7_days",
    ),
    (
        "dataset:public.orders_7_days",
        "job:example.etl_weekly_report",
    ),
    (
        "job:example.etl_weekly_report",
        "dataset:public.weekly_report",
    ),
];

fn full_id(short: &str) -> String {
    let (kind, name) = short.split_once(':').unwrap();
    format!("{kind}:{NS}:{name}")
}

fn node_data(id: &str) -> Value {
    let (kind, name) = id.split_once(':').unwrap();
    if kind == "job" {
        json!({
            "id": {"namespace": NS, "name": name}, "type": "BATCH", "name": name,
            "createdAt": "2021-06-01T12:00:00Z", "updatedAt": "2021-06-01T12:10:00Z",
            "namespace": NS, "location": "https://github.com/example/jobs/blob/main/etl.py",
            "description": "Loads data"
        })
    } else {
        json!({
            "id": {"namespace": NS, "name": name}, "type": "DB_TABLE", "name": name,
            "physicalName": name, "createdAt": "2021-06-01T12:00:00Z",
            "updatedAt": "2021-06-01T12:10:00Z", "namespace": NS, "sourceName": "analytics_db",
            "fields": [], "tags": [], "lastModifiedAt": "2021-06-01T12:10:00Z", "description": null
        })
    }
}

/// `GET /api/v1/lineage` as Marquez answers it: every node with its in- and out-edges.
fn lineage_graph() -> Value {
    let mut ids: Vec<&str> = EDGES.iter().flat_map(|(a, b)| [*a, *b]).collect();
    ids.sort();
    ids.dedup();
    let edge = |(a, b): &(&str, &str)| json!({"origin": full_id(a), "destination": full_id(b)});
    let graph: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({
                "id": full_id(id),
                "type": if id.starts_with("job:") { "JOB" } else { "DATASET" },
                "data": node_data(id),
                "inEdges": EDGES.iter().filter(|(_, b)| b == id).map(edge).collect::<Vec<_>>(),
                "outEdges": EDGES.iter().filter(|(a, _)| a == id).map(edge).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"graph": graph})
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn param(request: &SeenRequest, key: &str) -> Option<String> {
    let (_, query) = request.path.split_once('?')?;
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| decode(v))
}

fn marquez(request: &SeenRequest) -> ScriptedResponse {
    let path = request.path.split('?').next().unwrap_or_default();
    let known = |node: &str| {
        EDGES
            .iter()
            .any(|(a, b)| full_id(a) == node || full_id(b) == node)
    };
    match path {
        "/api/v1/lineage" => {
            let node = param(request, "nodeId").unwrap_or_default();
            if known(&node) {
                ScriptedResponse::json(200, lineage_graph())
            } else {
                ScriptedResponse::json(
                    404,
                    json!({"code": 404, "message": format!("Node '{node}' not found")}),
                )
            }
        }
        "/api/v1/search" => {
            let q = param(request, "q").unwrap_or_default();
            let mut names: Vec<&str> = EDGES
                .iter()
                .flat_map(|(a, b)| [*a, *b])
                .filter(|id| id.starts_with("dataset:"))
                .map(|id| id.split_once(':').unwrap().1)
                .filter(|name| name.contains(&q))
                .collect();
            names.sort();
            names.dedup();
            let results: Vec<Value> = names
                .iter()
                .map(|name| {
                    json!({"type": "DATASET", "name": name, "updatedAt": "2021-06-01T12:10:00Z",
                           "namespace": NS, "nodeId": format!("dataset:{NS}:{name}")})
                })
                .collect();
            ScriptedResponse::json(
                200,
                json!({"totalCount": results.len(), "results": results}),
            )
        }
        "/api/v1/namespaces/food_delivery/datasets/public.orders_7_days" => ScriptedResponse::json(
            200,
            json!({
                "id": {"namespace": NS, "name": "public.orders_7_days"},
                "type": "DB_TABLE", "name": "public.orders_7_days",
                "physicalName": "public.orders_7_days",
                "createdAt": "2021-06-01T12:00:00Z", "updatedAt": "2021-06-01T12:10:00Z",
                "namespace": NS, "sourceName": "analytics_db",
                "fields": [
                    {"name": "order_id", "type": "INTEGER", "tags": [], "description": "the id of the order"},
                    {"name": "placed_on", "type": "TIMESTAMP", "tags": [], "description": null}
                ],
                "tags": [], "lastModifiedAt": "2021-06-01T12:10:00Z",
                "description": "Orders of the last 7 days",
                "currentVersion": "b1fe7c2a-7c8c-4f35-9c2b-6a2b2c3f4d5e",
                "facets": {"schema": {}, "dataSource": {}}
            }),
        ),
        "/api/v1/namespaces/food_delivery/jobs/example.etl_orders_7_days/runs" => {
            ScriptedResponse::json(
                200,
                json!({"runs": [{
                    "id": "870492da-ecfb-4be0-91b9-9a89ddd3db90",
                    "createdAt": "2021-06-01T12:00:00Z", "updatedAt": "2021-06-01T12:03:40Z",
                    "nominalStartTime": null, "nominalEndTime": null, "state": "COMPLETED",
                    "startedAt": "2021-06-01T12:00:00Z", "endedAt": "2021-06-01T12:03:40Z",
                    "durationMs": 220000, "args": {}, "facets": {}
                }], "totalCount": 1}),
            )
        }
        _ => ScriptedResponse::json(
            404,
            json!({"code": 404, "message": format!("{path} not found")}),
        ),
    }
}

fn names(list: &Value) -> Vec<(String, u64)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let name = d.get("name").and_then(Value::as_str).or(d["id"].as_str());
            (name.unwrap().to_owned(), d["depth"].as_u64().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marquez_upstream_and_downstream_are_different_walks() {
    let (port, seen) = serve_scripted(|request, _| marquez(request)).await;
    let config = format!(
        "plugins:
  lineage:
    config:
      namespace: {NS}
    endpoints:
      api:
        url: http://127.0.0.1:{port}
        auth: {{type: api_key, header: X-Api-Key, key: marquez-key}}
"
    );
    let host = TestHost::start(&config, &[]).await.unwrap();
    host.load_builtin("lineage").await;

    let up = host
        .tool_ok("lineage_upstream", json!({"table": "public.orders_7_days"}))
        .await;
    assert_eq!(
        names(&up["datasets"]),
        [("public.customers".into(), 1), ("public.orders".into(), 1)],
        "{up}"
    );
    assert_eq!(up["jobs"][0]["name"], "example.etl_orders_7_days");
    let down = host
        .tool_ok(
            "lineage_downstream",
            json!({"table": "public.orders_7_days"}),
        )
        .await;
    assert_eq!(
        names(&down["datasets"]),
        [
            ("public.delivery_7_days".into(), 1),
            ("public.weekly_report".into(), 1)
        ],
        "{down}"
    );
    // Two hops upstream of the delivery table reach the raw tables.
    let deep = host
        .tool_ok(
            "lineage_upstream",
            json!({"table": "public.delivery_7_days", "depth": 2}),
        )
        .await;
    assert_eq!(
        names(&deep["datasets"]),
        [
            ("public.drivers".into(), 1),
            ("public.orders_7_days".into(), 1),
            ("public.customers".into(), 2),
            ("public.orders".into(), 2)
        ]
    );
    let shallow = host
        .tool_ok(
            "lineage_upstream",
            json!({"table": "public.delivery_7_days", "depth": 1}),
        )
        .await;
    assert_eq!(shallow["count"], 2);

    let path = host
        .tool_ok(
            "lineage_path",
            json!({"table": "public.orders", "target_table": "public.weekly_report"}),
        )
        .await;
    assert_eq!(path["found"], true);
    assert_eq!(path["direction"], "downstream");
    assert_eq!(path["dataset_hops"], 2);
    assert_eq!(
        path["path"],
        json!([
            "dataset:food_delivery:public.orders",
            "job:food_delivery:example.etl_orders_7_days",
            "dataset:food_delivery:public.orders_7_days",
            "job:food_delivery:example.etl_weekly_report",
            "dataset:food_delivery:public.weekly_report"
        ])
    );
    let back = host
        .tool_ok(
            "lineage_path",
            json!({"table": "public.weekly_report", "target_table": "public.customers"}),
        )
        .await;
    assert_eq!(back["direction"], "upstream");
    assert_eq!(back["path"][0], "dataset:food_delivery:public.customers");
    let none = host
        .tool_ok(
            "lineage_path",
            json!({"table": "public.drivers", "target_table": "public.weekly_report"}),
        )
        .await;
    assert_eq!(none["found"], false);

    let jobs = host
        .tool_ok("lineage_jobs", json!({"table": "public.orders_7_days"}))
        .await;
    assert_eq!(jobs["producers"][0]["name"], "example.etl_orders_7_days");
    let consumers: Vec<&str> = jobs["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(consumers.len(), 2);
    assert!(consumers.contains(&"example.etl_weekly_report"));

    let info = host
        .tool_ok("lineage_info", json!({"table": "public.orders_7_days"}))
        .await;
    assert_eq!(info["fields"][0]["name"], "order_id");
    assert_eq!(info["source"], "analytics_db");
    assert_eq!(info["facets"], json!(["dataSource", "schema"]));

    let found = host
        .tool_ok("lineage_search", json!({"query": "orders"}))
        .await;
    assert_eq!(found["count"], 2);
    assert_eq!(
        found["results"][0]["id"],
        "dataset:food_delivery:public.orders"
    );

    let runs = host
        .tool_ok(
            "lineage_runs",
            json!({"job": "example.etl_orders_7_days", "limit": 5}),
        )
        .await;
    assert_eq!(runs["runs"][0]["state"], "COMPLETED");
    assert_eq!(runs["runs"][0]["duration_ms"], 220000);

    let error = host
        .runtime
        .call_tool("lineage_upstream", r#"{"table": "public.ordrs"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert!(
        error
            .message
            .contains("did you mean: dataset:food_delivery:public.orders"),
        "{error}"
    );

    let all = seen.all();
    let first = &all[0];
    assert_eq!(
        param(first, "nodeId").as_deref(),
        Some("dataset:food_delivery:public.orders_7_days")
    );
    assert_eq!(param(first, "depth").as_deref(), Some("3"));
    for request in &all {
        assert_eq!(
            request.header("x-api-key"),
            Some("marquez-key"),
            "{}",
            request.path
        );
    }
    assert!(all.iter().any(|r| r.path
        == "/api/v1/namespaces/food_delivery/jobs/example.etl_orders_7_days/runs?limit=5"));
}

const GRAPH: &str = r#"{
  "nodes": [
    {"id": "raw.orders", "owner": "ingest"},
    {"id": "raw.customers"},
    {"id": "stg.orders", "layer": "staging"},
    {"id": "build_marts", "type": "job"},
    {"id": "mart.revenue", "layer": "mart"},
    {"id": "mart.churn"}
  ],
  "edges": [
    {"source": "raw.orders", "target": "stg.orders", "transform": "dbt"},
    {"source": "stg.orders", "target": "build_marts"},
    {"source": "raw.customers", "target": "build_marts"},
    {"source": "build_marts", "target": "mart.revenue"},
    {"source": "mart.revenue", "target": "mart.churn"}
  ]
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_graph_file_answers_the_same_tools() {
    let config = "plugins:
  lineage:
    config:
      graph_path: /lineage/graph.json
    permissions:
      filesystem:
        - host: \"{dir}/lineage\"
          guest: /lineage
";
    let host = TestHost::start_with(config, &[], |dir| {
        std::fs::create_dir_all(dir.join("lineage"))?;
        std::fs::write(dir.join("lineage/graph.json"), GRAPH)
    })
    .await
    .unwrap();
    host.load_builtin("lineage").await;

    let up = host
        .tool_ok("lineage_upstream", json!({"table": "mart.revenue"}))
        .await;
    assert_eq!(
        names(&up["datasets"]),
        [
            ("raw.customers".into(), 1),
            ("stg.orders".into(), 1),
            ("raw.orders".into(), 2)
        ],
        "{up}"
    );
    assert_eq!(up["backend"], "graph");
    let down = host
        .tool_ok(
            "lineage_downstream",
            json!({"table": "raw.orders", "depth": 2}),
        )
        .await;
    assert_eq!(
        names(&down["datasets"]),
        [("stg.orders".into(), 1), ("mart.revenue".into(), 2)]
    );
    let path = host
        .tool_ok(
            "lineage_path",
            json!({"table": "raw.orders", "target_table": "mart.churn"}),
        )
        .await;
    assert_eq!(
        path["path"],
        json!([
            "raw.orders",
            "stg.orders",
            "build_marts",
            "mart.revenue",
            "mart.churn"
        ])
    );
    assert_eq!(path["dataset_hops"], 3);
    let info = host
        .tool_ok("lineage_info", json!({"table": "stg.orders"}))
        .await;
    assert_eq!(info["attributes"]["layer"], "staging");
    assert_eq!(info["direct_upstream"], json!(["raw.orders"]));
    assert_eq!(info["direct_downstream"], json!(["build_marts"]));
    let jobs = host
        .tool_ok("lineage_jobs", json!({"table": "mart.revenue"}))
        .await;
    assert_eq!(jobs["producers"][0]["id"], "build_marts");
    let found = host
        .tool_ok("lineage_search", json!({"query": "MART"}))
        .await;
    assert_eq!(found["count"], 3);

    let error = host
        .runtime
        .call_tool("lineage_downstream", r#"{"table": "stg.ordrs"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert!(
        error.message.contains("did you mean: stg.orders"),
        "{error}"
    );
    let error = host
        .runtime
        .call_tool("lineage_runs", r#"{"job": "build_marts"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    let error = host
        .runtime
        .call_tool("lineage_upstream", r#"{"table": "x", "depth": 0}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_sources_are_explained() {
    let config = "plugins:
  lineage:
    config:
      graph_path: /lineage/missing.json
    permissions:
      filesystem:
        - host: \"{dir}\"
          guest: /lineage
";
    let host = TestHost::start(config, &[]).await.unwrap();
    host.load_builtin("lineage").await;
    let error = host
        .runtime
        .call_tool("lineage_upstream", r#"{"table": "a"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert!(error.message.contains("permissions.filesystem"), "{error}");

    let host = TestHost::start("plugins:\n  lineage:\n    config: {}\n", &[])
        .await
        .unwrap();
    host.load_builtin("lineage").await;
    let error = host
        .runtime
        .call_tool("lineage_search", r#"{"query": "a"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert!(error.message.contains("graph_path"), "{error}");
}
