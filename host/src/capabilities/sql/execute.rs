//! Running one accepted statement on a source: a read-only transaction for reads (rolled back
//! at the end whatever happened), the statement timeout set in the database and enforced by
//! the host, parameters bound, rows converted and capped as they stream in.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use serde_json::Value;
use sqlx::{Column, Connection, Either, Executor, Statement, TypeInfo};

use super::bind;
use super::policy::{self, StatementClass};
use super::rows::{self, RowCollector};
use super::sources::{SourcePool, SqlSource, max_message};
use super::wire_guard;

/// Extra time the host gives the database to report its own timeout before giving up itself.
const HOST_TIMEOUT_SLACK: Duration = Duration::from_secs(2);

/// The result of one statement.
#[derive(Debug)]
pub struct QueryOutcome {
    pub columns: Vec<String>,
    pub column_types: Vec<String>,
    /// The rows as one JSON array of arrays.
    pub rows: String,
    pub row_count: usize,
    pub rows_affected: u64,
    pub truncated: bool,
    pub notice: Option<String>,
    pub elapsed: Duration,
}

/// Why a statement did not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The safety policy refused it.
    #[error("statement refused on source `{source_name}`: {reason}")]
    Refused { source_name: String, reason: String },
    #[error("{0}")]
    InvalidParams(String),
    /// The database rejected it (syntax, unknown table, bad parameter type...).
    #[error("the database of source `{source_name}` rejected the statement: {message}")]
    Database {
        source_name: String,
        message: String,
    },
    #[error("source `{source_name}` cannot be reached: {message}")]
    Unavailable {
        source_name: String,
        message: String,
    },
    #[error("the statement on source `{source_name}` ran longer than {ms} ms and was stopped")]
    Timeout { source_name: String, ms: u128 },
    /// One value or row is larger than the source lets into host memory.
    #[error(
        "the statement on source `{source_name}` made a single row or value larger than the source accepts ({limit} bytes; `data.sql.{source_name}.max_bytes` is {max_bytes}), so it was stopped before the host read it; select a shorter part (for example `left(column, 1000)` or `length(column)`)"
    )]
    TooLarge {
        source_name: String,
        max_bytes: usize,
        limit: usize,
    },
}

impl SqlError {
    /// After this error the connection's state is unknown (or the wire guard closed it): it
    /// must not go back to the pool.
    fn spoils_connection(&self) -> bool {
        matches!(
            self,
            SqlError::TooLarge { .. } | SqlError::Unavailable { .. } | SqlError::Timeout { .. }
        )
    }
}

/// Check `statement` against the policy and run it with `params` (a JSON array).
/// `may_write`: the calling plugin is granted writes on this source.
pub async fn run(
    source: &SqlSource,
    statement: &str,
    params: &[Value],
    max_rows: Option<usize>,
    may_write: bool,
) -> Result<QueryOutcome, SqlError> {
    let writable = source.writable && may_write;
    let source_calls = source
        .field_calls()
        .await
        .map_err(|e| unavailable(source, e))?;
    let checked = source
        .policy
        .check_for_source(source.dialect, statement, writable, &source_calls)
        .map_err(|refusal| {
        let mut reason = refusal.0;
        if source.writable && !may_write && reason.contains("read-only") {
            reason.push_str(&format!(
                " (the source is writable, but this plugin is not granted writes: `permissions.sql_write: [\"{}\"]`)",
                source.name
            ));
        }
        SqlError::Refused {
            source_name: source.name.clone(),
            reason,
        }
    })?;
    // What runs is the canonical text the policy checked, not the text as sent.
    let (class, statement) = (checked.class, checked.text.as_str());
    let limits = source.limits;
    let max_rows = max_rows.map_or(limits.max_rows, |m| m.clamp(1, limits.max_rows));
    let mut collector = RowCollector::new(max_rows, limits.max_bytes);
    let started = Instant::now();
    let deadline = limits.timeout + HOST_TIMEOUT_SLACK;
    // The connection is taken outside the deadline, so that a statement the host gives up on
    // closes its connection instead of going back to the pool still busy.
    macro_rules! on_connection {
        ($pool:expr, $runner:ident) => {{
            let mut conn = $pool.acquire().await.map_err(|e| unavailable(source, e))?;
            let work = $runner(&mut conn, source, statement, params, class, &mut collector);
            match tokio::time::timeout(deadline, work).await {
                Ok(Err(error)) if error.spoils_connection() => {
                    conn.close_on_drop();
                    return Err(error);
                }
                Ok(Ok((described, complete))) => {
                    if !complete {
                        // Leftover rows would have to be read off the wire first.
                        conn.close_on_drop();
                    }
                    described
                }
                Ok(Err(error)) => return Err(error),
                Err(_) => {
                    conn.close_on_drop();
                    return Err(SqlError::Timeout {
                        source_name: source.name.clone(),
                        ms: limits.timeout.as_millis(),
                    });
                }
            }
        }};
    }
    let pool = source.pool().map_err(|message| SqlError::Unavailable {
        source_name: source.name.clone(),
        message,
    })?;
    let (columns, column_types, rows_affected) = match pool {
        SourcePool::Postgres(pool) => on_connection!(pool, run_postgres),
        SourcePool::Mysql(pool) => on_connection!(pool, run_mysql),
        SourcePool::Sqlite(pool) => on_connection!(pool, run_sqlite),
    };
    Ok(QueryOutcome {
        columns,
        column_types,
        truncated: collector.cut.is_some(),
        notice: collector.notice(),
        rows: collector.finish(),
        row_count: collector.row_count,
        rows_affected,
        elapsed: started.elapsed(),
    })
}

