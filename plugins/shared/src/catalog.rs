//! Arguments of the catalog operations, shared word for word by the `catalog_connector`
//! (which runs them) and the `catalog` tool (which forwards them), so a tool can never ask
//! for an operation or an argument the connector does not have.
//!
//! `catalog_args!()` declares the structs; the tool passes extra fields (its `connector`).

/// Declare the argument structs, each with the extra fields given (`$extra`).
#[macro_export]
macro_rules! catalog_args {
    ($($extra:tt)*) => {
        /// Arguments of `list_catalogs`.
        #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct ListCatalogsArgs {
            /// Most catalogs to return (default: the connector's `max_items`, 1000).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(range(min = 1))]
            pub limit: Option<u32>,
            $($extra)*
        }

        /// Arguments of `list_namespaces`.
        #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct ListNamespacesArgs {
            /// List only the namespaces under this one (Iceberg nested namespaces, dotted:
            /// `sales.emea`). Empty or absent: the top level.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub parent: Option<String>,
            /// Catalog to list (Unity catalog name, Glue catalog id, Iceberg warehouse);
            /// default: the connector's configured `catalog` / `warehouse`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub catalog_name: Option<String>,
            /// Most namespaces to return (default 1000).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(range(min = 1))]
            pub limit: Option<u32>,
            $($extra)*
        }

        /// Arguments of `list_tables`.
        #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct ListTablesArgs {
            /// Namespace (Iceberg namespace, Glue database, Unity schema); nested Iceberg
            /// namespaces are dotted: `sales.emea`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub namespace: Option<String>,
            /// Same as `namespace` (the name Glue and Hive use).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub database: Option<String>,
            /// Catalog (Unity catalog name, Glue catalog id, Iceberg warehouse); default: the
            /// connector's configured one.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub catalog_name: Option<String>,
            /// Most tables to return (default 1000).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(range(min = 1))]
            pub limit: Option<u32>,
            $($extra)*
        }

        /// Arguments of `get_table_schema` and `get_table_metadata`.
        #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct TableArgs {
            /// Table name, or `namespace.table` when `namespace` is not given.
            pub table: String,
            /// Namespace of the table (Iceberg namespace, Glue database, Unity schema).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub namespace: Option<String>,
            /// Same as `namespace` (the name Glue and Hive use).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub database: Option<String>,
            /// Catalog (Unity catalog name, Glue catalog id, Iceberg warehouse); default: the
            /// connector's configured one.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub catalog_name: Option<String>,
            $($extra)*
        }

        /// Arguments of `search`.
        #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct SearchArgs {
            /// Text to look for in table names (case-insensitive substring; Glue also
            /// matches descriptions and columns).
            pub query: String,
            /// Catalog (Unity catalog name, Glue catalog id, Iceberg warehouse); default: the
            /// connector's configured one.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub catalog_name: Option<String>,
            /// Most matches to return (default 50).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(range(min = 1, max = 1000))]
            pub limit: Option<u32>,
            $($extra)*
        }
    };
}

/// The namespace of a table-level call: `namespace`, else `database`, else the part of a
/// dotted `table` before its last dot. Returns (namespace, table).
pub fn split_table(
    namespace: Option<&str>,
    database: Option<&str>,
    table: &str,
) -> Result<(String, String), String> {
    let given = pick_namespace(namespace, database)?;
    match given {
        Some(namespace) => Ok((namespace, table.to_owned())),
        None => match table.rsplit_once('.') {
            Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => {
                Ok((namespace.to_owned(), name.to_owned()))
            }
            _ => Err(format!(
                "table `{table}` needs a namespace: pass `namespace` or write `namespace.{table}`"
            )),
        },
    }
}

/// `namespace` or its alias `database`; both given and different is an error.
pub fn pick_namespace(
    namespace: Option<&str>,
    database: Option<&str>,
) -> Result<Option<String>, String> {
    let clean = |v: Option<&str>| {
        v.map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    match (clean(namespace), clean(database)) {
        (Some(a), Some(b)) if a != b => Err(format!(
            "`namespace` (`{a}`) and `database` (`{b}`) name the same thing; pass only one"
        )),
        (Some(a), _) | (None, Some(a)) => Ok(Some(a)),
        (None, None) => Ok(None),
    }
}
