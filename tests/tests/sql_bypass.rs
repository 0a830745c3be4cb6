//! The SQL bypass corpus against the live PostgreSQL (as a superuser, so a case that got
//! through would really act), MariaDB and SQLite of this machine, through the real
//! `sql_connector` component: Unicode-escaped and quoted spellings of denied functions,
//! functions that write WAL or replication state, take locks, reset statistics, burn
//! transaction ids or run SQL text of their own, MariaDB's lexing differentials (`--` without
//! a space, executable comments, non-ASCII spaces), session assignments and file access.
//! Every case must be refused, and after every case the servers' state is read back from an
//! independent admin connection: advisory and user locks, WAL position, replication slots and
//! origins, statistics reset times, transaction ids, files on disk, session variables seen by
//! the next call on the same pooled connection, and row counts. A few tricky spellings that
//! are harmless are accepted, and checked to have run as the server reads them.

use std::path::Path;

use databot::runtime::ErrorKind;
use databot_e2e::{POSTGRES_URL, TestHost};
use serde_json::{Value, json};
use sqlx::{Connection, Row};

const MARIADB_URL: &str = "mysql://root@127.0.0.1:3306/test";
/// A file the corpus tries to create or read through the database servers.
const FILE_PREFIX: &str = "/tmp/databot_bypass";

struct Fixture {
    host: TestHost,
    pg_schema: String,
    my_db: String,
}

async fn start() -> Fixture {
    let pg_schema = databot_e2e::unique_name("databot_bypass");
    let my_db = databot_e2e::unique_name("databot_bypass");
    databot_e2e::postgres_exec(&[
        format!("CREATE SCHEMA {pg_schema}"),
        format!("CREATE TABLE {pg_schema}.items (id integer PRIMARY KEY, name text)"),
        format!("INSERT INTO {pg_schema}.items VALUES (1, 'a'), (2, 'b'), (3, 'c')"),
        format!("CREATE SEQUENCE {pg_schema}.ids"),
    ])
    .await;
    let mut my = sqlx::MySqlConnection::connect(MARIADB_URL)
        .await
        .expect("MariaDB at 127.0.0.1:3306");
    for statement in [
        format!("CREATE DATABASE {my_db}"),
        format!("CREATE TABLE {my_db}.items (id INT PRIMARY KEY, name VARCHAR(16))"),
        format!("INSERT INTO {my_db}.items VALUES (1, 'a'), (2, 'b'), (3, 'c')"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut my)
            .await
            .expect("MariaDB set-up");
    }
    let source = |name: &str, url: &str| {
        format!("    {name}: {{url: \"{url}\", pool_size: 1, timeout_ms: 2000}}\n")
    };
    let connector = |name: &str| {
        format!(
            "  {name}:\n    builtin: sql_connector\n    config: {{source: {name}}}\n    permissions: {{sql: [{name}]}}\n"
        )
    };
    let yaml = format!(
        "data:\n  sql:\n{}{}{}plugins:\n{}{}{}",
        source(
            "pg",
            // The URL asks for standard_conforming_strings off: the host's pin must win.
            &format!(
                "{POSTGRES_URL}?options=-csearch_path%3D{pg_schema}%20-cstandard_conforming_strings%3Doff"
            )
        ),
        source("my", &format!("mysql://root@127.0.0.1:3306/{my_db}")),
        source("lite", "sqlite://{dir}/data.db"),
        connector("pg"),
        connector("my"),
        connector("lite"),
    );
    let host = TestHost::start_with(&yaml, &[], |dir| {
        databot_e2e::sqlite_setup(
            &dir.join("data.db"),
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c');",
        )
    })
    .await
    .expect("host starts");
    Fixture {
        host,
        pg_schema,
        my_db,
    }
}

impl Fixture {
    async fn query(
        &self,
        connector: &str,
        statement: &str,
    ) -> Result<Value, databot::runtime::CallError> {
        self.host
            .connector(connector, "query", json!({ "statement": statement }))
            .await
    }

    async fn refused(&self, connector: &str, statement: &str) {
        match self.query(connector, statement).await {
            Ok(out) => panic!("{connector} ran `{}`: {out}", statement.escape_debug()),
            Err(error) => {
                assert_eq!(
                    error.kind,
                    ErrorKind::Denied,
                    "{connector}: `{}`: {error}",
                    statement.escape_debug()
                );
                assert!(error.message.contains("refused"), "{error}");
            }
        }
    }

