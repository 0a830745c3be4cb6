//! What a SQL call can leave behind or make the host hold, against the live PostgreSQL,
//! MariaDB and SQLite of this machine:
//! - a pooled connection carries nothing from one call to the next: each kind of session
//!   state (locks, variables, settings, cursors, listeners, temporary tables, role, backup
//!   stage) is put on the only connection of a pool, and the next user of the pool must see
//!   the session as it was before;
//! - a value or row larger than the source's byte cap is stopped before it is read (the wire
//!   guard for PostgreSQL and MariaDB, SQLite's length limit), the error names `max_bytes`,
//!   the call returns well inside the statement timeout, and the source keeps working.

use std::time::{Duration, Instant};

use databot::capabilities::sql::{SourcePool, SqlError, SqlSource, SqlSources, run};
use databot::config::Config;
use databot::runtime::ErrorKind;
use databot_e2e::{POSTGRES_URL, TestHost};
use serde_json::json;
use sqlx::{Connection, Row};

const MARIADB_URL: &str = "mysql://root@127.0.0.1:3306/test";

fn sources(yaml: &str) -> SqlSources {
    let config = Config::parse(&format!("data:\n  sql:\n{yaml}"), "test.yaml", |_| None)
        .expect("the test config parses");
    SqlSources::from_config(&config).expect("the sources build")
}

/// The session as a call would find it, in one text.
async fn postgres_probe(conn: &mut sqlx::PgConnection) -> String {
    sqlx::query_scalar::<_, String>(
        "SELECT concat_ws('|',
            (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()),
            current_setting('search_path'), current_setting('statement_timeout'),
            current_setting('standard_conforming_strings'), current_setting('work_mem'),
            (SELECT count(*) FROM pg_cursors), (SELECT count(*) FROM pg_listening_channels()),
            (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()),
            coalesce(current_setting('databot.probe', true), ''), current_user)",
    )
    .fetch_one(conn)
    .await
    .expect("probing the session")
}

async fn mariadb_probe(conn: &mut sqlx::MySqlConnection) -> String {
    sqlx::query_scalar::<_, String>(
        "SELECT CAST(CONCAT_WS('|', COALESCE(@databot_probe, '-'),
            COALESCE(IS_USED_LOCK('databot_probe') = CONNECTION_ID(), 0), @@session.sql_mode,
            @@session.max_statement_time, @@session.time_zone, @@session.tx_isolation,
            @@session.sql_select_limit, @@session.character_set_client, @@session.autocommit,
            @@session.group_concat_max_len) AS CHAR)",
    )
    .fetch_one(conn)
    .await
    .expect("probing the session")
}

