//! Catalog browsing and schema discovery, per dialect: a fixed set of catalog queries with
//! bound parameters (never names spliced into SQL), three queries per schema whatever its
//! size, folded into compact table descriptions for grounding the model.

use std::collections::BTreeMap;

use databot_sdk::prelude::*;

use crate::backend::Backend;

#[derive(Debug, Clone, Serialize)]
pub struct TableSummary {
    pub name: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_estimate: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColumnInfo {
    pub name: String,
    pub data_type: String,
    pub nullable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ForeignKey {
    pub columns: Vec<String>,
    pub references_table: String,
    pub references_columns: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableDescription {
    pub schema: String,
    pub name: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub columns: Vec<ColumnInfo>,
    pub primary_key: Vec<String>,
    pub foreign_keys: Vec<ForeignKey>,
}

impl TableDescription {
    /// One line for a prompt: `orders(id integer PK, customer_id integer → customers.id, ...) -- comment`.
    pub fn compact(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let mut text = format!("{} {}", c.name, c.data_type);
                if self.primary_key.contains(&c.name) {
                    text.push_str(" PK");
                }
                if !c.nullable && !self.primary_key.contains(&c.name) {
                    text.push_str(" NOT NULL");
                }
                for fk in &self.foreign_keys {
                    if let Some(i) = fk.columns.iter().position(|col| col == &c.name) {
                        let target = fk.references_columns.get(i).map_or("?", String::as_str);
                        text.push_str(&format!(" → {}.{target}", fk.references_table));
                    }
                }
                if let Some(comment) = c.comment.as_deref().filter(|s| !s.is_empty()) {
                    text.push_str(&format!(" /* {comment} */"));
                }
                text
            })
            .collect();
        let mut line = format!("{}.{}({})", self.schema, self.name, columns.join(", "));
        if self.kind != "table" {
            line.push_str(&format!(" [{}]", self.kind));
        }
        if let Some(comment) = self.comment.as_deref().filter(|s| !s.is_empty()) {
            line.push_str(&format!(" -- {comment}"));
        }
        line
    }
}

fn text(record: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    match record.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn truthy(record: &serde_json::Map<String, Value>, key: &str) -> bool {
    match record.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0) != 0,
        Some(Value::String(s)) => {
            matches!(s.to_ascii_uppercase().as_str(), "YES" | "TRUE" | "1" | "T")
        }
        _ => false,
    }
}

fn names(backend: &Backend, statement: &str, params: &[Value]) -> Result<Vec<String>, PluginError> {
    let result = backend.run(statement, params, None)?.complete("names")?;
    Ok(result
        .parsed_rows()
        .into_iter()
        .filter_map(|row| row.into_iter().next())
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect())
}

/// Databases (PostgreSQL, MySQL), attached databases (SQLite), catalogs (Trino).
pub fn list_databases(backend: &Backend) -> Result<Vec<String>, PluginError> {
    let statement = match backend.dialect() {
        "postgres" => {
            "SELECT datname::text AS name FROM pg_database WHERE NOT datistemplate ORDER BY 1"
        }
        "mysql" => "SELECT SCHEMA_NAME AS name FROM information_schema.SCHEMATA ORDER BY 1",
        "sqlite" => "SELECT name FROM pragma_database_list ORDER BY seq",
        _ => "SELECT catalog_name AS name FROM system.metadata.catalogs ORDER BY 1",
    };
    names(backend, statement, &[])
}

/// Schemas (namespaces of tables) of the current database or catalog.
pub fn list_schemas(backend: &Backend) -> Result<Vec<String>, PluginError> {
    let statement = match backend.dialect() {
        "postgres" => {
            "SELECT nspname::text AS name FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' ORDER BY 1"
        }
        "mysql" => {
            "SELECT SCHEMA_NAME AS name FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN ('information_schema', 'mysql', 'performance_schema', 'sys') ORDER BY 1"
        }
        "sqlite" => return Ok(vec!["main".into()]),
        _ => {
            "SELECT schema_name AS name FROM information_schema.schemata WHERE schema_name <> 'information_schema' ORDER BY 1"
        }
    };
    names(backend, statement, &[])
}

/// The schema used when the caller names none.
pub fn default_schema(backend: &Backend) -> Result<String, PluginError> {
    let statement = match backend.dialect() {
        "postgres" => "SELECT current_schema()::text AS name",
        "mysql" => "SELECT DATABASE() AS name",
        "sqlite" => return Ok("main".into()),
        _ => "SELECT current_schema AS name",
    };
    names(backend, statement, &[])?
        .into_iter()
        .next()
        .ok_or_else(|| {
            PluginError::InvalidInput("there is no current schema; name one with `schema`".into())
        })
}

