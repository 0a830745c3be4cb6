//! Reading an Iceberg table's schema out of its table metadata (format v1 and v2).
//!
//! v2 metadata keeps every schema in `schemas[]` and points at the current one with
//! `current-schema-id`; v1 has a single `schema` (and may also carry `schemas[]`). The
//! original Python connector read a `current-schema` key that neither version has, so v2
//! tables came back without columns; here the current schema is found by id.

use serde_json::Value;

use crate::model::{Column, PartitionField};

/// The current schema's id and columns, and the default partition spec's fields.
pub type CurrentSchema = (Option<i64>, Vec<Column>, Vec<PartitionField>);

/// The current schema of table `metadata` (format v1 or v2).
pub fn current_schema(metadata: &Value) -> Result<CurrentSchema, String> {
    let schema = find_current_schema(metadata)?;
    let schema_id = schema.get("schema-id").and_then(Value::as_i64);
    let fields = schema
        .get("fields")
        .and_then(Value::as_array)
        .ok_or("the table's current schema has no `fields` list")?;
    let columns: Vec<Column> = fields.iter().map(column).collect();
    let partitions = partition_fields(metadata, &columns);
    Ok((schema_id, columns, partitions))
}

fn find_current_schema(metadata: &Value) -> Result<&Value, String> {
    if let Some(schemas) = metadata.get("schemas").and_then(Value::as_array) {
        let current = metadata.get("current-schema-id").and_then(Value::as_i64);
        if let Some(current) = current {
            return schemas
                .iter()
                .find(|s| s.get("schema-id").and_then(Value::as_i64) == Some(current))
                .ok_or_else(|| {
                    format!("the table metadata names current-schema-id {current} but `schemas` has no schema with that id")
                });
        }
    }
    if let Some(schema) = metadata.get("schema").filter(|s| s.is_object()) {
        return Ok(schema);
    }
    Err(
        "the table metadata has neither `schemas` with `current-schema-id` (format v2) nor `schema` (format v1)"
            .to_owned(),
    )
}

fn column(field: &Value) -> Column {
    Column {
        name: field
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        data_type: render_type(field.get("type").unwrap_or(&Value::Null)),
        nullable: !field
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        comment: field.get("doc").and_then(Value::as_str).map(str::to_owned),
        id: field.get("id").and_then(Value::as_i64),
        is_partition: false,
    }
}

/// An Iceberg type as text: primitives as they are, nested types as `struct<...>`,
/// `list<...>`, `map<..., ...>`.
pub fn render_type(value: &Value) -> String {
    match value {
        Value::String(primitive) => primitive.clone(),
        Value::Object(nested) => match nested.get("type").and_then(Value::as_str) {
            Some("struct") => {
                let fields = nested
                    .get("fields")
                    .and_then(Value::as_array)
                    .map(|fields| {
                        fields
                            .iter()
                            .map(|f| {
                                format!(
                                    "{}: {}",
                                    f.get("name").and_then(Value::as_str).unwrap_or("?"),
                                    render_type(f.get("type").unwrap_or(&Value::Null))
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                format!("struct<{fields}>")
            }
            Some("list") => format!(
                "list<{}>",
                render_type(nested.get("element").unwrap_or(&Value::Null))
            ),
            Some("map") => format!(
                "map<{}, {}>",
                render_type(nested.get("key").unwrap_or(&Value::Null)),
                render_type(nested.get("value").unwrap_or(&Value::Null))
            ),
            _ => Value::Object(nested.clone()).to_string(),
        },
        Value::Null => "unknown".to_owned(),
        other => other.to_string(),
    }
}

/// Fields of the default partition spec (v2 `partition-specs` + `default-spec-id`, v1
/// `partition-spec`), with the column each is derived from.
fn partition_fields(metadata: &Value, columns: &[Column]) -> Vec<PartitionField> {
    let specs = metadata.get("partition-specs").and_then(Value::as_array);
    let default_id = metadata.get("default-spec-id").and_then(Value::as_i64);
    let fields = specs
        .and_then(|specs| {
            specs
                .iter()
                .find(|s| s.get("spec-id").and_then(Value::as_i64) == default_id)
                .or_else(|| specs.last())
        })
        .and_then(|spec| spec.get("fields"))
        .or_else(|| metadata.get("partition-spec"))
        .and_then(Value::as_array);
    fields
        .map(|fields| {
            fields
                .iter()
                .map(|f| {
                    let source = f.get("source-id").and_then(Value::as_i64);
                    PartitionField {
                        name: f
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        transform: f
                            .get("transform")
                            .and_then(Value::as_str)
                            .unwrap_or("identity")
                            .to_owned(),
                        source_column: source.and_then(|id| {
                            columns
                                .iter()
                                .find(|c| c.id == Some(id))
                                .map(|c| c.name.clone())
                        }),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn v2_metadata_uses_the_current_schema_id() {
        let metadata = json!({
            "format-version": 2,
            "current-schema-id": 1,
            "schemas": [
                {"type": "struct", "schema-id": 0, "fields": [
                    {"id": 1, "name": "id", "required": true, "type": "long"}
                ]},
                {"type": "struct", "schema-id": 1, "identifier-field-ids": [1], "fields": [
                    {"id": 1, "name": "id", "required": true, "type": "long"},
                    {"id": 2, "name": "data", "required": false, "type": "string", "doc": "payload"},
                    {"id": 3, "name": "tags", "required": false,
                     "type": {"type": "list", "element-id": 4, "element": "string", "element-required": true}}
                ]}
            ],
            "default-spec-id": 0,
            "partition-specs": [{"spec-id": 0, "fields": [
                {"name": "id_bucket", "transform": "bucket[16]", "source-id": 1, "field-id": 1000}
            ]}]
        });
        let (id, columns, partitions) = current_schema(&metadata).unwrap();
        assert_eq!(id, Some(1));
        let names: Vec<_> = columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "data", "tags"]);
        assert!(!columns[0].nullable);
        assert_eq!(columns[1].comment.as_deref(), Some("payload"));
        assert_eq!(columns[2].data_type, "list<string>");
        assert_eq!(partitions[0].source_column.as_deref(), Some("id"));
        assert_eq!(partitions[0].transform, "bucket[16]");
    }

    #[test]
    fn v1_metadata_uses_schema() {
        let metadata = json!({
            "format-version": 1,
            "schema": {"type": "struct", "fields": [
                {"id": 1, "name": "ts", "required": false, "type": "timestamptz"},
                {"id": 2, "name": "loc", "required": false, "type": {"type": "struct", "fields": [
                    {"id": 3, "name": "lat", "required": true, "type": "double"}]}},
                {"id": 4, "name": "attrs", "required": false, "type": {"type": "map",
                    "key-id": 5, "key": "string", "value-id": 6, "value": "int", "value-required": false}}
            ]},
            "partition-spec": [{"name": "ts_day", "transform": "day", "source-id": 1, "field-id": 1000}]
        });
        let (id, columns, partitions) = current_schema(&metadata).unwrap();
        assert_eq!(id, None);
        assert_eq!(columns[1].data_type, "struct<lat: double>");
        assert_eq!(columns[2].data_type, "map<string, int>");
        assert_eq!(partitions[0].name, "ts_day");
        assert_eq!(partitions[0].source_column.as_deref(), Some("ts"));
    }

    #[test]
    fn a_dangling_schema_id_is_an_error() {
        let metadata = json!({"current-schema-id": 7, "schemas": [{"schema-id": 0, "fields": []}]});
        assert!(current_schema(&metadata).unwrap_err().contains("7"));
        assert!(current_schema(&json!({})).is_err());
    }
}
