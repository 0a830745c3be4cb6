//! The `sql` capability and the `sql_connector` component against the real PostgreSQL,
//! MariaDB and SQLite of this machine: reads, bound parameters, the bypass corpus refused on
//! every dialect (and nothing changed afterwards), caps with notices, statement timeouts,
//! writes only where granted, catalog and schema discovery, and an outage with recovery.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use databot::runtime::ErrorKind;
use databot_e2e::TestHost;
use serde_json::{Value, json};
use sqlx::Connection;

const PG_ADMIN: &str = databot_e2e::POSTGRES_URL;
const MY_ADMIN: &str = "mysql://root@127.0.0.1:3306/test";

/// The same two tables in each database: `items` (3 rows) and `orders` referencing it.
async fn create_postgres(schema: &str) {
    let mut conn = sqlx::PgConnection::connect(PG_ADMIN)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432");
    for statement in [
        format!("CREATE SCHEMA {schema}"),
        format!(
            "CREATE TABLE {schema}.items (id integer PRIMARY KEY, name text NOT NULL, price numeric(10,2), created timestamp, tags text[])"
        ),
        format!("COMMENT ON TABLE {schema}.items IS 'things we sell'"),
        format!("COMMENT ON COLUMN {schema}.items.price IS 'unit price in EUR'"),
        format!(
            "CREATE TABLE {schema}.orders (id bigint PRIMARY KEY, item_id integer NOT NULL REFERENCES {schema}.items(id), quantity integer)"
        ),
        format!(
            "INSERT INTO {schema}.items VALUES (1, 'widget', 9.50, '2026-01-02 03:04:05', ARRAY['a','b']), (2, 'it''s ok', 100.00, NULL, NULL), (3, 'gadget', NULL, '2026-02-01 00:00:00', '{{}}')"
        ),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut conn)
            .await
            .expect("setup statement");
    }
}

async fn create_mariadb(database: &str) {
    let mut conn = sqlx::MySqlConnection::connect(MY_ADMIN)
        .await
        .expect("MariaDB at 127.0.0.1:3306");
    for statement in [
        format!("CREATE DATABASE {database}"),
        format!(
            "CREATE TABLE {database}.items (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, price DECIMAL(10,2) COMMENT 'unit price in EUR', created DATETIME NULL) COMMENT 'things we sell'"
        ),
        format!(
            "CREATE TABLE {database}.orders (id BIGINT PRIMARY KEY, item_id INT NOT NULL, quantity INT, FOREIGN KEY (item_id) REFERENCES {database}.items(id))"
        ),
        format!(
            "INSERT INTO {database}.items VALUES (1, 'widget', 9.50, '2026-01-02 03:04:05'), (2, 'it''s ok', 100.00, NULL), (3, 'gadget', NULL, '2026-02-01 00:00:00')"
        ),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut conn)
            .await
            .expect("setup statement");
    }
}

async fn create_sqlite(path: &std::path::Path) {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("sqlite file");
    for statement in [
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL, created TEXT)",
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, item_id INTEGER NOT NULL REFERENCES items(id), quantity INTEGER)",
        "INSERT INTO items VALUES (1, 'widget', 9.5, '2026-01-02 03:04:05'), (2, 'it''s ok', 100.0, NULL), (3, 'gadget', NULL, '2026-02-01 00:00:00')",
    ] {
        sqlx::raw_sql(statement)
            .execute(&mut conn)
            .await
            .expect("setup statement");
    }
}

async fn drop_databases(schema: &str, database: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(PG_ADMIN).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(&mut conn)
        .await;
    }
    if let Ok(mut conn) = sqlx::MySqlConnection::connect(MY_ADMIN).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {database}"
        )))
        .execute(&mut conn)
        .await;
    }
}

/// A source and a connector instance over it, read-only unless `writer`.
fn source_yaml(name: &str, url: &str, extra: &str) -> String {
    format!(
        "    {name}:\n      url: \"{url}\"\n      timeout_ms: 1000\n      connect_timeout_ms: 1000\n{extra}"
    )
}

fn connector_yaml(name: &str, source: &str, write: bool) -> String {
    let write = if write {
        format!("\n      sql_write: [{source}]")
    } else {
        String::new()
    };
    format!(
        "  {name}:\n    builtin: sql_connector\n    config: {{source: {source}}}\n    permissions:\n      sql: [{source}]{write}\n"
    )
}

