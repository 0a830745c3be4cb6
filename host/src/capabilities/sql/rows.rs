//! Database values to JSON, per driver, and the collector that applies the row and byte caps
//! while rows stream in (so memory is bounded by the caps, not by the result).
//!
//! JSON numbers are exact only up to 2^53, so 64-bit integers beyond it and exact decimals
//! travel as strings; dates and times as ISO 8601 strings; binary as base64.

use base64::Engine as _;
use serde_json::Value;
use sqlx::mysql::MySqlRow;
use sqlx::postgres::{PgRow, PgTypeKind};
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Row, TypeInfo, ValueRef};

/// Largest integer a JSON number carries exactly.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Rows kept so far, already encoded as one JSON array, and why collection stopped early, if
/// it did. Each row is encoded once, straight into the result, so the byte cap is exact and
/// memory holds the result text only.
pub struct RowCollector {
    max_rows: usize,
    max_bytes: usize,
    /// `[row,row,...` (closed by `finish`).
    json: Vec<u8>,
    scratch: Vec<u8>,
    pub row_count: usize,
    pub cut: Option<Cut>,
    /// Column types shown as `null` because this host cannot decode them.
    pub undecodable: Vec<String>,
}

/// Which cap stopped a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    Rows(usize),
    Bytes(usize),
}

impl RowCollector {
    pub fn new(max_rows: usize, max_bytes: usize) -> Self {
        Self {
            max_rows,
            max_bytes,
            json: vec![b'['],
            scratch: Vec::new(),
            row_count: 0,
            cut: None,
            undecodable: Vec::new(),
        }
    }

    /// Room for another row? Once this is false the caller stops reading.
    pub fn wants_more(&self) -> bool {
        self.cut.is_none()
    }

    /// Offer one row. A row past the row cap, or one that would cross the byte cap, is not
    /// kept and ends collection.
    pub fn push(&mut self, row: Vec<Value>) {
        if self.cut.is_some() {
            return;
        }
        if self.row_count >= self.max_rows {
            self.cut = Some(Cut::Rows(self.max_rows));
            return;
        }
        self.scratch.clear();
        // Writing JSON values to memory cannot fail.
        let _ = serde_json::to_writer(&mut self.scratch, &row);
        // The array's brackets and separators count too: the text that is returned.
        let separator = usize::from(self.row_count > 0);
        if self.json.len() + separator + self.scratch.len() + 1 > self.max_bytes {
            self.cut = Some(Cut::Bytes(self.max_bytes));
            return;
        }
        if self.row_count > 0 {
            self.json.push(b',');
        }
        self.json.extend_from_slice(&self.scratch);
        self.row_count += 1;
    }

    /// Before decoding a value of `raw_len` bytes: would it fit at all? Its JSON is at least
    /// as long as the raw value (escaping and base64 only add), so a value that alone passes
    /// the byte cap ends collection here, before it is copied into memory again.
    pub fn admits_value(&mut self, raw_len: usize) -> bool {
        if self.json.len() + raw_len > self.max_bytes {
            self.cut = Some(Cut::Bytes(self.max_bytes));
            return false;
        }
        true
    }

    pub fn note_undecodable(&mut self, type_name: &str) {
        if !self.undecodable.iter().any(|t| t == type_name) {
            self.undecodable.push(type_name.to_owned());
        }
    }

