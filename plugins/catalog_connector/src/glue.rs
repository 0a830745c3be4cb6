//! AWS Glue Data Catalog over its JSON API (`POST /` with `X-Amz-Target: AWSGlue.<Action>`,
//! `Content-Type: application/x-amz-json-1.1`), signed with SigV4 in the plugin from the
//! config keys `region`, `access_key_id`, `secret_access_key` and optional `session_token`.
//! The endpoint is `https://glue.{region}.amazonaws.com` unless `endpoints.api.url` is set.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use databot_sdk::PluginError;
use databot_sdk::http::{Request, RetryPolicy, send_with_retries, sleep};
use serde_json::{Value, json};

use crate::model::{Column, NamespaceRef, TableRef, TableSchema, text};
use crate::{paging, sigv4};

pub const DRIVER: &str = "glue";

pub struct Glue {
    base_url: String,
    authority: String,
    region: String,
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    pub catalog_id: Option<String>,
    timeout: Duration,
    retry: RetryPolicy,
}

fn required(key: &str) -> Result<String, PluginError> {
    databot_sdk::config_value::<String>(key)?
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            PluginError::InvalidInput(format!(
                "the glue driver needs `{key}` in the plugin's config (plugins.<this plugin>.config.{key})"
            ))
        })
}

/// Host (and port) of a base URL, as sent in the `Host` header.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, rest)| rest).unwrap_or(url);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

impl Glue {
    pub fn connect(catalog_name: Option<&str>) -> Result<Self, PluginError> {
        let region = required("region")?;
        let base_url = match databot_sdk::api::endpoint_url("api")? {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("https://glue.{region}.amazonaws.com"),
        };
        let mut retry = RetryPolicy::default();
        if let Some(retries) = databot_sdk::config_value::<u32>("max_retries")? {
            retry.retries = retries;
        }
        let timeout = Duration::from_millis(
            databot_sdk::config_value::<u64>("timeout_ms")?
                .unwrap_or(30_000)
                .max(1),
        );
        Ok(Self {
            authority: authority(&base_url),
            base_url,
            region,
            access_key_id: required("access_key_id")?,
            secret_access_key: required("secret_access_key")?,
            session_token: databot_sdk::config_value::<String>("session_token")?
                .filter(|t| !t.is_empty()),
            catalog_id: match catalog_name {
                Some(name) => Some(name.to_owned()),
                None => databot_sdk::config_value::<String>("catalog_id")?,
            },
            timeout,
            retry,
        })
    }