    async fn cleanup(&self) {
        databot_e2e::postgres_exec(&[format!("DROP SCHEMA IF EXISTS {} CASCADE", self.pg_schema)])
            .await;
        if let Ok(mut my) = sqlx::MySqlConnection::connect(MARIADB_URL).await {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {}",
                self.my_db
            )))
            .execute(&mut my)
            .await;
        }
    }
}

/// What a PostgreSQL case could have changed, read from an admin connection.
#[derive(Debug, PartialEq)]
struct PostgresState {
    advisory_locks: i64,
    replication_slots: i64,
    replication_origins: i64,
    prepared_transactions: i64,
    database_stats_reset: String,
    bgwriter_stats_reset: String,
    items: i64,
    sequence_called: bool,
    /// Compared with a tolerance: other activity on the server writes a little WAL and uses
    /// a few transaction ids.
    wal_bytes: i64,
    xid_age: i64,
}

async fn postgres_state(schema: &str) -> PostgresState {
    let mut conn = sqlx::PgConnection::connect(POSTGRES_URL)
        .await
        .expect("PostgreSQL");
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT
           (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'),
           (SELECT count(*) FROM pg_replication_slots),
           (SELECT count(*) FROM pg_replication_origin),
           (SELECT count(*) FROM pg_prepared_xacts),
           (SELECT coalesce(stats_reset::text, '') FROM pg_stat_database WHERE datname = current_database()),
           (SELECT coalesce(stats_reset::text, '') FROM pg_stat_bgwriter),
           (SELECT count(*) FROM {schema}.items),
           (SELECT is_called FROM {schema}.ids),
           pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint,
           (SELECT age(datfrozenxid)::bigint FROM pg_database WHERE datname = current_database())"
    )))
    .fetch_one(&mut conn)
    .await
    .expect("reading PostgreSQL's state");
    PostgresState {
        advisory_locks: row.get(0),
        replication_slots: row.get(1),
        replication_origins: row.get(2),
        prepared_transactions: row.get(3),
        database_stats_reset: row.get(4),
        bgwriter_stats_reset: row.get(5),
        items: row.get(6),
        sequence_called: row.get(7),
        wal_bytes: row.get(8),
        xid_age: row.get(9),
    }
}

fn assert_postgres_unchanged(before: &PostgresState, after: &PostgresState, case: &str) {
    let exact = |s: &PostgresState| {
        (
            s.advisory_locks,
            s.replication_slots,
            s.replication_origins,
            s.prepared_transactions,
            s.database_stats_reset.clone(),
            s.bgwriter_stats_reset.clone(),
            s.items,
            s.sequence_called,
        )
    };
    assert_eq!(exact(before), exact(after), "state changed after `{case}`");
    // The WAL cases emit a megabyte; background activity writes far less than this.
    assert!(
        after.wal_bytes - before.wal_bytes < 256 * 1024,
        "WAL grew by {} bytes after `{case}`",
        after.wal_bytes - before.wal_bytes
    );
    assert!(
        after.xid_age - before.xid_age < 50,
        "transaction ids were used after `{case}`"
    );
}

/// What a MariaDB case could have changed.
#[derive(Debug, PartialEq)]
struct MariadbState {
    user_lock_held: bool,
    items: i64,
    max_connections: i64,
    general_log: i64,
    max_statement_time: f64,
}

async fn mariadb_state(database: &str) -> MariadbState {
    let mut conn = sqlx::MySqlConnection::connect(MARIADB_URL)
        .await
        .expect("MariaDB");
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT IS_USED_LOCK('databot_bypass') IS NOT NULL, (SELECT COUNT(*) FROM {database}.items),
                CAST(@@GLOBAL.max_connections AS SIGNED), CAST(@@GLOBAL.general_log AS SIGNED),
                CAST(@@GLOBAL.max_statement_time AS DOUBLE)"
    )))
    .fetch_one(&mut conn)
    .await
    .expect("reading MariaDB's state");
    MariadbState {
        user_lock_held: row.get::<i32, _>(0) != 0,
        items: row.get(1),
        max_connections: row.get(2),
        general_log: row.get(3),
        max_statement_time: row.get(4),
    }
}

/// The SQLite file's journal mode, read from a connection of its own.
async fn sqlite_journal_mode(dir: &Path) -> String {
    let mut conn = sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}?mode=ro",
        dir.join("data.db").display()
    ))
    .await
    .expect("sqlite");
    sqlx::query("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .expect("journal mode")
        .get::<String, _>(0)
}