pub fn list_tables(backend: &Backend, schema: &str) -> Result<Vec<TableSummary>, PluginError> {
    let p1 = backend.placeholder(1);
    let statement = match backend.dialect() {
        "postgres" => format!(
            "SELECT c.relname::text AS name, CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' ELSE 'table' END AS kind, obj_description(c.oid, 'pg_class') AS comment, GREATEST(c.reltuples, 0)::bigint AS row_estimate FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = {p1} AND c.relkind IN ('r', 'v', 'm', 'p', 'f') ORDER BY 1"
        ),
        "mysql" => "SELECT TABLE_NAME AS name, CASE TABLE_TYPE WHEN 'VIEW' THEN 'view' ELSE 'table' END AS kind, TABLE_COMMENT AS comment, TABLE_ROWS AS row_estimate FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME".into(),
        "sqlite" => "SELECT name, type AS kind, sql AS definition FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND ?1 = 'main' ORDER BY name".into(),
        _ => "SELECT table_name AS name, CASE table_type WHEN 'VIEW' THEN 'view' ELSE 'table' END AS kind FROM information_schema.tables WHERE table_schema = ? ORDER BY table_name".into(),
    };
    let result = backend
        .run(&statement, &[json!(schema)], None)?
        .complete("tables")?;
    Ok(result
        .records()
        .iter()
        .map(|r| TableSummary {
            name: text(r, "name").unwrap_or_default(),
            kind: text(r, "kind").unwrap_or_else(|| "table".into()),
            comment: text(r, "comment")
                .filter(|c| !c.is_empty())
                .or_else(|| text(r, "definition").and_then(|d| sqlite_comments(&d).0)),
            row_estimate: r.get("row_estimate").and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            }),
        })
        .collect())
}

/// Full descriptions of the tables of `schema` (all, or only `only`), in three queries.
pub fn describe(
    backend: &Backend,
    schema: &str,
    only: Option<&str>,
) -> Result<Vec<TableDescription>, PluginError> {
    let tables = list_tables(backend, schema)?;
    let mut described: BTreeMap<String, TableDescription> = tables
        .into_iter()
        .filter(|t| only.is_none_or(|name| name == t.name))
        .map(|t| {
            (
                t.name.clone(),
                TableDescription {
                    schema: schema.to_owned(),
                    name: t.name,
                    kind: t.kind,
                    comment: t.comment,
                    columns: Vec::new(),
                    primary_key: Vec::new(),
                    foreign_keys: Vec::new(),
                },
            )
        })
        .collect();
    if described.is_empty() {
        return Ok(Vec::new());
    }
    let filter = only.map_or(Value::Null, |t| json!(t));
    add_columns(backend, schema, &filter, &mut described)?;
    add_keys(backend, schema, &filter, &mut described)?;
    Ok(described.into_values().collect())
}

fn add_columns(
    backend: &Backend,
    schema: &str,
    filter: &Value,
    described: &mut BTreeMap<String, TableDescription>,
) -> Result<(), PluginError> {
    let (statement, params): (&str, Vec<Value>) = match backend.dialect() {
        "postgres" => (
            "SELECT c.relname::text AS table_name, a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS data_type, NOT a.attnotnull AS nullable, pg_get_expr(d.adbin, d.adrelid) AS default_value, col_description(a.attrelid, a.attnum) AS comment FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE n.nspname = $1 AND ($2::text IS NULL OR c.relname = $2::text) AND c.relkind IN ('r', 'v', 'm', 'p', 'f') AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum",
            vec![json!(schema), filter.clone()],
        ),
        "mysql" => (
            "SELECT TABLE_NAME AS table_name, COLUMN_NAME AS name, COLUMN_TYPE AS data_type, IS_NULLABLE AS nullable, COLUMN_DEFAULT AS default_value, COLUMN_COMMENT AS comment FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND (? IS NULL OR TABLE_NAME = ?) ORDER BY TABLE_NAME, ORDINAL_POSITION",
            vec![json!(schema), filter.clone(), filter.clone()],
        ),
        "sqlite" => (
            "SELECT m.name AS table_name, p.name AS name, p.type AS data_type, p.\"notnull\" = 0 AS nullable, p.dflt_value AS default_value, p.pk AS pk, m.sql AS definition FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND (?1 IS NULL OR m.name = ?1) ORDER BY m.name, p.cid",
            vec![filter.clone()],
        ),
        _ => (
            "SELECT table_name, column_name AS name, data_type, is_nullable AS nullable, column_default AS default_value, comment FROM information_schema.columns WHERE table_schema = ? AND (? IS NULL OR table_name = ?) ORDER BY table_name, ordinal_position",
            vec![json!(schema), filter.clone(), filter.clone()],
        ),
    };
    let result = backend.run(statement, &params, None)?.complete("columns")?;
    for record in result.records() {
        let Some(table) = text(&record, "table_name").and_then(|t| described.get_mut(&t)) else {
            continue;
        };
        let name = text(&record, "name").unwrap_or_default();
        let name_for_comment = name.clone();
        if record.get("pk").and_then(Value::as_i64).unwrap_or(0) > 0 {
            table.primary_key.push(name.clone());
        }
        table.columns.push(ColumnInfo {
            name,
            data_type: text(&record, "data_type")
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "any".into()),
            nullable: truthy(&record, "nullable"),
            default: text(&record, "default_value"),
            comment: text(&record, "comment")
                .filter(|c| !c.is_empty())
                .or_else(|| {
                    let definition = text(&record, "definition")?;
                    sqlite_comments(&definition).1.remove(&name_for_comment)
                }),
        });
    }
    Ok(())
}