    /// One signed call of `AWSGlue.<action>`; throttling is retried with backoff.
    pub fn call(&self, action: &str, body: &Value) -> Result<Value, PluginError> {
        let mut attempt = 0;
        loop {
            match self.call_once(action, body) {
                Err(PluginError::Unavailable(message))
                    if message.contains("Throttling") && attempt < self.retry.retries =>
                {
                    sleep(
                        (self.retry.base * 2u32.saturating_pow(attempt)).min(self.retry.max_wait),
                    );
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn call_once(&self, action: &str, body: &Value) -> Result<Value, PluginError> {
        let payload = body.to_string().into_bytes();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let amz_date = sigv4::amz_date(now);
        let target = format!("AWSGlue.{action}");
        let mut headers: Vec<(&str, &str)> = vec![
            ("content-type", "application/x-amz-json-1.1"),
            ("host", &self.authority),
            ("x-amz-date", &amz_date),
            ("x-amz-target", &target),
        ];
        if let Some(token) = &self.session_token {
            headers.push(("x-amz-security-token", token));
        }
        let signed = sigv4::sign(
            &sigv4::Credentials {
                access_key_id: &self.access_key_id,
                secret_access_key: &self.secret_access_key,
                region: &self.region,
                service: "glue",
            },
            &sigv4::SignInput {
                method: "POST",
                path: "/",
                query: &[],
                headers: &headers,
                body: &payload,
                amz_date: &amz_date,
            },
        );
        let mut request_headers: Vec<(String, String)> = headers
            .iter()
            .filter(|(name, _)| *name != "host")
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        request_headers.push(("authorization".into(), signed));
        request_headers.push(("accept".into(), "application/json".into()));
        let request = Request {
            method: "POST",
            url: format!("{}/", self.base_url),
            headers: request_headers,
            body: Some(payload),
            timeout: self.timeout,
        };
        // Glue calls made here only read: safe to send again.
        let response = send_with_retries(&request, self.retry.for_side_effect_free_posts())?;
        let status = response.status;
        let text = response.text(databot_sdk::api::DEFAULT_MAX_RESPONSE_BYTES)?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(glue_error(action, status, &body))
        }
    }

    fn with_catalog(&self, mut body: Value) -> Value {
        if let (Some(id), Some(map)) = (&self.catalog_id, body.as_object_mut()) {
            map.insert("CatalogId".into(), json!(id));
        }
        body
    }

    fn pages(
        &self,
        action: &str,
        body: Value,
        items: &str,
        limit: usize,
    ) -> Result<paging::Pages, PluginError> {
        paging::collect(
            |token| {
                let mut page = body.clone();
                if let (Some(token), Some(map)) = (token, page.as_object_mut()) {
                    map.insert("NextToken".into(), json!(token));
                }
                self.call(action, &page)
            },
            items,
            "/NextToken",
            limit,
        )
    }

    pub fn list_catalogs(&self, limit: usize) -> Result<(Vec<Value>, bool), PluginError> {
        let mut body = json!({"IncludeRoot": true});
        if let Some(id) = &self.catalog_id {
            body = json!({"ParentCatalogId": id});
        }
        let pages = self.pages("GetCatalogs", body, "/CatalogList", limit)?;
        let catalogs = pages
            .items
            .iter()
            .map(|c| {
                json!({
                    "name": text(c, "Name"),
                    "catalog_id": text(c, "CatalogId"),
                    "description": text(c, "Description"),
                    "arn": text(c, "ResourceArn"),
                })
            })
            .collect();
        Ok((catalogs, pages.truncated))
    }

    pub fn list_namespaces(&self, limit: usize) -> Result<(Vec<NamespaceRef>, bool), PluginError> {
        let pages = self.pages(
            "GetDatabases",
            self.with_catalog(json!({})),
            "/DatabaseList",
            limit,
        )?;
        let databases = pages
            .items
            .iter()
            .map(|db| {
                NamespaceRef::flat(
                    &text(db, "Name").unwrap_or_default(),
                    text(db, "Description"),
                    text(db, "LocationUri"),
                )
            })
            .collect();
        Ok((databases, pages.truncated))
    }

    pub fn list_tables(
        &self,
        database: &str,
        limit: usize,
    ) -> Result<(Vec<TableRef>, bool), PluginError> {
        let pages = self.pages(
            "GetTables",
            self.with_catalog(json!({"DatabaseName": database})),
            "/TableList",
            limit,
        )?;
        Ok((pages.items.iter().map(table_ref).collect(), pages.truncated))
    }

    pub fn get_table(&self, database: &str, table: &str) -> Result<Value, PluginError> {
        let body = self.call(
            "GetTable",
            &self.with_catalog(json!({"DatabaseName": database, "Name": table})),
        )?;
        Ok(body.get("Table").cloned().unwrap_or(Value::Null))
    }

    pub fn table_schema(&self, database: &str, table: &str) -> Result<TableSchema, PluginError> {
        let found = self.get_table(database, table)?;
        Ok(TableSchema {
            driver: DRIVER,
            namespace: database.to_owned(),
            table: table.to_owned(),
            schema_id: None,
            columns: columns(&found),
            partition_fields: Vec::new(),
        })
    }

    pub fn table_metadata(&self, database: &str, table: &str) -> Result<Value, PluginError> {
        let found = self.get_table(database, table)?;
        let storage = found.get("StorageDescriptor").unwrap_or(&Value::Null);
        Ok(json!({
            "driver": DRIVER,
            "namespace": database,
            "table": table,
            "table_type": text(&found, "TableType"),
            "location": text(storage, "Location"),
            "input_format": text(storage, "InputFormat"),
            "output_format": text(storage, "OutputFormat"),
            "serde": storage.pointer("/SerdeInfo/SerializationLibrary"),
            "partition_keys": found.get("PartitionKeys").cloned().unwrap_or(json!([])),
            "parameters": found.get("Parameters"),
            "owner": text(&found, "Owner"),
            "created": found.get("CreateTime"),
            "updated": found.get("UpdateTime"),
            "metadata": found,
        }))
    }

    pub fn search(&self, query: &str, limit: usize) -> Result<(Vec<TableRef>, bool), PluginError> {
        let mut body = json!({"SearchText": query, "MaxResults": limit.min(1000)});
        if let (Some(id), Some(map)) = (&self.catalog_id, body.as_object_mut()) {
            map.insert("CatalogId".into(), json!(id));
        }
        let pages = self.pages("SearchTables", body, "/TableList", limit)?;
        Ok((pages.items.iter().map(table_ref).collect(), pages.truncated))
    }

    pub fn region(&self) -> &str {
        &self.region
    }
}

fn table_ref(table: &Value) -> TableRef {
    TableRef {
        namespace: text(table, "DatabaseName").unwrap_or_default(),
        name: text(table, "Name").unwrap_or_default(),
        table_type: text(table, "TableType"),
        format: table
            .pointer("/Parameters/table_type")
            .or_else(|| table.pointer("/Parameters/classification"))
            .and_then(Value::as_str)
            .map(str::to_lowercase),
        description: text(table, "Description"),
    }
}

/// `StorageDescriptor.Columns` then `PartitionKeys` (marked as partition columns).
pub fn columns(table: &Value) -> Vec<Column> {
    let read = |list: Option<&Value>, is_partition: bool| -> Vec<Column> {
        list.and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .map(|c| Column {
                        name: text(c, "Name").unwrap_or_default(),
                        data_type: text(c, "Type").unwrap_or_else(|| "unknown".into()),
                        nullable: true,
                        comment: text(c, "Comment"),
                        id: None,
                        is_partition,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = read(table.pointer("/StorageDescriptor/Columns"), false);
    out.extend(read(table.get("PartitionKeys"), true));
    out
}

/// A Glue error (`{"__type": "...#EntityNotFoundException", "Message": "..."}`) as the
/// matching error kind.
pub fn glue_error(action: &str, status: u16, body: &Value) -> PluginError {
    let kind = body
        .get("__type")
        .and_then(Value::as_str)
        .map(|t| {
            let t = t.rsplit('#').next().unwrap_or(t);
            t.split(':').next().unwrap_or(t).to_owned()
        })
        .unwrap_or_default();
    let detail = body
        .get("Message")
        .or_else(|| body.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| body.to_string().chars().take(300).collect());
    let message = format!("glue {action} answered {status} {kind}: {detail}");
    match kind.as_str() {
        "EntityNotFoundException" => PluginError::NotFound(message),
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "ExpiredTokenException"
        | "InvalidClientTokenId"
        | "MissingAuthenticationTokenException" => PluginError::Denied(format!(
            "{message} (check `access_key_id`, `secret_access_key`, `session_token` and `region` in the plugin's config, and the IAM policy)"
        )),
        "InvalidInputException" | "ValidationException" => PluginError::InvalidInput(message),
        "ThrottlingException" | "InternalServiceException" | "OperationTimeoutException" => {
            PluginError::Unavailable(message)
        }
        _ => match status {
            401 | 403 => PluginError::Denied(message),
            404 => PluginError::NotFound(message),
            429 | 500..=599 => PluginError::Unavailable(message),
            400..=499 => PluginError::InvalidInput(message),
            _ => PluginError::Failed(message),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_map_to_kinds() {
        let body =
            json!({"__type": "EntityNotFoundException", "Message": "Database db not found."});
        assert!(
            matches!(glue_error("GetTables", 400, &body), PluginError::NotFound(m) if m.contains("db not found"))
        );
        let body = json!({"__type": "com.amazon.coral.service#UnrecognizedClientException", "message": "bad token"});
        assert!(matches!(
            glue_error("GetTables", 400, &body),
            PluginError::Denied(_)
        ));
        let body =
            json!({"__type": "ThrottlingException:http://internal", "message": "Rate exceeded"});
        assert!(
            matches!(glue_error("GetTables", 400, &body), PluginError::Unavailable(m) if m.contains("Throttling"))
        );
    }

    #[test]
    fn partition_keys_are_columns_too() {
        let table = json!({
            "StorageDescriptor": {"Columns": [{"Name": "id", "Type": "bigint", "Comment": "key"}]},
            "PartitionKeys": [{"Name": "dt", "Type": "string"}]
        });
        let cols = columns(&table);
        assert_eq!(cols.len(), 2);
        assert!(!cols[0].is_partition && cols[1].is_partition);
        assert_eq!(
            authority("https://glue.eu-west-1.amazonaws.com/x"),
            "glue.eu-west-1.amazonaws.com"
        );
        assert_eq!(authority("http://127.0.0.1:9000"), "127.0.0.1:9000");
    }
}
