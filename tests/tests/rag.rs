//! The knowledge base end to end: a sample shop schema in the local PostgreSQL described by
//! the `sql_connector`, a docs folder, embeddings from the `offline` provider component (and
//! from the `openai` component against a server speaking the real `/v1/embeddings` format),
//! retrieval of the right table and document, persistence across a restart, idempotent
//! re-ingestion, vanished tables and files, a damaged store file, conversation capture and the
//! context message the model receives. The Qdrant store runs against a real Qdrant when one is
//! configured or listening, otherwise against Qdrant's engine behind its gRPC protocol
//! (`tests/qdrant/edge_server.py`).

use std::sync::Arc;
use std::time::Duration;

use databot::config::{Config, QdrantConfig};
use databot::rag::{Chunk, QdrantStore, Rag, VectorStore};
use databot::runtime::{PluginSource, Runtime};
use databot_e2e::POSTGRES_URL as PG_ADMIN;
use databot_e2e::{ScriptedResponse, SeenRequest, TestHost, serve_scripted};
use serde_json::{Value, json};
use sqlx::Connection;

/// customers, products, orders (FK customers), order_items (FK orders, products), commented.
async fn create_shop(schema: &str) {
    let s = schema;
    databot_e2e::postgres_exec(&[
        format!("CREATE SCHEMA {s}"),
        format!("CREATE TABLE {s}.customers (id serial PRIMARY KEY, full_name text NOT NULL, email text, country_code char(2))"),
        format!("COMMENT ON TABLE {s}.customers IS 'people and companies who buy from the shop'"),
        format!("CREATE TABLE {s}.products (id serial PRIMARY KEY, title text NOT NULL, unit_price numeric(10,2), stock_level integer)"),
        format!("COMMENT ON TABLE {s}.products IS 'catalogue of articles for sale with stock'"),
        format!("CREATE TABLE {s}.orders (id bigserial PRIMARY KEY, customer_id integer NOT NULL REFERENCES {s}.customers(id), total numeric(12,2), placed_at timestamptz NOT NULL)"),
        format!("COMMENT ON TABLE {s}.orders IS 'what customers ordered: one row per order with its total amount'"),
        format!("COMMENT ON COLUMN {s}.orders.total IS 'order total in EUR including VAT'"),
        format!("CREATE TABLE {s}.order_items (order_id bigint REFERENCES {s}.orders(id), product_id integer REFERENCES {s}.products(id), quantity integer NOT NULL, PRIMARY KEY (order_id, product_id))"),
        format!("COMMENT ON TABLE {s}.order_items IS 'line items: which product and how many of it in each order'"),
    ])
    .await;
}

async fn drop_shop(schema: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(PG_ADMIN).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(&mut conn)
        .await;
    }
}

fn write_docs(dir: &std::path::Path) -> std::io::Result<()> {
    let docs = dir.join("docs");
    std::fs::create_dir_all(docs.join("runbooks"))?;
    std::fs::write(
        docs.join("refunds.md"),
        "# Refund policy\n\nCustomers can ask for a refund within 30 days of delivery.\n\n## How refunds are processed\n\nSupport opens a refund ticket; finance pays the money back to the original card within five working days.\n",
    )?;
    std::fs::write(
        docs.join("runbooks/nightly-load.md"),
        "# Nightly warehouse load\n\nThe nightly ETL job loads the warehouse from the shop database at 02:00 UTC.\n\n## When the load fails\n\nRestart the Airflow DAG `nightly_load` and check the Kafka consumer lag of the loader group.\n",
    )?;
    std::fs::write(
        docs.join("glossary.txt"),
        "Glossary. Churn: a customer who has not ordered for 180 days. AOV: average order value, total divided by the number of orders.",
    )?;
    std::fs::write(docs.join("picture.png"), [0u8, 1, 2, 3])?;
    Ok(())
}

