//! Session state of pooled connections: what the host pins when a connection opens (the
//! settings the policy's lexer assumes, the statement timeout) and what it clears or checks
//! when a call gives the connection back, so nothing one call leaves on a session (locks,
//! variables, settings, cursors, temporary objects) is visible to the next call or plugin.
//!
//! PostgreSQL is reset in one round trip after every call (everything `DISCARD ALL` clears
//! except the driver's prepared statements, which hold no caller state). MariaDB cannot be
//! reset without dropping those statements, so its session is checked instead: user
//! variables, user locks, an open backup stage and a fingerprint of the settings that change
//! how statements run or read; a connection with any of them changed is closed and replaced. MySQL (not
//! MariaDB) has no cheap equivalent of that check, so its connections are closed after each
//! call. Every check that fails to run closes the connection too.

use std::sync::Arc;

use parking_lot::Mutex;
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use sqlx::{Executor, Row};

/// PostgreSQL startup parameters the lexer relies on (set for the whole session, restored by
/// `RESET ALL`).
pub const POSTGRES_STARTUP: [(&str, &str); 1] = [("standard_conforming_strings", "on")];

/// Clears a PostgreSQL session after a call: session advisory locks, settings (back to the
/// startup values), role, open cursors, listeners, temporary tables and sequence state.
const POSTGRES_RESET: &str = "SELECT pg_advisory_unlock_all(); RESET ALL; RESET SESSION AUTHORIZATION; CLOSE ALL; UNLISTEN *; DISCARD TEMP; DISCARD SEQUENCES";

/// `sql_mode` flags that change how MySQL/MariaDB split a statement into tokens (`"..."` as
/// identifiers, backslashes as plain characters) or switch parsers (MariaDB's `ORACLE`), and
/// the combined modes that imply them.
const LEXING_SQL_MODES: [&str; 8] = [
    "ANSI_QUOTES",
    "NO_BACKSLASH_ESCAPES",
    "ANSI",
    "ORACLE",
    "MSSQL",
    "DB2",
    "MAXDB",
    "POSTGRESQL",
];

/// MariaDB settings whose session value changes what a statement does or sees; their values
/// after connecting are the session's fingerprint.
const MARIADB_FINGERPRINT: &str = "SELECT CAST(CONCAT_WS(CHAR(10), @@session.sql_mode, @@session.max_statement_time, @@session.time_zone, @@session.character_set_client, @@session.character_set_connection, @@session.character_set_results, @@session.collation_connection, @@session.autocommit, @@session.tx_isolation, @@session.tx_read_only, @@session.sql_select_limit, @@session.max_join_size, @@session.sql_safe_updates, @@session.sql_auto_is_null, @@session.group_concat_max_len, @@session.div_precision_increment, @@session.foreign_key_checks, @@session.unique_checks, @@session.lc_time_names, @@session.big_tables, @@session.default_storage_engine, @@session.optimizer_switch, @@session.max_sort_length, @@session.sql_notes, @@session.sql_warnings, @@session.check_constraint_checks, @@session.sql_if_exists, @@session.old_mode, @@session.default_week_format, @@session.query_cache_type) AS CHAR)";

/// MariaDB's error numbers for "no backup stage is running" and "access denied, you need
/// (at least one of) the ... privilege(s)".
const BACKUP_NOT_RUNNING: u16 = 4146;
const ACCESS_DENIED: u16 = 1227;

/// What the host expects of a MySQL-protocol source's sessions.
#[derive(Debug, Default)]
pub struct MysqlSessions {
    /// MariaDB: the fingerprint of a freshly pinned session (the latest connection's: a
    /// server-side default that changes makes older connections differ and get replaced).
    /// `None` on MySQL, whose connections are not reused.
    fingerprint: Mutex<Option<String>>,
}