/// The comments SQLite keeps in a `CREATE TABLE` statement, which is how a SQLite schema
/// documents itself: `-- text` lines before the first column are the table's comment, and
/// `-- text` at the end of a column's line is that column's.
pub fn sqlite_comments(definition: &str) -> (Option<String>, BTreeMap<String, String>) {
    let mut table: Vec<&str> = Vec::new();
    let mut columns = BTreeMap::new();
    let mut seen_column = false;
    let Some(open) = definition.find('(') else {
        return (None, columns);
    };
    for line in definition[open + 1..].lines() {
        let (code, comment) = match line.split_once("--") {
            Some((code, comment)) => (code.trim(), Some(comment.trim())),
            None => (line.trim(), None),
        };
        let Some(name) = code
            .split_whitespace()
            .next()
            .map(|word| word.trim_matches(|c| matches!(c, '"' | '`' | '[' | ']' | ',')))
            .filter(|word| !word.is_empty())
        else {
            if let Some(comment) = comment.filter(|c| !c.is_empty())
                && !seen_column
            {
                table.push(comment);
            }
            continue;
        };
        let constraint = ["PRIMARY", "FOREIGN", "UNIQUE", "CHECK", "CONSTRAINT", ")"]
            .iter()
            .any(|keyword| name.eq_ignore_ascii_case(keyword));
        if constraint {
            continue;
        }
        seen_column = true;
        if let Some(comment) = comment.filter(|c| !c.is_empty()) {
            columns.insert(name.to_owned(), comment.to_owned());
        }
    }
    let table = (!table.is_empty()).then(|| table.join(" "));
    (table, columns)
}

