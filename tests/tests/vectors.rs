//! The `vectors` capability end to end, through a real guest (`tests/fixtures/vectors_user`):
//! granted collections store and rank points with their payloads and survive a restart of the
//! host, ungranted ones are denied with the grant to add, each plugin instance has its own
//! namespace, and bad input (NaN, empty vectors, oversized payloads, path-like names, another
//! dimension) is refused as invalid input while the host keeps answering.

use std::sync::Arc;

use databot::runtime::{ErrorKind, PluginSource, Runtime};
use databot_e2e::{TestHost, fixture};
use serde_json::{Value, json};

const CONFIG: &str = "\
plugins:
  vectors_user:
    permissions:
      vectors: [notes, shared, dims]
  vectors_other:
    permissions:
      vectors: [shared]
";

async fn host() -> TestHost {
    TestHost::start(CONFIG, &["vectors_user"])
        .await
        .expect("the host starts")
}

async fn put(host: &TestHost, collection: &str, id: &str, vector: Value, payload: Value) {
    host.tool(
        "put",
        json!({"collection": collection, "id": id, "vector": vector, "payload": payload}),
    )
    .await
    .unwrap_or_else(|e| panic!("put {id} into {collection}: {e}"));
}

async fn find(host: &TestHost, collection: &str, vector: Value, limit: u32) -> Vec<Value> {
    let found = host
        .tool(
            "find",
            json!({"collection": collection, "vector": vector, "limit": limit}),
        )
        .await
        .unwrap_or_else(|e| panic!("find in {collection}: {e}"));
    found["hits"].as_array().expect("hits").clone()
}

fn ids(hits: &[Value]) -> Vec<&str> {
    hits.iter().map(|h| h["id"].as_str().expect("id")).collect()
}

