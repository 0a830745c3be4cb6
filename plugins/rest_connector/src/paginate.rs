//! Collect the items of a paginated list: offset/limit, next-page token, or RFC 8288 `Link`
//! headers. Stops at `max_items` or `max_pages` and says where it stopped, so a caller can go on.

use databot_sdk::PluginError;
use databot_sdk::api::{Endpoint, next_link};
use serde::Serialize;
use serde_json::Value;

use crate::client::{Call, send};

/// How the service pages its lists.
#[derive(Debug, Clone)]
pub enum Style {
    /// `?offset=N&limit=M`; the list ends at a short page.
    Offset {
        offset_key: String,
        limit_key: String,
        start: u64,
    },
    /// The page names the next page's token; it is sent back as `token_param`.
    Token {
        token_param: String,
        next_token_field: String,
    },
    /// Each response's `Link` header names the next page (`rel="next"`).
    Link,
}

/// Limits of one pagination run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub page_size: u64,
    pub max_items: usize,
    pub max_pages: usize,
}

/// The collected items and where the run stopped.
#[derive(Debug, Serialize)]
pub struct Collected {
    pub items: Vec<Value>,
    pub count: usize,
    pub pages: usize,
    /// True when the service may hold more items than were collected.
    pub truncated: bool,
    /// Where to go on from: the next offset, token or URL (absent when the list ended).
    pub next: Option<Value>,
}

/// Walk the pages of `call` (a GET) on `endpoint`.
pub fn collect(
    endpoint: &Endpoint,
    call: &Call<'_>,
    items_key: &str,
    style: &Style,
    limits: Limits,
) -> Result<Collected, PluginError> {
    match style {
        Style::Offset {
            offset_key,
            limit_key,
            start,
        } => by_offset(
            endpoint,
            call,
            items_key,
            (offset_key, limit_key, *start),
            limits,
        ),
        Style::Token {
            token_param,
            next_token_field,
        } => by_token(
            endpoint,
            call,
            items_key,
            token_param,
            next_token_field,
            limits,
        ),
        Style::Link => by_link(endpoint, call, items_key, limits),
    }
}

fn by_offset(
    endpoint: &Endpoint,
    call: &Call<'_>,
    items_key: &str,
    (offset_key, limit_key, start): (&str, &str, u64),
    limits: Limits,
) -> Result<Collected, PluginError> {
    let mut items = Vec::new();
    let mut offset = start;
    let mut pages = 0;
    loop {
        let wanted = (limits.max_items - items.len().min(limits.max_items)) as u64;
        let size = limits.page_size.min(wanted);
        if size == 0 || pages >= limits.max_pages {
            return Ok(finish(items, pages, Some(Value::from(offset))));
        }
        let mut query = call.query.clone();
        query.push((offset_key.to_owned(), offset.to_string()));
        query.push((limit_key.to_owned(), size.to_string()));
        let page = send(
            endpoint,
            &Call {
                query,
                ..call.clone()
            },
        )?;
        pages += 1;
        let page_items = items_at(&page.body, items_key)?;
        let count = page_items.len() as u64;
        items.extend(page_items);
        offset += count;
        if count < size {
            return Ok(finish(items, pages, None));
        }
    }
}

fn by_token(
    endpoint: &Endpoint,
    call: &Call<'_>,
    items_key: &str,
    token_param: &str,
    next_token_field: &str,
    limits: Limits,
) -> Result<Collected, PluginError> {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = call.query.clone();
        if let Some(token) = &token {
            query.push((token_param.to_owned(), token.clone()));
        }
        let page = send(
            endpoint,
            &Call {
                query,
                ..call.clone()
            },
        )?;
        pages += 1;
        items.extend(items_at(&page.body, items_key)?);
        token = field(&page.body, next_token_field).and_then(token_text);
        let overflow = items.len() > limits.max_items;
        items.truncate(limits.max_items);
        match &token {
            None if !overflow => return Ok(finish(items, pages, None)),
            None => {
                return Ok(Collected {
                    truncated: true,
                    ..finish(items, pages, None)
                });
            }
            Some(next) if items.len() >= limits.max_items || pages >= limits.max_pages => {
                return Ok(finish(items, pages, Some(Value::from(next.clone()))));
            }
            Some(_) => {}
        }
    }
}