fn add_keys(
    backend: &Backend,
    schema: &str,
    filter: &Value,
    described: &mut BTreeMap<String, TableDescription>,
) -> Result<(), PluginError> {
    match backend.dialect() {
        "postgres" => {
            let result = backend.run(
                "SELECT c.relname::text AS table_name, con.contype::text AS kind, pg_get_constraintdef(con.oid) AS definition FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND ($2::text IS NULL OR c.relname = $2::text) AND con.contype IN ('p', 'f') ORDER BY c.relname, con.conname",
                &[json!(schema), filter.clone()],
                None,
            )?
            .complete("keys")?;
            for record in result.records() {
                let Some(table) = text(&record, "table_name").and_then(|t| described.get_mut(&t))
                else {
                    continue;
                };
                let definition = text(&record, "definition").unwrap_or_default();
                match text(&record, "kind").as_deref() {
                    Some("p") => table.primary_key = parenthesised(&definition, 0),
                    Some("f") => {
                        if let Some(fk) = parse_pg_foreign_key(&definition) {
                            table.foreign_keys.push(fk);
                        }
                    }
                    _ => {}
                }
            }
        }
        "mysql" => {
            let result = backend.run(
                "SELECT TABLE_NAME AS table_name, CONSTRAINT_NAME AS constraint_name, COLUMN_NAME AS column_name, REFERENCED_TABLE_NAME AS ref_table, REFERENCED_COLUMN_NAME AS ref_column FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = ? AND (? IS NULL OR TABLE_NAME = ?) AND (CONSTRAINT_NAME = 'PRIMARY' OR REFERENCED_TABLE_NAME IS NOT NULL) ORDER BY TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION",
                &[json!(schema), filter.clone(), filter.clone()],
                None,
            )?
            .complete("keys")?;
            let mut foreign: BTreeMap<(String, String), ForeignKey> = BTreeMap::new();
            for record in result.records() {
                let table_name = text(&record, "table_name").unwrap_or_default();
                let constraint = text(&record, "constraint_name").unwrap_or_default();
                let column = text(&record, "column_name").unwrap_or_default();
                if constraint == "PRIMARY" {
                    if let Some(table) = described.get_mut(&table_name) {
                        table.primary_key.push(column);
                    }
                    continue;
                }
                let fk = foreign
                    .entry((table_name, constraint))
                    .or_insert_with(|| ForeignKey {
                        columns: Vec::new(),
                        references_table: text(&record, "ref_table").unwrap_or_default(),
                        references_columns: Vec::new(),
                    });
                fk.columns.push(column);
                fk.references_columns
                    .push(text(&record, "ref_column").unwrap_or_default());
            }
            for ((table_name, _), fk) in foreign {
                if let Some(table) = described.get_mut(&table_name) {
                    table.foreign_keys.push(fk);
                }
            }
        }
        "sqlite" => {
            let result = backend.run(
                "SELECT m.name AS table_name, f.id AS id, f.\"from\" AS column_name, f.\"table\" AS ref_table, f.\"to\" AS ref_column FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f WHERE m.type = 'table' AND (?1 IS NULL OR m.name = ?1) ORDER BY m.name, f.id, f.seq",
                std::slice::from_ref(filter),
                None,
            )?
            .complete("keys")?;
            let mut foreign: BTreeMap<(String, i64), ForeignKey> = BTreeMap::new();
            for record in result.records() {
                let table_name = text(&record, "table_name").unwrap_or_default();
                let id = record.get("id").and_then(Value::as_i64).unwrap_or(0);
                let fk = foreign
                    .entry((table_name, id))
                    .or_insert_with(|| ForeignKey {
                        columns: Vec::new(),
                        references_table: text(&record, "ref_table").unwrap_or_default(),
                        references_columns: Vec::new(),
                    });
                fk.columns
                    .push(text(&record, "column_name").unwrap_or_default());
                fk.references_columns
                    .push(text(&record, "ref_column").unwrap_or_default());
            }
            for ((table_name, _), fk) in foreign {
                if let Some(table) = described.get_mut(&table_name) {
                    table.foreign_keys.push(fk);
                }
            }
        }
        // Trino exposes no key constraints in information_schema.
        _ => {}
    }
    Ok(())
}

/// The names inside the `nth` parenthesised list of a constraint definition.
fn parenthesised(definition: &str, nth: usize) -> Vec<String> {
    definition
        .split('(')
        .skip(nth + 1)
        .find_map(|part| part.split_once(')').map(|(inside, _)| inside))
        .map(|inside| {
            inside
                .split(',')
                .map(|name| name.trim().trim_matches('"').to_owned())
                .filter(|name| !name.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// `FOREIGN KEY (a, b) REFERENCES schema.other(x, y) ON DELETE ...`
fn parse_pg_foreign_key(definition: &str) -> Option<ForeignKey> {
    let (_, after) = definition.split_once("REFERENCES ")?;
    let table = after.split('(').next()?.trim().trim_matches('"').to_owned();
    Some(ForeignKey {
        columns: parenthesised(definition, 0),
        references_table: table,
        references_columns: parenthesised(definition, 1),
    })
}

/// A schema-qualified, quoted table name for this dialect. Names are quoted (and embedded
/// quotes doubled), so any table name is safe to place in a statement.
pub fn qualified(backend: &Backend, schema: Option<&str>, table: &str) -> String {
    let quote = |name: &str| match backend.dialect() {
        "mysql" => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    };
    match schema {
        Some(schema) => format!("{}.{}", quote(schema), quote(table)),
        None => quote(table),
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_comments;

    #[test]
    fn sqlite_comments_come_from_the_create_statement() {
        let (table, columns) = sqlite_comments(
            "CREATE TABLE orders (\n  -- One row per order a customer placed.\n  id INTEGER PRIMARY KEY, -- order number\n  \"customer_id\" INTEGER NOT NULL REFERENCES customers(id), -- who ordered\n  total REAL,\n  FOREIGN KEY (customer_id) REFERENCES customers(id) -- not a column\n)",
        );
        assert_eq!(
            table.as_deref(),
            Some("One row per order a customer placed.")
        );
        assert_eq!(columns.get("id").map(String::as_str), Some("order number"));
        assert_eq!(
            columns.get("customer_id").map(String::as_str),
            Some("who ordered")
        );
        assert!(!columns.contains_key("total"));
        assert!(!columns.contains_key("FOREIGN"));
        assert_eq!(
            sqlite_comments("CREATE TABLE t (a, b)"),
            (None, Default::default())
        );
    }
}
