//! The console's files, embedded at build time from `host/console/` (see `build.rs`): each
//! with its media type, a content-derived `ETag` and a gzip copy. Served to revalidate
//! (`no-cache`), so a new binary's console is picked up on the next load; an unchanged file
//! answers 304.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::super::ApiError;

/// One embedded file.
pub struct Asset {
    /// Path below `host/console/`, with `/` separators.
    pub path: &'static str,
    pub content_type: &'static str,
    /// Quoted, from the file's SHA-256; the gzip copy's is another (a strong tag names one
    /// representation).
    pub etag: &'static str,
    pub gzip_etag: &'static str,
    pub body: &'static [u8],
    pub gzip: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

/// The embedded file at `path`.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

/// `/ui/`: the page every view of the console starts from.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `/ui/assets/FILE`.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    // `index.html` is served at `/ui/` only, so relative URLs resolve one way.
    if file == "index.html" {
        return not_found();
    }
    serve(&file, &headers)
}

fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such console file").into_response()
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = find(path) else {
        return not_found();
    };
    let gzip = accepts_gzip(headers);
    let (etag, body) = if gzip {
        (asset.gzip_etag, asset.gzip)
    } else {
        (asset.etag, asset.body)
    };
    let revalidated = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    let (status, body) = if revalidated {
        (StatusCode::NOT_MODIFIED, &[][..])
    } else {
        (StatusCode::OK, body)
    };
    let mut response = (status, body).into_response();
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    out.insert(header::ETAG, HeaderValue::from_static(etag));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip && !revalidated {
        out.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// Whether `Accept-Encoding` takes gzip: named (or `*`) without `q=0`, and not refused by
/// name.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for coding in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
    {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let refused = parts.any(|param| {
            param
                .trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        if name.eq_ignore_ascii_case("gzip") {
            gzip = Some(!refused);
        } else if name == "*" {
            any = Some(!refused);
        }
    }
    gzip.or(any).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_embedded_with_a_type_a_tag_and_a_smaller_gzip_copy() {
        for needed in ["index.html", "app.js", "style.css"] {
            assert!(find(needed).is_some(), "{needed} is embedded");
        }
        for asset in ASSETS {
            assert!(asset.etag.starts_with('"') && asset.etag.ends_with('"'));
            assert_ne!(asset.etag, asset.gzip_etag);
            assert!(!asset.content_type.is_empty(), "{}", asset.path);
            assert!(asset.gzip.len() <= asset.body.len() + 32, "{}", asset.path);
        }
    }

    #[test]
    fn gzip_only_when_accepted() {
        let mut headers = HeaderMap::new();
        assert!(!accepts_gzip(&headers));
        headers.insert(
            header::ACCEPT_ENCODING,
            "gzip, deflate, br".parse().unwrap(),
        );
        assert!(accepts_gzip(&headers));
        headers.insert(header::ACCEPT_ENCODING, "br, gzip;q=0".parse().unwrap());
        assert!(!accepts_gzip(&headers));
        headers.insert(header::ACCEPT_ENCODING, "identity".parse().unwrap());
        assert!(!accepts_gzip(&headers));
        headers.insert(header::ACCEPT_ENCODING, "gzip;q=0, *".parse().unwrap());
        assert!(!accepts_gzip(&headers), "refused by name");
        headers.insert(header::ACCEPT_ENCODING, "*".parse().unwrap());
        assert!(accepts_gzip(&headers));
    }

    #[test]
    fn no_script_or_style_in_the_page_itself() {
        // The CSP allows neither; a slip here would show as a blank console.
        let page = std::str::from_utf8(find("index.html").unwrap().body).unwrap();
        assert!(
            !page.contains("<script>") && !page.contains(" style="),
            "{page}"
        );
        assert!(
            !page.contains("onload=") && !page.contains("onclick="),
            "{page}"
        );
    }
}
