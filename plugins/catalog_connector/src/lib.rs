//! `catalog_connector`: browse data catalogs. One connector, three drivers picked by config
//! `driver`: `iceberg_rest` (the default), `glue` (AWS Glue, SigV4-signed in the plugin) and
//! `unity` (Unity Catalog REST 2.1). Every driver answers the same operations with the same
//! result shapes: `list_catalogs`, `list_namespaces`, `list_tables`, `get_table_schema`,
//! `get_table_metadata` and `search`. The operations talk to the `driver::Catalog` trait, which
//! each driver implements.

mod driver;
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

use crate::driver::{Page, connect, driver_name};
use crate::model::{Listing, TableRef};
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

fn max_items(limit: Option<u32>) -> Result<usize, PluginError> {
    let cap = databot_sdk::config_value::<usize>("max_items")?.unwrap_or(DEFAULT_MAX_ITEMS);
    Ok(limit.map_or(cap, |l| (l as usize).min(cap)).max(1))
}

fn invalid(message: String) -> PluginError {
    PluginError::InvalidInput(message)
}

fn listing<T: Serialize>(
    driver: &'static str,
    catalog: Option<String>,
    namespace: Option<String>,
    (items, truncated): Page<T>,
) -> Listing<T> {
    Listing {
        driver,
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
        let limit = max_items(args.limit)?;
        let client = connect(None)?;
        let found = client.list_catalogs(limit)?;
        Ok(json!(listing(client.driver(), None, None, found)))
    }

    /// List namespaces (Iceberg namespaces, Glue databases, Unity schemas). `parent` lists
    /// the children of a nested Iceberg namespace.
    fn list_namespaces(args: ListNamespacesArgs) -> Result<Value, PluginError> {
        let limit = max_items(args.limit)?;
        let parent = args.parent.as_deref().map(str::trim).filter(|p| !p.is_empty());
        let driver = driver_name()?;
        if parent.is_some() && !driver::nests_namespaces(driver) {
            return Err(invalid(format!(
                "`parent` is for nested Iceberg namespaces; the {driver} driver has a flat list"
            )));
        }
        let client = connect(args.catalog_name.as_deref())?;
        let found = client.list_namespaces(parent, limit)?;
        let result = listing(
            client.driver(),
            client.catalog_name()?,
            parent.map(str::to_owned),
            found,
        );
        Ok(json!(result))
    }

    /// List the tables of a namespace (`namespace`, or its alias `database`), following
    /// every page the catalog hands out up to `limit`.
    fn list_tables(args: ListTablesArgs) -> Result<Value, PluginError> {
        let limit = max_items(args.limit)?;
        let namespace = pick_namespace(args.namespace.as_deref(), args.database.as_deref())
            .map_err(invalid)?
            .ok_or_else(|| invalid("`list_tables` needs `namespace` (or `database`): which namespace to list".into()))?;
        let client = connect(args.catalog_name.as_deref())?;
        let found = client.list_tables(&namespace, limit)?;
        let result = listing(client.driver(), client.catalog_name()?, Some(namespace), found);
        Ok(json!(result))
    }

    /// The columns of a table (name, type, nullable, comment, partition flag) and, for
    /// Iceberg, its current schema id and partition fields (format v1 and v2 metadata).
    fn get_table_schema(args: TableArgs) -> Result<Value, PluginError> {
        let (namespace, table) = table_of(&args)?;
        let schema = connect(args.catalog_name.as_deref())?.table_schema(&namespace, &table)?;
        Ok(json!(schema))
    }

    /// A table's metadata: location, format, properties, owner, timestamps and (Iceberg) the
    /// current snapshot, with the catalog's own record under `metadata`.
    fn get_table_metadata(args: TableArgs) -> Result<Value, PluginError> {
        let (namespace, table) = table_of(&args)?;
        connect(args.catalog_name.as_deref())?.table_metadata(&namespace, &table)
    }

    /// Find tables whose name contains `query`. Glue uses its SearchTables API; Iceberg and
    /// Unity list the tables of at most `search_max_namespaces` namespaces (default 20) and
    /// say so in `namespaces_scanned` / `complete`.
    fn search(args: SearchArgs) -> Result<Value, PluginError> {
        driver_name()?;
        let query = args.query.trim().to_owned();
        if query.is_empty() {
            return Err(invalid("`query` is empty: give part of a table name".into()));
        }
        let limit = args.limit.map_or(DEFAULT_SEARCH_LIMIT, |l| l as usize).max(1);
        let budget = databot_sdk::config_value::<usize>("search_max_namespaces")?
            .unwrap_or(DEFAULT_SEARCH_NAMESPACES)
            .max(1);
        let per_namespace = max_items(None)?;
        let client = connect(args.catalog_name.as_deref())?;
        if let Some(found) = client.search(&query, limit) {
            let (matches, truncated) = found?;
            return Ok(json!({
                "driver": client.driver(), "query": query, "count": matches.len(),
                "truncated": truncated, "complete": true, "matches": matches,
            }));
        }
        let (found, more) = client.list_namespaces(None, budget)?;
        let names = found.into_iter().map(|n| n.name).collect();
        fan_out(client.driver(), &query, limit, names, !more, |ns| {
            client.list_tables(ns, per_namespace).map(|(t, _)| t)
        })
    }
}

/// Search by listing the tables of each namespace in turn (bounded by the caller).
fn fan_out(
    driver: &'static str,
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
        "driver": driver,
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
    match driver_name().and_then(|_| connect(None)) {
        Ok(client) => client.health(),
        Err(error) => not_configured(error),
    }
}