/// Put each case's state on the only connection of `pool` (checking it took), then check the
/// next user of the pool finds the session as it was, and that a call still runs.
async fn each_state_is_gone_after_release<DB>(
    pool: &sqlx::Pool<DB>,
    source: &SqlSource,
    cases: &[(&str, &str)],
    probe: impl AsyncFn(&mut DB::Connection) -> String,
) where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    let baseline = probe(&mut *pool.acquire().await.expect("a connection")).await;
    for (what, setup) in cases {
        {
            let mut conn = pool.acquire().await.expect("a connection");
            sqlx::raw_sql(sqlx::AssertSqlSafe(*setup))
                .execute(&mut *conn)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_ne!(probe(&mut *conn).await, baseline, "{what} changed nothing");
        }
        // The pool has one connection: the next user gets it after its release (or its
        // replacement).
        let after = probe(&mut *pool.acquire().await.expect("a connection")).await;
        assert_eq!(after, baseline, "{what} survived the release");
        let out = run(source, "SELECT 1 AS one", &[], None, false)
            .await
            .unwrap_or_else(|e| panic!("a call after {what}: {e}"));
        assert_eq!(out.rows, "[[1]]");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sessions_carry_nothing_from_one_call_to_the_next() {
    let sources = sources(&format!(
        "    pg: {{url: \"{POSTGRES_URL}\", pool_size: 1}}\n"
    ));
    let source = sources.get("pg").expect("the source");
    let SourcePool::Postgres(pool) = source.pool().expect("the pool") else {
        panic!("a PostgreSQL pool");
    };
    let baseline = postgres_probe(&mut pool.acquire().await.expect("a connection")).await;
    assert!(
        baseline.contains("|on|"),
        "standard_conforming_strings pinned: {baseline}"
    );
    let cases = [
        ("session advisory lock", "SELECT pg_advisory_lock(424242)"),
        ("search_path", "SET search_path TO pg_catalog"),
        ("statement_timeout", "SET statement_timeout = '17s'"),
        (
            "standard_conforming_strings",
            "SET standard_conforming_strings = off",
        ),
        ("work_mem", "SET work_mem = '77MB'"),
        (
            "cursor held past its transaction",
            "BEGIN; DECLARE databot_held CURSOR WITH HOLD FOR SELECT 1; COMMIT",
        ),
        ("listener", "LISTEN databot_probe"),
        ("temporary table", "CREATE TEMP TABLE databot_probe (x int)"),
        (
            "custom setting",
            "SELECT set_config('databot.probe', 'x', false)",
        ),
        ("role", "SET ROLE pg_monitor"),
    ];
    each_state_is_gone_after_release(pool, &source, &cases, postgres_probe).await;
    let mut admin = sqlx::PgConnection::connect(POSTGRES_URL)
        .await
        .expect("admin");
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 424242",
    )
    .fetch_one(&mut admin)
    .await
    .expect("reading locks");
    assert_eq!(held, 0, "the advisory lock is released");
    sources.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_sessions_carry_nothing_from_one_call_to_the_next() {
    let sources = sources(&format!(
        "    my: {{url: \"{MARIADB_URL}\", pool_size: 1}}\n"
    ));
    let source = sources.get("my").expect("the source");
    let SourcePool::Mysql(pool) = source.pool().expect("the pool") else {
        panic!("a MySQL pool");
    };
    let baseline = mariadb_probe(&mut pool.acquire().await.expect("a connection")).await;
    assert!(!baseline.contains("ANSI_QUOTES"), "{baseline}");
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS databot_backup_probe (x INT)")
        .execute(&mut *pool.acquire().await.expect("a connection"))
        .await
        .expect("set-up");
    let cases = [
        ("user variable", "SET @databot_probe = 1"),
        ("user lock", "SELECT GET_LOCK('databot_probe', 0)"),
        (
            "sql_mode",
            "SET SESSION sql_mode = 'ANSI_QUOTES,NO_BACKSLASH_ESCAPES'",
        ),
        ("statement time", "SET SESSION max_statement_time = 0"),
        ("time zone", "SET SESSION time_zone = '+05:00'"),
        (
            "isolation",
            "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        ),
        ("select limit", "SET SESSION sql_select_limit = 1"),
        ("character set", "SET NAMES latin1"),
        ("autocommit", "SET autocommit = 0"),
        (
            "group_concat_max_len",
            "SET SESSION group_concat_max_len = 4",
        ),
    ];
    each_state_is_gone_after_release(pool, &source, &cases, mariadb_probe).await;
    // A backup stage holds server-wide locks: the next user must not inherit it, and the
    // server must not keep it.
    {
        let mut conn = pool.acquire().await.expect("a connection");
        sqlx::raw_sql("BACKUP STAGE START")
            .execute(&mut *conn)
            .await
            .expect("a backup stage starts");
    }
    let mut next = pool.acquire().await.expect("a connection");
    let ended = sqlx::raw_sql("BACKUP STAGE END").execute(&mut *next).await;
    assert!(ended.is_err(), "the next user found the backup stage open");
    drop(next);
    let mut admin = sqlx::MySqlConnection::connect(MARIADB_URL)
        .await
        .expect("admin");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let row = sqlx::query("SELECT IS_FREE_LOCK('databot_probe')")
            .fetch_one(&mut admin)
            .await
            .expect("reading locks");
        let free: Option<i64> = row.get(0);
        if free == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the user lock is still held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another session can take the backup stage: nobody holds it.
    sqlx::raw_sql("BACKUP STAGE START; BACKUP STAGE END")
        .execute(&mut admin)
        .await
        .expect("the backup stage was left open");
    let _ = sqlx::raw_sql("DROP TABLE IF EXISTS databot_backup_probe")
        .execute(&mut admin)
        .await;
    sources.close().await;
}

fn too_large(result: Result<databot::capabilities::sql::QueryOutcome, SqlError>, what: &str) {
    match result {
        Err(error @ SqlError::TooLarge { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains("max_bytes") && text.contains("stopped before"),
                "{what}: {text}"
            );
        }
        Ok(out) => panic!("{what}: returned {} rows", out.row_count),
        Err(other) => panic!("{what}: {other}"),
    }
}

async fn oversized_values_are_stopped_on(source: &SqlSource, cases: &[&str], fits: &str) {
    for statement in cases {
        let started = Instant::now();
        too_large(run(source, statement, &[], None, false).await, statement);
        // Stopped at the first message or the first oversized value, long before the
        // statement timeout (10 s here).
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "`{statement}` took {:?}",
            started.elapsed()
        );
        let out = run(source, "SELECT 2 AS two", &[], None, false)
            .await
            .unwrap_or_else(|e| panic!("the source after `{statement}`: {e}"));
        assert_eq!(out.rows, "[[2]]");
    }
    // Within the cap: served whole.
    let out = run(source, fits, &[], None, false)
        .await
        .expect("a value within the cap");
    assert_eq!(out.row_count, 1);
    assert!(!out.truncated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_values_are_stopped_before_they_are_read() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let lite = dir.path().join("data.db");
    databot_e2e::sqlite_setup(
        &lite,
        "CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);",
    )
    .expect("SQLite set-up");
    let caps = "max_bytes: 1048576, timeout_ms: 10000, pool_size: 2";
    let sources = sources(&format!(
        "    pg: {{url: \"{POSTGRES_URL}\", {caps}}}\n    my: {{url: \"{MARIADB_URL}\", {caps}}}\n    lite: {{url: \"sqlite://{}\", {caps}}}\n",
        lite.display()
    ));
    let pg = sources.get("pg").expect("pg");
    oversized_values_are_stopped_on(
        &pg,
        &[
            "SELECT repeat('x', 300000000)",
            "SELECT repeat('x', 2000000) AS a",
            // Many rows, then one too large: the rows before it do not matter.
            "SELECT CASE WHEN g < 1000 THEN 'small' ELSE repeat('x', 5000000) END FROM generate_series(1, 1000) g",
            // The error message itself would carry the value.
            "SELECT repeat('x', 5000000)::int",
        ],
        "SELECT repeat('y', 200000) AS v",
    )
    .await;
    let my = sources.get("my").expect("my");
    oversized_values_are_stopped_on(
        &my,
        &[
            "SELECT REPEAT('x', 10000000)",
            "SELECT REPEAT('x', 2000000) AS a, REPEAT('y', 2000000) AS b",
        ],
        "SELECT REPEAT('y', 200000) AS v",
    )
    .await;
    let lite_source = sources.get("lite").expect("lite");
    oversized_values_are_stopped_on(
        &lite_source,
        &[
            "SELECT randomblob(300000000)",
            "SELECT length(randomblob(300000000))",
            "SELECT zeroblob(2000000)",
            "SELECT hex(zeroblob(1000000))",
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) SELECT group_concat(hex(randomblob(1000)), '') FROM n",
        ],
        "SELECT hex(zeroblob(100000)) AS v",
    )
    .await;
    sources.close().await;
}

/// What a plugin sees: the connector's error is invalid input naming the cap, and the
/// connector keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connector_reports_an_oversized_value_and_keeps_serving() {
    let yaml = format!(
        "data:\n  sql:\n    pg: {{url: \"{POSTGRES_URL}\", max_bytes: 1048576}}\nplugins:\n  pg:\n    builtin: sql_connector\n    config: {{source: pg}}\n    permissions: {{sql: [pg]}}\n"
    );
    let host = TestHost::start(&yaml, &[]).await.expect("host starts");
    let error = host
        .connector(
            "pg",
            "query",
            json!({"statement": "SELECT repeat('x', 100000000)"}),
        )
        .await
        .expect_err("refused");
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("max_bytes"), "{error}");
    let out = host
        .connector("pg", "query", json!({"statement": "SELECT 3 AS three"}))
        .await
        .expect("the connector keeps serving");
    assert_eq!(out["rows"], json!([[3]]), "{out}");
}
