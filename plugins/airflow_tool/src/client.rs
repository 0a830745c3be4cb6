//! The Airflow REST client: base URL and API version (`/api/v1` for Airflow 2, `/api/v2` for
//! Airflow 3), encoded paths, and offset pagination of list endpoints.

use databot_sdk::PluginError;
use databot_sdk::api::{ApiResponse, Endpoint, api_error};
use serde_json::Value;

/// Airflow caps a page at `maximum_page_limit` (100 by default).
const PAGE_SIZE: u32 = 100;

/// Which REST API the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Airflow 2 stable REST API (`/api/v1`).
    V1,
    /// Airflow 3 REST API (`/api/v2`).
    V2,
}

impl Version {
    fn prefix(self) -> &'static str {
        match self {
            Version::V1 => "/api/v1",
            Version::V2 => "/api/v2",
        }
    }

    fn parse(text: &str) -> Result<Self, PluginError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "v1" | "1" => Ok(Version::V1),
            "v2" | "2" => Ok(Version::V2),
            other => Err(PluginError::InvalidInput(format!(
                "config `api_version` is `{other}`; use `v1` (Airflow 2) or `v2` (Airflow 3)"
            ))),
        }
    }
}

/// Split a configured base URL into the server URL and the API version its path names, so a
/// URL that already ends in `/api/v1` or `/api/v2` is not doubled.
pub fn split_base(url: &str) -> (String, Option<Version>) {
    let url = url.trim_end_matches('/');
    for (suffix, version) in [("/api/v1", Version::V1), ("/api/v2", Version::V2)] {
        if let Some(base) = url.strip_suffix(suffix) {
            return (base.to_owned(), Some(version));
        }
    }
    (url.to_owned(), None)
}

/// The version to use: the configured one, else the one the URL names, else v1. A URL and a
/// setting that disagree are a configuration error.
pub fn pick_version(
    configured: Option<&str>,
    in_url: Option<Version>,
) -> Result<Version, PluginError> {
    let configured = configured
        .filter(|v| !v.trim().is_empty())
        .map(Version::parse)
        .transpose()?;
    match (configured, in_url) {
        (Some(c), Some(u)) if c != u => Err(PluginError::InvalidInput(format!(
            "config `api_version` is {} but `endpoints.api.url` ends in {}; make them agree (the URL may leave the /api/vN suffix out)",
            &c.prefix()[5..],
            u.prefix()
        ))),
        (Some(c), _) => Ok(c),
        (None, Some(u)) => Ok(u),
        (None, None) => Ok(Version::V1),
    }
}

/// One Airflow server.
pub struct Airflow {
    pub endpoint: Endpoint,
    pub version: Version,
}

/// A list gathered across pages.
pub struct Page {
    pub items: Vec<Value>,
    pub total_entries: Option<u64>,
}

impl Airflow {
    pub fn from_config() -> Result<Self, PluginError> {
        let mut endpoint = Endpoint::from_config("api")?;
        let (base, in_url) = split_base(&endpoint.base_url);
        endpoint.base_url = base;
        let configured: Option<String> = databot_sdk::config_value("api_version")?;
        let version = pick_version(configured.as_deref(), in_url)?;
        Ok(Self { endpoint, version })
    }

    /// `/api/vN` + `path`.
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.version.prefix())
    }

    pub fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, PluginError> {
        self.endpoint.get(&self.path(path), query)
    }

    pub fn call(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<ApiResponse, PluginError> {
        self.endpoint.call(method, &self.path(path), query, body)
    }

    /// `GET path` as text (`Accept: text/plain`), 404 included as `None`.
    pub fn get_text(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<Value>, PluginError> {
        let full = self.path(path);
        let response = self
            .endpoint
            .send("GET", &full, query, None, "text/plain")?;
        match response.status {
            200..=299 => Ok(Some(response.body)),
            404 => Ok(None),
            _ => Err(api_error(&self.endpoint.name, "GET", &full, &response)),
        }
    }

    /// Up to `limit` items of a list endpoint from `offset`, in pages Airflow accepts.
    pub fn list(
        &self,
        path: &str,
        query: &[(&str, String)],
        items_key: &str,
        limit: u32,
        offset: u32,
    ) -> Result<Page, PluginError> {
        let mut items: Vec<Value> = Vec::new();
        let mut total_entries = None;
        let mut offset = offset;
        loop {
            let size = PAGE_SIZE.min(limit.saturating_sub(items.len() as u32));
            if size == 0 {
                break;
            }
            let mut page_query = query.to_vec();
            page_query.push(("limit", size.to_string()));
            page_query.push(("offset", offset.to_string()));
            let page = self.get(path, &page_query)?;
            total_entries = page["total_entries"].as_u64();
            let page_items = page[items_key].as_array().cloned().unwrap_or_default();
            let count = page_items.len() as u32;
            items.extend(page_items);
            offset += count;
            if count < size || total_entries.is_some_and(|t| u64::from(offset) >= t) {
                break;
            }
        }
        Ok(Page {
            items,
            total_entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_suffixes_are_not_doubled() {
        assert_eq!(
            split_base("http://af:8080"),
            ("http://af:8080".into(), None)
        );
        assert_eq!(
            split_base("http://af:8080/api/v1/"),
            ("http://af:8080".into(), Some(Version::V1))
        );
        assert_eq!(
            split_base("https://x/airflow/api/v2"),
            ("https://x/airflow".into(), Some(Version::V2))
        );
    }

    #[test]
    fn the_version_comes_from_config_then_url_then_v1() {
        assert_eq!(pick_version(None, None).ok(), Some(Version::V1));
        assert_eq!(pick_version(Some("v2"), None).ok(), Some(Version::V2));
        assert_eq!(
            pick_version(None, Some(Version::V2)).ok(),
            Some(Version::V2)
        );
        assert_eq!(
            pick_version(Some(""), Some(Version::V2)).ok(),
            Some(Version::V2)
        );
        assert!(pick_version(Some("v1"), Some(Version::V2)).is_err());
        assert!(pick_version(Some("v3"), None).is_err());
    }
}