async fn count_items(host: &TestHost, connector: &str, table: &str) -> Value {
    let out = host
        .connector(
            connector,
            "query",
            json!({"statement": format!("SELECT COUNT(*) AS n FROM {table}")}),
        )
        .await
        .expect("count");
    out["rows"][0][0].clone()
}

struct Fixture {
    host: TestHost,
    pg_schema: String,
    my_db: String,
}

async fn start() -> Fixture {
    let pg_schema = databot_e2e::unique_name("databot_e2e");
    let my_db = databot_e2e::unique_name("databot_e2e");
    create_postgres(&pg_schema).await;
    create_mariadb(&my_db).await;
    let sources = [
        source_yaml("pg", PG_ADMIN, ""),
        source_yaml("pg_capped", PG_ADMIN, "      max_rows: 2\n"),
        source_yaml("pg_rw", PG_ADMIN, "      writable: true\n"),
        source_yaml("my", &format!("mysql://root@127.0.0.1:3306/{my_db}"), ""),
        source_yaml(
            "my_capped",
            &format!("mysql://root@127.0.0.1:3306/{my_db}"),
            "      max_rows: 2\n      max_bytes: 40\n",
        ),
        source_yaml("lite", "sqlite://{dir}/data.db", ""),
        source_yaml(
            "lite_capped",
            "sqlite://{dir}/data.db",
            "      max_rows: 2\n",
        ),
    ]
    .concat();
    let connectors = [
        connector_yaml("pg", "pg", false),
        connector_yaml("pg_capped", "pg_capped", false),
        connector_yaml("pg_writer", "pg_rw", true),
        connector_yaml("pg_rw_no_grant", "pg_rw", false),
        connector_yaml("my", "my", false),
        connector_yaml("my_capped", "my_capped", false),
        connector_yaml("lite", "lite", false),
        connector_yaml("lite_capped", "lite_capped", false),
    ]
    .concat();
    let yaml = format!("data:\n  sql:\n{sources}plugins:\n{connectors}");
    let host = TestHost::start_with(&yaml, &[], |dir| {
        let path = dir.join("data.db");
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(create_sqlite(&path)))
        })
        .join()
        .map_err(|_| std::io::Error::other("creating the SQLite file failed"))?
    })
    .await
    .expect("host starts");
    Fixture {
        host,
        pg_schema,
        my_db,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_params_caps_timeouts_writes_and_the_bypass_corpus_on_three_databases() {
    let fixture = start().await;
    let host = &fixture.host;
    let pg_items = format!("{}.items", fixture.pg_schema);

    // Reads, with values typed as JSON (exact decimals as strings, timestamps ISO 8601).
    let out = host.connector("pg", "query", json!({"statement": format!("SELECT id, name, price, created, tags FROM {pg_items} ORDER BY id")}))
        .await
        .expect("pg read");
    assert_eq!(
        out["columns"],
        json!(["id", "name", "price", "created", "tags"])
    );
    assert_eq!(
        out["rows"][0],
        json!([1, "widget", "9.50", "2026-01-02T03:04:05", ["a", "b"]])
    );
    assert_eq!(out["row_count"], 3);
    assert_eq!(out["truncated"], false);
    let out = host
        .connector(
            "my",
            "query",
            json!({"statement": "SELECT id, name, price, created FROM items ORDER BY id"}),
        )
        .await
        .expect("mariadb read");
    assert_eq!(
        out["rows"][0],
        json!([1, "widget", "9.50", "2026-01-02T03:04:05"])
    );
    let out = host
        .connector(
            "lite",
            "query",
            json!({"statement": "SELECT id, name, price FROM items ORDER BY id"}),
        )
        .await
        .expect("sqlite read");
    assert_eq!(out["rows"][0], json!([1, "widget", 9.5]));

    // Parameters are bound, so quotes in values are data.
    for (connector, statement) in [
        ("pg", format!("SELECT id FROM {pg_items} WHERE name = $1")),
        ("my", "SELECT id FROM items WHERE name = ?".to_owned()),
        ("lite", "SELECT id FROM items WHERE name = ?".to_owned()),
    ] {
        let out = host
            .connector(
                connector,
                "query",
                json!({"statement": statement, "params": ["it's ok"]}),
            )
            .await
            .unwrap_or_else(|e| panic!("{connector}: {e}"));
        assert_eq!(out["rows"], json!([[2]]), "{connector}");
    }

    // The bypass corpus: every case refused, on every dialect, before it reaches the database.
    let corpus: Vec<(&str, String)> = vec![
        (
            "pg",
            format!("WITH x AS (DELETE FROM {pg_items} RETURNING *) SELECT * FROM x"),
        ),
        ("pg", format!("EXPLAIN ANALYZE DELETE FROM {pg_items}")),
        (
            "pg",
            format!("SELECT * INTO {}.stolen FROM {pg_items}", fixture.pg_schema),
        ),
        ("pg", format!("SELECT 1; DROP TABLE {pg_items}; --'")),
        ("pg", format!("SELECT 1 /* ' */; DELETE FROM {pg_items}")),
        ("pg", format!("COMMIT; DROP TABLE {pg_items}")),
        ("pg", "SET default_transaction_read_only = off".into()),
        (
            "pg",
            "SELECT set_config('default_transaction_read_only', 'off', false)".into(),
        ),
        ("pg", "SELECT pg_terminate_backend(1)".into()),
        ("pg", "SELECT pg_read_file('/etc/passwd')".into()),
        ("pg", format!("COPY {pg_items} TO PROGRAM 'id'")),
        ("pg", "CALL some_procedure()".into()),
        ("pg", "VACUUM".into()),
        ("pg", format!("SELECT * FROM {pg_items} FOR UPDATE")),
        ("pg", format!("DELETE FROM {pg_items}")),
        ("pg", format!("TRUNCATE {pg_items}")),
        (
            "my",
            "SELECT * FROM items INTO OUTFILE '/tmp/databot_e2e_out'".into(),
        ),
        ("my", "SELECT 1; DROP TABLE items".into()),
        ("my", "SELECT 1 -- '\n; DROP TABLE items".into()),
        (
            "my",
            "LOAD DATA INFILE '/etc/passwd' INTO TABLE items".into(),
        ),
        ("my", "SET GLOBAL max_connections = 1".into()),
        ("my", "SELECT LOAD_FILE('/etc/passwd')".into()),
        ("my", "CALL some_procedure()".into()),
        ("my", "REPLACE INTO items VALUES (9, 'x', 1, NULL)".into()),
        ("my", "UPDATE items SET price = 0".into()),
        ("my", "DROP TABLE items".into()),
        ("lite", "PRAGMA writable_schema = ON".into()),
        (
            "lite",
            "ATTACH DATABASE '/tmp/databot_e2e.db' AS other".into(),
        ),
        ("lite", "VACUUM".into()),
        ("lite", "SELECT load_extension('evil')".into()),
        ("lite", "SELECT 1; DROP TABLE items".into()),
        ("lite", "INSERT INTO items VALUES (9, 'x', 1, NULL)".into()),
        ("lite", "WITH x AS (SELECT 1) DELETE FROM items".into()),
    ];
    for (connector, statement) in &corpus {
        let error = host
            .connector(connector, "query", json!({"statement": statement}))
            .await
            .expect_err(&format!("{connector} must refuse: {statement}"));
        assert_eq!(
            error.kind,
            ErrorKind::Denied,
            "{connector}: {statement}: {error}"
        );
        assert!(
            error.message.contains("refused"),
            "{connector}: {statement}: {error}"
        );
    }
    assert_eq!(count_items(host, "pg", &pg_items).await, json!(3));
    assert_eq!(count_items(host, "my", "items").await, json!(3));
    assert_eq!(count_items(host, "lite", "items").await, json!(3));

    // Caps: the row cap cuts with a structured notice; a smaller max_rows is honoured; the
    // byte cap stops before the row that would cross it.
    for (connector, table) in [
        ("pg_capped", pg_items.as_str()),
        ("my_capped", "items"),
        ("lite_capped", "items"),
    ] {
        let out = host
            .connector(
                connector,
                "query",
                json!({"statement": format!("SELECT id FROM {table} ORDER BY id")}),
            )
            .await
            .unwrap_or_else(|e| panic!("{connector}: {e}"));
        assert_eq!(out["rows"], json!([[1], [2]]), "{connector}");
        assert_eq!(out["truncated"], true, "{connector}");
        assert!(
            out["notice"]
                .as_str()
                .is_some_and(|n| n.contains("more than 2 rows")),
            "{out}"
        );
    }
    let out = host
        .connector(
            "pg",
            "query",
            json!({"statement": format!("SELECT id FROM {pg_items} ORDER BY id"), "max_rows": 1}),
        )
        .await
        .expect("max_rows");
    assert_eq!(out["rows"], json!([[1]]));
    assert_eq!(out["truncated"], true);
    let out = host
        .connector(
            "my_capped",
            "query",
            json!({"statement": "SELECT name, REPEAT('x', 30) FROM items ORDER BY id"}),
        )
        .await
        .expect("byte cap");
    assert_eq!(out["row_count"], 0);
    assert!(
        out["notice"]
            .as_str()
            .is_some_and(|n| n.contains("byte cap")),
        "{out}"
    );

    // Statement timeouts, enforced by each database.
    for (connector, statement) in [
        // Sleeping functions are refused by the policy; these compute for a long time.
        ("pg", "SELECT count(*) FROM generate_series(1, 10000000000)"),
        (
            "my",
            "SELECT COUNT(*) FROM seq_1_to_1000000 a, seq_1_to_1000000 b",
        ),
        (
            "lite",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c",
        ),
    ] {
        let started = std::time::Instant::now();
        let error = host
            .connector(connector, "query", json!({"statement": statement}))
            .await
            .expect_err(&format!("{connector} times out"));
        assert_eq!(error.kind, ErrorKind::Timeout, "{connector}: {error}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{connector} took {:?}",
            started.elapsed()
        );
    }
    // The connection is usable again after a timeout.
    assert_eq!(count_items(host, "lite", "items").await, json!(3));

    // Database errors come back as invalid input with the database's words.
    let error = host
        .connector(
            "pg",
            "query",
            json!({"statement": "SELECT * FROM no_such_table"}),
        )
        .await
        .expect_err("unknown table");
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("no_such_table"), "{error}");

    // Writes: only on a writable source, and only for a plugin granted writes on it.
    let insert = json!({"statement": format!("INSERT INTO {pg_items} (id, name) VALUES ($1, $2)"), "params": [10, "new"]});
    let out = host
        .connector("pg_writer", "query", insert.clone())
        .await
        .expect("granted write");
    assert_eq!(out["rows_affected"], 1);
    let error = host
        .connector("pg_rw_no_grant", "query", insert.clone())
        .await
        .expect_err("no write grant");
    assert_eq!(error.kind, ErrorKind::Denied);
    assert!(error.message.contains("sql_write"), "{error}");
    let error = host
        .connector("pg", "query", insert)
        .await
        .expect_err("read-only source");
    assert!(error.message.contains("read-only"), "{error}");
    assert_eq!(count_items(host, "pg", &pg_items).await, json!(4));

    drop_databases(&fixture.pg_schema, &fixture.my_db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_operations_and_schema_discovery_on_three_databases() {
    let fixture = start().await;
    let host = &fixture.host;
    for (connector, schema) in [
        ("pg", fixture.pg_schema.as_str()),
        ("my", fixture.my_db.as_str()),
        ("lite", "main"),
    ] {
        let tables = host
            .connector(connector, "list_tables", json!({"schema": schema}))
            .await
            .unwrap_or_else(|e| panic!("{connector}: {e}"));
        let names: Vec<&str> = tables["tables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(names, ["items", "orders"], "{connector}: {tables}");

        let described = host
            .connector(
                connector,
                "describe_table",
                json!({"table": "orders", "schema": schema}),
            )
            .await
            .unwrap_or_else(|e| panic!("{connector}: {e}"));
        assert_eq!(
            described["primary_key"],
            json!(["id"]),
            "{connector}: {described}"
        );
        assert_eq!(
            described["foreign_keys"][0]["columns"],
            json!(["item_id"]),
            "{connector}: {described}"
        );
        assert!(
            described["foreign_keys"][0]["references_table"]
                .as_str()
                .is_some_and(|t| t.ends_with("items")),
            "{connector}: {described}"
        );
        assert_eq!(described["columns"][1]["name"], "item_id");
        assert_eq!(
            described["columns"][1]["nullable"], false,
            "{connector}: {described}"
        );

        let discovery = host
            .connector(connector, "discover_schema", json!({"schema": schema}))
            .await
            .unwrap_or_else(|e| panic!("{connector}: {e}"));
        let text = discovery["text"].as_str().unwrap_or_default();
        assert!(text.contains("items(id"), "{connector}: {text}");
        assert!(
            text.contains("item_id") && text.contains("→"),
            "{connector}: {text}"
        );
        if connector != "lite" {
            assert!(text.contains("unit price in EUR"), "{connector}: {text}");
            assert!(text.contains("things we sell"), "{connector}: {text}");
        }

        let error = host
            .connector(
                connector,
                "describe_table",
                json!({"table": "nope\"; DROP TABLE items; --", "schema": schema}),
            )
            .await
            .expect_err("unknown table");
        assert_eq!(error.kind, ErrorKind::NotFound, "{connector}: {error}");

        let sample = host
            .connector(
                connector,
                "sample",
                json!({"table": "items", "schema": schema, "limit": 2}),
            )
            .await
            .unwrap_or_else(|e| panic!("{connector}: {e}"));
        assert_eq!(sample["row_count"], 2, "{connector}: {sample}");
    }
    let databases = host
        .connector("my", "list_databases", json!({}))
        .await
        .expect("databases");
    assert!(
        databases
            .as_array()
            .is_some_and(|d| d.contains(&json!(fixture.my_db))),
        "{databases}"
    );
    let schemas = host
        .connector("pg", "list_schemas", json!({}))
        .await
        .expect("schemas");
    assert!(
        schemas
            .as_array()
            .is_some_and(|s| s.contains(&json!(fixture.pg_schema))),
        "{schemas}"
    );
    let info = host
        .connector("pg_writer", "info", json!({}))
        .await
        .expect("info");
    assert_eq!(
        info,
        json!({"source": "pg_rw", "dialect": "postgres", "writable": true})
    );

    let health = host.runtime.connectors_health(Duration::ZERO).await;
    assert_eq!(health.len(), 8);
    assert!(health.iter().all(|h| h.status == "healthy"), "{health:?}");

    drop_databases(&fixture.pg_schema, &fixture.my_db).await;
}

/// A TCP proxy to PostgreSQL that can be cut and restored, to play an outage.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    connections: Arc<parking_lot_free::Connections>,
}

mod parking_lot_free {
    /// Tasks of open proxied connections, aborted when the proxy goes down.
    #[derive(Default)]
    pub struct Connections(pub std::sync::Mutex<Vec<tokio::task::AbortHandle>>);
}

impl Proxy {
    async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(parking_lot_free::Connections::default());
        let (flag, open) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                if let Ok(mut open) = open.0.lock() {
                    open.push(task.abort_handle());
                }
            }
        });
        Self {
            port,
            up,
            connections,
        }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up && let Ok(mut open) = self.connections.0.lock() {
            for task in open.drain(..) {
                task.abort();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_makes_the_connector_unhealthy_and_it_recovers() {
    let proxy = Proxy::start(5432).await;
    let url = format!("postgres://postgres@127.0.0.1:{}/test", proxy.port);
    let yaml = format!(
        "data:\n  sql:\n{}plugins:\n{}",
        source_yaml("flaky", &url, ""),
        connector_yaml("flaky", "flaky", false)
    );
    let host = TestHost::start(&yaml, &[]).await.expect("host starts");

    let health = host.runtime.connectors_health(Duration::ZERO).await;
    assert_eq!(health[0].status, "healthy", "{health:?}");
    assert!(
        host.connector("flaky", "query", json!({"statement": "SELECT 1"}))
            .await
            .is_ok()
    );

    proxy.set_up(false);
    // Within the cache window the last answer is reused; a fresh check sees the outage.
    let cached = host
        .runtime
        .connectors_health(databot::runtime::HEALTH_TTL)
        .await;
    assert_eq!(cached[0].status, "healthy");
    let mut fresh = host.runtime.connectors_health(Duration::ZERO).await;
    if fresh[0].status == "healthy" {
        // The first use of a connection cut under the pool may be what reveals the cut.
        fresh = host.runtime.connectors_health(Duration::ZERO).await;
    }
    assert_eq!(fresh[0].status, "unreachable", "{fresh:?}");
    assert!(fresh[0].message.contains("cannot be reached"), "{fresh:?}");
    let error = host
        .connector("flaky", "query", json!({"statement": "SELECT 1"}))
        .await
        .expect_err("the database is down");
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
    assert!(
        error.message.contains("source `flaky` cannot be reached"),
        "{error}"
    );

    proxy.set_up(true);
    let health = host.runtime.connectors_health(Duration::ZERO).await;
    assert_eq!(health[0].status, "healthy", "{health:?}");
    let out = host
        .connector(
            "flaky",
            "query",
            json!({"statement": "SELECT 41 + 1 AS answer"}),
        )
        .await
        .expect("recovered");
    assert_eq!(out["rows"], json!([[42]]));
}
