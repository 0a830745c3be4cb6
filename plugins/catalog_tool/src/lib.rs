//! `catalog`: data-catalog tools for agents. Each tool `catalog_<op>` runs operation `<op>` of
//! a catalog connector instance with the very argument structs the connector declares (the
//! file is shared), so a tool can never ask for an operation the connector lacks, nor name
//! one differently from it.

use plugin_shared::{catalog as args, resolve};

use databot_sdk::prelude::*;

databot_sdk::manifest! {
    name: "catalog",
    kind: "tool",
    description: "Browse data catalogs (Iceberg REST, AWS Glue, Unity Catalog) through catalog connectors.",
    capabilities: ["connectors", "config", "logging"],
}

plugin_shared::catalog_args! {
    /// Catalog connector instance to use (default: the only one this tool is configured with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
}

fn run<T: Serialize>(
    operation: &str,
    connector: Option<&str>,
    args: &T,
) -> Result<Value, PluginError> {
    let name = resolve::connector(connector, "catalog")?;
    resolve::execute(&name, operation, args)
}

/// `database` is the same as `namespace`; forward it as `namespace`.
fn namespace_of(
    namespace: &mut Option<String>,
    database: &mut Option<String>,
) -> Result<(), PluginError> {
    *namespace = args::pick_namespace(namespace.as_deref(), database.as_deref())
        .map_err(PluginError::InvalidInput)?;
    *database = None;
    Ok(())
}

databot_sdk::tools! {
    /// List the catalogs the catalog connector can see (Unity catalogs, Glue catalogs, or the
    /// Iceberg REST catalog with its warehouse and properties).
    fn catalog_list_catalogs(args: ListCatalogsArgs) -> Result<Value, PluginError> {
        run("list_catalogs", args.connector.as_deref(), &args)
    }

    /// List namespaces (Iceberg namespaces, Glue databases, Unity schemas); `parent` lists
    /// the children of a nested Iceberg namespace.
    fn catalog_list_namespaces(args: ListNamespacesArgs) -> Result<Value, PluginError> {
        run("list_namespaces", args.connector.as_deref(), &args)
    }

    /// List the tables of a namespace (`namespace` or `database`).
    fn catalog_list_tables(args: ListTablesArgs) -> Result<Value, PluginError> {
        let mut args = args;
        namespace_of(&mut args.namespace, &mut args.database)?;
        run("list_tables", args.connector.as_deref(), &args)
    }

    /// The columns (name, type, nullable, comment, partition flag) of a table, and its
    /// partition fields for Iceberg.
    fn catalog_get_table_schema(args: TableArgs) -> Result<Value, PluginError> {
        let mut args = args;
        namespace_of(&mut args.namespace, &mut args.database)?;
        run("get_table_schema", args.connector.as_deref(), &args)
    }

    /// A table's metadata: location, format, properties, owner, timestamps, current snapshot.
    fn catalog_get_table_metadata(args: TableArgs) -> Result<Value, PluginError> {
        let mut args = args;
        namespace_of(&mut args.namespace, &mut args.database)?;
        run("get_table_metadata", args.connector.as_deref(), &args)
    }

    /// Find tables whose name contains `query` (Glue searches natively; Iceberg and Unity scan
    /// a bounded number of namespaces and say whether the search was complete).
    fn catalog_search(args: SearchArgs) -> Result<Value, PluginError> {
        run("search", args.connector.as_deref(), &args)
    }
}