/// Files the corpus names: none may exist after it.
fn leftover_files() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path().display().to_string())
        .filter(|p| p.starts_with(FILE_PREFIX))
        .collect()
}

fn remove_leftover_files() {
    for path in leftover_files() {
        let _ = std::fs::remove_file(Path::new(&path));
    }
}

const POSTGRES_CORPUS: &[&str] = &[
    // Words that open clauses elsewhere but can name a function here; `$` inside a name.
    "SELECT count(*) FROM items WHERE by(id) > 0",
    "SELECT like(1), join(2), over(3), filter(4)",
    "SELECT audit$1(7)",
    // Extensions' functions that run SQL text or change session state.
    "SELECT * FROM crosstab2('SELECT 1')",
    "SELECT connectby('items', 'id', 'name', '1', 0)",
    // Unicode-escaped, quoted and qualified spellings of denied functions.
    r#"SELECT U&"pg_re\0061d_file"('/etc/passwd')"#,
    r#"SELECT U&"pg_re!0061d_file" UESCAPE '!' ('/etc/passwd')"#,
    r#"SELECT u&"pg_r\+000065ad_file"('/etc/passwd')"#,
    r#"SELECT * FROM U&"pg_ls_dir"('.')"#,
    r#"SELECT U&"\0070g_advisory_lock"(42)"#,
    r#"SELECT U&"pg_terminate_backend"(1)"#,
    r#"SELECT U&"pg_advisory_lock" UESCAPE '#' (42)"#,
    r#"SELECT "pg_advisory_lock"(42)"#,
    "SELECT pg_catalog.pg_advisory_lock(42)",
    r#"SELECT "pg_catalog"."pg_advisory_lock"(42)"#,
    "SELECT PG_ADVISORY_LOCK(42)",
    "SELECT pg_advisory_lock (42)",
    "SELECT pg_advisory_lock/**/(42)",
    "SELECT pg_advisory_lock/* /* nested */ */(42)",
    "SELECT pg_advisory_lock--\n(42)",
    "SELECT pg_try_advisory_lock(42)",
    "SELECT pg_try_advisory_lock_shared(42)",
    "SELECT pg_advisory_xact_lock(42)",
    "SELECT * FROM pg_advisory_lock(42)",
    "WITH t AS (SELECT pg_advisory_lock(42)) SELECT * FROM t",
    "SELECT 1 FROM items WHERE pg_try_advisory_lock(id)",
    "SELECT count(*) OVER (PARTITION BY pg_advisory_lock(1)) FROM items",
    "SELECT id FROM items ORDER BY pg_advisory_lock(id)",
    "SELECT ARRAY(SELECT pg_advisory_lock(1))",
    "SELECT (SELECT pg_advisory_lock(1))",
    "SELECT * FROM ROWS FROM (pg_advisory_lock(1)) AS t(x)",
    "SELECT * FROM items, LATERAL pg_advisory_lock(items.id) AS l",
    // Files and directories on the server.
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT pg_read_binary_file('/etc/passwd')",
    "SELECT pg_stat_file('/etc/passwd')",
    "SELECT * FROM pg_ls_dir('.')",
    "SELECT * FROM pg_catalog.pg_ls_waldir()",
    "SELECT pg_ls_logdir()",
    "SELECT pg_ls_tmpdir()",
    "SELECT pg_ls_archive_statusdir()",
    "SELECT lo_import('/etc/passwd')",
    "SELECT lo_export(1, '/tmp/databot_bypass_lo')",
    "SELECT lo_from_bytea(0, 'x')",
    "SELECT pg_current_logfile()",
    // WAL, replication, backup and statistics.
    "SELECT pg_logical_emit_message(false, 'databot', repeat('x', 1000000))",
    "SELECT pg_logical_emit_message(true, 'databot', 'x')",
    "SELECT * FROM pg_create_physical_replication_slot('databot_bypass')",
    "SELECT pg_create_logical_replication_slot('databot_bypass', 'test_decoding')",
    "SELECT pg_copy_physical_replication_slot('a', 'databot_bypass')",
    "SELECT pg_drop_replication_slot('databot_bypass')",
    "SELECT pg_replication_slot_advance('databot_bypass', '0/0')",
    "SELECT * FROM pg_logical_slot_get_changes('databot_bypass', NULL, NULL)",
    "SELECT pg_replication_origin_create('databot_bypass')",
    "SELECT pg_replication_origin_session_setup('databot_bypass')",
    "SELECT pg_backup_start('databot_bypass')",
    "SELECT pg_backup_stop()",
    "SELECT pg_switch_wal()",
    "SELECT pg_create_restore_point('databot_bypass')",
    "SELECT pg_stat_reset()",
    "SELECT pg_stat_reset_shared('bgwriter')",
    "SELECT pg_stat_reset_single_table_counters('items'::regclass)",
    "SELECT pg_stat_reset_slru(NULL)",
    "SELECT pg_log_backend_memory_contexts(pg_backend_pid())",
    // Transaction ids, sequences, settings, notifications, sleeping.
    "SELECT pg_current_xact_id() FROM generate_series(1, 100)",
    "SELECT txid_current()",
    "SELECT txid_current_if_assigned()",
    "SELECT nextval('ids')",
    "SELECT setval('ids', 100)",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SELECT pg_catalog.set_config('work_mem', '1GB', true)",
    "SELECT setseed(0.5)",
    "SELECT pg_notify('databot', 'x')",
    "SELECT pg_sleep(30)",
    "SELECT pg_sleep_for('30 seconds')",
    "SELECT pg_export_snapshot()",
    // Server control.
    "SELECT pg_terminate_backend(pg_backend_pid())",
    "SELECT pg_cancel_backend(1)",
    "SELECT pg_reload_conf()",
    "SELECT pg_rotate_logfile()",
    "SELECT pg_promote()",
    // Functions that run SQL text of their own.
    "SELECT query_to_xml('SELECT pg_advisory_lock(42)', true, true, '')",
    "SELECT query_to_xml_and_xmlschema('SELECT 1', true, true, '')",
    "SELECT table_to_xml('items', true, true, '')",
    "SELECT schema_to_xml('public', true, true, '')",
    "SELECT database_to_xml(true, true, '')",
    "SELECT cursor_to_xml('c', 1, true, true, '')",
    "SELECT * FROM ts_stat('SELECT to_tsvector(name) FROM items')",
    "SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, ''b''::tsquery')",
    "SELECT dblink_exec('dbname=test', 'DELETE FROM items')",
    "SELECT * FROM dblink('dbname=test', 'SELECT 1') AS t(x int)",
    // Functions outside the allowlist: user schemas and unknown names.
    "SELECT public.lower('x')",
    "SELECT my_udf(1)",
    r#"SELECT "LOWER"('x')"#,
    // Spellings no server and parser read alike.
    "SELECT\u{a0}pg_read_file('/etc/passwd')",
    "SELECT pg_read_file\u{200b}('/etc/passwd')",
    "SELECT 1\u{3000}",
    "SELECT 1 /* unterminated",
    "SELECT 1 /* /* */ , pg_read_file('/etc/passwd')",
    r#"SELECT U&"\0000""#,
    // Statements, not functions.
    "SET default_transaction_read_only = off",
    "COPY items TO '/tmp/databot_bypass_copy'",
    "DO $$ BEGIN PERFORM pg_advisory_lock(42); END $$",
    "PREPARE p AS SELECT 1",
    "LISTEN databot",
    "LOCK TABLE items",
    "SELECT * FROM items FOR SHARE",
    "SELECT * INTO databot_stolen FROM items",
    // Field notation: PostgreSQL runs `f(x)` for `(x).f` when x has no column f.
    "SELECT ('/etc/passwd'::text).pg_read_file",
    "SELECT (424242::bigint).pg_advisory_lock",
    "SELECT (424242::bigint).pg_try_advisory_lock",
    "SELECT ('select 1'::text).ts_stat",
    "SELECT ('/'::text).\"pg_ls_dir\"",
    "SELECT (ARRAY['/etc/passwd'::text])[1].pg_read_file",
    "SELECT (t.p).pg_read_file FROM (SELECT '/etc/passwd'::text AS p) t",
    "SELECT ('databot'::text).pg_logical_emit_message",
    // sqlparser stops a statement at a bare END; the server reads it as a label.
    "SELECT 1 END, pg_read_file('/etc/passwd')",
    "SELECT 1 END, pg_advisory_lock(424242)",
];