    /// The structured notice for a cut result, or for values that could not be shown.
    pub fn notice(&self) -> Option<String> {
        let mut parts = Vec::new();
        match self.cut {
            Some(Cut::Rows(max)) => parts.push(format!(
                "result truncated: more than {max} rows (the source's row cap); showing the first {}. Add a LIMIT, filter or aggregate to see the rest",
                self.row_count
            )),
            Some(Cut::Bytes(max)) => parts.push(format!(
                "result truncated: the rows exceed {max} bytes (the source's byte cap); showing the first {}. Select fewer or narrower columns",
                self.row_count
            )),
            None => {}
        }
        if !self.undecodable.is_empty() {
            parts.push(format!(
                "values of type {} are shown as null; cast them to text in the query to see them",
                self.undecodable.join(", ")
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// The rows as one JSON array (text).
    pub fn finish(&mut self) -> String {
        let mut json = std::mem::replace(&mut self.json, vec![b'[']);
        json.push(b']');
        // Only serde_json wrote here, and it writes UTF-8.
        String::from_utf8(json)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

fn integer(value: i64) -> Value {
    if value.unsigned_abs() <= MAX_SAFE_INTEGER as u64 {
        Value::from(value)
    } else {
        Value::String(value.to_string())
    }
}

fn unsigned(value: u64) -> Value {
    if value <= MAX_SAFE_INTEGER as u64 {
        Value::from(value)
    } else {
        Value::String(value.to_string())
    }
}

fn float(value: f64) -> Value {
    serde_json::Number::from_f64(value)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(value.to_string()))
}

fn bytes(value: Vec<u8>) -> Value {
    match String::from_utf8(value) {
        Ok(text) => Value::String(text),
        Err(raw) => Value::String(format!(
            "base64:{}",
            base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
        )),
    }
}

type DecodeResult = Result<Value, sqlx::error::BoxDynError>;

/// One PostgreSQL row as JSON values.
pub fn postgres_row(row: &PgRow, collector: &mut RowCollector) -> Vec<Value> {
    (0..row.len())
        .map(|i| {
            let Ok(raw) = row.try_get_raw(i) else {
                return Value::Null;
            };
            if raw.is_null() {
                return Value::Null;
            }
            if !collector.admits_value(raw.as_bytes().map_or(0, <[u8]>::len)) {
                return Value::Null;
            }
            let info = raw.type_info().into_owned();
            let mut type_info = info.clone();
            while let PgTypeKind::Domain(base) = type_info.kind() {
                type_info = base.clone();
            }
            let decoded = if matches!(type_info.kind(), PgTypeKind::Enum(_)) {
                <String as Decode<sqlx::Postgres>>::decode(raw).map(Value::String)
            } else {
                postgres_value(type_info.name(), raw)
            };
            decoded.unwrap_or_else(|_| {
                collector.note_undecodable(info.name());
                Value::Null
            })
        })
        .collect()
}

fn postgres_value(type_name: &str, raw: sqlx::postgres::PgValueRef<'_>) -> DecodeResult {
    use sqlx::Postgres as Pg;
    Ok(match type_name {
        "BOOL" => Value::Bool(<bool as Decode<Pg>>::decode(raw)?),
        "INT2" => Value::from(<i16 as Decode<Pg>>::decode(raw)?),
        "INT4" => Value::from(<i32 as Decode<Pg>>::decode(raw)?),
        "INT8" => integer(<i64 as Decode<Pg>>::decode(raw)?),
        "OID" => Value::from(<sqlx::postgres::types::Oid as Decode<Pg>>::decode(raw)?.0),
        "FLOAT4" => float(f64::from(<f32 as Decode<Pg>>::decode(raw)?)),
        "FLOAT8" => float(<f64 as Decode<Pg>>::decode(raw)?),
        "NUMERIC" => Value::String(<rust_decimal::Decimal as Decode<Pg>>::decode(raw)?.to_string()),
        // sqlx names `bpchar` (CHAR(n)) "CHAR" and the one-byte internal `"char"` "\"CHAR\"".
        "TEXT" | "VARCHAR" | "CHAR" | "BPCHAR" | "NAME" | "CITEXT" | "UNKNOWN" => {
            Value::String(<String as Decode<Pg>>::decode(raw)?)
        }
        "\"CHAR\"" => {
            Value::String(char::from(<i8 as Decode<Pg>>::decode(raw)?.to_ne_bytes()[0]).to_string())
        }
        "JSON" | "JSONB" => <serde_json::Value as Decode<Pg>>::decode(raw)?,
        "UUID" => Value::String(<uuid::Uuid as Decode<Pg>>::decode(raw)?.to_string()),
        "DATE" => Value::String(<chrono::NaiveDate as Decode<Pg>>::decode(raw)?.to_string()),
        "TIME" => Value::String(<chrono::NaiveTime as Decode<Pg>>::decode(raw)?.to_string()),
        "TIMESTAMP" => Value::String(
            <chrono::NaiveDateTime as Decode<Pg>>::decode(raw)?
                .format("%Y-%m-%dT%H:%M:%S%.f")
                .to_string(),
        ),
        "TIMESTAMPTZ" => {
            Value::String(<chrono::DateTime<chrono::Utc> as Decode<Pg>>::decode(raw)?.to_rfc3339())
        }
        "BYTEA" => bytes(<Vec<u8> as Decode<Pg>>::decode(raw)?),
        "TEXT[]" | "VARCHAR[]" | "NAME[]" | "CHAR[]" | "BPCHAR[]" => Value::from(
            <Vec<Option<String>> as Decode<Pg>>::decode(raw)?
                .into_iter()
                .map(|v| v.map_or(Value::Null, Value::String))
                .collect::<Vec<_>>(),
        ),
        "INT2[]" => Value::from(<Vec<Option<i16>> as Decode<Pg>>::decode(raw)?),
        "INT4[]" => Value::from(<Vec<Option<i32>> as Decode<Pg>>::decode(raw)?),
        "INT8[]" => Value::from(
            <Vec<Option<i64>> as Decode<Pg>>::decode(raw)?
                .into_iter()
                .map(|v| v.map_or(Value::Null, integer))
                .collect::<Vec<_>>(),
        ),
        "FLOAT8[]" => Value::from(
            <Vec<Option<f64>> as Decode<Pg>>::decode(raw)?
                .into_iter()
                .map(|v| v.map_or(Value::Null, float))
                .collect::<Vec<_>>(),
        ),
        "BOOL[]" => Value::from(<Vec<Option<bool>> as Decode<Pg>>::decode(raw)?),
        other => return Err(format!("no JSON mapping for PostgreSQL type {other}").into()),
    })
}

/// One MySQL / MariaDB row as JSON values.
pub fn mysql_row(row: &MySqlRow, collector: &mut RowCollector) -> Vec<Value> {
    (0..row.len())
        .map(|i| {
            let Ok(raw) = row.try_get_raw(i) else {
                return Value::Null;
            };
            if raw.is_null() {
                return Value::Null;
            }
            let raw_len =
                <&[u8] as Decode<sqlx::MySql>>::decode(raw.clone()).map_or(0, <[u8]>::len);
            if !collector.admits_value(raw_len) {
                return Value::Null;
            }
            let info = raw.type_info().into_owned();
            mysql_value(info.name(), raw).unwrap_or_else(|_| {
                collector.note_undecodable(info.name());
                Value::Null
            })
        })
        .collect()
}

fn mysql_value(type_name: &str, raw: sqlx::mysql::MySqlValueRef<'_>) -> DecodeResult {
    use sqlx::MySql;
    Ok(match type_name {
        "BOOLEAN" => Value::Bool(<bool as Decode<MySql>>::decode(raw)?),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => {
            integer(<i64 as Decode<MySql>>::decode(raw)?)
        }
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
        | "BIGINT UNSIGNED" | "YEAR" => unsigned(<u64 as Decode<MySql>>::decode(raw)?),
        "FLOAT" => float(f64::from(<f32 as Decode<MySql>>::decode(raw)?)),
        "DOUBLE" => float(<f64 as Decode<MySql>>::decode(raw)?),
        "DECIMAL" => {
            Value::String(<rust_decimal::Decimal as Decode<MySql>>::decode(raw)?.to_string())
        }
        "JSON" => <serde_json::Value as Decode<MySql>>::decode(raw)?,
        "DATE" => Value::String(<chrono::NaiveDate as Decode<MySql>>::decode(raw)?.to_string()),
        "TIME" => Value::String(<chrono::NaiveTime as Decode<MySql>>::decode(raw)?.to_string()),
        "DATETIME" => Value::String(
            <chrono::NaiveDateTime as Decode<MySql>>::decode(raw)?
                .format("%Y-%m-%dT%H:%M:%S%.f")
                .to_string(),
        ),
        "TIMESTAMP" => Value::String(
            <chrono::DateTime<chrono::Utc> as Decode<MySql>>::decode(raw)?.to_rfc3339(),
        ),
        "BIT" => unsigned(<u64 as Decode<MySql>>::decode(raw)?),
        // Text, enums, sets and binary strings all arrive as bytes.
        _ => bytes(<Vec<u8> as Decode<MySql>>::decode(raw)?),
    })
}

/// One SQLite row as JSON values, by each value's storage class.
pub fn sqlite_row(row: &SqliteRow, collector: &mut RowCollector) -> Vec<Value> {
    use sqlx::Sqlite;
    (0..row.len())
        .map(|i| {
            let Ok(raw) = row.try_get_raw(i) else {
                return Value::Null;
            };
            if raw.is_null() {
                return Value::Null;
            }
            let info = raw.type_info().into_owned();
            let decoded: DecodeResult = match info.name() {
                "INTEGER" | "BOOLEAN" => <i64 as Decode<Sqlite>>::decode(raw).map(integer),
                "REAL" => <f64 as Decode<Sqlite>>::decode(raw).map(float),
                "BLOB" => <Vec<u8> as Decode<Sqlite>>::decode(raw).map(bytes),
                _ => <String as Decode<Sqlite>>::decode(raw).map(Value::String),
            };
            decoded.unwrap_or_else(|_| {
                collector.note_undecodable(info.name());
                Value::Null
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_row_cap_keeps_exactly_max_rows_and_says_so() {
        let mut collector = RowCollector::new(2, 1 << 20);
        for i in 0..5 {
            if !collector.wants_more() {
                break;
            }
            collector.push(vec![json!(i)]);
        }
        assert_eq!(collector.row_count, 2);
        assert_eq!(collector.cut, Some(Cut::Rows(2)));
        assert_eq!(collector.finish(), "[[0],[1]]");
        assert!(
            collector
                .notice()
                .is_some_and(|n| n.contains("more than 2 rows"))
        );
    }

    #[test]
    fn the_byte_cap_stops_before_the_row_that_crosses_it() {
        let mut collector = RowCollector::new(100, 20);
        collector.push(vec![json!("0123456789")]);
        collector.push(vec![json!("0123456789")]);
        assert_eq!(collector.row_count, 1);
        assert!(collector.finish().len() <= 20);
        assert_eq!(collector.cut, Some(Cut::Bytes(20)));
    }

    #[test]
    fn a_value_larger_than_the_cap_stops_collection_before_it_is_decoded() {
        let mut collector = RowCollector::new(100, 64);
        collector.push(vec![json!(1)]);
        assert!(!collector.admits_value(1 << 20));
        collector.push(vec![json!("would not fit")]);
        assert_eq!(collector.row_count, 1);
        assert_eq!(collector.cut, Some(Cut::Bytes(64)));
    }

    #[test]
    fn exact_results_carry_no_notice() {
        let mut collector = RowCollector::new(2, 1 << 20);
        collector.push(vec![json!(1)]);
        collector.push(vec![json!(2)]);
        assert_eq!(collector.cut, None);
        assert_eq!(collector.notice(), None);
    }

    #[test]
    fn big_integers_and_odd_floats_stay_exact() {
        assert_eq!(integer(42), json!(42));
        assert_eq!(integer(i64::MAX), json!(i64::MAX.to_string()));
        assert_eq!(unsigned(u64::MAX), json!(u64::MAX.to_string()));
        assert_eq!(float(f64::NAN), json!("NaN"));
        assert_eq!(bytes(vec![0xff, 0x00]), json!("base64:/wA="));
    }
}