impl MysqlSessions {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Pin the session of a new connection: the statement timeout and a `sql_mode` without
    /// the flags that change lexing; record its fingerprint.
    pub async fn on_connect(
        &self,
        conn: &mut MySqlConnection,
        timeout_ms: u64,
    ) -> Result<(), sqlx::Error> {
        let row = conn
            .fetch_one("SELECT VERSION(), @@session.sql_mode")
            .await?;
        let version: String = row.try_get(0)?;
        let sql_mode: String = row.try_get(1)?;
        let sql_mode = sql_mode
            .split(',')
            .filter(|flag| !flag.is_empty() && !LEXING_SQL_MODES.contains(flag))
            .collect::<Vec<_>>()
            .join(",");
        let mariadb = version.contains("MariaDB");
        // MariaDB names the timeout max_statement_time (seconds), MySQL max_execution_time
        // (milliseconds, SELECT only). The flags are a server's own names: no quoting issue,
        // but they are checked to be plain words all the same.
        if !sql_mode
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b',')
        {
            return Err(sqlx::Error::Protocol(format!(
                "unexpected sql_mode from the server: {sql_mode}"
            )));
        }
        let timeout = if mariadb {
            format!("max_statement_time = {}", timeout_ms as f64 / 1000.0)
        } else {
            format!("max_execution_time = {timeout_ms}")
        };
        conn.execute(sqlx::AssertSqlSafe(format!(
            "SET SESSION sql_mode = '{sql_mode}', SESSION {timeout}"
        )))
        .await?;
        // Read back: a mode the server re-adds (or expands differently) must not remain.
        let pinned: String = conn
            .fetch_one("SELECT @@session.sql_mode")
            .await?
            .try_get(0)?;
        if let Some(flag) = pinned
            .split(',')
            .find(|flag| LEXING_SQL_MODES.contains(flag))
        {
            return Err(sqlx::Error::Configuration(
                format!("the server kept sql_mode {flag}, which changes how statements are read; the host does not use this connection").into(),
            ));
        }
        let fingerprint = if mariadb {
            let row = conn.fetch_one(MARIADB_FINGERPRINT).await?;
            Some(row.try_get::<String, _>(0)?)
        } else {
            None
        };
        *self.fingerprint.lock() = fingerprint;
        Ok(())
    }

    /// After a call: may this connection serve the next call? Releases user locks on the way.
    pub async fn on_release(&self, conn: &mut MySqlConnection) -> Result<bool, sqlx::Error> {
        let Some(expected) = self.fingerprint.lock().clone() else {
            return Ok(false);
        };
        let query = format!(
            "SELECT (SELECT COUNT(*) FROM information_schema.USER_VARIABLES), CAST(RELEASE_ALL_LOCKS() AS SIGNED), ({})",
            MARIADB_FINGERPRINT.trim_start_matches("SELECT ")
        );
        let row = conn.fetch_one(sqlx::AssertSqlSafe(query)).await?;
        let variables: i64 = row.try_get(0)?;
        let locks: i64 = row.try_get::<Option<i64>, _>(1)?.unwrap_or(0);
        let fingerprint: String = row.try_get(2)?;
        // A backup stage holds server-wide locks; ending it succeeds only if one was open.
        // Without the RELOAD privilege no stage can have been started.
        let backup_stage = match conn.execute("BACKUP STAGE END").await {
            Ok(_) => true,
            Err(sqlx::Error::Database(error))
                if matches!(error.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>(),
                    Some(e) if e.number() == BACKUP_NOT_RUNNING || e.number() == ACCESS_DENIED) =>
            {
                false
            }
            Err(error) => return Err(error),
        };
        let clean = variables == 0 && locks == 0 && !backup_stage && fingerprint == expected;
        if !clean {
            tracing::info!(
                user_variables = variables,
                user_locks = locks,
                backup_stage,
                settings_changed = fingerprint != expected,
                "a MySQL session carried state after a call; closing the connection"
            );
        }
        Ok(clean)
    }
}

/// The functions a PostgreSQL session's search path makes callable with one argument, by
/// name: field notation (`(x).f`, `t.f`) calls them, and extensions put such functions in
/// `public` (tablefunc's `crosstab2` runs SQL text of its own). Read when a connection opens;
/// `pg_catalog`'s own are covered by the policy's built-in list.
pub const POSTGRES_FIELD_CALLS: &str = "SELECT DISTINCT p.proname::text \
     FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     WHERE n.nspname = ANY (pg_catalog.current_schemas(false)) AND n.nspname <> 'pg_catalog' \
     AND p.pronargs >= 1 AND p.pronargs - p.pronargdefaults <= 1";

pub async fn postgres_field_calls(
    conn: &mut PgConnection,
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar(POSTGRES_FIELD_CALLS)
        .fetch_all(&mut *conn)
        .await?;
    Ok(names.into_iter().collect())
}

/// After a call: clear the PostgreSQL session. An error closes the connection.
pub async fn postgres_on_release(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    conn.execute(POSTGRES_RESET).await?;
    Ok(true)
}