fn shop_config(schema: &str) -> String {
    format!(
        r#"data:
  sql:
    shopdb:
      url: "{PG_ADMIN}"
      timeout_ms: 3000
    downdb:
      url: "postgres://postgres@127.0.0.1:1/test"
      timeout_ms: 500
      connect_timeout_ms: 500
plugins:
  shop:
    builtin: sql_connector
    config: {{source: shopdb}}
    permissions:
      sql: [shopdb]
  down:
    builtin: sql_connector
    config: {{source: downdb}}
    permissions:
      sql: [downdb]
rag:
  provider: offline
  schemas:
    shop: [{schema}]
  docs_dirs: ["{{dir}}/docs"]
  chunk_chars: 400
  chunk_overlap: 60
"#
    )
}

async fn top_sources(rag: &Rag, question: &str, k: usize) -> Vec<String> {
    rag.search(question, k, None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.source)
        .collect()
}

/// `question` finds `table` first among the tables and near the top of everything. The glossary
/// ("AOV: total divided by the number of orders") is a fair second answer to an order-total
/// question, and the schema's unique name (a different one each run) is part of every table
/// chunk's text, so which of the two wins overall varies from run to run.
async fn finds_table(rag: &Rag, question: &str, table: &str) {
    let tables = rag.search(question, 3, Some("schema")).await.unwrap();
    assert_eq!(tables[0].source, table, "{tables:?}");
    let hits = top_sources(rag, question, 3).await;
    assert!(hits[..2].contains(&table.to_owned()), "{hits:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_and_docs_are_ingested_found_kept_and_replaced() {
    ingest_find_keep_replace("").await;
}

/// The same knowledge base with `rag.store: qdrant`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_knowledge_base_works_the_same_on_qdrant() {
    let qdrant = databot_e2e::qdrant::TestQdrant::start().await;
    println!("knowledge base against {} at {}", qdrant.kind, qdrant.url);
    let settings = QdrantConfig {
        url: qdrant.url.clone(),
        collection: databot_e2e::unique_name("databot_kb"),
        api_key: std::env::var("DATABOT_TEST_QDRANT_API_KEY").ok(),
        timeout_ms: 5000,
    };
    let api_key = match &settings.api_key {
        Some(key) => format!("\n    api_key: \"{key}\""),
        None => String::new(),
    };
    ingest_find_keep_replace(&format!(
        "  store: qdrant\n  qdrant:\n    url: \"{}\"\n    collection: {}{api_key}\n",
        settings.url, settings.collection
    ))
    .await;
    QdrantStore::connect(&settings)
        .unwrap()
        .drop_collection()
        .await
        .unwrap();
}

