//! Unity Catalog REST API 2.1 (Databricks and the open-source server): catalogs, schemas and
//! tables with `page_token` / `next_page_token` pagination, and table details with columns.

use databot_sdk::PluginError;
use databot_sdk::api::{Endpoint, segment};
use serde_json::{Value, json};

use crate::model::{Column, NamespaceRef, TableRef, TableSchema, text};
use crate::paging;

pub const DRIVER: &str = "unity";
const ROOT: &str = "/api/2.1/unity-catalog";

pub struct Unity {
    api: Endpoint,
    catalog: Option<String>,
}

impl Unity {
    pub fn connect(catalog_name: Option<&str>) -> Result<Self, PluginError> {
        Ok(Self {
            api: Endpoint::from_config("api")?,
            catalog: match catalog_name {
                Some(name) => Some(name.to_owned()),
                None => databot_sdk::config_value::<String>("catalog")?,
            },
        })
    }

    pub fn catalog(&self) -> Result<&str, PluginError> {
        self.catalog.as_deref().ok_or_else(|| {
            PluginError::InvalidInput(
                "which Unity catalog? pass `catalog_name`, or set `catalog` in the plugin's config"
                    .into(),
            )
        })
    }

    fn pages(
        &self,
        path: &str,
        query: Vec<(&str, String)>,
        items: &str,
        limit: usize,
    ) -> Result<paging::Pages, PluginError> {
        paging::collect(
            |token| {
                let mut page_query = query.clone();
                page_query.push(("max_results", limit.min(1000).to_string()));
                if let Some(token) = token {
                    page_query.push(("page_token", token.to_owned()));
                }
                self.api.get(path, &page_query)
            },
            items,
            "/next_page_token",
            limit,
        )
    }

    pub fn list_catalogs(&self, limit: usize) -> Result<(Vec<Value>, bool), PluginError> {
        let pages = self.pages(&format!("{ROOT}/catalogs"), Vec::new(), "/catalogs", limit)?;
        let catalogs = pages
            .items
            .iter()
            .map(|c| {
                json!({
                    "name": text(c, "name"),
                    "comment": text(c, "comment"),
                    "owner": text(c, "owner"),
                    "catalog_type": text(c, "catalog_type"),
                })
            })
            .collect();
        Ok((catalogs, pages.truncated))
    }

    pub fn list_namespaces(&self, limit: usize) -> Result<(Vec<NamespaceRef>, bool), PluginError> {
        let catalog = self.catalog()?;
        let pages = self.pages(
            &format!("{ROOT}/schemas"),
            vec![("catalog_name", catalog.to_owned())],
            "/schemas",
            limit,
        )?;
        let schemas = pages
            .items
            .iter()
            .map(|s| {
                NamespaceRef::flat(
                    &text(s, "name").unwrap_or_default(),
                    text(s, "comment"),
                    text(s, "storage_location"),
                )
            })
            .collect();
        Ok((schemas, pages.truncated))
    }

    pub fn list_tables(
        &self,
        schema: &str,
        limit: usize,
    ) -> Result<(Vec<TableRef>, bool), PluginError> {
        let catalog = self.catalog()?;
        let pages = self.pages(
            &format!("{ROOT}/tables"),
            vec![
                ("catalog_name", catalog.to_owned()),
                ("schema_name", schema.to_owned()),
            ],
            "/tables",
            limit,
        )?;
        let tables = pages
            .items
            .iter()
            .map(|t| TableRef {
                namespace: text(t, "schema_name").unwrap_or_else(|| schema.to_owned()),
                name: text(t, "name").unwrap_or_default(),
                table_type: text(t, "table_type"),
                format: text(t, "data_source_format").map(|f| f.to_lowercase()),
                description: text(t, "comment"),
            })
            .collect();
        Ok((tables, pages.truncated))
    }

    pub fn get_table(&self, schema: &str, table: &str) -> Result<Value, PluginError> {
        let full_name = format!("{}.{schema}.{table}", self.catalog()?);
        self.api
            .get(&format!("{ROOT}/tables/{}", segment(&full_name)), &[])
    }

    pub fn table_schema(&self, schema: &str, table: &str) -> Result<TableSchema, PluginError> {
        let found = self.get_table(schema, table)?;
        Ok(TableSchema {
            driver: DRIVER,
            namespace: schema.to_owned(),
            table: table.to_owned(),
            schema_id: None,
            columns: columns(&found),
            partition_fields: Vec::new(),
        })
    }

    pub fn table_metadata(&self, schema: &str, table: &str) -> Result<Value, PluginError> {
        let found = self.get_table(schema, table)?;
        Ok(json!({
            "driver": DRIVER,
            "namespace": schema,
            "table": table,
            "full_name": text(&found, "full_name"),
            "table_type": text(&found, "table_type"),
            "format": text(&found, "data_source_format"),
            "location": text(&found, "storage_location"),
            "owner": text(&found, "owner"),
            "comment": text(&found, "comment"),
            "properties": found.get("properties"),
            "created_at": found.get("created_at"),
            "updated_at": found.get("updated_at"),
            "metadata": found,
        }))
    }
}

/// `columns[]` ordered by `position`; `partition_index` marks partition columns.
pub fn columns(table: &Value) -> Vec<Column> {
    let mut columns: Vec<Column> = table
        .get("columns")
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .map(|c| Column {
                    name: text(c, "name").unwrap_or_default(),
                    data_type: text(c, "type_text")
                        .or_else(|| text(c, "type_name").map(|t| t.to_lowercase()))
                        .unwrap_or_else(|| "unknown".into()),
                    nullable: c.get("nullable").and_then(Value::as_bool).unwrap_or(true),
                    comment: text(c, "comment"),
                    id: c.get("position").and_then(Value::as_i64),
                    is_partition: c.get("partition_index").is_some_and(|p| !p.is_null()),
                })
                .collect()
        })
        .unwrap_or_default();
    columns.sort_by_key(|c| c.id.unwrap_or(i64::MAX));
    columns
}