const MARIADB_CORPUS: &[&str] = &[
    // Words that open clauses elsewhere but can name a stored function here.
    "SELECT lateral(1), filter(2), sets(3)",
    "SELECT a$x(1)",
    // `--` not followed by a space, executable comments, hints.
    "SELECT 1 --1 /*M!, LOAD_FILE('/etc/passwd') */",
    "SELECT 1 --1 /*M!, GET_LOCK('databot_bypass', 0) */",
    "SELECT 1 --\u{a0}/*M!, GET_LOCK('databot_bypass', 0) */",
    "SELECT 1 --x\n, GET_LOCK('databot_bypass', 0)",
    "SELECT 1 --",
    "SELECT 1 /*M!, GET_LOCK('databot_bypass', 0) */",
    "SELECT 1 /*m!, GET_LOCK('databot_bypass', 0) */",
    "SELECT 1 /*!, GET_LOCK('databot_bypass', 0) */",
    "SELECT 1 /*!100000 , GET_LOCK('databot_bypass', 0) */",
    "SELECT 1 /*M!100000 , SLEEP(5) */",
    "SELECT 1 /*!50000 INTO OUTFILE '/tmp/databot_bypass_x' */",
    "SELECT /*+ MAX_EXECUTION_TIME(0) */ 1",
    "/*M! SET STATEMENT max_statement_time=0 FOR */ SELECT 1",
    "SELECT 1 /* x /*! , GET_LOCK('databot_bypass', 0) */",
    "SELECT 1 # /*!, GET_LOCK('databot_bypass', 0) */",
    "SELECT 1 -- /*!, GET_LOCK('databot_bypass', 0) */",
    "SELECT\u{a0}GET_LOCK('databot_bypass', 0)",
    "SELECT 1\u{2028}, GET_LOCK('databot_bypass', 0)",
    "SELECT 1 /* unterminated",
    // User locks, files, sleeping, session state.
    "SELECT GET_LOCK('databot_bypass', 0)",
    "SELECT get_lock('databot_bypass', 0)",
    "SELECT `GET_LOCK`('databot_bypass', 0)",
    "SELECT 1 FROM items WHERE GET_LOCK('databot_bypass', 0)",
    "SELECT IS_FREE_LOCK('databot_bypass')",
    "SELECT IS_USED_LOCK('databot_bypass')",
    "SELECT RELEASE_LOCK('databot_bypass')",
    "SELECT RELEASE_ALL_LOCKS()",
    "SELECT LOAD_FILE('/etc/passwd')",
    "SELECT load_file(0x2f6574632f706173737764)",
    "SELECT CONVERT(LOAD_FILE('/etc/passwd') USING utf8)",
    "SELECT 1 UNION SELECT `load_file`('/etc/passwd')",
    "SELECT SLEEP(30)",
    "SELECT BENCHMARK(100000000, MD5('x'))",
    "SELECT @v := 1",
    "SELECT @v:=1, 2",
    "SET @v = 1",
    "SELECT 1 INTO @v",
    "SELECT * FROM items INTO OUTFILE '/tmp/databot_bypass_out'",
    "SELECT * FROM items INTO DUMPFILE '/tmp/databot_bypass_dump'",
    "SELECT LAST_INSERT_ID(42)",
    "SELECT MASTER_POS_WAIT('x', 1)",
    "SELECT MASTER_GTID_WAIT('0-1-1', 1)",
    "SELECT sys_exec('id')",
    "SELECT UPDATEXML('<a/>', '/a', '<b/>')",
    "SELECT my_udf(1)",
    // Statements that hold or change state.
    "DO GET_LOCK('databot_bypass', 0)",
    "HANDLER items OPEN",
    "LOCK TABLES items READ",
    "FLUSH TABLES WITH READ LOCK",
    "BACKUP STAGE START",
    "SET STATEMENT max_statement_time=0 FOR SELECT 1",
    "SET GLOBAL general_log = 1",
    "PREPARE s FROM 'SELECT 1'",
    "EXECUTE IMMEDIATE 'SELECT GET_LOCK(''databot_bypass'', 0)'",
    "SELECT * FROM items FOR UPDATE",
    "SELECT * FROM items LOCK IN SHARE MODE",
    "LOAD DATA INFILE '/etc/passwd' INTO TABLE items",
    "KILL 1",
    "SHUTDOWN",
    "INSTALL SONAME 'ha_blackhole'",
    "REPLACE INTO items VALUES (9, 'x')",
    // The parser reads b"..." without escapes; MariaDB reads a string with them.
    "SELECT b\"\\\" AS x #\", LOAD_FILE(0x2f6574632f686f73746e616d65) AS y\nFROM (SELECT 1 AS b) t",
    "SELECT 1 END, LOAD_FILE('/etc/hostname')",
    "SELECT 1 END, GET_LOCK('databot_bypass', 0)",
];

