//! Where statements run: a host SQL source (through the `sql` capability, whose policy,
//! transactions and caps apply) or a Trino/Presto coordinator over HTTP (checked against the
//! same host policy before it is sent).

use databot_sdk::RawJson;
use databot_sdk::prelude::*;
use databot_sdk::sql;

use crate::trino::Trino;

/// One statement's result, the same shape whatever ran it. `rows` is the JSON array of
/// arrays exactly as the host produced it: passed through, never parsed, unless a catalog
/// operation needs the values (`records`).
#[derive(Debug, Serialize)]
pub struct QueryOutput {
    pub columns: Vec<String>,
    pub column_types: Vec<String>,
    #[serde(skip)]
    pub rows: String,
    pub row_count: usize,
    pub rows_affected: u64,
    pub truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    pub elapsed_ms: u64,
}

impl QueryOutput {
    /// For catalog queries, where a cut result would silently hide tables: an error instead.
    pub fn complete(self, what: &str) -> Result<Self, PluginError> {
        if self.truncated {
            return Err(PluginError::Failed(format!(
                "listing {what} hit the source's row or byte cap; the operator can raise `max_rows`/`max_bytes` of the source, or ask for fewer tables"
            )));
        }
        Ok(self)
    }

    /// The rows, parsed.
    pub fn parsed_rows(&self) -> Vec<Vec<Value>> {
        serde_json::from_str(&self.rows).unwrap_or_default()
    }

    /// The whole result as JSON, with the rows spliced in as they came (not re-encoded).
    pub fn into_json(self) -> Result<RawJson, PluginError> {
        let meta = serde_json::to_string(&self)
            .map_err(|e| PluginError::Failed(format!("encoding the result: {e}")))?;
        // `meta` is a non-empty object (it always has `columns`): `{"columns":...}`.
        Ok(RawJson(format!("{{\"rows\":{},{}", self.rows, &meta[1..])))
    }

    /// The rows as objects keyed by column name (for catalog queries).
    pub fn records(&self) -> Vec<serde_json::Map<String, Value>> {
        self.parsed_rows()
            .iter()
            .map(|row| {
                self.columns
                    .iter()
                    .cloned()
                    .zip(row.iter().cloned())
                    .collect()
            })
            .collect()
    }
}

/// What this connector instance talks to.
pub enum Backend {
    Host {
        source: String,
        dialect: String,
        writable: bool,
    },
    Trino(Trino),
}

impl Backend {
    /// From config: `source` (a `data.sql` source granted to this plugin; optional when exactly
    /// one is granted) or a `trino` endpoint.
    pub fn from_config() -> Result<Self, PluginError> {
        if databot_sdk::api::endpoint_url("trino")?.is_some() {
            return Ok(Self::Trino(Trino::from_config()?));
        }
        let wanted: Option<String> = databot_sdk::config_value("source")?;
        let granted = sql::sources();
        let chosen = match wanted {
            Some(name) => granted.into_iter().find(|s| s.name == name).ok_or_else(|| {
                PluginError::Denied(format!(
                    "SQL source `{name}` is not granted to this connector; the operator adds `permissions.sql: [\"{name}\"]` to it (and defines `data.sql.{name}`)"
                ))
            })?,
            None => {
                let count = granted.len();
                let mut granted = granted.into_iter();
                match (granted.next(), count) {
                    (Some(only), 1) => only,
                    (_, 0) => {
                        return Err(PluginError::Denied(
                            "this SQL connector has no source: the operator sets `config.source` and grants it in `permissions.sql`, or configures a `trino` endpoint".into(),
                        ));
                    }
                    _ => {
                        return Err(PluginError::InvalidInput(
                            "several SQL sources are granted; the operator picks one with `config.source`".into(),
                        ));
                    }
                }
            }
        };
        Ok(Self::Host {
            source: chosen.name,
            dialect: chosen.dialect,
            writable: chosen.writable,
        })
    }

    pub fn dialect(&self) -> &str {
        match self {
            Self::Host { dialect, .. } => dialect,
            Self::Trino(_) => "trino",
        }
    }

    pub fn name(&self) -> String {
        match self {
            Self::Host { source, .. } => source.clone(),
            Self::Trino(trino) => trino.describe(),
        }
    }

    pub fn writable(&self) -> bool {
        match self {
            Self::Host { writable, .. } => *writable,
            Self::Trino(trino) => trino.writable,
        }
    }

    /// The placeholder of parameter `index` (1-based) in this dialect.
    pub fn placeholder(&self, index: usize) -> String {
        match self.dialect() {
            "postgres" => format!("${index}"),
            _ => "?".to_owned(),
        }
    }

    /// Run one statement.
    pub fn run(
        &self,
        statement: &str,
        params: &[Value],
        max_rows: Option<u32>,
    ) -> Result<QueryOutput, PluginError> {
        match self {
            Self::Host { source, .. } => {
                let params = Value::Array(params.to_vec()).to_string();
                let result = sql::query(source, statement, &params, max_rows)?;
                let rows = result.rows;
                Ok(QueryOutput {
                    row_count: result.row_count as usize,
                    columns: result.columns,
                    column_types: result.column_types,
                    rows,
                    rows_affected: result.rows_affected,
                    truncated: result.truncated,
                    notice: result.notice,
                    elapsed_ms: result.elapsed_ms,
                })
            }
            Self::Trino(trino) => trino.run(statement, params, max_rows),
        }
    }
}
