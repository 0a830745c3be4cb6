//! Result shapes shared by the three catalog drivers, so every driver answers an operation
//! with the same fields.

use serde::Serialize;
use serde_json::Value;

/// One column of a table schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    pub name: String,
    /// The type as the catalog writes it (`long`, `struct<a: int>`, `decimal(10,2)`, ...).
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The catalog's field id (Iceberg) or position (Unity), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// True for a partition column (Glue `PartitionKeys`, Unity `partition_index`).
    pub is_partition: bool,
}

/// How a table is partitioned (Iceberg partition spec fields).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionField {
    pub name: String,
    pub transform: String,
    /// Column the partition is derived from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_column: Option<String>,
}

/// A table's schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableSchema {
    pub driver: &'static str,
    pub namespace: String,
    pub table: String,
    /// The Iceberg schema id in use, when the catalog has schema versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_id: Option<i64>,
    pub columns: Vec<Column>,
    pub partition_fields: Vec<PartitionField>,
}

/// One table in a listing or a search result.
#[derive(Debug, Clone, Serialize)]
pub struct TableRef {
    pub namespace: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One namespace (Iceberg namespace, Glue database, Unity schema).
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceRef {
    /// Dotted name (`sales.emea` for a nested Iceberg namespace).
    pub name: String,
    /// The levels of a nested namespace.
    pub levels: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl NamespaceRef {
    pub fn flat(name: &str, description: Option<String>, location: Option<String>) -> Self {
        Self {
            name: name.to_owned(),
            levels: vec![name.to_owned()],
            description,
            location,
        }
    }
}

/// A list result with how it was bounded.
#[derive(Debug, Clone, Serialize)]
pub struct Listing<T: Serialize> {
    pub driver: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub count: usize,
    /// True when `limit` cut the list short (more exist).
    pub truncated: bool,
    pub items: Vec<T>,
}

/// A string field of a JSON object, if present and non-empty.
pub fn text(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}