/// Columns, column types, rows affected; and whether the result was read to its end.
type Described = (Vec<String>, Vec<String>, u64);
type Ran = (Described, bool);

/// Prepare, bind, stream and collect on one connection already inside its transaction.
macro_rules! stream_rows {
    ($conn:expr, $source:expr, $statement:expr, $params:expr, $collector:expr, $to_json:path, $bind:path) => {{
        let prepared = (&mut *$conn)
            .prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(
                $statement.to_owned(),
            )))
            .await
            .map_err(|e| classify($source, e))?;
        let columns: Vec<String> = prepared
            .columns()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        let column_types: Vec<String> = prepared
            .columns()
            .iter()
            .map(|c| c.type_info().name().to_owned())
            .collect();
        let query = $bind(prepared.query(), $params, &prepared)?;
        let mut affected = 0u64;
        let mut complete = true;
        {
            let mut stream = (&mut *$conn).fetch_many(query);
            while let Some(item) = stream.try_next().await.map_err(|e| classify($source, e))? {
                match item {
                    Either::Left(done) => affected += done.rows_affected(),
                    Either::Right(row) => {
                        let values = $to_json(&row, $collector);
                        $collector.push(values);
                        if !$collector.wants_more() {
                            complete = false;
                            break;
                        }
                    }
                }
            }
        }
        (columns, column_types, affected, complete)
    }};
}

async fn run_postgres(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Postgres>,
    source: &SqlSource,
    statement: &str,
    params: &[Value],
    class: StatementClass,
    collector: &mut RowCollector,
) -> Result<Ran, SqlError> {
    let begin = match class {
        StatementClass::Read => "BEGIN READ ONLY",
        StatementClass::Write => "BEGIN",
    };
    let mut tx = (*conn)
        .begin_with(begin)
        .await
        .map_err(|e| classify(source, e))?;
    let set_timeout = format!(
        "SET LOCAL statement_timeout = {}",
        source.limits.timeout.as_millis()
    );
    tx.execute(sqlx::AssertSqlSafe(set_timeout))
        .await
        .map_err(|e| classify(source, e))?;
    let (columns, types, affected, complete) = stream_rows!(
        tx,
        source,
        statement,
        params,
        collector,
        rows::postgres_row,
        bind::postgres
    );
    finish(tx, class, complete, source).await?;
    Ok(((columns, types, affected), complete))
}

async fn run_mysql(
    conn: &mut sqlx::pool::PoolConnection<sqlx::MySql>,
    source: &SqlSource,
    statement: &str,
    params: &[Value],
    class: StatementClass,
    collector: &mut RowCollector,
) -> Result<Ran, SqlError> {
    let begin = match class {
        StatementClass::Read => "START TRANSACTION READ ONLY",
        StatementClass::Write => "START TRANSACTION",
    };
    let mut tx = (*conn)
        .begin_with(begin)
        .await
        .map_err(|e| classify(source, e))?;
    let (columns, types, affected, complete) = stream_rows!(
        tx,
        source,
        statement,
        params,
        collector,
        rows::mysql_row,
        bind::mysql
    );
    finish(tx, class, complete, source).await?;
    Ok(((columns, types, affected), complete))
}

