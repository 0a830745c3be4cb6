//! The Iceberg REST catalog (Apache Iceberg REST OpenAPI): `GET /v1/config` first (its
//! `defaults` and `overrides` merged, its `prefix` used unless the operator set one), OAuth2
//! client credentials when configured, nested namespaces (levels joined by the unit separator
//! 0x1F, sent as `%1F`), `pageToken` / `next-page-token` pagination, and table loads.

use databot_sdk::PluginError;
use databot_sdk::api::{Endpoint, segment};
use serde_json::{Map, Value, json};

use crate::model::{NamespaceRef, TableRef, TableSchema};
use crate::{iceberg_schema, oauth, paging};

pub const DRIVER: &str = "iceberg_rest";

pub struct Iceberg {
    api: Endpoint,
    /// `/v1` or `/v1/{prefix}`.
    root: String,
    pub warehouse: Option<String>,
    /// `defaults` overlaid with `overrides` from `GET /v1/config`.
    pub properties: Map<String, Value>,
    page_size: Option<u32>,
}

/// The levels of a dotted namespace name.
pub fn levels(namespace: &str) -> Vec<String> {
    namespace
        .split('.')
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A namespace as one path segment: levels joined by 0x1F, percent-encoded (`a%1Fb`).
pub fn namespace_segment(namespace: &str) -> String {
    segment(&levels(namespace).join("\u{1f}"))
}

/// `defaults` overlaid with `overrides` (the spec's order: defaults, client, overrides).
pub fn merge_config(config: &Value) -> Map<String, Value> {
    let mut merged = Map::new();
    for key in ["defaults", "overrides"] {
        if let Some(map) = config.get(key).and_then(Value::as_object) {
            for (k, v) in map {
                merged.insert(k.clone(), v.clone());
            }
        }
    }
    merged
}

impl Iceberg {
    /// Connect: token (if OAuth2 is configured), then `GET /v1/config`.
    pub fn connect(catalog_name: Option<&str>) -> Result<Self, PluginError> {
        let base = Endpoint::from_config("api")?;
        let warehouse = match catalog_name {
            Some(name) => Some(name.to_owned()),
            None => databot_sdk::config_value::<String>("warehouse")?,
        };
        let query: Vec<(&str, String)> =
            warehouse.iter().map(|w| ("warehouse", w.clone())).collect();
        let mut api = base.clone();
        let mut config = Value::Null;
        for attempt in 0..2 {
            let token = oauth::bearer(&base)?;
            api = match &token {
                Some(token) => base
                    .clone()
                    .header("authorization", &format!("Bearer {}", token.value)),
                None => base.clone(),
            };
            match api.get("/v1/config", &query) {
                Ok(body) => {
                    config = body;
                    break;
                }
                Err(PluginError::Denied(_))
                    if attempt == 0 && token.as_ref().is_some_and(|t| t.from_cache) =>
                {
                    // The cached token was revoked or expired early: fetch a fresh one.
                    oauth::forget(&base);
                }
                Err(error) => return Err(error),
            }
        }
        let properties = merge_config(&config);
        let prefix = match databot_sdk::config_value::<String>("prefix")? {
            Some(prefix) => Some(prefix),
            None => properties
                .get("prefix")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
        .filter(|p| !p.is_empty());
        let root = match &prefix {
            Some(prefix) => format!("/v1/{}", segment(prefix)),
            None => "/v1".to_owned(),
        };
        Ok(Self {
            api,
            root,
            warehouse,
            properties,
            page_size: databot_sdk::config_value::<u32>("page_size")?,
        })
    }

    fn pages(
        &self,
        path: &str,
        mut query: Vec<(&str, String)>,
        items: &str,
        limit: usize,
    ) -> Result<paging::Pages, PluginError> {
        if let Some(size) = self.page_size {
            query.push(("pageSize", size.to_string()));
        }
        paging::collect(
            |token| {
                let mut page_query = query.clone();
                // An empty token on the first page tells the server the client paginates.
                page_query.push(("pageToken", token.unwrap_or_default().to_owned()));
                self.api.get(path, &page_query)
            },
            items,
            "/next-page-token",
            limit,
        )
    }

    pub fn catalog(&self) -> Value {
        json!({
            "name": self.warehouse.clone().unwrap_or_else(|| "default".into()),
            "root": self.root,
            "properties": self.properties,
        })
    }

    pub fn list_namespaces(
        &self,
        parent: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<NamespaceRef>, bool), PluginError> {
        let query: Vec<(&str, String)> = parent
            .map(|p| vec![("parent", levels(p).join("\u{1f}"))])
            .unwrap_or_default();
        let pages = self.pages(
            &format!("{}/namespaces", self.root),
            query,
            "/namespaces",
            limit,
        )?;
        let namespaces = pages
            .items
            .iter()
            .map(|ns| {
                let levels: Vec<String> = ns
                    .as_array()
                    .map(|l| {
                        l.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                NamespaceRef {
                    name: levels.join("."),
                    levels,
                    description: None,
                    location: None,
                }
            })
            .collect();
        Ok((namespaces, pages.truncated))
    }

    pub fn list_tables(
        &self,
        namespace: &str,
        limit: usize,
    ) -> Result<(Vec<TableRef>, bool), PluginError> {
        let pages = self.pages(
            &format!(
                "{}/namespaces/{}/tables",
                self.root,
                namespace_segment(namespace)
            ),
            Vec::new(),
            "/identifiers",
            limit,
        )?;
        let tables = pages
            .items
            .iter()
            .map(|id| TableRef {
                namespace: id
                    .get("namespace")
                    .and_then(Value::as_array)
                    .map(|l| {
                        l.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(".")
                    })
                    .unwrap_or_else(|| namespace.to_owned()),
                name: id
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                table_type: None,
                format: Some("iceberg".into()),
                description: None,
            })
            .collect();
        Ok((tables, pages.truncated))
    }

    /// `LoadTableResult`: `metadata-location`, `metadata`, `config`.
    pub fn load_table(&self, namespace: &str, table: &str) -> Result<Value, PluginError> {
        self.api.get(
            &format!(
                "{}/namespaces/{}/tables/{}",
                self.root,
                namespace_segment(namespace),
                segment(table)
            ),
            &[],
        )
    }

    pub fn table_schema(&self, namespace: &str, table: &str) -> Result<TableSchema, PluginError> {
        let loaded = self.load_table(namespace, table)?;
        let metadata = loaded.get("metadata").unwrap_or(&Value::Null);
        let (schema_id, columns, partition_fields) = iceberg_schema::current_schema(metadata)
            .map_err(|e| PluginError::Failed(format!("table `{namespace}.{table}`: {e}")))?;
        Ok(TableSchema {
            driver: DRIVER,
            namespace: namespace.to_owned(),
            table: table.to_owned(),
            schema_id,
            columns,
            partition_fields,
        })
    }

    pub fn table_metadata(&self, namespace: &str, table: &str) -> Result<Value, PluginError> {
        let loaded = self.load_table(namespace, table)?;
        let mut metadata = loaded.get("metadata").cloned().unwrap_or(Value::Null);
        let current_snapshot_id = metadata.get("current-snapshot-id").cloned();
        let current_snapshot = metadata
            .get("snapshots")
            .and_then(Value::as_array)
            .and_then(|snapshots| {
                snapshots
                    .iter()
                    .find(|s| s.get("snapshot-id") == current_snapshot_id.as_ref())
                    .cloned()
            });
        let mut counts = Map::new();
        if let Some(map) = metadata.as_object_mut() {
            // Long histories are summarised, not returned whole.
            for key in ["snapshots", "snapshot-log", "metadata-log"] {
                if let Some(Value::Array(list)) = map.remove(key) {
                    counts.insert(key.replace('-', "_") + "_count", json!(list.len()));
                }
            }
        }
        Ok(json!({
            "driver": DRIVER,
            "namespace": namespace,
            "table": table,
            "metadata_location": loaded.get("metadata-location"),
            "format_version": metadata.get("format-version"),
            "table_uuid": metadata.get("table-uuid"),
            "location": metadata.get("location"),
            "properties": metadata.get("properties"),
            "current_snapshot": current_snapshot,
            "history": counts,
            "metadata": metadata,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_namespaces_use_the_unit_separator() {
        assert_eq!(namespace_segment("accounting.tax"), "accounting%1Ftax");
        assert_eq!(namespace_segment("a/b"), "a%2Fb");
    }

    #[test]
    fn overrides_win_over_defaults() {
        let merged = merge_config(&json!({
            "defaults": {"clients": "4", "prefix": "d"},
            "overrides": {"prefix": "o"}
        }));
        assert_eq!(merged["prefix"], "o");
        assert_eq!(merged["clients"], "4");
    }
}
