//! The agent's data tools through the real components: `sql` and `data_quality` (tool ->
//! SQL connector -> host capability, against the real PostgreSQL and a SQLite file),
//! `filesystem` inside granted folders only, and `shell` with its allowlist.

use databot::runtime::ErrorKind;
use databot_e2e::TestHost;
use serde_json::json;
use sqlx::Connection;

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_and_data_quality_tools_run_through_connectors_on_postgres_and_sqlite() {
    let schema = format!("databot_dq_{}", std::process::id());
    let mut pg = sqlx::PgConnection::connect(PG_ADMIN)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432");
    for statement in [
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        format!("CREATE SCHEMA {schema}"),
        format!(
            "CREATE TABLE {schema}.events (id integer PRIMARY KEY, user_id integer, kind text, amount numeric(8,2), created timestamptz)"
        ),
        format!(
            "INSERT INTO {schema}.events VALUES (1, 10, 'click', 1.50, now() - interval '1 hour'), (2, 10, NULL, 2.00, now() - interval '2 hours'), (3, 11, 'view', NULL, now() - interval '3 hours'), (4, 12, NULL, 4.25, now() - interval '30 hours')"
        ),
        format!("CREATE TABLE {schema}.events_copy AS SELECT * FROM {schema}.events WHERE id < 4"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut pg)
            .await
            .expect("setup");
    }
    let yaml = format!(
        r#"data:
  sql:
    warehouse: {{url: "{PG_ADMIN}"}}
    local: {{url: "sqlite://{{dir}}/local.db"}}
plugins:
  warehouse:
    builtin: sql_connector
    config: {{source: warehouse}}
    permissions: {{sql: [warehouse]}}
  local:
    builtin: sql_connector
    config: {{source: local}}
    permissions: {{sql: [local]}}
  sql:
    config: {{connectors: [warehouse, local]}}
    permissions: {{connectors: [warehouse, local]}}
  data_quality:
    config: {{connectors: [warehouse, local]}}
    permissions: {{connectors: [warehouse, local]}}
"#
    );
    let host = TestHost::start_with(&yaml, &[], |dir| {
        let path = dir.join("local.db");
        databot_e2e::sqlite_setup(
            &path,
            "CREATE TABLE loads (id INTEGER PRIMARY KEY, loaded_at TEXT); INSERT INTO loads VALUES (1, datetime('now', '-2 hours')), (2, datetime('now', '-1 hours')), (2 + 1, NULL);",
        )
    })
    .await
    .expect("host starts");
    host.load_builtin("sql").await;
    host.load_builtin("data_quality").await;
    let events = format!("{schema}.events");

    // sql: two connections, so the tool asks which; with one named it queries through it.
    let error = host
        .tool("sql_query", json!({"query": "SELECT 1"}))
        .await
        .expect_err("ambiguous");
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("warehouse, local"), "{error}");
    let out = host.tool("sql_query", json!({"connection": "warehouse", "query": format!("SELECT id FROM {events} WHERE user_id = $1 ORDER BY id"), "params": [10]}))
        .await
        .expect("query");
    assert_eq!(out["rows"], json!([[1], [2]]));
    let error = host
        .tool(
            "sql_query",
            json!({"connection": "warehouse", "query": format!("DELETE FROM {events}")}),
        )
        .await
        .expect_err("read-only");
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    let connections = host
        .tool("sql_list_connections", json!({}))
        .await
        .expect("connections");
    assert_eq!(connections[0]["dialect"], "postgres", "{connections}");
    assert_eq!(connections[1]["dialect"], "sqlite", "{connections}");
    let schema_text = host
        .tool(
            "sql_schema",
            json!({"connection": "warehouse", "schema": schema}),
        )
        .await
        .expect("schema");
    assert!(
        schema_text["text"]
            .as_str()
            .is_some_and(|t| t.contains("events(id integer PK")),
        "{schema_text}"
    );

    // data_quality: pass/fail answers computed by the database.
    let out = host
        .tool(
            "dq_row_count",
            json!({"connection": "warehouse", "table": events, "min_rows": 5}),
        )
        .await
        .expect("row count");
    assert_eq!(
        (out["passed"].clone(), out["metrics"]["rows"].clone()),
        (json!(false), json!(4)),
        "{out}"
    );
    let out = host.tool("dq_null_rate", json!({"connection": "warehouse", "table": events, "column": "kind", "max_null_percent": 60})).await.expect("nulls");
    assert_eq!(out["metrics"]["null_percent"], 50.0, "{out}");
    assert_eq!(out["passed"], true);
    let out = host.tool("dq_freshness", json!({"connection": "warehouse", "table": events, "timestamp_column": "created", "threshold_hours": 0.5})).await.expect("freshness");
    assert_eq!(out["passed"], false, "{out}");
    let age = out["metrics"]["age_hours"].as_f64().unwrap_or_default();
    assert!((0.9..1.2).contains(&age), "{out}");
    let out = host
        .tool(
            "dq_freshness",
            json!({"connection": "local", "table": "loads", "timestamp_column": "loaded_at"}),
        )
        .await
        .expect("sqlite freshness");
    assert_eq!(out["passed"], true, "{out}");
    let out = host
        .tool(
            "dq_uniqueness",
            json!({"connection": "warehouse", "table": events, "columns": ["user_id"]}),
        )
        .await
        .expect("uniqueness");
    assert_eq!(out["passed"], false);
    assert_eq!(out["metrics"]["duplicate_values"], 1, "{out}");
    assert_eq!(out["metrics"]["extra_rows"], 1, "{out}");
    let out = host.tool("dq_compare", json!({"source_connection": "warehouse", "source_table": events, "target_table": format!("{schema}.events_copy"), "sum_column": "amount"})).await.expect("compare");
    assert_eq!(out["passed"], false, "{out}");
    assert_eq!(out["metrics"]["row_difference"], -1, "{out}");

    // Names are quoted, so a hostile "table" is just a table that does not exist.
    let error = host
        .tool(
            "dq_row_count",
            json!({"connection": "warehouse", "table": "events; DROP TABLE x"}),
        )
        .await
        .expect_err("no such table");
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("does not exist"), "{error}");

    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut pg)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_tools_stay_inside_granted_folders_and_write_only_where_allowed() {
    let yaml = r#"plugins:
  filesystem:
    permissions:
      filesystem:
        - {host: "{dir}/docs", guest: /docs}
        - {host: "{dir}/work", guest: /work, mode: rw}
"#;
    let host = TestHost::start_with(yaml, &[], |dir| {
        std::fs::create_dir_all(dir.join("docs/sub"))?;
        std::fs::create_dir_all(dir.join("work"))?;
        std::fs::write(dir.join("docs/readme.md"), "line 1\nline 2\nline 3\n")?;
        std::fs::write(dir.join("docs/.hidden"), "x")?;
        std::fs::write(dir.join("secret.txt"), "top secret")
    })
    .await
    .expect("host starts");
    host.load_builtin("filesystem").await;

    let out = host
        .tool(
            "read_file",
            json!({"path": "/docs/readme.md", "offset": 2, "limit": 1}),
        )
        .await
        .expect("read");
    assert_eq!(out["content"], "line 2");
    assert_eq!(out["total_lines"], 3);
    let listing = host
        .tool("list_dir", json!({"path": "/docs"}))
        .await
        .expect("list");
    assert_eq!(
        listing,
        json!([{"name": "readme.md", "kind": "file", "size": 21}, {"name": "sub", "kind": "dir", "size": 0}])
    );

    for path in [
        "/docs/../secret.txt",
        "/secret.txt",
        "/etc/passwd",
        "../secret.txt",
    ] {
        let error = host
            .tool("read_file", json!({"path": path}))
            .await
            .expect_err(path);
        assert!(
            matches!(
                error.kind,
                ErrorKind::NotFound | ErrorKind::Denied | ErrorKind::Failed
            ),
            "{path}: {error}"
        );
        assert!(!error.message.contains("top secret"), "{path}: {error}");
    }

    let error = host
        .tool(
            "write_file",
            json!({"path": "/docs/new.md", "content": "x"}),
        )
        .await
        .expect_err("read-only folder");
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    assert!(error.message.contains("mode: rw"), "{error}");

    host.tool(
        "write_file",
        json!({"path": "/work/out/report.md", "content": "total: 1\ntotal: 2\n"}),
    )
    .await
    .expect("write");
    let error = host
        .tool(
            "edit_file",
            json!({"path": "/work/out/report.md", "old_text": "total", "new_text": "sum"}),
        )
        .await
        .expect_err("ambiguous edit");
    assert!(error.message.contains("2 times"), "{error}");
    host.tool(
        "edit_file",
        json!({"path": "/work/out/report.md", "old_text": "total: 2", "new_text": "total: 3"}),
    )
    .await
    .expect("edit");
    let written =
        std::fs::read_to_string(host.dir.path().join("work/out/report.md")).expect("on the host");
    assert_eq!(written, "total: 1\ntotal: 3\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_tool_runs_only_allowlisted_programs_without_a_shell() {
    let yaml = r#"plugins:
  shell:
    permissions:
      shell: {allow: [echo, ls], working_dir: "{dir}"}
"#;
    let host = TestHost::start(yaml, &[]).await.expect("host starts");
    host.load_builtin("shell").await;
    let out = host
        .tool(
            "shell",
            json!({"program": "echo", "args": ["a;b", "$(id)", "|", "c"]}),
        )
        .await
        .expect("echo");
    assert_eq!(out["stdout"], "a;b $(id) | c\n");
    assert_eq!(out["exit_code"], 0);
    let error = host
        .tool("shell", json!({"program": "sh", "args": ["-c", "id"]}))
        .await
        .expect_err("not allowed");
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    assert!(error.message.contains("permissions.shell.allow"), "{error}");

    // Without a grant the capability is off altogether.
    let host = TestHost::start("plugins:\n  shell: {}\n", &[])
        .await
        .expect("host starts");
    host.load_builtin("shell").await;
    let error = host
        .tool("shell", json!({"program": "echo"}))
        .await
        .expect_err("off");
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
}
