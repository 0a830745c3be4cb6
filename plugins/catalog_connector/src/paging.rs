//! Token pagination shared by the drivers: Iceberg (`pageToken` / `next-page-token`), Unity
//! (`page_token` / `next_page_token`) and Glue (`NextToken` in the body).

use serde_json::Value;

/// Safety stop against a service that hands out tokens forever.
pub const MAX_PAGES: usize = 1000;

/// Items gathered from pages and whether the limit cut them short.
pub struct Pages {
    pub items: Vec<Value>,
    pub truncated: bool,
}

/// Fetch pages with `fetch(token)` (no token for the first page) until a page has no next
/// token (JSON pointer `next`) or `limit` items are in hand. `items` points at each page's list.
pub fn collect<E>(
    mut fetch: impl FnMut(Option<&str>) -> Result<Value, E>,
    items: &str,
    next: &str,
    limit: usize,
) -> Result<Pages, E> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = fetch(token.as_deref())?;
        if let Some(list) = page.pointer(items).and_then(Value::as_array) {
            out.extend(list.iter().cloned());
        }
        token = page
            .pointer(next)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        if out.len() >= limit {
            let truncated = out.len() > limit || token.is_some();
            out.truncate(limit);
            return Ok(Pages {
                items: out,
                truncated,
            });
        }
        if token.is_none() {
            break;
        }
    }
    Ok(Pages {
        items: out,
        truncated: token.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn follows_tokens_and_stops_at_the_limit() {
        let pages = [
            json!({"items": [1, 2], "next": "b"}),
            json!({"items": [3, 4], "next": "c"}),
            json!({"items": [5]}),
        ];
        let mut seen = Vec::new();
        let all = collect::<()>(
            |token| {
                seen.push(token.map(str::to_owned));
                Ok(pages[seen.len() - 1].clone())
            },
            "/items",
            "/next",
            100,
        )
        .unwrap();
        assert_eq!(all.items.len(), 5);
        assert!(!all.truncated);
        assert_eq!(seen, [None, Some("b".into()), Some("c".into())]);

        let mut calls = 0;
        let cut = collect::<()>(
            |_| {
                calls += 1;
                Ok(pages[calls - 1].clone())
            },
            "/items",
            "/next",
            3,
        )
        .unwrap();
        assert_eq!(cut.items, [json!(1), json!(2), json!(3)]);
        assert!(cut.truncated);
        assert_eq!(calls, 2);
    }
}
