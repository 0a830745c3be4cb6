//! Trino and Presto over their HTTP client protocol: `POST /v1/statement`, then follow
//! `nextUri` until the query finishes, collecting `columns` and `data` up to the row cap (the
//! query is cancelled with `DELETE nextUri` once the cap is reached).
//!
//! Every statement is first checked by the host's SQL policy (`sql.check`, dialect `trino`);
//! parameters travel as a prepared statement (`X-Trino-Prepared-Statement` + `EXECUTE ...
//! USING`), as literals the coordinator parses, never spliced into the statement text.

use databot_sdk::api::{Endpoint, segment};
use databot_sdk::prelude::*;
use databot_sdk::sql;

use crate::backend::QueryOutput;

/// Default row cap when the operator sets none.
const DEFAULT_MAX_ROWS: u32 = 10_000;

pub struct Trino {
    endpoint: Endpoint,
    user: String,
    catalog: Option<String>,
    schema: Option<String>,
    /// `X-Trino-` or `X-Presto-` headers.
    header_prefix: &'static str,
    max_rows: u32,
    pub writable: bool,
}

impl Trino {
    pub fn from_config() -> Result<Self, PluginError> {
        let flavor: Option<String> = databot_sdk::config_value("trino_flavor")?;
        let header_prefix = match flavor.as_deref() {
            None | Some("trino") => "X-Trino-",
            Some("presto") => "X-Presto-",
            Some(other) => {
                return Err(PluginError::InvalidInput(format!(
                    "config.trino_flavor `{other}`: use `trino` or `presto`"
                )));
            }
        };
        let max_rows = databot_sdk::config_value("max_rows")?.unwrap_or(DEFAULT_MAX_ROWS);
        if max_rows == 0 {
            return Err(PluginError::InvalidInput(
                "config.max_rows is 0: the operator sets it to at least 1 (or removes it for the default of 10000)".into(),
            ));
        }
        Ok(Self {
            endpoint: Endpoint::from_config("trino")?,
            user: databot_sdk::config_value("trino_user")?.unwrap_or_else(|| "databot".into()),
            catalog: databot_sdk::config_value("catalog")?,
            schema: databot_sdk::config_value("schema")?,
            header_prefix,
            max_rows,
            writable: databot_sdk::config_value("writable")?.unwrap_or(false),
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "{} ({}{})",
            self.endpoint.base_url,
            self.catalog.as_deref().unwrap_or("-"),
            self.schema
                .as_deref()
                .map(|s| format!(".{s}"))
                .unwrap_or_default()
        )
    }

    pub fn run(
        &self,
        statement: &str,
        params: &[Value],
        max_rows: Option<u32>,
    ) -> Result<QueryOutput, PluginError> {
        sql::check("trino", statement, self.writable)?;
        let cap = max_rows.map_or(self.max_rows, |m| m.clamp(1, self.max_rows)) as usize;
        let mut endpoint = self.endpoint.clone();
        endpoint = endpoint
            .header(&format!("{}User", self.header_prefix), &self.user)
            .header(&format!("{}Source", self.header_prefix), "databot");
        if let Some(catalog) = &self.catalog {
            endpoint = endpoint.header(&format!("{}Catalog", self.header_prefix), catalog);
        }
        if let Some(schema) = &self.schema {
            endpoint = endpoint.header(&format!("{}Schema", self.header_prefix), schema);
        }
        let text = if params.is_empty() {
            statement.to_owned()
        } else {
            endpoint = endpoint.header(
                &format!("{}Prepared-Statement", self.header_prefix),
                &format!("databot_statement={}", segment(statement)),
            );
            let literals = params.iter().map(literal).collect::<Result<Vec<_>, _>>()?;
            format!("EXECUTE databot_statement USING {}", literals.join(", "))
        };
        let started = std::time::Instant::now();
        let mut page = query_results(
            post_statement(&endpoint, &text)?,
            &endpoint.url("/v1/statement", &[]),
        )?;
        let mut rows: Vec<Vec<Value>> = Vec::new();
        let mut output = QueryOutput {
            columns: Vec::new(),
            column_types: Vec::new(),
            rows: String::new(),
            row_count: 0,
            rows_affected: 0,
            truncated: false,
            notice: None,
            elapsed_ms: 0,
        };
        loop {
            if let Some(error) = page.get("error") {
                return Err(trino_error(error));
            }
            if output.columns.is_empty()
                && let Some(columns) = page["columns"].as_array()
            {
                output.columns = columns
                    .iter()
                    .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
                    .collect();
                output.column_types = columns
                    .iter()
                    .map(|c| c["type"].as_str().unwrap_or_default().to_owned())
                    .collect();
            }
            if let Some(count) = page["updateCount"].as_u64() {
                output.rows_affected = count;
            }
            for row in page["data"].as_array().into_iter().flatten() {
                if rows.len() >= cap {
                    output.truncated = true;
                    break;
                }
                rows.push(row.as_array().cloned().unwrap_or_default());
            }
            let Some(next) = page["nextUri"].as_str().map(str::to_owned) else {
                break;
            };
            if output.truncated {
                // Cancel the rest of the query on the coordinator.
                let _ = endpoint_for(&endpoint, &next)?.send("DELETE", "", &[], None, "*/*");
                break;
            }
            // No pause between pages: the coordinator holds a `nextUri` request until it has
            // data or progress to report.
            page = query_results(endpoint_for(&endpoint, &next)?.get("", &[])?, &next)?;
        }
        if output.truncated {
            output.notice = Some(format!(
                "result truncated: more than {cap} rows (the connector's row cap); showing the first {cap}. Add a LIMIT, filter or aggregate to see the rest"
            ));
        }
        output.row_count = rows.len();
        output.rows = serde_json::to_string(&rows)
            .map_err(|e| PluginError::Failed(format!("encoding rows: {e}")))?;
        output.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(output)
    }
}

fn post_statement(endpoint: &Endpoint, text: &str) -> Result<Value, PluginError> {
    let request = databot_sdk::http::Request {
        method: "POST",
        url: endpoint.url("/v1/statement", &[]),
        headers: endpoint
            .headers
            .iter()
            .cloned()
            .chain([("content-type".to_owned(), "text/plain".to_owned())])
            .collect(),
        body: Some(text.as_bytes().to_vec()),
        timeout: endpoint.timeout,
    };
    let response = databot_sdk::http::send_with_retries(&request, endpoint.retry)?;
    let status = response.status;
    let body = response.text(endpoint.max_response_bytes)?;
    let value: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    if !(200..300).contains(&status) {
        return Err(databot_sdk::api::api_error(
            &endpoint.name,
            "POST",
            "/v1/statement",
            &databot_sdk::api::ApiResponse {
                status,
                body: value,
                link: None,
            },
        ));
    }
    Ok(value)
}

/// A page of the protocol (a `QueryResults` object, which always has the query `id`), or an
/// error: anything else (an HTML page from a proxy, another service's JSON) must not pass for
/// an empty result.
fn query_results(page: Value, url: &str) -> Result<Value, PluginError> {
    if page.get("id").and_then(Value::as_str).is_some() {
        if page.get("error").is_none() && page["stats"]["state"] == "FAILED" {
            return Err(PluginError::Failed(format!(
                "the Trino query {} failed without saying why; its infoUri has the details",
                page["id"]
            )));
        }
        return Ok(page);
    }
    let mut sample = match &page {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    if sample.len() > 200 {
        let mut end = 200;
        while !sample.is_char_boundary(end) {
            end -= 1;
        }
        sample.truncate(end);
        sample.push('…');
    }
    Err(PluginError::Failed(format!(
        "{url} answered with something that is not a Trino client protocol response (no query `id`): {sample}; check that `endpoints.trino.url` is the coordinator's base URL"
    )))
}

/// An endpoint whose base is the coordinator's `nextUri` (same host, so the same grants and
/// credentials apply), keeping the session headers.
fn endpoint_for(endpoint: &Endpoint, uri: &str) -> Result<Endpoint, PluginError> {
    let configured_host = host_of(&endpoint.base_url);
    if !host_of(uri).eq_ignore_ascii_case(configured_host) {
        return Err(PluginError::Failed(format!(
            "the coordinator pointed to `{uri}`, outside the configured endpoint {}",
            endpoint.base_url
        )));
    }
    let mut next = Endpoint::new(&endpoint.name, uri)?;
    next.headers = endpoint.headers.clone();
    next.timeout = endpoint.timeout;
    next.retry = endpoint.retry;
    Ok(next)
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?']).next().unwrap_or_default()
}

/// A JSON parameter as a Trino literal.
fn literal(value: &Value) -> Result<String, PluginError> {
    Ok(match value {
        Value::Null => "NULL".into(),
        Value::Bool(b) => b.to_string().to_uppercase(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\'', "''")),
        other => format!("JSON '{}'", other.to_string().replace('\'', "''")),
    })
}

fn trino_error(error: &Value) -> PluginError {
    let message = error["message"].as_str().unwrap_or("query failed");
    let name = error["errorName"].as_str().unwrap_or_default();
    let kind = error["errorType"].as_str().unwrap_or_default();
    let text = format!("Trino: {name}: {message}");
    match kind {
        "USER_ERROR" => PluginError::InvalidInput(text),
        "INSUFFICIENT_RESOURCES" | "EXTERNAL" => PluginError::Unavailable(text),
        _ => PluginError::Failed(text),
    }
}
