//! `catalog_connector`: browse data catalogs. One connector, three drivers picked by config
//! `driver`: `iceberg_rest` (the default), `glue` (AWS Glue, SigV4-signed in the plugin) and
//! `unity` (Unity Catalog REST 2.1). Every driver answers the same operations with the same
//! result shapes: `list_catalogs`, `list_namespaces`, `list_tables`, `get_table_schema`,
//! `get_table_metadata` and `search`.

mod glue;
mod iceberg;
mod iceberg_schema;
mod model;
mod oauth;
mod paging;
mod sigv4;
mod unity;

use databot_sdk::http::health_from;
use databot_sdk::prelude::*;
use databot_sdk::{Health, HealthStatus};

use crate::glue::Glue;
use crate::iceberg::Iceberg;
use crate::model::{Listing, TableRef};
use crate::unity::Unity;
use plugin_shared::catalog::{pick_namespace, split_table};

databot_sdk::manifest! {
    name: "catalog_connector",
    kind: "connector",
    description: "Data catalogs: Iceberg REST, AWS Glue and Unity Catalog (namespaces, tables, schemas, metadata, search).",
    capabilities: ["http", "config", "logging", "state"],
}

plugin_shared::catalog_args!();

/// Default cap on the items of one listing (`config.max_items` overrides).
const DEFAULT_MAX_ITEMS: usize = 1000;
/// Default number of search matches.
const DEFAULT_SEARCH_LIMIT: usize = 50;
/// How many namespaces a search lists tables of, where the catalog has no search API
/// (`config.search_max_namespaces` overrides).
const DEFAULT_SEARCH_NAMESPACES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Driver {
    Iceberg,
    Glue,
    Unity,
}

fn driver() -> Result<Driver, PluginError> {
    let name = databot_sdk::config_value::<String>("driver")?;
    match name.as_deref().unwrap_or("iceberg_rest") {
        "iceberg_rest" | "iceberg" => Ok(Driver::Iceberg),
        "glue" => Ok(Driver::Glue),
        "unity" => Ok(Driver::Unity),
        other => Err(PluginError::InvalidInput(format!(
            "config `driver: {other}` is not a catalog driver; use `iceberg_rest` (default), `glue` or `unity`"
        ))),
    }
}

fn driver_name(driver: Driver) -> &'static str {
    match driver {
        Driver::Iceberg => iceberg::DRIVER,
        Driver::Glue => glue::DRIVER,
        Driver::Unity => unity::DRIVER,
    }
}

fn max_items(limit: Option<u32>) -> Result<usize, PluginError> {
    let cap = databot_sdk::config_value::<usize>("max_items")?.unwrap_or(DEFAULT_MAX_ITEMS);
    Ok(limit.map_or(cap, |l| (l as usize).min(cap)).max(1))
}

fn invalid(message: String) -> PluginError {
    PluginError::InvalidInput(message)
}

fn listing<T: Serialize>(
    driver: Driver,
    catalog: Option<String>,
    namespace: Option<String>,
    (items, truncated): (Vec<T>, bool),
) -> Listing<T> {
    Listing {
        driver: driver_name(driver),
        catalog,
        namespace,
        count: items.len(),
        truncated,
        items,
    }
}

fn table_of(args: &TableArgs) -> Result<(String, String), PluginError> {
    split_table(
        args.namespace.as_deref(),
        args.database.as_deref(),
        &args.table,
    )
    .map_err(invalid)
}

