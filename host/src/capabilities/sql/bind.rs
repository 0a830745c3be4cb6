//! Binding a call's JSON parameters to a prepared statement. PostgreSQL checks the binary
//! format of each parameter against the type it inferred, so values are converted to that
//! type (an integer for an `int4` column, a timestamp parsed from its ISO 8601 text, ...) and
//! a value that cannot be is a clear error naming the parameter. MySQL and SQLite convert
//! on their side, so JSON types map directly.

use std::str::FromStr;

use serde_json::Value;
use sqlx::mysql::{MySql, MySqlArguments, MySqlStatement};
use sqlx::postgres::{PgArguments, PgStatement, Postgres};
use sqlx::query::Query;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteStatement};
use sqlx::{Either, Statement, TypeInfo};

use super::execute::SqlError;

/// JSON types as they are: numbers as 64-bit integers or doubles, strings as text, null as a
/// text NULL, arrays and objects as JSON text.
macro_rules! bind_json {
    ($query:expr, $params:expr) => {{
        let mut query = $query;
        for param in $params {
            query = match param {
                Value::Null => query.bind(None::<String>),
                Value::Bool(b) => query.bind(*b),
                Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                    (Some(i), _) => query.bind(i),
                    (None, Some(f)) => query.bind(f),
                    (None, None) => query.bind(n.to_string()),
                },
                Value::String(s) => query.bind(s.clone()),
                other => query.bind(other.to_string()),
            };
        }
        query
    }};
}

pub fn mysql<'q>(
    query: Query<'q, MySql, MySqlArguments>,
    params: &[Value],
    _prepared: &MySqlStatement,
) -> Result<Query<'q, MySql, MySqlArguments>, SqlError> {
    Ok(bind_json!(query, params))
}

pub fn sqlite<'q>(
    query: Query<'q, Sqlite, SqliteArguments>,
    params: &[Value],
    _prepared: &SqliteStatement,
) -> Result<Query<'q, Sqlite, SqliteArguments>, SqlError> {
    Ok(bind_json!(query, params))
}

pub fn postgres<'q>(
    mut query: Query<'q, Postgres, PgArguments>,
    params: &[Value],
    prepared: &PgStatement,
) -> Result<Query<'q, Postgres, PgArguments>, SqlError> {
    let types: Vec<String> = match prepared.parameters() {
        Some(Either::Left(types)) => types.iter().map(|t| t.name().to_owned()).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && types.len() != params.len() {
        return Err(SqlError::InvalidParams(format!(
            "the statement has {} placeholders ($1..${}) but {} parameters were given",
            types.len(),
            types.len(),
            params.len()
        )));
    }
    for (index, value) in params.iter().enumerate() {
        let type_name = types.get(index).map_or("TEXT", String::as_str);
        let wrong = |expected: &str| {
            SqlError::InvalidParams(format!(
                "parameter ${} must be {expected} here (the statement uses it as {type_name}), got {value}",
                index + 1
            ))
        };
        if value.is_null() {
            query = query.bind(None::<String>);
            continue;
        }
        query = match type_name {
            "INT2" => query.bind(
                integer(value)
                    .and_then(|i| i16::try_from(i).ok())
                    .ok_or_else(|| wrong("a small integer"))?,
            ),
            "INT4" => query.bind(
                integer(value)
                    .and_then(|i| i32::try_from(i).ok())
                    .ok_or_else(|| wrong("an integer"))?,
            ),
            "INT8" => query.bind(integer(value).ok_or_else(|| wrong("an integer"))?),
            "FLOAT4" => query.bind(float(value).ok_or_else(|| wrong("a number"))? as f32),
            "FLOAT8" => query.bind(float(value).ok_or_else(|| wrong("a number"))?),
            "NUMERIC" => query.bind(
                rust_decimal::Decimal::from_str(&plain_text(value))
                    .map_err(|_| wrong("a number"))?,
            ),
            "BOOL" => query.bind(boolean(value).ok_or_else(|| wrong("true or false"))?),
            "DATE" => query.bind(
                chrono::NaiveDate::from_str(&plain_text(value))
                    .map_err(|_| wrong("a date (YYYY-MM-DD)"))?,
            ),
            "TIMESTAMP" => query.bind(
                naive_datetime(&plain_text(value))
                    .ok_or_else(|| wrong("a timestamp (YYYY-MM-DDTHH:MM:SS)"))?,
            ),
            "TIMESTAMPTZ" => query.bind(
                chrono::DateTime::parse_from_rfc3339(&plain_text(value))
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .or_else(|_| {
                        naive_datetime(&plain_text(value))
                            .map(|t| t.and_utc())
                            .ok_or(())
                    })
                    .map_err(|()| wrong("a timestamp with time zone (RFC 3339)"))?,
            ),
            "UUID" => {
                query.bind(uuid::Uuid::from_str(&plain_text(value)).map_err(|_| wrong("a UUID"))?)
            }
            "JSON" | "JSONB" => query.bind(value.clone()),
            "TEXT[]" | "VARCHAR[]" => query.bind(
                value
                    .as_array()
                    .map(|items| items.iter().map(plain_text).collect::<Vec<_>>())
                    .ok_or_else(|| wrong("a list of strings"))?,
            ),
            "INT4[]" => query.bind(
                value
                    .as_array()
                    .and_then(|items| {
                        items
                            .iter()
                            .map(|i| integer(i).and_then(|i| i32::try_from(i).ok()))
                            .collect::<Option<Vec<_>>>()
                    })
                    .ok_or_else(|| wrong("a list of integers"))?,
            ),
            "INT8[]" => query.bind(
                value
                    .as_array()
                    .and_then(|items| items.iter().map(integer).collect::<Option<Vec<_>>>())
                    .ok_or_else(|| wrong("a list of integers"))?,
            ),
            // Text and everything PostgreSQL can read from text.
            _ => query.bind(plain_text(value)),
        };
    }
    Ok(query)
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn float(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "1" => Some(true),
            "false" | "f" | "no" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A value as text: strings as they are, everything else as JSON.
fn plain_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn naive_datetime(text: &str) -> Option<chrono::NaiveDateTime> {
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d"]
        .iter()
        .find_map(|format| {
            chrono::NaiveDateTime::parse_from_str(text, format)
                .ok()
                .or_else(|| {
                    chrono::NaiveDate::parse_from_str(text, format)
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_convert_leniently_but_not_wrongly() {
        assert_eq!(integer(&json!("42")), Some(42));
        assert_eq!(integer(&json!(4.5)), None);
        assert_eq!(boolean(&json!("yes")), Some(true));
        assert_eq!(boolean(&json!(2)), None);
        assert!(naive_datetime("2026-01-02T03:04:05").is_some());
        assert!(naive_datetime("2026-01-02 03:04:05.5").is_some());
        assert!(naive_datetime("2026-01-02").is_some());
        assert!(naive_datetime("yesterday").is_none());
    }
}
