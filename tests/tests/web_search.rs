//! The built-in `web_search` tool through the real sandbox against recording servers that
//! answer as the Brave Search API and SearXNG do: query sent, key injected by the host,
//! snippets as plain text, count honoured, 429 retried, clear errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use databot::runtime::ErrorKind;
use databot_e2e::{ScriptedResponse, SeenRequest, TestHost, serve_scripted};
use serde_json::{Value, json};

fn brave_result(title: &str, url: &str, description: &str) -> Value {
    json!({
        "title": title, "url": url, "is_source_local": false, "is_source_both": false,
        "description": description, "page_age": "2024-05-01T00:00:00",
        "profile": {"name": "Example", "url": url, "long_name": "example.org", "img": "https://imgs.search.brave.com/x.png"},
        "language": "en", "family_friendly": true, "type": "search_result", "subtype": "generic",
        "meta_url": {"scheme": "https", "netloc": "example.org", "hostname": "example.org", "favicon": "https://imgs.search.brave.com/f.png", "path": ""},
        "age": "May 1, 2024"
    })
}

fn brave(request: &SeenRequest) -> ScriptedResponse {
    if request.path.contains("q=bad-key") {
        return ScriptedResponse::json(
            422,
            json!({"type": "ErrorResponse", "error": {
                "id": "c1b2e3f4", "status": 422, "code": "SUBSCRIPTION_TOKEN_INVALID",
                "detail": "The provided subscription token is invalid.",
                "meta": {"component": "authentication"}}, "time": 1_714_000_000}),
        );
    }
    ScriptedResponse::json(
        200,
        json!({
            "query": {"original": "rust wasm components", "show_strict_warning": false,
                      "is_navigational": false, "spellcheck_off": true, "country": "us",
                      "bad_results": false, "should_fallback": false, "more_results_available": true},
            "mixed": {"type": "mixed", "main": [{"type": "web", "index": 0, "all": false}], "top": [], "side": []},
            "type": "search",
            "web": {"type": "search", "family_friendly": true, "results": [
                brave_result("The WebAssembly Component Model", "https://component-model.bytecodealliance.org/",
                    "The <strong>WebAssembly</strong> Component Model is a broad-reaching architecture for building interoperable <strong>Wasm</strong> libraries &amp; applications."),
                brave_result("wit-bindgen", "https://github.com/bytecodealliance/wit-bindgen",
                    "Language binding generator for <strong>WebAssembly</strong> interface types"),
                brave_result("Third", "https://example.org/3", "third result")
            ]}
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brave_search_with_host_injected_key_and_plain_snippets() {
    let busy = Arc::new(AtomicBool::new(true));
    let (port, seen) = serve_scripted(move |request, _| {
        if busy.swap(false, Ordering::SeqCst) {
            let mut limited = ScriptedResponse::json(
                429,
                json!({"type": "ErrorResponse", "error": {"status": 429, "code": "RATE_LIMITED", "detail": "Request rate limit exceeded."}}),
            );
            limited.headers.push(("retry-after".into(), "0".into()));
            return limited;
        }
        brave(request)
    })
    .await;
    let config = format!(
        "plugins:
  web_search:
    endpoints:
      api:
        url: http://127.0.0.1:{port}
        auth: {{type: api_key, header: X-Subscription-Token, key: brave-key}}
"
    );
    let host = TestHost::start(&config, &[]).await.unwrap();
    host.load_builtin("web_search").await;

    let output = host
        .runtime
        .call_tool(
            "web_search",
            r#"{"query": "rust wasm components", "count": 2}"#,
        )
        .await
        .unwrap();
    let value: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(value["backend"], "brave");
    assert_eq!(value["count"], 2);
    assert_eq!(
        value["results"][0],
        json!({
            "title": "The WebAssembly Component Model",
            "url": "https://component-model.bytecodealliance.org/",
            "snippet": "The WebAssembly Component Model is a broad-reaching architecture for building interoperable Wasm libraries & applications."
        })
    );

    let output = host
        .runtime
        .call_tool("web_search", r#"{"query": "wit"}"#)
        .await
        .unwrap();
    let value: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(value["count"], 3);

    let error = host
        .runtime
        .call_tool("web_search", r#"{"query": "bad-key"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    assert!(error.message.contains("X-Subscription-Token"), "{error}");
    let error = host
        .runtime
        .call_tool("web_search", r#"{"query": "x", "count": 50}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    let error = host
        .runtime
        .call_tool("web_search", r#"{"query": "  "}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");

    let all = seen.all();
    assert_eq!(
        all[0].path,
        "/res/v1/web/search?q=rust%20wasm%20components&count=2"
    );
    assert_eq!(all[1].path, all[0].path, "the 429 was retried");
    assert_eq!(all[2].path, "/res/v1/web/search?q=wit&count=5");
    for request in &all {
        assert_eq!(request.header("x-subscription-token"), Some("brave-key"));
        assert_eq!(request.header("accept"), Some("application/json"));
    }
}

fn searxng(request: &SeenRequest) -> ScriptedResponse {
    if request.path.contains("q=blocked") {
        return ScriptedResponse {
            status: 403,
            headers: vec![("content-type".into(), "text/html".into())],
            chunks: vec!["<html><body>403 Forbidden</body></html>".into()],
            pause: std::time::Duration::ZERO,
        };
    }
    ScriptedResponse::json(
        200,
        json!({
            "query": "iceberg rest catalog",
            "number_of_results": 0,
            "results": [
                {"url": "https://iceberg.apache.org/spec/", "title": "Spec - Apache Iceberg",
                 "content": "The <b>REST catalog</b> protocol &quot;v1&quot;", "engine": "duckduckgo",
                 "parsed_url": ["https", "iceberg.apache.org", "/spec/", "", "", ""],
                 "template": "default.html", "engines": ["duckduckgo", "brave"], "positions": [1, 2],
                 "score": 4.0, "category": "general"},
                {"url": "https://github.com/apache/iceberg", "title": "apache/iceberg",
                 "content": "Apache Iceberg", "engine": "google", "engines": ["google"],
                 "positions": [3], "score": 0.33, "category": "general", "publishedDate": null}
            ],
            "answers": [], "corrections": [], "infoboxes": [], "suggestions": ["iceberg rest api"],
            "unresponsive_engines": []
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searxng_json_and_missing_configuration() {
    let (port, seen) = serve_scripted(|request, _| searxng(request)).await;
    let config = format!(
        "plugins:
  web_search:
    config:
      backend: searxng
      default_count: 1
    endpoints:
      api:
        url: http://127.0.0.1:{port}
"
    );
    let host = TestHost::start(&config, &[]).await.unwrap();
    host.load_builtin("web_search").await;
    let output = host
        .runtime
        .call_tool(
            "web_search",
            r#"{"query": "iceberg rest catalog", "count": 5}"#,
        )
        .await
        .unwrap();
    let value: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(value["backend"], "searxng");
    assert_eq!(value["count"], 2);
    assert_eq!(
        value["results"][0]["snippet"],
        "The REST catalog protocol \"v1\""
    );
    assert_eq!(
        value["results"][1]["url"],
        "https://github.com/apache/iceberg"
    );
    let output = host
        .runtime
        .call_tool("web_search", r#"{"query": "iceberg"}"#)
        .await
        .unwrap();
    let value: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(value["count"], 1, "config default_count applies");
    let error = host
        .runtime
        .call_tool("web_search", r#"{"query": "blocked"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    assert!(error.message.contains("settings.yml"), "{error}");
    assert_eq!(
        seen.all()[0].path,
        "/search?q=iceberg%20rest%20catalog&format=json"
    );

    let host = TestHost::start("plugins:\n  web_search:\n    config: {}\n", &[])
        .await
        .unwrap();
    host.load_builtin("web_search").await;
    let error = host
        .runtime
        .call_tool("web_search", r#"{"query": "x"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert!(error.message.contains("X-Subscription-Token"), "{error}");
}