const SQLITE_CORPUS: &[&str] = &[
    // SQLite takes a string where it expects a table name.
    "SELECT * FROM 'pragma_optimize'(65538)",
    "SELECT * FROM main.'pragma_integrity_check'",
    "SELECT load_extension('/tmp/databot_bypass.so')",
    r#"SELECT "load_extension"('/tmp/databot_bypass.so')"#,
    "SELECT [load_extension]('/tmp/databot_bypass.so')",
    "SELECT `LOAD_EXTENSION`('/tmp/databot_bypass.so')",
    "SELECT 1 FROM items WHERE load_extension('x') IS NULL",
    "SELECT readfile('/etc/passwd')",
    "SELECT writefile('/tmp/databot_bypass_w', 'x')",
    "SELECT edit('x')",
    "SELECT fts3_tokenizer('simple')",
    "SELECT sqlite_log(1, 'x')",
    "SELECT my_udf(1)",
    "SELECT * FROM pragma_journal_mode('delete')",
    "SELECT * FROM pragma_optimize",
    "SELECT * FROM main.pragma_optimize",
    "SELECT * FROM pragma_journal_mode",
    "SELECT * FROM fsdir('/etc')",
    "SELECT * FROM fsdir",
    "SELECT $a(')'),load_extension('x')--')",
    "SELECT $a::b",
    "SELECT\u{3000}load_extension('x')",
    "SELECT 1 /* unterminated",
    "ATTACH DATABASE '/tmp/databot_bypass.db' AS x",
    "ATTACH '/tmp/databot_bypass.db' AS x",
    "DETACH x",
    "PRAGMA writable_schema = 1",
    "PRAGMA query_only = 0",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA journal_mode = WAL",
    "PRAGMA main.journal_mode = WAL",
    "SELECT * FROM pragma_journal_mode('wal')",
    "PRAGMA optimize",
    "PRAGMA incremental_vacuum",
    "PRAGMA wal_checkpoint(TRUNCATE)",
    "VACUUM INTO '/tmp/databot_bypass_v.db'",
    "REINDEX",
    "ANALYZE",
    "CREATE TEMP TABLE t (a)",
    "SELECT 1; SELECT 2",
    "INSERT INTO items VALUES (9, 'x')",
    "REPLACE INTO items VALUES (1, 'x')",
    "WITH x AS (SELECT 1) DELETE FROM items",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bypass_corpus_is_refused_and_changes_nothing() {
    remove_leftover_files();
    let fixture = start().await;
    assert!(
        POSTGRES_CORPUS.len() + MARIADB_CORPUS.len() + SQLITE_CORPUS.len() >= 150,
        "the corpus keeps at least 150 cases across the live servers"
    );

    let baseline = postgres_state(&fixture.pg_schema).await;
    for case in POSTGRES_CORPUS {
        fixture.refused("pg", case).await;
        assert_postgres_unchanged(&baseline, &postgres_state(&fixture.pg_schema).await, case);
    }

    // Deeper than the parser's stack allows: refused cleanly, and the host stays up.
    let too_deep = format!("SELECT 1{}", "+1".repeat(50_000));
    fixture.refused("pg", &too_deep).await;
    fixture.refused("my", &too_deep).await;

    let baseline = mariadb_state(&fixture.my_db).await;
    for case in MARIADB_CORPUS {
        fixture.refused("my", case).await;
        assert_eq!(
            baseline,
            mariadb_state(&fixture.my_db).await,
            "state changed after `{}`",
            case.escape_debug()
        );
        // The next call on the same pooled connection sees no user variable.
        let out = fixture
            .query("my", "SELECT @v IS NULL")
            .await
            .expect("probe");
        assert_eq!(out["rows"], json!([[1]]), "after `{}`", case.escape_debug());
    }

    let dir = fixture.host.dir.path().to_owned();
    let journal_before = sqlite_journal_mode(&dir).await;
    for case in SQLITE_CORPUS {
        fixture.refused("lite", case).await;
        let out = fixture
            .query("lite", "SELECT count(*) FROM items")
            .await
            .expect("count");
        assert_eq!(out["rows"], json!([[3]]), "after `{}`", case.escape_debug());
    }
    assert_eq!(
        sqlite_journal_mode(&dir).await,
        journal_before,
        "the journal mode was not changed"
    );

    assert!(
        leftover_files().is_empty(),
        "files were written: {:?}",
        leftover_files()
    );
    fixture.cleanup().await;
}

/// Spellings that look like tricks but are harmless run, as their server reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harmless_tricky_spellings_run_as_the_server_reads_them() {
    let fixture = start().await;
    let accepted: &[(&str, &str, Value)] = &[
        // PostgreSQL nests comments: the DELETE is inside one.
        (
            "pg",
            "SELECT 1 /* /* */ ; DELETE FROM items */",
            json!([[1]]),
        ),
        ("pg", r#"SELECT U&"lower"('A')"#, json!([["a"]])),
        ("pg", r#"SELECT U&'d\0061t\+000061'"#, json!([["data"]])),
        ("pg", "SELECT $$ -- $$ || '/*'", json!([[" -- /*"]])),
        ("pg", "SELECT pg_catalog.upper('a')", json!([["A"]])),
        // With standard_conforming_strings off this would be one string and a file read;
        // the host pins it on, so these are three plain strings.
        (
            "pg",
            "SELECT '\\' AS a, ' , pg_read_file($$/etc/hostname$$) AS b -- ' AS c",
            json!([["\\", " , pg_read_file($$/etc/hostname$$) AS b -- "]]),
        ),
        (
            "pg",
            "SELECT count(*) FROM items -- ; DELETE FROM items",
            json!([[3]]),
        ),
        // MariaDB: `-- ` with a space is a comment; `- -1` is arithmetic.
        ("my", "SELECT 1 -- ; DELETE FROM items", json!([[1]])),
        ("my", "SELECT 1 - -1", json!([[2]])),
        ("my", "SELECT '/*!', \"--x\"", json!([["/*!", "--x"]])),
        ("my", "SELECT UPPER('a') # /* x */", json!([["A"]])),
        // SQLite: comments do not nest.
        ("lite", "SELECT 1 /* /* */ + 1", json!([[2]])),
        ("lite", "SELECT [id] FROM items WHERE id = 1", json!([[1]])),
    ];
    for (connector, statement, rows) in accepted {
        let out = fixture
            .query(connector, statement)
            .await
            .unwrap_or_else(|e| panic!("{connector}: `{statement}`: {e}"));
        assert_eq!(&out["rows"], rows, "{connector}: `{statement}`");
    }
    for connector in ["pg", "my", "lite"] {
        let out = fixture
            .query(connector, "SELECT count(*) FROM items")
            .await
            .expect("count");
        assert_eq!(out["rows"][0][0], json!(3), "{connector}");
    }
    fixture.cleanup().await;
}

/// The policy's screen leaves every statement holding a reserved word it does not know to
/// the parse and walk; its lists must hold every word the live servers refuse as a column
/// alias (PostgreSQL: every keyword that is not unreserved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_screen_knows_every_reserved_word_of_the_live_servers() {
    use databot::capabilities::sql::policy::is_reserved_word;
    let mut pg = sqlx::PgConnection::connect(POSTGRES_URL)
        .await
        .expect("PostgreSQL");
    let words: Vec<String> =
        sqlx::query_scalar("SELECT lower(word) FROM pg_get_keywords() WHERE catcode <> 'U'")
            .fetch_all(&mut pg)
            .await
            .expect("pg_get_keywords");
    assert!(words.len() > 100, "{} PostgreSQL keywords", words.len());
    let missing: Vec<&String> = words.iter().filter(|w| !is_reserved_word(w)).collect();
    assert!(
        missing.is_empty(),
        "PostgreSQL's reserved words missing from keywords/postgres.txt: {missing:?}"
    );

    let mut my = sqlx::MySqlConnection::connect(MARIADB_URL)
        .await
        .expect("MariaDB");
    let words: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT lower(word) FROM information_schema.KEYWORDS")
            .fetch_all(&mut my)
            .await
            .expect("information_schema.KEYWORDS");
    let mut missing = Vec::new();
    let mut reserved = 0;
    for word in words
        .iter()
        .filter(|w| w.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'))
    {
        let as_alias = format!("SELECT 1 AS {word}");
        if sqlx::raw_sql(sqlx::AssertSqlSafe(as_alias))
            .execute(&mut my)
            .await
            .is_err()
        {
            reserved += 1;
            if !is_reserved_word(word) {
                missing.push(word.clone());
            }
        }
    }
    assert!(reserved > 100, "{reserved} MariaDB reserved words");
    assert!(
        missing.is_empty(),
        "MariaDB's reserved words missing from keywords/mysql.txt: {missing:?}"
    );
}

/// PostgreSQL's field notation calls any one-argument function on the source's search path
/// (`('x'::text).f` runs `f('x')`), extensions' and users' as well as pg_catalog's: the host
/// reads the source's functions when a connection opens and refuses a field that names one
/// off the allowlist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_notation_reaches_no_function_of_the_source_off_the_allowlist() {
    let fixture = start().await;
    databot_e2e::postgres_exec(&[format!(
        "CREATE FUNCTION {}.databot_probe(text) RETURNS text LANGUAGE sql AS $$ SELECT 'ran' $$",
        fixture.pg_schema
    )])
    .await;
    for statement in [
        "SELECT ('x'::text).databot_probe",
        "SELECT (name).databot_probe FROM items",
        "SELECT (name).\"databot_probe\" FROM items",
    ] {
        match fixture.query("pg", statement).await {
            Ok(out) => panic!("ran `{statement}`: {out}"),
            Err(error) => assert!(
                error.message.contains("field notation"),
                "`{statement}`: {error}"
            ),
        }
    }
    let out = fixture
        .query(
            "pg",
            "SELECT (i).name FROM (SELECT items AS i FROM items WHERE id = 1) s",
        )
        .await
        .expect("a real field");
    assert_eq!(out["rows"], json!([["a"]]));
    fixture.cleanup().await;
}

/// The screen lets a few words stand before `(` without checking a call (`IN (`, `VALUES (`,
/// `ROW (`); on each server, none of them can call a function, even one created under that
/// very name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_word_the_screen_passes_before_a_parenthesis_calls_a_function() {
    use databot::capabilities::sql::policy::{SqlDialect, not_calls_before_parenthesis};
    let schema = databot_e2e::unique_name("databot_words");
    let mut pg = sqlx::PgConnection::connect(POSTGRES_URL)
        .await
        .expect("PostgreSQL");
    let run = |sql: String| sqlx::raw_sql(sqlx::AssertSqlSafe(sql));
    run(format!("CREATE SCHEMA {schema}"))
        .execute(&mut pg)
        .await
        .expect("schema");
    let words = not_calls_before_parenthesis(SqlDialect::Postgres);
    assert!(
        words.contains(&"in") && words.contains(&"values"),
        "{words:?}"
    );
    for word in &words {
        run(format!(
            "CREATE FUNCTION {schema}.\"{word}\"(integer) RETURNS integer LANGUAGE sql AS 'SELECT 4242'"
        ))
        .execute(&mut pg)
        .await
        .expect("a function of that name");
    }
    run(format!("SET search_path = {schema}"))
        .execute(&mut pg)
        .await
        .expect("search_path");
    let mut called = Vec::new();
    for word in &words {
        let result = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {word}(1)")))
            .fetch_one(&mut pg)
            .await;
        if let Ok(row) = result
            && row.try_get::<i32, _>(0).ok() == Some(4242)
        {
            called.push(*word);
        }
    }
    let _ = run(format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut pg)
        .await;
    assert!(
        called.is_empty(),
        "PostgreSQL called functions named {called:?}"
    );

    let mut my = sqlx::MySqlConnection::connect(MARIADB_URL)
        .await
        .expect("MariaDB");
    run(format!("CREATE DATABASE {schema}"))
        .execute(&mut my)
        .await
        .expect("database");
    let words = not_calls_before_parenthesis(SqlDialect::Mysql);
    assert!(words.contains(&"in"), "{words:?}");
    for word in &words {
        run(format!(
            "CREATE FUNCTION {schema}.`{word}`(x INT) RETURNS INT DETERMINISTIC RETURN 4242"
        ))
        .execute(&mut my)
        .await
        .expect("a function of that name");
    }
    run(format!("USE {schema}"))
        .execute(&mut my)
        .await
        .expect("use");
    let mut called = Vec::new();
    for word in &words {
        let result = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {word}(1)")))
            .fetch_one(&mut my)
            .await;
        if let Ok(row) = result
            && row.try_get::<i32, _>(0).ok() == Some(4242)
        {
            called.push(*word);
        }
    }
    let _ = run(format!("DROP DATABASE {schema}"))
        .execute(&mut my)
        .await;
    assert!(
        called.is_empty(),
        "MariaDB called functions named {called:?}"
    );
}