fn by_link(
    endpoint: &Endpoint,
    call: &Call<'_>,
    items_key: &str,
    limits: Limits,
) -> Result<Collected, PluginError> {
    let (origin, base_path) = split_origin(&endpoint.base_url);
    let at_origin = Endpoint {
        base_url: origin.to_owned(),
        ..endpoint.clone()
    };
    let mut items = Vec::new();
    let mut pages = 0;
    let first_path = format!("{base_path}{}", call.path);
    let mut next_call = Call {
        path: &first_path,
        ..call.clone()
    };
    let mut owned_path;
    loop {
        let page = send(&at_origin, &next_call)?;
        pages += 1;
        items.extend(items_at(&page.body, items_key)?);
        let next = page.link.as_deref().and_then(next_link);
        let overflow = items.len() > limits.max_items;
        items.truncate(limits.max_items);
        let Some(next) = next else {
            return Ok(Collected {
                truncated: overflow,
                ..finish(items, pages, None)
            });
        };
        if items.len() >= limits.max_items || pages >= limits.max_pages {
            return Ok(finish(items, pages, Some(Value::from(next))));
        }
        owned_path = same_endpoint_path(origin, base_path, &next)?;
        next_call = Call {
            path: &owned_path,
            query: Vec::new(),
            ..call.clone()
        };
    }
}

fn finish(items: Vec<Value>, pages: usize, next: Option<Value>) -> Collected {
    Collected {
        count: items.len(),
        truncated: next.is_some(),
        items,
        pages,
        next,
    }
}

/// `scheme://authority` and the path of a base URL.
pub fn split_origin(base_url: &str) -> (&str, &str) {
    let after_scheme = base_url.find("://").map_or(0, |i| i + 3);
    match base_url[after_scheme..].find('/') {
        Some(slash) => base_url.split_at(after_scheme + slash),
        None => (base_url, ""),
    }
}

/// The path and query of a `Link` target, refusing targets outside the endpoint.
pub fn same_endpoint_path(
    origin: &str,
    base_path: &str,
    target: &str,
) -> Result<String, PluginError> {
    let path = if target.starts_with('/') && !target.starts_with("//") {
        target.to_owned()
    } else if target.len() >= origin.len()
        && target[..origin.len()].eq_ignore_ascii_case(origin)
        && matches!(
            target.as_bytes().get(origin.len()),
            Some(b'/') | Some(b'?') | None
        )
    {
        let rest = &target[origin.len()..];
        if rest.starts_with('/') {
            rest.to_owned()
        } else {
            format!("/{rest}")
        }
    } else {
        return Err(PluginError::Failed(format!(
            "the service's next-page link `{target}` points outside the configured endpoint `{origin}{base_path}`; stopped rather than follow it"
        )));
    };
    if !path.starts_with(base_path) {
        return Err(PluginError::Failed(format!(
            "the service's next-page link `{target}` leaves the endpoint's base path `{base_path}`; stopped rather than follow it"
        )));
    }
    Ok(path.split('#').next().unwrap_or_default().to_owned())
}

/// A value by key, or by JSON pointer when the key starts with `/`.
pub fn field<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    if key.starts_with('/') {
        value.pointer(key)
    } else {
        value.get(key)
    }
}

fn token_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The items of one page: under `key` (a name or a JSON pointer), or the page itself for `""`.
pub fn items_at(page: &Value, key: &str) -> Result<Vec<Value>, PluginError> {
    let list = if key.is_empty() {
        Some(page)
    } else {
        field(page, key)
    };
    match list {
        Some(Value::Array(items)) => Ok(items.clone()),
        Some(Value::Null) | None => Ok(Vec::new()),
        Some(_) => Err(PluginError::Failed(format!(
            "the page has no list under `{key}`; set `items_key` to the field that holds the items (`\"\"` when the page itself is the list)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn link_targets_must_stay_on_the_endpoint() {
        let (origin, base) = split_origin("http://h:1/api");
        assert_eq!((origin, base), ("http://h:1", "/api"));
        assert_eq!(split_origin("http://h:1"), ("http://h:1", ""));
        let ok = |t: &str| same_endpoint_path(origin, base, t).ok();
        assert_eq!(
            ok("http://h:1/api/x?page=2").as_deref(),
            Some("/api/x?page=2")
        );
        assert_eq!(ok("/api/x?page=3").as_deref(), Some("/api/x?page=3"));
        assert_eq!(ok("http://h:10/api/x"), None);
        assert_eq!(ok("http://evil/api/x"), None);
        assert_eq!(ok("//evil/api"), None);
        assert_eq!(ok("/other"), None);
    }

    #[test]
    fn items_are_found_by_key_or_pointer() {
        let page = json!({"data": {"rows": [1, 2]}, "items": [3]});
        assert_eq!(items_at(&page, "items").ok(), Some(vec![json!(3)]));
        assert_eq!(
            items_at(&page, "/data/rows").ok(),
            Some(vec![json!(1), json!(2)])
        );
        assert_eq!(items_at(&json!([4]), "").ok(), Some(vec![json!(4)]));
        assert_eq!(items_at(&page, "missing").ok(), Some(vec![]));
        assert!(items_at(&page, "data").is_err());
    }
}