databot_sdk::connector! {
    health: check_health,

    /// List the catalogs: Unity catalogs, Glue catalogs (GetCatalogs), or for Iceberg REST the
    /// one catalog this endpoint serves (its warehouse, path prefix and merged properties).
    fn list_catalogs(args: ListCatalogsArgs) -> Result<Value, PluginError> {
        let driver = driver()?;
        let limit = max_items(args.limit)?;
        let result = match driver {
            Driver::Iceberg => {
                let catalog = Iceberg::connect(None)?.catalog();
                listing(driver, None, None, (vec![catalog], false))
            }
            Driver::Glue => listing(driver, None, None, Glue::connect(None)?.list_catalogs(limit)?),
            Driver::Unity => listing(driver, None, None, Unity::connect(None)?.list_catalogs(limit)?),
        };
        Ok(json!(result))
    }

    /// List namespaces (Iceberg namespaces, Glue databases, Unity schemas). `parent` lists
    /// the children of a nested Iceberg namespace.
    fn list_namespaces(args: ListNamespacesArgs) -> Result<Value, PluginError> {
        let driver = driver()?;
        let limit = max_items(args.limit)?;
        let catalog = args.catalog_name.as_deref();
        let parent = args.parent.as_deref().map(str::trim).filter(|p| !p.is_empty());
        if parent.is_some() && driver != Driver::Iceberg {
            return Err(invalid(format!(
                "`parent` is for nested Iceberg namespaces; the {} driver has a flat list",
                driver_name(driver)
            )));
        }
        let result = match driver {
            Driver::Iceberg => {
                let client = Iceberg::connect(catalog)?;
                let found = client.list_namespaces(parent, limit)?;
                listing(driver, client.warehouse.clone(), parent.map(str::to_owned), found)
            }
            Driver::Glue => {
                let client = Glue::connect(catalog)?;
                let found = client.list_namespaces(limit)?;
                listing(driver, client.catalog_id.clone(), None, found)
            }
            Driver::Unity => {
                let client = Unity::connect(catalog)?;
                let found = client.list_namespaces(limit)?;
                listing(driver, Some(client.catalog()?.to_owned()), None, found)
            }
        };
        Ok(json!(result))
    }

    /// List the tables of a namespace (`namespace`, or its alias `database`), following
    /// every page the catalog hands out up to `limit`.
    fn list_tables(args: ListTablesArgs) -> Result<Value, PluginError> {
        let driver = driver()?;
        let limit = max_items(args.limit)?;
        let namespace = pick_namespace(args.namespace.as_deref(), args.database.as_deref())
            .map_err(invalid)?
            .ok_or_else(|| invalid("`list_tables` needs `namespace` (or `database`): which namespace to list".into()))?;
        let catalog = args.catalog_name.as_deref();
        let result = match driver {
            Driver::Iceberg => {
                let client = Iceberg::connect(catalog)?;
                let found = client.list_tables(&namespace, limit)?;
                listing(driver, client.warehouse.clone(), Some(namespace), found)
            }
            Driver::Glue => {
                let client = Glue::connect(catalog)?;
                let found = client.list_tables(&namespace, limit)?;
                listing(driver, client.catalog_id.clone(), Some(namespace), found)
            }
            Driver::Unity => {
                let client = Unity::connect(catalog)?;
                let found = client.list_tables(&namespace, limit)?;
                listing(driver, Some(client.catalog()?.to_owned()), Some(namespace), found)
            }
        };
        Ok(json!(result))
    }

    /// The columns of a table (name, type, nullable, comment, partition flag) and, for
    /// Iceberg, its current schema id and partition fields (format v1 and v2 metadata).
    fn get_table_schema(args: TableArgs) -> Result<Value, PluginError> {
        let (namespace, table) = table_of(&args)?;
        let catalog = args.catalog_name.as_deref();
        let schema = match driver()? {
            Driver::Iceberg => Iceberg::connect(catalog)?.table_schema(&namespace, &table)?,
            Driver::Glue => Glue::connect(catalog)?.table_schema(&namespace, &table)?,
            Driver::Unity => Unity::connect(catalog)?.table_schema(&namespace, &table)?,
        };
        Ok(json!(schema))
    }

    /// A table's metadata: location, format, properties, owner, timestamps and (Iceberg) the
    /// current snapshot, with the catalog's own record under `metadata`.
    fn get_table_metadata(args: TableArgs) -> Result<Value, PluginError> {
        let (namespace, table) = table_of(&args)?;
        let catalog = args.catalog_name.as_deref();
        match driver()? {
            Driver::Iceberg => Iceberg::connect(catalog)?.table_metadata(&namespace, &table),
            Driver::Glue => Glue::connect(catalog)?.table_metadata(&namespace, &table),
            Driver::Unity => Unity::connect(catalog)?.table_metadata(&namespace, &table),
        }
    }

    /// Find tables whose name contains `query`. Glue uses its SearchTables API; Iceberg and
    /// Unity list the tables of at most `search_max_namespaces` namespaces (default 20) and
    /// say so in `namespaces_scanned` / `complete`.
    fn search(args: SearchArgs) -> Result<Value, PluginError> {
        let driver = driver()?;
        let query = args.query.trim().to_owned();
        if query.is_empty() {
            return Err(invalid("`query` is empty: give part of a table name".into()));
        }
        let limit = args.limit.map_or(DEFAULT_SEARCH_LIMIT, |l| l as usize).max(1);
        let catalog = args.catalog_name.as_deref();
        let budget = databot_sdk::config_value::<usize>("search_max_namespaces")?
            .unwrap_or(DEFAULT_SEARCH_NAMESPACES)
            .max(1);
        let per_namespace = max_items(None)?;
        match driver {
            Driver::Glue => {
                let (matches, truncated) = Glue::connect(catalog)?.search(&query, limit)?;
                Ok(json!({
                    "driver": glue::DRIVER, "query": query, "count": matches.len(),
                    "truncated": truncated, "complete": true, "matches": matches,
                }))
            }
            Driver::Iceberg => {
                let client = Iceberg::connect(catalog)?;
                let (found, more) = client.list_namespaces(None, budget)?;
                let names = found.into_iter().map(|n| n.name).collect();
                fan_out(driver, &query, limit, names, !more, |ns| {
                    client.list_tables(ns, per_namespace).map(|(t, _)| t)
                })
            }
            Driver::Unity => {
                let client = Unity::connect(catalog)?;
                let (found, more) = client.list_namespaces(budget)?;
                let names = found.into_iter().map(|n| n.name).collect();
                fan_out(driver, &query, limit, names, !more, |ns| {
                    client.list_tables(ns, per_namespace).map(|(t, _)| t)
                })
            }
        }
    }
}

