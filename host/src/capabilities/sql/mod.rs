//! The `sql` capability: named SQL sources from `data.sql`, reached only through one safety
//! pipeline that no plugin can bypass.
//!
//! `policy` parses and classifies the statement for the source's dialect; `execute` runs what
//! it accepts in a transaction (read-only for reads) with the statement timeout and the row
//! and byte caps; `rows` turns values into JSON; `sources` owns the pools and credentials;
//! `sample` creates the sample warehouse of the embedded default.

mod bind;
mod execute;
mod functions;
mod lexer;
pub mod policy;
mod rows;
pub mod sample;
mod screen;
mod session;
mod sources;
mod wire_guard;

pub use execute::{QueryOutcome, SqlError, run};
pub use policy::SqlPolicy;
pub use sources::{SourcePool, SqlSource, SqlSources};

use crate::contract::GuestError;
use crate::contract::databot::plugin::sql;

use super::StoreState;

/// The dispatcher that drops the driver's own spans, built once: every new dispatcher makes
/// `tracing` re-ask every callsite of the process for its interest under a global lock.
static NO_SPANS: std::sync::LazyLock<tracing::Dispatch> = std::sync::LazyLock::new(|| {
    tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default())
});

impl From<SqlError> for GuestError {
    fn from(error: SqlError) -> Self {
        let message = error.to_string();
        match error {
            SqlError::Refused { .. } => GuestError::Denied(message),
            SqlError::InvalidParams(_) | SqlError::Database { .. } => {
                GuestError::InvalidInput(message)
            }
            SqlError::Unavailable { .. } => GuestError::Unavailable(message),
            SqlError::Timeout { .. } => GuestError::Timeout(message),
            SqlError::TooLarge { .. } => GuestError::InvalidInput(message),
        }
    }
}

/// The client span of one SQL statement (OpenTelemetry database conventions).
fn sql_span(
    trace: &crate::telemetry::CallTrace,
    plugin: &str,
    source: &str,
    dialect: &str,
    statement: &str,
) -> tracing::Span {
    use tracing::field::Empty;
    let span = tracing::info_span!(
        "sql",
        otel.name = Empty,
        otel.kind = "client",
        db.system.name = crate::telemetry::spans::db_system(dialect),
        db.operation.name = Empty,
        databot.sql.source = source,
        databot.plugin.name = plugin,
        db.response.returned_rows = Empty,
        databot.sql.truncated = Empty,
        otel.status_code = Empty,
        error.type = Empty,
    );
    let span = crate::telemetry::child_span(span, trace);
    if !span.is_disabled() {
        let operation = crate::telemetry::spans::db_operation(statement);
        span.record("otel.name", format!("{operation} {source}").trim());
        span.record("db.operation.name", operation);
    }
    span
}

fn sql_error_type(error: &SqlError) -> &'static str {
    match error {
        SqlError::Refused { .. } => "refused",
        SqlError::InvalidParams(_) => "invalid_params",
        SqlError::Database { .. } => "database",
        SqlError::Unavailable { .. } => "unavailable",
        SqlError::Timeout { .. } => "timeout",
        SqlError::TooLarge { .. } => "too_large",
    }
}

impl sql::Host for StoreState {
    async fn sources(&mut self) -> wasmtime::Result<Vec<sql::SourceInfo>> {
        Ok(self
            .grants
            .sql
            .iter()
            .filter_map(|name| self.services.sql.get(name))
            .map(|source| sql::SourceInfo {
                name: source.name.clone(),
                dialect: source.dialect_name().to_owned(),
                writable: source.writable && self.grants.sql_write.contains(&source.name),
            })
            .collect())
    }

    async fn query(
        &mut self,
        source: String,
        statement: String,
        params: String,
        max_rows: Option<u32>,
    ) -> wasmtime::Result<Result<sql::QueryResult, GuestError>> {
        if let Err(error) = self.check_named_grant(&self.grants.sql, "sql", &source) {
            return Ok(Err(error));
        }
        let Some(found) = self.services.sql.get(&source) else {
            return Ok(Err(GuestError::NotFound(format!(
                "no SQL source `{source}` is configured; the operator defines it under `data.sql.{source}`"
            ))));
        };
        let params: Vec<serde_json::Value> = match params.trim() {
            "" | "null" => Vec::new(),
            text => match serde_json::from_str(text) {
                Ok(params) => params,
                Err(e) => {
                    return Ok(Err(GuestError::InvalidInput(format!(
                        "params must be a JSON array of values: {e}"
                    ))));
                }
            },
        };
        let may_write = self.grants.sql_write.contains(&source);
        let max_rows = max_rows.map(|m| usize::try_from(m).unwrap_or(usize::MAX));
        let span = sql_span(
            self.trace(),
            &self.grants.plugin,
            &source,
            found.dialect_name(),
            &statement,
        );
        // sqlx's SQLite worker keeps the span current at each command until its next command;
        // run the driver without the host's spans so no span of this call outlives it.
        let outcome = match tracing::instrument::WithSubscriber::with_subscriber(
            run(&found, &statement, &params, max_rows, may_write),
            NO_SPANS.clone(),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(error) => {
                crate::telemetry::spans::record_error(&span, sql_error_type(&error));
                tracing::debug!(plugin = %self.grants.plugin, %source, "sql call failed: {error}");
                return Ok(Err(error.into()));
            }
        };
        span.record(
            "db.response.returned_rows",
            crate::telemetry::spans::int(outcome.row_count),
        );
        span.record("databot.sql.truncated", outcome.truncated);
        tracing::debug!(
            plugin = %self.grants.plugin,
            %source,
            db.system = found.dialect_name(),
            rows = outcome.row_count,
            truncated = outcome.truncated,
            "sql call"
        );
        let row_count = u32::try_from(outcome.row_count).unwrap_or(u32::MAX);
        let rows = outcome.rows;
        Ok(Ok(sql::QueryResult {
            columns: outcome.columns,
            column_types: outcome.column_types,
            rows,
            row_count,
            rows_affected: outcome.rows_affected,
            truncated: outcome.truncated,
            notice: outcome.notice,
            elapsed_ms: u64::try_from(outcome.elapsed.as_millis()).unwrap_or(u64::MAX),
        }))
    }

    async fn check(
        &mut self,
        dialect: String,
        statement: String,
        writable: bool,
    ) -> wasmtime::Result<Result<bool, GuestError>> {
        let Some(dialect) = policy::SqlDialect::parse(&dialect) else {
            return Ok(Err(GuestError::InvalidInput(format!(
                "unknown SQL dialect `{dialect}`: use postgres, mysql, sqlite or trino"
            ))));
        };
        Ok(self
            .services
            .sql
            .policy()
            .check(dialect, &statement, writable)
            .map(|checked| checked.class == policy::StatementClass::Write)
            .map_err(|refusal| GuestError::Denied(format!("statement refused: {refusal}"))))
    }
}