/// Ingest the shop schema and the docs folder, find the right table and documents, re-ingest
/// (nothing changes), drop a table and change files, and reopen on a new runtime.
/// `store_yaml` is added to the `rag:` section (empty: the embedded store).
async fn ingest_find_keep_replace(store_yaml: &str) {
    let schema = databot_e2e::unique_name("rag_shop");
    create_shop(&schema).await;
    let config = format!("{}{store_yaml}", shop_config(&schema));
    let host = TestHost::start_with(&config, &[], write_docs)
        .await
        .unwrap();
    host.load_builtin("offline").await;
    let rag = Rag::open(&host.runtime).unwrap();

    // Schemas: four tables from `shop`; the unreachable `down` reports its error.
    let report = rag.ingest_schemas().await.unwrap();
    let shop = &report.connectors["shop"];
    assert_eq!(shop.tables, 4, "{report:?}");
    assert_eq!(shop.embedded, 4);
    assert!(shop.errors.is_empty(), "{:?}", shop.errors);
    let down = &report.connectors["down"];
    assert_eq!(down.tables, 0);
    assert!(!down.errors.is_empty(), "{report:?}");

    // Docs: three text files (the picture is not one), chunked.
    let docs = rag.ingest_docs().await.unwrap();
    assert_eq!(docs.files, 3, "{docs:?}");
    assert!(docs.chunks >= 3);
    let stats = rag.stats().await.unwrap();
    assert_eq!(stats.store.by_kind.get("schema"), Some(&4));
    assert_eq!(stats.store.dim, Some(384));
    assert_eq!(stats.store.model.as_deref(), Some("offline-hash-384-v1"));
    let total = stats.store.chunks;

    // Questions find the right table and document.
    let orders = format!("schema:shop/{schema}.orders");
    let items = format!("schema:shop/{schema}.order_items");
    let customers = format!("schema:shop/{schema}.customers");
    finds_table(
        &rag,
        "which table has what customers ordered and the order total",
        &orders,
    )
    .await;
    let hits = top_sources(&rag, "how many of each product are in an order", 3).await;
    assert!(hits.contains(&items), "{hits:?}");
    let hits = top_sources(&rag, "customer email addresses and countries", 3).await;
    assert_eq!(hits[0], customers, "{hits:?}");
    let hits = top_sources(&rag, "how long does a refund take to be paid back", 3).await;
    assert!(hits[0].starts_with("doc:refunds.md#chunk"), "{hits:?}");
    let hits = top_sources(&rag, "the nightly load failed, what do I do", 3).await;
    assert!(
        hits[0].starts_with("doc:runbooks/nightly-load.md#chunk"),
        "{hits:?}"
    );
    let only_docs = rag
        .search("what customers ordered", 10, Some("doc"))
        .await
        .unwrap();
    assert!(only_docs.iter().all(|m| m.source.starts_with("doc:")));

    // The context for a prompt leaves out what scores below rag.min_score.
    let context = rag
        .context_for("test:s", "which table has the order total")
        .await
        .unwrap()
        .expect("relevant context");
    assert!(
        context.contains(&format!("[source: {orders}]")),
        "{context}"
    );
    assert!(
        rag.context_for("test:s", "zebra xylophone quasar")
            .await
            .unwrap()
            .is_none()
    );

    // Re-ingesting changes nothing and embeds nothing.
    let again = rag.ingest_schemas().await.unwrap();
    assert_eq!(again.connectors["shop"].embedded, 0);
    let docs_again = rag.ingest_docs().await.unwrap();
    assert_eq!(docs_again.unchanged, 3);
    assert_eq!(docs_again.chunks, 0);
    assert_eq!(rag.stats().await.unwrap().store.chunks, total);

    // A dropped table disappears; a changed file is re-embedded; a deleted file goes.
    databot_e2e::postgres_exec(&[format!("DROP TABLE {schema}.order_items")]).await;
    let after_drop = rag.ingest_schemas().await.unwrap();
    assert_eq!(after_drop.connectors["shop"].removed, 1);
    assert_eq!(after_drop.connectors["shop"].tables, 3);
    let hits = top_sources(&rag, "how many of each product are in an order", 10).await;
    assert!(!hits.contains(&items), "{hits:?}");
    let docs_dir = host.dir.path().join("docs");
    std::fs::write(
        docs_dir.join("glossary.txt"),
        "Glossary. Cohort: customers grouped by the month of their first order.",
    )
    .unwrap();
    std::fs::remove_file(docs_dir.join("refunds.md")).unwrap();
    let changed = rag.ingest_docs().await.unwrap();
    assert_eq!(changed.files, 2);
    assert_eq!(changed.unchanged, 1);
    assert_eq!(changed.removed, 1);
    let hits = top_sources(&rag, "refund ticket finance card", 5).await;
    assert!(
        hits.iter().all(|s| !s.starts_with("doc:refunds.md")),
        "{hits:?}"
    );
    let hits = top_sources(&rag, "cohort of customers by month of first order", 1).await;
    assert!(hits[0].starts_with("doc:glossary.txt"), "{hits:?}");
    let kept = rag.stats().await.unwrap().store.chunks;
    drop(rag);

    // A new runtime on the same data folder finds everything without ingesting.
    let config: Config = host.runtime.config().clone();
    let restarted = Runtime::new(Arc::new(config)).unwrap();
    let offline = databot::runtime::builtin::builtin_bytes("offline").unwrap();
    restarted
        .load_bytes(offline.to_vec(), PluginSource::Builtin)
        .await
        .unwrap();
    let rag = Rag::open(&restarted).unwrap();
    assert_eq!(rag.stats().await.unwrap().store.chunks, kept);
    finds_table(
        &rag,
        "which table has what customers ordered and the order total",
        &orders,
    )
    .await;
    drop_shop(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_file_is_a_clear_error_and_stays_untouched() {
    let host = TestHost::start("rag: {provider: offline}", &[])
        .await
        .unwrap();
    host.load_builtin("offline").await;
    let path = databot::rag::store_path(&host.runtime);
    // A real store first, then damage it.
    let rag = Rag::open(&host.runtime).unwrap();
    rag.remember_turn("test:c", "what is AOV", "average order value")
        .await
        .unwrap();
    drop(rag);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let error = Rag::open(&host.runtime).err().expect("refused").to_string();
    assert!(error.contains(&path.display().to_string()), "{error}");
    assert!(error.contains("checksum"), "{error}");
    assert!(error.contains("databot rag ingest"), "{error}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the file is left alone"
    );
    std::fs::write(&path, b"not a knowledge base").unwrap();
    let error = Rag::open(&host.runtime).err().expect("refused").to_string();
    assert!(error.contains("not a databot knowledge base"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_are_remembered_and_found_in_later_conversations() {
    let host = TestHost::start("rag: {provider: offline}", &["echo"])
        .await
        .unwrap();
    host.load_builtin("offline").await;
    let rag = Arc::new(Rag::open(&host.runtime).unwrap());
    let agent = host.agent("offline", false).await.with_rag(rag.clone());
    let outcome = agent
        .turn(
            "test:first",
            r#"/echo {"text": "the warehouse password rotates every quarter"}"#,
            None,
        )
        .await
        .unwrap();
    assert!(outcome.content.contains("rotates every quarter"));
    // Captured in the background.
    let mut stats = rag.stats().await.unwrap();
    for _ in 0..100 {
        if stats.store.by_kind.contains_key("conversation") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        stats = rag.stats().await.unwrap();
    }
    assert_eq!(stats.store.by_kind.get("conversation"), Some(&1));
    let hits = rag
        .search("how often does the warehouse password rotate", 1, None)
        .await
        .unwrap();
    assert_eq!(hits[0].source, "conversation:test:first");
    assert!(hits[0].text.starts_with("User: /echo"), "{}", hits[0].text);
    assert!(hits[0].text.contains("Assistant:"));
    // By default a conversation gets only its own older turns back: another user's
    // conversation never sees them.
    let own = rag
        .context_for("test:first", "warehouse password rotation")
        .await
        .unwrap()
        .expect("its own remembered turn");
    assert!(own.contains("[source: conversation:test:first]"), "{own}");
    assert!(
        rag.context_for("test:second", "warehouse password rotation")
            .await
            .unwrap()
            .is_none_or(|text| !text.contains("conversation:test:first")),
        "turns leak into another conversation"
    );
    // With `rag.share_conversations`, every conversation may get them.
    let sharing = Rag::with_store(
        host.runtime.clone(),
        databot::config::RagConfig {
            share_conversations: true,
            ..rag.settings().clone()
        },
        rag.store().clone(),
    );
    let other = sharing
        .context_for("test:second", "warehouse password rotation")
        .await
        .unwrap()
        .expect("context from the first conversation");
    assert!(
        other.contains("[source: conversation:test:first]"),
        "{other}"
    );

    // Switched off: nothing is captured.
    let quiet = TestHost::start(
        "rag: {provider: offline, ingest_conversations: false}",
        &["echo"],
    )
    .await
    .unwrap();
    quiet.load_builtin("offline").await;
    let quiet_rag = Arc::new(Rag::open(&quiet.runtime).unwrap());
    let agent = quiet
        .agent("offline", false)
        .await
        .with_rag(quiet_rag.clone());
    agent
        .turn("test:q", r#"/echo {"text": "nothing to keep"}"#, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(quiet_rag.stats().await.unwrap().store.chunks, 0);
}

/// A deterministic stand-in for an embedding model: one axis per topic word.
fn fake_embedding(text: &str) -> Vec<f32> {
    let text = text.to_lowercase();
    let topics = ["order", "refund", "weather", "kafka"];
    let mut vector: Vec<f32> = topics
        .iter()
        .map(|t| text.matches(t).count() as f32)
        .collect();
    vector.push(0.05);
    vector
}

fn embeddings_response(request: &SeenRequest) -> ScriptedResponse {
    let body = request.json();
    let inputs = body["input"].as_array().cloned().unwrap_or_default();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            json!({"object": "embedding", "index": i, "embedding": fake_embedding(text.as_str().unwrap_or(""))})
        })
        .collect();
    ScriptedResponse::json(
        200,
        json!({
            "object": "list", "data": data, "model": "text-embedding-test",
            "usage": {"prompt_tokens": 5, "total_tokens": 5}
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_receives_marked_context_and_embeddings_use_the_openai_wire_format() {
    let failing_embeddings = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failing = failing_embeddings.clone();
    let (port, seen) = serve_scripted(move |request: &SeenRequest, _| {
        if request.path == "/v1/embeddings" {
            if failing.load(std::sync::atomic::Ordering::SeqCst) {
                return ScriptedResponse::json(500, json!({"error": {"message": "down"}}));
            }
            return embeddings_response(request);
        }
        assert_eq!(request.path, "/v1/chat/completions");
        ScriptedResponse::json(
            200,
            json!({
                "id": "c1", "object": "chat.completion", "model": "gpt-test",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Use the orders table."}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
            }),
        )
    })
    .await;
    let yaml = format!(
        r#"plugins:
  openai:
    permissions:
      http:
        allow: ["127.0.0.1:{port}"]
        allow_private: true
        secrets:
          - {{ host: "http://127.0.0.1:{port}", header: authorization, value: "Bearer sk-test-key" }}
    config:
      base_url: "http://127.0.0.1:{port}/v1"
      model: gpt-test
      retry_base_ms: 10
      max_retries: 0
rag:
  provider: openai
  model: text-embedding-test
  min_score: 0.5
  ingest_conversations: false
  docs_dirs: ["{{dir}}/docs"]
"#
    );
    let host = TestHost::start_with(&yaml, &[], |dir| {
        std::fs::create_dir_all(dir.join("docs"))?;
        std::fs::write(
            dir.join("docs/orders.md"),
            "# Orders\n\nEvery order is a row in shop.orders; the order total is in EUR.",
        )?;
        std::fs::write(
            dir.join("docs/weather.md"),
            "# Weather\n\nThe weather station writes to a Kafka topic every minute.",
        )
    })
    .await
    .unwrap();
    host.load_builtin("openai").await;
    let rag = Arc::new(Rag::open(&host.runtime).unwrap());
    let docs = rag.ingest_docs().await.unwrap();
    assert_eq!(docs.files, 2, "{docs:?}");
    let stats = rag.stats().await.unwrap();
    assert_eq!(stats.store.dim, Some(5));
    assert_eq!(stats.store.model.as_deref(), Some("text-embedding-test"));

    // The embeddings request in the OpenAI format, with the key added by the host.
    let embed_request = seen
        .all()
        .into_iter()
        .find(|r| r.path == "/v1/embeddings")
        .expect("an embeddings request");
    assert_eq!(embed_request.method, "POST");
    assert_eq!(
        embed_request.header("authorization"),
        Some("Bearer sk-test-key")
    );
    let body = embed_request.json();
    assert_eq!(body["model"], "text-embedding-test");
    assert!(body["input"][0].as_str().is_some(), "{body}");
    let inputs: usize = seen
        .all()
        .iter()
        .filter(|r| r.path == "/v1/embeddings")
        .map(|r| r.json()["input"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(inputs, 2, "one chunk per file");

    let agent = host.agent("openai", false).await.with_rag(rag.clone());
    let outcome = agent
        .turn(
            "test:ctx",
            "where do I find each order and its total?",
            None,
        )
        .await
        .unwrap();
    assert_eq!(outcome.content, "Use the orders table.");
    let chat = seen
        .all()
        .into_iter()
        .rfind(|r| r.path == "/v1/chat/completions")
        .expect("a chat request")
        .json();
    let messages = chat["messages"].as_array().unwrap();
    let last = messages.last().unwrap();
    assert_eq!(last["role"], "user");
    // Retrieved text is data: a user-side message just before the question, never system.
    let context = &messages[messages.len() - 2];
    assert_eq!(context["role"], "user");
    let text = context["content"].as_str().unwrap();
    assert!(text.starts_with(databot::rag::CONTEXT_HEADER), "{text}");
    assert!(text.contains("[source: doc:orders.md#chunk0]"), "{text}");
    assert!(text.contains("order total is in EUR"), "{text}");
    assert!(!text.contains("weather"), "below min_score: {text}");
    // The context is not stored in the conversation.
    let history = agent.sessions().history("test:ctx").await.unwrap();
    assert!(history.iter().all(|m| {
        !m.content
            .as_deref()
            .unwrap_or("")
            .contains("knowledge base")
    }));

    // Embeddings down: the turn still gets answered, without context.
    failing_embeddings.store(true, std::sync::atomic::Ordering::SeqCst);
    let outcome = agent
        .turn(
            "test:ctx2",
            "where do I find each order and its total?",
            None,
        )
        .await
        .unwrap();
    assert_eq!(outcome.content, "Use the orders table.");
    let chat = seen
        .all()
        .into_iter()
        .rfind(|r| r.path == "/v1/chat/completions")
        .unwrap()
        .json();
    let serialized = chat["messages"].to_string();
    assert!(!serialized.contains("knowledge base"), "{serialized}");
}

fn unit_chunk(id: &str, group: &str, vector: &[f32]) -> Chunk {
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    Chunk {
        id: id.into(),
        source: format!("{group}#{id}"),
        group: group.into(),
        hash: format!("hash-{id}"),
        text: format!("text {id}"),
        metadata: serde_json::Map::from_iter([("n".to_owned(), json!(id))]),
        vector: vector.iter().map(|v| v / norm).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qdrant_store_over_the_qdrant_protocol() {
    let qdrant = databot_e2e::qdrant::TestQdrant::start().await;
    println!("Qdrant store against {} at {}", qdrant.kind, qdrant.url);
    let collection = databot_e2e::unique_name("databot_test");
    let store = QdrantStore::connect(&QdrantConfig {
        url: qdrant.url.clone(),
        collection: collection.clone(),
        api_key: std::env::var("DATABOT_TEST_QDRANT_API_KEY").ok(),
        timeout_ms: 5000,
    })
    .unwrap();
    assert!(
        store
            .search(&[1.0, 0.0, 0.0], 3, None)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .upsert(
            vec![
                unit_chunk("a", "schema:pg", &[1.0, 0.0, 0.0]),
                unit_chunk("b", "doc:x.md", &[0.9, 0.1, 0.0]),
                unit_chunk("c", "doc:y.md", &[0.0, 0.0, 1.0]),
            ],
            "m",
        )
        .await
        .unwrap();
    let hits = store.search(&[1.0, 0.0, 0.0], 2, None).await.unwrap();
    assert_eq!(hits[0].id, "a");
    assert_eq!(hits[1].id, "b");
    assert_eq!(hits[0].metadata["n"], "a");
    let docs = store
        .search(&[1.0, 0.0, 0.0], 5, Some("doc"))
        .await
        .unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(store.entries("doc:x.md").await.unwrap()[0].hash, "hash-b");
    assert_eq!(
        store.groups("doc:").await.unwrap(),
        ["doc:x.md".to_owned(), "doc:y.md".to_owned()]
    );
    // Upsert by id replaces.
    store
        .upsert(vec![unit_chunk("a", "schema:pg", &[0.0, 1.0, 0.0])], "m")
        .await
        .unwrap();
    assert_eq!(store.stats().await.unwrap().chunks, 3);
    assert_eq!(store.delete_group("doc:y.md").await.unwrap(), 1);
    assert_eq!(store.delete_ids(&["b".to_owned()]).await.unwrap(), 1);
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.chunks, 1);
    assert_eq!(stats.dim, Some(3));
    // Another dimension is refused with the reason.
    let error = store
        .upsert(vec![unit_chunk("z", "doc:z", &[1.0, 0.0])], "m2")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("3-dimensional"), "{error}");
    store.drop_collection().await.unwrap();
}

fn cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_databot_cli"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("the databot binary runs")
}

#[test]
fn the_cli_ingests_searches_reports_and_refuses_a_damaged_store() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("handbook");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("oncall.md"),
        "# On call\n\nWhen the nightly load fails, restart the DAG and page the data team.",
    )
    .unwrap();
    std::fs::write(
        docs.join("style.md"),
        "# Style\n\nSQL keywords are upper case; table names are plural snake_case.",
    )
    .unwrap();
    let config = dir.path().join("databot.yaml");
    std::fs::write(
        &config,
        "runtime:\n  data_dir: data\n  plugins_dir: plugins\n  watch: false\nrag:\n  docs_dirs: [handbook]\n",
    )
    .unwrap();

    let out = cli(&config, &["rag", "ingest", "--docs", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["docs"]["files"], 2, "{report}");
    let out = cli(
        &config,
        &[
            "rag",
            "search",
            "the nightly load failed",
            "-k",
            "1",
            "--json",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let hits: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hits[0]["source"], "doc:oncall.md#chunk0", "{hits}");
    let out = cli(&config, &["rag", "stats", "--json"]);
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["chunks"], 2);
    assert_eq!(stats["by_kind"]["doc"], 2);
    assert_eq!(stats["store"], "embedded");
    assert_eq!(stats["dim"], 384);

    let store = dir.path().join("data/rag/knowledge.bin");
    let mut bytes = std::fs::read(&store).unwrap();
    bytes.truncate(bytes.len() - 10);
    std::fs::write(&store, &bytes).unwrap();
    let out = cli(&config, &["rag", "stats"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("knowledge.bin is unreadable"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_ingests_at_start_and_when_a_connector_is_hot_loaded() {
    let schema = databot_e2e::unique_name("rag_live");
    create_shop(&schema).await;
    // `shop` loads with the host; `late` is configured but only loaded later, by hand.
    let yaml = format!(
        r#"data:
  sql:
    shopdb:
      url: "{PG_ADMIN}"
plugins:
  shop:
    builtin: sql_connector
    config: {{source: shopdb}}
    permissions:
      sql: [shopdb]
  late:
    config: {{source: shopdb}}
    permissions:
      sql: [shopdb]
rag:
  provider: offline
  schemas:
    shop: [{schema}]
    late: [{schema}]
"#
    );
    let host = TestHost::start(&yaml, &[]).await.unwrap();
    host.load_builtin("offline").await;
    let rag = databot::cli::rag::start_for_serve(&host.runtime).expect("a knowledge base");
    let count_of = |prefix: String| {
        let rag = rag.clone();
        async move {
            for _ in 0..200 {
                let hits = rag
                    .search("orders customers products", 20, Some("schema"))
                    .await
                    .unwrap();
                let n = hits
                    .iter()
                    .filter(|m| m.source.starts_with(&prefix))
                    .count();
                if n == 4 {
                    return n;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            0
        }
    };
    assert_eq!(
        count_of("schema:shop/".into()).await,
        4,
        "ingested at start"
    );
    let bytes = databot::runtime::builtin::builtin_bytes("sql_connector").unwrap();
    host.runtime
        .load_instance(bytes.to_vec(), PluginSource::Builtin, Some("late"))
        .await
        .unwrap();
    assert_eq!(
        count_of("schema:late/".into()).await,
        4,
        "ingested on hot load"
    );
    drop_shop(&schema).await;
}
