//! `sql`: the agent's SQL tools. Each call goes to a SQL connector instance (`sql_connector`),
//! which runs it on a host SQL source under the host's safety policy; this plugin chooses the
//! connection and shapes arguments for the model.
//!
//! Config: `connectors` — the SQL connector instances this tool may use (also granted in
//! `permissions.connectors`). With one, `connection` may be left out.

use databot_sdk::prelude::*;
use databot_sdk::{RawJson, call_connector, pick_connector};

databot_sdk::manifest! {
    name: "sql",
    kind: "tool",
    description: "Query SQL databases and explore their schemas through SQL connectors.",
    capabilities: ["connectors", "config"],
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct QueryArgs {
    /// One SQL statement. Put values in `params` and refer to them as $1, $2 (PostgreSQL)
    /// or ? (MySQL, SQLite, Trino) instead of writing them into the SQL.
    query: String,
    /// Values for the placeholders, in order.
    #[serde(default)]
    params: Vec<Value>,
    /// Connection name (see sql_list_connections); optional when there is only one.
    #[serde(default)]
    connection: Option<String>,
    /// Return at most this many rows.
    #[serde(default)]
    #[schemars(range(min = 1))]
    max_rows: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ConnectionArgs {
    /// Connection name; optional when there is only one.
    #[serde(default)]
    connection: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SchemaArgs {
    /// Connection name; optional when there is only one.
    #[serde(default)]
    connection: Option<String>,
    /// Schema (MySQL: database); default: the connection's current one.
    #[serde(default)]
    schema: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TableArgs {
    /// Table or view name, without schema.
    table: String,
    /// Schema (MySQL: database); default: the connection's current one.
    #[serde(default)]
    schema: Option<String>,
    /// Connection name; optional when there is only one.
    #[serde(default)]
    connection: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DiscoverArgs {
    /// Schema (MySQL: database); default: the connection's current one.
    #[serde(default)]
    schema: Option<String>,
    /// Only these tables.
    #[serde(default)]
    tables: Option<Vec<String>>,
    /// Connection name; optional when there is only one.
    #[serde(default)]
    connection: Option<String>,
}

#[derive(Serialize)]
struct Connection {
    name: String,
    source: Option<String>,
    dialect: Option<String>,
    writable: Option<bool>,
    error: Option<String>,
}

fn connection(requested: Option<&str>) -> Result<String, PluginError> {
    pick_connector(requested, "SQL", "connection")
}

/// Drop `None` fields so the connector's strict schema sees only what was given.
fn params(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}

databot_sdk::tools! {
    /// Run one SQL statement on a connection and return columns and rows. Read-only
    /// connections refuse writes; results are capped and say so in `notice` when cut.
    fn sql_query(args: QueryArgs) -> Result<RawJson, PluginError> {
        let name = connection(args.connection.as_deref())?;
        let params = params(json!({
            "statement": args.query,
            "params": args.params,
            "max_rows": args.max_rows,
        }));
        // The connector's answer is passed through as it is: results can be large.
        databot_sdk::connectors::execute(&name, "query", &params.to_string()).map(RawJson)
    }

    /// List the SQL connections this agent can use, with their dialect and whether they
    /// accept writes.
    fn sql_list_connections(_args: ConnectionArgs) -> Result<Vec<Connection>, PluginError> {
        let names: Vec<String> = databot_sdk::config_value("connectors")?.unwrap_or_default();
        Ok(names
            .into_iter()
            .map(|name| match call_connector::<Value>(&name, "info", &json!({})) {
                Ok(info) => Connection {
                    source: info["source"].as_str().map(str::to_owned),
                    dialect: info["dialect"].as_str().map(str::to_owned),
                    writable: info["writable"].as_bool(),
                    error: None,
                    name,
                },
                Err(error) => Connection {
                    name,
                    source: None,
                    dialect: None,
                    writable: None,
                    error: Some(format!("{error:?}")),
                },
            })
            .collect())
    }

    /// List databases (or catalogs) of a connection.
    fn sql_list_databases(args: ConnectionArgs) -> Result<Value, PluginError> {
        call_connector(&connection(args.connection.as_deref())?, "list_databases", &json!({}))
    }

    /// List the tables and views of a schema, with comments and row estimates.
    fn sql_list_tables(args: SchemaArgs) -> Result<Value, PluginError> {
        call_connector(
            &connection(args.connection.as_deref())?,
            "list_tables",
            &params(json!({"schema": args.schema})),
        )
    }

    /// Describe a table: columns, types, nullability, comments, primary and foreign keys.
    fn sql_describe_table(args: TableArgs) -> Result<Value, PluginError> {
        call_connector(
            &connection(args.connection.as_deref())?,
            "describe_table",
            &params(json!({"table": args.table, "schema": args.schema})),
        )
    }

    /// Compact descriptions of every table of a schema (one line per table with columns,
    /// keys and comments): use it before writing a query against an unfamiliar database.
    fn sql_schema(args: DiscoverArgs) -> Result<Value, PluginError> {
        call_connector(
            &connection(args.connection.as_deref())?,
            "discover_schema",
            &params(json!({"schema": args.schema, "tables": args.tables})),
        )
    }
}
