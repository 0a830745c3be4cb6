//! `sql_connector`: a SQL connector instance over one host SQL source (PostgreSQL,
//! MySQL/MariaDB, SQLite; the host holds the credentials and enforces the safety policy) or a
//! Trino/Presto coordinator over HTTP. Operations: query, catalog browsing and schema
//! discovery for grounding.
//!
//! Config: `source` (a `data.sql` source granted in `permissions.sql`; optional when exactly
//! one is granted), or an endpoint `trino` with `catalog`, `schema`, `trino_user`,
//! `trino_flavor` (trino | presto), `max_rows`.

mod backend;
mod catalog;
mod trino;

use databot_sdk::prelude::*;
use databot_sdk::{Health, HealthStatus};

use backend::Backend;
use catalog::{TableDescription, TableSummary};
use databot_sdk::RawJson;

databot_sdk::manifest! {
    name: "sql_connector",
    kind: "connector",
    description: "SQL databases: queries under the host's safety policy, catalog browsing and schema discovery (PostgreSQL, MySQL/MariaDB, SQLite, Trino/Presto).",
    capabilities: ["sql", "http", "config", "logging"],
}

/// Most tables one schema discovery describes unless told otherwise.
const DEFAULT_MAX_TABLES: usize = 200;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct QueryArgs {
    /// One SQL statement in the source's dialect. Use `$1`, `$2` (PostgreSQL) or `?` (MySQL,
    /// SQLite, Trino) for values and pass them in `params`.
    statement: String,
    /// Values for the placeholders, in order.
    #[serde(default)]
    params: Vec<Value>,
    /// Return at most this many rows (never more than the source's own cap).
    #[serde(default)]
    #[schemars(range(min = 1))]
    max_rows: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SchemaArgs {
    /// Schema (PostgreSQL/Trino schema, MySQL database, SQLite `main`); default: the current one.
    #[serde(default)]
    schema: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TableArgs {
    /// Table or view name, without schema.
    table: String,
    /// Its schema; default: the current one.
    #[serde(default)]
    schema: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DiscoverArgs {
    /// Schema to describe; default: the current one.
    #[serde(default)]
    schema: Option<String>,
    /// Only these tables (default: all, up to `max_tables`).
    #[serde(default)]
    tables: Option<Vec<String>>,
    /// Describe at most this many tables (default 200).
    #[serde(default)]
    #[schemars(range(min = 1))]
    max_tables: Option<usize>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SampleArgs {
    /// Table or view name, without schema.
    table: String,
    /// Its schema; default: the current one.
    #[serde(default)]
    schema: Option<String>,
    /// Rows to return (default 10, at most 1000).
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<u32>,
}

#[derive(Serialize)]
struct Info {
    source: String,
    dialect: String,
    writable: bool,
}

#[derive(Serialize)]
struct Tables {
    schema: String,
    tables: Vec<TableSummary>,
}

#[derive(Serialize)]
struct Discovery {
    dialect: String,
    schema: String,
    tables: Vec<TableDescription>,
    /// One line per table, for prompts.
    text: String,
    truncated: bool,
}

fn schema_or_default(backend: &Backend, schema: Option<String>) -> Result<String, PluginError> {
    match schema {
        Some(schema) => Ok(schema),
        None => catalog::default_schema(backend),
    }
}

fn check_health() -> Health {
    let probe = Backend::from_config().and_then(|backend| {
        let started = std::time::Instant::now();
        backend.run("SELECT 1", &[], Some(1))?;
        Ok((backend, started.elapsed()))
    });
    match probe {
        Ok((backend, elapsed)) => Health {
            status: HealthStatus::Healthy,
            message: format!(
                "{} ({}) answered in {} ms",
                backend.name(),
                backend.dialect(),
                elapsed.as_millis()
            ),
        },
        Err(PluginError::Denied(message) | PluginError::NotFound(message)) => Health {
            status: HealthStatus::NotConfigured,
            message,
        },
        Err(PluginError::InvalidInput(message)) => Health {
            status: HealthStatus::NotConfigured,
            message,
        },
        Err(error) => Health {
            status: HealthStatus::Unreachable,
            message: match error {
                PluginError::Unavailable(m) | PluginError::Timeout(m) | PluginError::Failed(m) => m,
                other => format!("{other:?}"),
            },
        },
    }
}

databot_sdk::connector! {
    health: check_health,

    /// Run one SQL statement with bound parameters. Reads run read-only; writes only where
    /// the operator allows them. Results are capped; a `notice` says when rows were cut.
    fn query(args: QueryArgs) -> Result<RawJson, PluginError> {
        Backend::from_config()?.run(&args.statement, &args.params, args.max_rows)?.into_json()
    }

    /// Which source this connector uses, its dialect and whether it accepts writes.
    fn info(_args: NoArgs) -> Result<Info, PluginError> {
        let backend = Backend::from_config()?;
        Ok(Info { source: backend.name(), dialect: backend.dialect().to_owned(), writable: backend.writable() })
    }

    /// List databases (PostgreSQL, MySQL), attached databases (SQLite) or catalogs (Trino).
    fn list_databases(_args: NoArgs) -> Result<Vec<String>, PluginError> {
        catalog::list_databases(&Backend::from_config()?)
    }

    /// List the schemas of the current database or catalog.
    fn list_schemas(_args: NoArgs) -> Result<Vec<String>, PluginError> {
        catalog::list_schemas(&Backend::from_config()?)
    }

    /// List the tables and views of a schema with their comments and row estimates.
    fn list_tables(args: SchemaArgs) -> Result<Tables, PluginError> {
        let backend = Backend::from_config()?;
        let schema = schema_or_default(&backend, args.schema)?;
        let tables = catalog::list_tables(&backend, &schema)?;
        Ok(Tables { schema, tables })
    }

    /// Describe one table: columns with types, nullability, defaults and comments, its
    /// primary key and foreign keys.
    fn describe_table(args: TableArgs) -> Result<TableDescription, PluginError> {
        let backend = Backend::from_config()?;
        let schema = schema_or_default(&backend, args.schema)?;
        catalog::describe(&backend, &schema, Some(&args.table))?
            .into_iter()
            .next()
            .ok_or_else(|| PluginError::NotFound(format!(
                "no table or view `{}` in schema `{schema}`; list_tables shows what exists",
                args.table
            )))
    }

    /// Schema discovery for grounding: compact descriptions of the tables of a schema
    /// (columns, types, keys, comments), structured and as one line per table.
    fn discover_schema(args: DiscoverArgs) -> Result<Discovery, PluginError> {
        let backend = Backend::from_config()?;
        let schema = schema_or_default(&backend, args.schema)?;
        let mut tables = catalog::describe(&backend, &schema, None)?;
        if let Some(only) = &args.tables {
            tables.retain(|t| only.contains(&t.name));
        }
        let max = args.max_tables.unwrap_or(DEFAULT_MAX_TABLES);
        let truncated = tables.len() > max;
        tables.truncate(max);
        let text = tables.iter().map(TableDescription::compact).collect::<Vec<_>>().join("\n");
        Ok(Discovery { dialect: backend.dialect().to_owned(), schema, tables, text, truncated })
    }

    /// The first rows of a table, to see what its values look like.
    fn sample(args: SampleArgs) -> Result<RawJson, PluginError> {
        let backend = Backend::from_config()?;
        let limit = args.limit.unwrap_or(10).clamp(1, 1000);
        let schema = match args.schema {
            Some(schema) => Some(schema),
            None if backend.dialect() == "sqlite" => None,
            None => Some(catalog::default_schema(&backend)?),
        };
        let table = catalog::qualified(&backend, schema.as_deref(), &args.table);
        backend
            .run(&format!("SELECT * FROM {table} LIMIT {limit}"), &[], Some(limit))?
            .into_json()
    }
}
