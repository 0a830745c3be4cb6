//! `data_quality`: checks that answer pass or fail — row count, null rate, freshness,
//! uniqueness and a comparison of two tables — run through SQL connector instances, so the
//! host's read-only policy and caps apply. Table and column names are quoted for the
//! connection's dialect (never spliced in raw), and each result shows the SQL it ran.
//!
//! Config: `connectors` — the SQL connector instances this tool may use.

use databot_sdk::prelude::*;
use databot_sdk::{call_connector, pick_connector};

databot_sdk::manifest! {
    name: "data_quality",
    kind: "tool",
    description: "Data quality checks with pass/fail: row count, null rate, freshness, uniqueness, table comparison.",
    capabilities: ["connectors", "config"],
}

/// Longest identifier accepted (the longest any of the supported databases allows).
const MAX_IDENTIFIER: usize = 128;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RowCountArgs {
    /// Table, optionally `schema.table`.
    table: String,
    /// Fail when there are fewer rows than this (default 1).
    #[serde(default)]
    min_rows: Option<u64>,
    /// Connection name; optional when there is only one.
    #[serde(default)]
    connection: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NullRateArgs {
    /// Table, optionally `schema.table`.
    table: String,
    /// Column to check.
    column: String,
    /// Fail when more than this percentage of rows are NULL (default 0).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 100.0))]
    max_null_percent: Option<f64>,
    /// Connection name; optional when there is only one.
    #[serde(default)]
    connection: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FreshnessArgs {
    /// Table, optionally `schema.table`.
    table: String,
    /// Timestamp column that says when a row arrived or changed.
    timestamp_column: String,
    /// Fail when the newest row is older than this many hours (default 24).
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    threshold_hours: Option<f64>,
    /// Connection name; optional when there is only one.
    #[serde(default)]
    connection: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct UniquenessArgs {
    /// Table, optionally `schema.table`.
    table: String,
    /// Columns that together should be unique.
    #[schemars(length(min = 1))]
    columns: Vec<String>,
    /// Connection name; optional when there is only one.
    #[serde(default)]
    connection: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CompareArgs {
    /// Source table, optionally `schema.table`.
    source_table: String,
    /// Target table, optionally `schema.table`.
    target_table: String,
    /// Connection of the source table; optional when there is only one.
    #[serde(default)]
    source_connection: Option<String>,
    /// Connection of the target table; default: the source's.
    #[serde(default)]
    target_connection: Option<String>,
    /// Also compare the sum of this numeric column.
    #[serde(default)]
    sum_column: Option<String>,
}

#[derive(Serialize)]
struct CheckResult {
    check: &'static str,
    passed: bool,
    /// What was measured.
    metrics: Value,
    /// In words, for the report.
    summary: String,
    /// The statements that ran.
    sql: Vec<String>,
}

/// A connection and its dialect.
struct Target {
    connection: String,
    dialect: String,
}

impl Target {
    fn resolve(requested: Option<&str>) -> Result<Self, PluginError> {
        let connection = pick_connector(requested, "SQL", "connection")?;
        let info: Value = call_connector(&connection, "info", &json!({}))?;
        let dialect = info["dialect"].as_str().unwrap_or("postgres").to_owned();
        Ok(Self {
            connection,
            dialect,
        })
    }

    fn quote(&self, name: &str) -> Result<String, PluginError> {
        let name = name.trim();
        if name.is_empty() || name.len() > MAX_IDENTIFIER || name.contains('\0') {
            return Err(PluginError::InvalidInput(format!(
                "`{name}` is not a valid identifier (1 to {MAX_IDENTIFIER} characters)"
            )));
        }
        Ok(match self.dialect.as_str() {
            "mysql" => format!("`{}`", name.replace('`', "``")),
            _ => format!("\"{}\"", name.replace('"', "\"\"")),
        })
    }

    /// `schema.table` or `table`, each part quoted.
    fn table(&self, table: &str) -> Result<String, PluginError> {
        let parts = table
            .split('.')
            .map(|p| self.quote(p))
            .collect::<Result<Vec<_>, _>>()?;
        if parts.len() > 3 {
            return Err(PluginError::InvalidInput(format!(
                "`{table}`: use `table` or `schema.table`"
            )));
        }
        Ok(parts.join("."))
    }

    /// Run a one-row statement and return that row as a map.
    fn one_row(&self, statement: &str) -> Result<serde_json::Map<String, Value>, PluginError> {
        let out: Value = call_connector(
            &self.connection,
            "query",
            &json!({"statement": statement, "max_rows": 1}),
        )?;
        let columns = out["columns"].as_array().cloned().unwrap_or_default();
        let row = out["rows"][0].as_array().cloned().unwrap_or_default();
        Ok(columns
            .iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .zip(row)
            .collect())
    }
}

/// A number from any driver's representation (exact decimals arrive as strings).
fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn count(row: &serde_json::Map<String, Value>, key: &str) -> Result<u64, PluginError> {
    number(row.get(key))
        .map(|n| n as u64)
        .ok_or_else(|| PluginError::Failed(format!("the database returned no `{key}`")))
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

databot_sdk::tools! {
    /// Count the rows of a table; fails when there are fewer than `min_rows` (default 1).
    fn dq_row_count(args: RowCountArgs) -> Result<CheckResult, PluginError> {
        let target = Target::resolve(args.connection.as_deref())?;
        let sql = format!("SELECT COUNT(*) AS row_count FROM {}", target.table(&args.table)?);
        let rows = count(&target.one_row(&sql)?, "row_count")?;
        let min = args.min_rows.unwrap_or(1);
        Ok(CheckResult {
            check: "row_count",
            passed: rows >= min,
            metrics: json!({"rows": rows, "min_rows": min}),
            summary: format!("{} has {rows} rows (minimum {min})", args.table),
            sql: vec![sql],
        })
    }

    /// Share of NULLs in a column; fails above `max_null_percent` (default 0).
    fn dq_null_rate(args: NullRateArgs) -> Result<CheckResult, PluginError> {
        let target = Target::resolve(args.connection.as_deref())?;
        let sql = format!(
            "SELECT COUNT(*) AS total, COUNT({}) AS non_null FROM {}",
            target.quote(&args.column)?,
            target.table(&args.table)?
        );
        let row = target.one_row(&sql)?;
        let total = count(&row, "total")?;
        let nulls = total.saturating_sub(count(&row, "non_null")?);
        let percent = if total == 0 { 0.0 } else { round2(nulls as f64 * 100.0 / total as f64) };
        let max = args.max_null_percent.unwrap_or(0.0);
        Ok(CheckResult {
            check: "null_rate",
            passed: percent <= max,
            metrics: json!({"rows": total, "nulls": nulls, "null_percent": percent, "max_null_percent": max}),
            summary: format!("{}.{}: {nulls} of {total} rows are NULL ({percent}%, allowed {max}%)", args.table, args.column),
            sql: vec![sql],
        })
    }

    /// How old the newest row is, by a timestamp column; fails when older than
    /// `threshold_hours` (default 24) or when the table is empty.
    fn dq_freshness(args: FreshnessArgs) -> Result<CheckResult, PluginError> {
        let target = Target::resolve(args.connection.as_deref())?;
        let column = target.quote(&args.timestamp_column)?;
        let table = target.table(&args.table)?;
        let sql = match target.dialect.as_str() {
            "postgres" => format!("SELECT MAX({column})::text AS latest, EXTRACT(EPOCH FROM (now() - MAX({column})::timestamptz)) / 3600.0 AS age_hours FROM {table}"),
            "mysql" => format!("SELECT CAST(MAX({column}) AS CHAR) AS latest, TIMESTAMPDIFF(SECOND, MAX({column}), NOW()) / 3600 AS age_hours FROM {table}"),
            "sqlite" => format!("SELECT MAX({column}) AS latest, (julianday('now') - julianday(MAX({column}))) * 24 AS age_hours FROM {table}"),
            _ => format!("SELECT CAST(max({column}) AS varchar) AS latest, date_diff('second', max({column}), current_timestamp) / 3600.0 AS age_hours FROM {table}"),
        };
        let row = target.one_row(&sql)?;
        let threshold = args.threshold_hours.unwrap_or(24.0);
        let latest = row.get("latest").cloned().unwrap_or(Value::Null);
        let age = number(row.get("age_hours")).map(round2);
        let (passed, summary) = match age {
            Some(age) => (
                age <= threshold,
                format!("newest row of {} is {age} hours old (threshold {threshold})", args.table),
            ),
            None => (false, format!("{} has no rows with a {} value", args.table, args.timestamp_column)),
        };
        Ok(CheckResult {
            check: "freshness",
            passed,
            metrics: json!({"latest": latest, "age_hours": age, "threshold_hours": threshold}),
            summary,
            sql: vec![sql],
        })
    }

    /// Whether a set of columns is unique; reports how many values repeat and how many
    /// extra rows they make.
    fn dq_uniqueness(args: UniquenessArgs) -> Result<CheckResult, PluginError> {
        let target = Target::resolve(args.connection.as_deref())?;
        let columns = args.columns.iter().map(|c| target.quote(c)).collect::<Result<Vec<_>, _>>()?.join(", ");
        let table = target.table(&args.table)?;
        let sql = format!(
            "SELECT COUNT(*) AS duplicate_values, COALESCE(SUM(n - 1), 0) AS extra_rows FROM (SELECT COUNT(*) AS n FROM {table} GROUP BY {columns} HAVING COUNT(*) > 1) d"
        );
        let row = target.one_row(&sql)?;
        let duplicates = count(&row, "duplicate_values")?;
        let extra = count(&row, "extra_rows")?;
        Ok(CheckResult {
            check: "uniqueness",
            passed: duplicates == 0,
            metrics: json!({"duplicate_values": duplicates, "extra_rows": extra, "columns": args.columns}),
            summary: format!("{} ({}): {duplicates} values repeat, {extra} extra rows", args.table, args.columns.join(", ")),
            sql: vec![sql],
        })
    }

    /// Compare two tables (possibly on different connections) by row count and optionally
    /// the sum of a numeric column; passes when they match.
    fn dq_compare(args: CompareArgs) -> Result<CheckResult, PluginError> {
        let source = Target::resolve(args.source_connection.as_deref())?;
        let target = match args.target_connection.as_deref() {
            Some(name) => Target::resolve(Some(name))?,
            None => Target { connection: source.connection.clone(), dialect: source.dialect.clone() },
        };
        let measure = |side: &Target, table: &str| -> Result<(String, u64, Option<f64>), PluginError> {
            let sum = match &args.sum_column {
                Some(column) => format!(", SUM({}) AS total", side.quote(column)?),
                None => String::new(),
            };
            let sql = format!("SELECT COUNT(*) AS row_count{sum} FROM {}", side.table(table)?);
            let row = side.one_row(&sql)?;
            Ok((sql, count(&row, "row_count")?, number(row.get("total"))))
        };
        let (source_sql, source_rows, source_sum) = measure(&source, &args.source_table)?;
        let (target_sql, target_rows, target_sum) = measure(&target, &args.target_table)?;
        let sums_match = match (source_sum, target_sum) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
            (None, None) => true,
            _ => false,
        };
        let passed = source_rows == target_rows && sums_match;
        Ok(CheckResult {
            check: "compare",
            passed,
            metrics: json!({
                "source": {"connection": source.connection, "table": args.source_table, "rows": source_rows, "sum": source_sum},
                "target": {"connection": target.connection, "table": args.target_table, "rows": target_rows, "sum": target_sum},
                "row_difference": target_rows as i64 - source_rows as i64,
            }),
            summary: format!(
                "{} has {source_rows} rows, {} has {target_rows}{}",
                args.source_table,
                args.target_table,
                if args.sum_column.is_some() && !sums_match { "; the sums differ" } else { "" }
            ),
            sql: vec![source_sql, target_sql],
        })
    }
}