/// Stop the host's runtime and start a new one on the same configuration and data folder.
async fn restart(host: TestHost) -> TestHost {
    let TestHost { runtime, dir } = host;
    let config = runtime.config().clone();
    drop(runtime);
    let runtime = Runtime::new(Arc::new(config)).expect("the runtime starts again");
    runtime.load_configured().await.expect("plugins load again");
    TestHost { runtime, dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_collections_rank_points_and_survive_a_restart() {
    let host = host().await;
    let points = [
        (
            "orders",
            [1.0, 0.0, 0.0, 0.0],
            json!({"table": "orders", "rows": 10}),
        ),
        (
            "order_items",
            [0.9, 0.3, 0.0, 0.0],
            json!({"table": "order_items"}),
        ),
        (
            "customers",
            [0.0, 1.0, 0.0, 0.0],
            json!({"table": "customers"}),
        ),
        (
            "events",
            [0.0, 0.0, 1.0, 0.0],
            json!({"table": "events", "tags": ["a", "b"]}),
        ),
        ("misc", [0.0, 0.0, 0.0, 2.0], json!(null)),
    ];
    for (id, vector, payload) in &points {
        put(&host, "notes", id, json!(vector), payload.clone()).await;
    }
    let hits = find(&host, "notes", json!([1.0, 0.1, 0.0, 0.0]), 3).await;
    assert_eq!(ids(&hits), ["orders", "order_items", "customers"]);
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] > w[1]), "{scores:?}");
    assert!(scores[0] > 0.99 && scores[0] <= 1.0 + 1e-6, "{scores:?}");
    assert_eq!(hits[0]["payload"], json!({"table": "orders", "rows": 10}));
    // Vectors are compared by direction (cosine): a longer one is no better a match.
    let hits = find(&host, "notes", json!([0.0, 0.0, 0.0, 0.5]), 1).await;
    assert_eq!(ids(&hits), ["misc"]);
    assert_eq!(hits[0]["payload"], Value::Null);
    // Replacing a point keeps one point under its id.
    put(
        &host,
        "notes",
        "events",
        json!([0.0, 0.0, 0.0, 1.0]),
        json!({"table": "events", "v": 2}),
    )
    .await;
    let all = find(&host, "notes", json!([0.0, 0.0, 0.0, 1.0]), 100).await;
    assert_eq!(all.len(), 5);
    assert_eq!(
        ids(&all[..2]).iter().filter(|id| **id == "events").count(),
        1
    );
    let before = find(&host, "notes", json!([0.5, 0.5, 0.5, 0.5]), 5).await;

    // On disk: the plugin's own folder, a snapshot and its log.
    let folder = host.dir.path().join("data/rag/plugins/vectors_user");
    assert!(folder.join("notes.bin").is_file());
    assert!(folder.join("notes.bin.log").is_file());

    let host = restart(host).await;
    let after = find(&host, "notes", json!([0.5, 0.5, 0.5, 0.5]), 5).await;
    assert_eq!(
        after, before,
        "the same points, scores and payloads after a restart"
    );
    let hits = find(&host, "notes", json!([0.0, 0.0, 1.0, 1.0]), 1).await;
    assert_eq!(hits[0]["payload"], json!({"table": "events", "v": 2}));
    // And the restarted host keeps writing.
    put(
        &host,
        "notes",
        "late",
        json!([0.0, 0.0, 1.0, 0.0]),
        json!("late"),
    )
    .await;
    let hits = find(&host, "notes", json!([0.0, 0.0, 1.0, 0.0]), 1).await;
    assert_eq!(hits[0]["payload"], json!("late"));
    let host = restart(host).await;
    assert_eq!(
        find(&host, "notes", json!([1.0, 1.0, 1.0, 1.0]), 100)
            .await
            .len(),
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ungranted_collection_is_denied_with_the_grant_to_add() {
    let host = host().await;
    for (tool, args) in [
        (
            "put",
            json!({"collection": "secret", "id": "x", "vector": [1.0], "payload": {}}),
        ),
        ("find", json!({"collection": "secret", "vector": [1.0]})),
    ] {
        let error = host.tool(tool, args).await.expect_err("denied");
        assert_eq!(error.kind, ErrorKind::Denied, "{error}");
        assert!(
            error
                .message
                .contains(r#"plugins.vectors_user.permissions.vectors: ["secret"]"#),
            "{error}"
        );
    }
    assert!(
        !host
            .dir
            .path()
            .join("data/rag/plugins/vectors_user/secret.bin")
            .exists()
    );
    // The granted ones still work.
    put(&host, "notes", "a", json!([1.0, 0.0]), json!(1)).await;
    assert_eq!(
        ids(&find(&host, "notes", json!([1.0, 0.0]), 5).await),
        ["a"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_of_one_plugin_do_not_see_each_others_points() {
    let host = host().await;
    let bytes = std::fs::read(fixture("vectors_user")).unwrap();
    let file = host.plugins_dir().join("vectors_user.wasm");
    put(
        &host,
        "shared",
        "mine",
        json!([1.0, 0.0]),
        json!({"by": "vectors_user"}),
    )
    .await;

    // The same component under another name (its own grants and namespace). Both instances
    // offer the same tool names, which the runtime keeps unique, so they take turns.
    assert!(host.runtime.unload("vectors_user"));
    host.runtime
        .load_instance(
            bytes.clone(),
            PluginSource::File(file.clone()),
            Some("vectors_other"),
        )
        .await
        .expect("the second instance loads");
    assert_eq!(
        host.runtime.tool_plugin("find").as_deref(),
        Some("vectors_other")
    );
    assert!(
        find(&host, "shared", json!([1.0, 0.0]), 10)
            .await
            .is_empty(),
        "the other instance's `shared` is another collection"
    );
    put(
        &host,
        "shared",
        "theirs",
        json!([1.0, 0.1]),
        json!({"by": "vectors_other"}),
    )
    .await;
    // Its grants are its own: `notes` is granted to vectors_user only.
    let error = host
        .tool("find", json!({"collection": "notes", "vector": [1.0, 0.0]}))
        .await
        .expect_err("denied");
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    assert!(
        error
            .message
            .contains("plugins.vectors_other.permissions.vectors"),
        "{error}"
    );

    assert!(host.runtime.unload("vectors_other"));
    host.runtime
        .load_instance(bytes, PluginSource::File(file), None)
        .await
        .expect("the first instance loads again");
    let hits = find(&host, "shared", json!([1.0, 0.0]), 10).await;
    assert_eq!(ids(&hits), ["mine"]);
    assert_eq!(hits[0]["payload"], json!({"by": "vectors_user"}));
    let data = host.dir.path().join("data/rag/plugins");
    assert!(data.join("vectors_user/shared.bin").is_file());
    assert!(data.join("vectors_other/shared.bin").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_invalid_input_and_the_host_keeps_working() {
    let host = host().await;
    put(
        &host,
        "notes",
        "good",
        json!([1.0, 0.0, 0.0]),
        json!({"ok": true}),
    )
    .await;
    let oversized = json!({"blob": "x".repeat(20 * 1024)});
    let cases = [
        (
            "NaN in a vector",
            "put",
            json!({"collection": "notes", "id": "n", "vector": [1.0, "NaN", 0.0]}),
            "NaN",
        ),
        (
            "infinity in a query",
            "find",
            json!({"collection": "notes", "vector": ["inf", 0.0, 0.0]}),
            "infinity",
        ),
        (
            "an empty vector",
            "put",
            json!({"collection": "notes", "id": "e", "vector": []}),
            "1 to 4096 values",
        ),
        (
            "an empty query",
            "find",
            json!({"collection": "notes", "vector": []}),
            "1 to 4096 values",
        ),
        (
            "an oversized payload",
            "put",
            json!({"collection": "notes", "id": "big", "vector": [1.0, 0.0, 0.0], "payload": oversized}),
            "16384-byte limit",
        ),
        (
            "an empty id",
            "put",
            json!({"collection": "notes", "id": "", "vector": [1.0, 0.0, 0.0]}),
            "point ids",
        ),
        (
            "a path as collection",
            "put",
            json!({"collection": "../x", "id": "p", "vector": [1.0, 0.0, 0.0]}),
            "collection name `../x`",
        ),
        (
            "a nested path as collection",
            "find",
            json!({"collection": "notes/../../state", "vector": [1.0, 0.0, 0.0]}),
            "letters, digits",
        ),
        (
            "an empty collection name",
            "find",
            json!({"collection": "", "vector": [1.0, 0.0, 0.0]}),
            "collection name",
        ),
    ];
    for (what, tool, args, says) in cases {
        let error = host.tool(tool, args).await.expect_err(what);
        assert_eq!(error.kind, ErrorKind::InvalidInput, "{what}: {error}");
        assert!(error.message.contains(says), "{what}: {error}");
        // Still answering, with nothing of the bad call stored.
        let hits = find(&host, "notes", json!([1.0, 0.0, 0.0]), 10).await;
        assert_eq!(ids(&hits), ["good"], "after {what}");
    }
    // Nothing escaped the plugin's folder.
    let data = host.dir.path().join("data");
    assert!(!data.join("rag/plugins/x.bin").exists());
    assert!(!data.join("rag/x.bin").exists());
    assert!(!data.join("rag/plugins/vectors_user/x.bin").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vector_of_another_dimension_is_refused() {
    let host = host().await;
    put(&host, "dims", "four", json!([1.0, 0.0, 0.0, 0.0]), json!(4)).await;
    let error = host
        .tool(
            "put",
            json!({"collection": "dims", "id": "three", "vector": [1.0, 0.0, 0.0]}),
        )
        .await
        .expect_err("refused");
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(
        error
            .message
            .contains("holds 4-dimensional vectors, this one has 3"),
        "{error}"
    );
    let error = host
        .tool("find", json!({"collection": "dims", "vector": [1.0, 0.0]}))
        .await
        .expect_err("refused");
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("the query has 2"), "{error}");
    // Other collections have their own dimension.
    put(&host, "notes", "two", json!([0.0, 1.0]), json!(2)).await;
    let hits = find(&host, "dims", json!([1.0, 0.0, 0.0, 0.0]), 10).await;
    assert_eq!(ids(&hits), ["four"]);
    let host = restart(host).await;
    let error = host
        .tool(
            "put",
            json!({"collection": "dims", "id": "three", "vector": [1.0, 0.0, 0.0]}),
        )
        .await
        .expect_err("still refused after a restart");
    assert!(error.message.contains("4-dimensional"), "{error}");
}