async fn run_sqlite(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>,
    source: &SqlSource,
    statement: &str,
    params: &[Value],
    class: StatementClass,
    collector: &mut RowCollector,
) -> Result<Ran, SqlError> {
    // On a writable source, reads still run with `query_only` on (read-only sources open
    // read-only connections with it always on).
    if source.writable {
        let query_only = match class {
            StatementClass::Read => "PRAGMA query_only = 1",
            StatementClass::Write => "PRAGMA query_only = 0",
        };
        (**conn)
            .execute(query_only)
            .await
            .map_err(|e| classify(source, e))?;
    }
    // SQLite has no statement timeout; a progress handler interrupts the statement at the
    // deadline. Setting it replaces the one a previous call left on this connection.
    let deadline = Instant::now() + source.limits.timeout;
    conn.lock_handle()
        .await
        .map_err(|e| classify(source, e))?
        .set_progress_handler(1_000, move || Instant::now() < deadline);
    let mut tx = (*conn)
        .begin_with("BEGIN")
        .await
        .map_err(|e| classify(source, e))?;
    let (columns, types, affected, complete) = stream_rows!(
        tx,
        source,
        statement,
        params,
        collector,
        rows::sqlite_row,
        bind::sqlite
    );
    finish(tx, class, complete, source).await?;
    // Nothing is left on the wire of an embedded database: the connection stays usable.
    Ok(((columns, types, affected), true))
}

/// Reads always roll back; a write commits only when it ran to the end.
async fn finish<DB: sqlx::Database>(
    tx: sqlx::Transaction<'_, DB>,
    class: StatementClass,
    complete: bool,
    source: &SqlSource,
) -> Result<(), SqlError> {
    match class {
        StatementClass::Write if complete => tx.commit().await.map_err(|e| classify(source, e)),
        StatementClass::Write => {
            tx.rollback().await.map_err(|e| classify(source, e))?;
            Err(SqlError::InvalidParams(format!(
                "the write on source `{}` returned more rows than the caps allow, so it was rolled back; return fewer rows (drop or narrow RETURNING)",
                source.name
            )))
        }
        StatementClass::Read if complete => tx.rollback().await.map_err(|e| classify(source, e)),
        // The connection is closed instead; the server ends the transaction.
        StatementClass::Read => Ok(()),
    }
}

/// A failure to get a connection: whatever the database said, the source is unavailable
/// (a wrong password or an unknown database is the operator's to fix, not the statement's).
fn unavailable(source: &SqlSource, error: sqlx::Error) -> SqlError {
    let message = match &error {
        sqlx::Error::PoolTimedOut => {
            "no connection could be made in time (is the database up?)".to_owned()
        }
        sqlx::Error::PoolClosed => "the host is shutting down".to_owned(),
        other => other.to_string(),
    };
    SqlError::Unavailable {
        source_name: source.name.clone(),
        message,
    }
}

/// A driver error as what it means for the caller.
fn classify(source: &SqlSource, error: sqlx::Error) -> SqlError {
    let source_name = source.name.clone();
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            // PostgreSQL 57014 query_canceled (statement_timeout); MariaDB 70100
            // max_statement_time; MySQL max_execution_time; SQLite SQLITE_INTERRUPT (9), raised
            // by the deadline's progress handler.
            let text = db.message();
            // The wire guard's refusal (PostgreSQL, MySQL) and SQLITE_TOOBIG (18), raised by
            // the length limit set on every SQLite connection.
            let too_large = (code == wire_guard::TOO_LARGE_SQLSTATE
                && text.starts_with(wire_guard::TOO_LARGE_MARKER))
                || (source.dialect == policy::SqlDialect::Sqlite
                    && (code == "18" || text.contains("too big")));
            if too_large {
                return SqlError::TooLarge {
                    source_name,
                    max_bytes: source.limits.max_bytes,
                    limit: max_message(source.limits.max_bytes),
                };
            }
            let timed_out = code == "57014"
                || code == "70100"
                || text.contains("max_statement_time")
                || text.contains("maximum statement execution time")
                || (source.dialect == policy::SqlDialect::Sqlite
                    && (code == "9" || text.contains("interrupted")));
            if timed_out {
                return SqlError::Timeout {
                    source_name,
                    ms: source.limits.timeout.as_millis(),
                };
            }
            let mut message = db.message().to_owned();
            if message.contains("read-only") || message.contains("READ ONLY") || code == "25006" {
                message.push_str(" (reads run in read-only transactions)");
            }
            SqlError::Database {
                source_name,
                message,
            }
        }
        sqlx::Error::PoolTimedOut => SqlError::Unavailable {
            source_name,
            message: "no connection could be made in time (is the database up?)".into(),
        },
        sqlx::Error::Io(e) => SqlError::Unavailable {
            source_name,
            message: e.to_string(),
        },
        sqlx::Error::Tls(e) => SqlError::Unavailable {
            source_name,
            message: format!("TLS: {e}"),
        },
        sqlx::Error::Protocol(e) => SqlError::Unavailable {
            source_name,
            message: format!("protocol: {e}"),
        },
        sqlx::Error::PoolClosed => SqlError::Unavailable {
            source_name,
            message: "the host is shutting down".into(),
        },
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::Encode(_) => {
            SqlError::InvalidParams(format!("source `{source_name}`: {error}"))
        }
        other => SqlError::Database {
            source_name,
            message: other.to_string(),
        },
    }
}