/// Search by listing the tables of each namespace in turn (bounded by the caller).
fn fan_out(
    driver: Driver,
    query: &str,
    limit: usize,
    namespaces: Vec<String>,
    listed_all: bool,
    mut tables_of: impl FnMut(&str) -> Result<Vec<TableRef>, PluginError>,
) -> Result<Value, PluginError> {
    let needle = query.to_lowercase();
    let mut matches = Vec::new();
    let mut scanned = 0;
    for namespace in &namespaces {
        scanned += 1;
        let tables = tables_of(namespace)?;
        matches.extend(tables.into_iter().filter(|t| {
            t.name.to_lowercase().contains(&needle)
                || format!("{}.{}", t.namespace, t.name).to_lowercase() == needle
        }));
        if matches.len() >= limit {
            break;
        }
    }
    let truncated = matches.len() > limit;
    matches.truncate(limit);
    let complete = listed_all && scanned == namespaces.len() && !truncated;
    Ok(json!({
        "driver": driver_name(driver),
        "query": query,
        "count": matches.len(),
        "truncated": truncated,
        "namespaces_scanned": scanned,
        "complete": complete,
        "note": if complete { Value::Null } else { json!(format!(
            "searched the tables of {scanned} namespace(s) only; raise `search_max_namespaces` in the connector's config or use list_tables on a namespace")) },
        "matches": matches,
    }))
}

fn not_configured(error: PluginError) -> Health {
    match error {
        PluginError::NotFound(message) | PluginError::InvalidInput(message) => Health {
            status: HealthStatus::NotConfigured,
            message,
        },
        other => health_from::<()>(Err(other), ""),
    }
}

fn check_health() -> Health {
    let driver = match driver() {
        Ok(driver) => driver,
        Err(error) => return not_configured(error),
    };
    match driver {
        Driver::Iceberg => match Iceberg::connect(None) {
            Ok(client) => Health {
                status: HealthStatus::Healthy,
                message: format!(
                    "Iceberg REST catalog answered /v1/config (paths under {})",
                    client.catalog()["root"]
                ),
            },
            Err(error) => not_configured(error),
        },
        Driver::Glue => match Glue::connect(None) {
            Ok(client) => health_from(
                client.call("GetDatabases", &json!({"MaxResults": 1})),
                &format!("AWS Glue in {} answered GetDatabases", client.region()),
            ),
            Err(error) => not_configured(error),
        },
        Driver::Unity => match Unity::connect(None) {
            Ok(client) => health_from(
                client.list_catalogs(1),
                "Unity Catalog answered GET /catalogs",
            ),
            Err(error) => not_configured(error),
        },
    }
}
