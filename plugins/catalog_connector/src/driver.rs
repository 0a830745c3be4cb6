//! What every catalog driver answers, as one trait: the operations call `connect` once and
//! then the driver, never `match` on which driver it is. A new driver implements `Catalog`
//! and gets a line in `connect`.

use databot_sdk::http::health_from;
use databot_sdk::prelude::*;
use databot_sdk::{Health, HealthStatus};

use crate::glue::{self, Glue};
use crate::iceberg::{self, Iceberg};
use crate::model::{NamespaceRef, TableRef, TableSchema};
use crate::unity::{self, Unity};

/// A listing page: the items and whether more were left out.
pub type Page<T> = (Vec<T>, bool);

pub trait Catalog {
    /// The driver's config name (`iceberg_rest`, `glue`, `unity`).
    fn driver(&self) -> &'static str;
    /// The catalog the listings are of (a warehouse, a Glue catalog id, a Unity catalog).
    fn catalog_name(&self) -> Result<Option<String>, PluginError>;
    fn list_catalogs(&self, limit: usize) -> Result<Page<Value>, PluginError>;
    /// Namespaces; `parent` only where namespaces nest (`nests_namespaces`).
    fn list_namespaces(
        &self,
        parent: Option<&str>,
        limit: usize,
    ) -> Result<Page<NamespaceRef>, PluginError>;
    fn list_tables(&self, namespace: &str, limit: usize) -> Result<Page<TableRef>, PluginError>;
    fn table_schema(&self, namespace: &str, table: &str) -> Result<TableSchema, PluginError>;
    fn table_metadata(&self, namespace: &str, table: &str) -> Result<Value, PluginError>;
    /// A search API of the catalog's own (`None`: the caller lists namespaces instead).
    fn search(&self, _query: &str, _limit: usize) -> Option<Result<Page<TableRef>, PluginError>> {
        None
    }
    fn health(&self) -> Health;
}

/// The configured driver (`config.driver`, default `iceberg_rest`), connected for `catalog`.
pub fn connect(catalog: Option<&str>) -> Result<Box<dyn Catalog>, PluginError> {
    Ok(match driver_name()? {
        iceberg::DRIVER => Box::new(Iceberg::connect(catalog)?),
        glue::DRIVER => Box::new(Glue::connect(catalog)?),
        _ => Box::new(Unity::connect(catalog)?),
    })
}

/// Whether the driver's namespaces nest (only Iceberg's do).
pub fn nests_namespaces(driver: &str) -> bool {
    driver == iceberg::DRIVER
}

/// The configured driver's name, checked.
pub fn driver_name() -> Result<&'static str, PluginError> {
    let name = databot_sdk::config_value::<String>("driver")?;
    match name.as_deref().unwrap_or("iceberg_rest") {
        "iceberg_rest" | "iceberg" => Ok(iceberg::DRIVER),
        "glue" => Ok(glue::DRIVER),
        "unity" => Ok(unity::DRIVER),
        other => Err(PluginError::InvalidInput(format!(
            "config `driver: {other}` is not a catalog driver; use `iceberg_rest` (default), `glue` or `unity`"
        ))),
    }
}

impl Catalog for Iceberg {
    fn driver(&self) -> &'static str {
        iceberg::DRIVER
    }
    fn catalog_name(&self) -> Result<Option<String>, PluginError> {
        Ok(self.warehouse.clone())
    }
    fn list_catalogs(&self, _limit: usize) -> Result<Page<Value>, PluginError> {
        // An Iceberg REST endpoint serves one catalog.
        Ok((vec![self.catalog()], false))
    }
    fn list_namespaces(
        &self,
        parent: Option<&str>,
        limit: usize,
    ) -> Result<Page<NamespaceRef>, PluginError> {
        Iceberg::list_namespaces(self, parent, limit)
    }
    fn list_tables(&self, namespace: &str, limit: usize) -> Result<Page<TableRef>, PluginError> {
        Iceberg::list_tables(self, namespace, limit)
    }
    fn table_schema(&self, namespace: &str, table: &str) -> Result<TableSchema, PluginError> {
        Iceberg::table_schema(self, namespace, table)
    }
    fn table_metadata(&self, namespace: &str, table: &str) -> Result<Value, PluginError> {
        Iceberg::table_metadata(self, namespace, table)
    }
    fn health(&self) -> Health {
        Health {
            status: HealthStatus::Healthy,
            message: format!(
                "Iceberg REST catalog answered /v1/config (paths under {})",
                self.catalog()["root"]
            ),
        }
    }
}

impl Catalog for Glue {
    fn driver(&self) -> &'static str {
        glue::DRIVER
    }
    fn catalog_name(&self) -> Result<Option<String>, PluginError> {
        Ok(self.catalog_id.clone())
    }
    fn list_catalogs(&self, limit: usize) -> Result<Page<Value>, PluginError> {
        Glue::list_catalogs(self, limit)
    }
    fn list_namespaces(
        &self,
        _parent: Option<&str>,
        limit: usize,
    ) -> Result<Page<NamespaceRef>, PluginError> {
        Glue::list_namespaces(self, limit)
    }
    fn list_tables(&self, namespace: &str, limit: usize) -> Result<Page<TableRef>, PluginError> {
        Glue::list_tables(self, namespace, limit)
    }
    fn table_schema(&self, namespace: &str, table: &str) -> Result<TableSchema, PluginError> {
        Glue::table_schema(self, namespace, table)
    }
    fn table_metadata(&self, namespace: &str, table: &str) -> Result<Value, PluginError> {
        Glue::table_metadata(self, namespace, table)
    }
    fn search(&self, query: &str, limit: usize) -> Option<Result<Page<TableRef>, PluginError>> {
        Some(Glue::search(self, query, limit))
    }
    fn health(&self) -> Health {
        health_from(
            self.call("GetDatabases", &json!({"MaxResults": 1})),
            &format!("AWS Glue in {} answered GetDatabases", self.region()),
        )
    }
}

impl Catalog for Unity {
    fn driver(&self) -> &'static str {
        unity::DRIVER
    }
    fn catalog_name(&self) -> Result<Option<String>, PluginError> {
        Ok(Some(self.catalog()?.to_owned()))
    }
    fn list_catalogs(&self, limit: usize) -> Result<Page<Value>, PluginError> {
        Unity::list_catalogs(self, limit)
    }
    fn list_namespaces(
        &self,
        _parent: Option<&str>,
        limit: usize,
    ) -> Result<Page<NamespaceRef>, PluginError> {
        Unity::list_namespaces(self, limit)
    }
    fn list_tables(&self, namespace: &str, limit: usize) -> Result<Page<TableRef>, PluginError> {
        Unity::list_tables(self, namespace, limit)
    }
    fn table_schema(&self, namespace: &str, table: &str) -> Result<TableSchema, PluginError> {
        Unity::table_schema(self, namespace, table)
    }
    fn table_metadata(&self, namespace: &str, table: &str) -> Result<Value, PluginError> {
        Unity::table_metadata(self, namespace, table)
    }
    fn health(&self) -> Health {
        health_from(
            Unity::list_catalogs(self, 1),
            "Unity Catalog answered GET /catalogs",
        )
    }
}
