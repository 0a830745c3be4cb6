//! The `sql` capability: named SQL sources from `data.sql`, reached only through one safety
//! pipeline that no plugin can bypass.
//!
//! `policy` parses and classifies the statement for the source's dialect; `execute` runs what
//! it accepts in a transaction (read-only for reads) with the statement timeout and the row
//! and byte caps; `rows` turns values into JSON; `sources` owns the pools and credentials.

mod bind;
mod execute;
pub mod policy;
mod rows;
mod sources;

pub use execute::{QueryOutcome, SqlError, run};
pub use sources::{SourcePool, SqlSource, SqlSources};

use crate::runtime::bindings::GuestError;
use crate::runtime::bindings::databot::plugin::sql;

use super::StoreState;

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
        }
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
        let outcome = match run(&found, &statement, &params, max_rows, may_write).await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::debug!(plugin = %self.grants.plugin, %source, "sql call failed: {error}");
                return Ok(Err(error.into()));
            }
        };
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
        Ok(policy::check(dialect, &statement, writable)
            .map(|class| class == policy::StatementClass::Write)
            .map_err(|refusal| GuestError::Denied(format!("statement refused: {refusal}"))))
    }
}
