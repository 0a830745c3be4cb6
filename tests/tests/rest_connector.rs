//! The built-in `rest` connector through the real sandbox against a recording HTTP server:
//! requests as sent (method, path, query, body, headers, host-injected credentials), error
//! kinds, retries honouring Retry-After, the three pagination styles and health.

use std::time::{Duration, Instant};

use databot::contract::HealthStatus;
use databot::runtime::ErrorKind;
use databot_e2e::{ScriptedResponse, TestHost, serve_scripted};
use serde_json::{Value, json};

fn config(port: u16) -> String {
    format!(
        "plugins:\n  rest:\n    config:\n      headers: {{X-Client: databot}}\n      health_path: /health\n      max_retries: 2\n    endpoints:\n      api:\n        url: http://127.0.0.1:{port}/api\n        auth: {{type: bearer, token: s3cret-token}}\n"
    )
}

async fn rest_host(port: u16) -> TestHost {
    let host = TestHost::start(&config(port), &[]).await.unwrap();
    host.load_builtin("rest").await;
    host
}

/// The query string of a recorded path, as (key, value) pairs.
fn query_of(path: &str) -> Vec<(String, String)> {
    path.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn param(path: &str, key: &str) -> Option<String> {
    query_of(path)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_sent_as_described_with_host_credentials() {
    let (port, seen) = serve_scripted(|request, _| match request.method.as_str() {
        "POST" => ScriptedResponse::json(201, json!({"id": 42, "name": "orders"})),
        "DELETE" => ScriptedResponse::json(404, json!({"message": "item 7 does not exist"})),
        "PATCH" => ScriptedResponse::json(200, json!({"id": 42, "name": "orders_v2"})),
        _ => ScriptedResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            chunks: vec!["pong".into()],
            pause: Duration::ZERO,
        },
    })
    .await;
    let host = rest_host(port).await;

    let answer = host
        .connector_ok(
            "rest",
            "request",
            json!({
                "method": "POST",
                "path": "/v1/items",
                "query": {"tag": ["a b", "c"], "dry_run": false, "n": 2},
                "json": {"name": "orders"},
                "headers": {"X-Request-Id": "r-1"}
            }),
        )
        .await;
    assert_eq!(
        answer,
        json!({"status": 201, "body": {"id": 42, "name": "orders"}})
    );
    let request = &seen.all()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.path,
        "/api/v1/items?dry_run=false&n=2&tag=a%20b&tag=c"
    );
    assert_eq!(request.json(), json!({"name": "orders"}));
    assert_eq!(request.header("authorization"), Some("Bearer s3cret-token"));
    assert_eq!(request.header("x-client"), Some("databot"));
    assert_eq!(request.header("x-request-id"), Some("r-1"));
    assert_eq!(request.header("content-type"), Some("application/json"));

    let answer = host
        .connector_ok("rest", "get", json!({"path": "/ping"}))
        .await;
    assert_eq!(answer, json!({"status": 200, "body": "pong"}));
    assert_eq!(seen.all()[1].method, "GET");
    assert_eq!(seen.all()[1].path, "/api/ping");

    let answer = host
        .connector_ok(
            "rest",
            "request",
            json!({"method": "PATCH", "path": "/v1/items/42", "json": {"name": "orders_v2"}}),
        )
        .await;
    assert_eq!(answer["body"]["name"], "orders_v2");
    assert_eq!(seen.all()[2].method, "PATCH");

    let error = host
        .runtime
        .execute_connector("rest", "delete", r#"{"path": "/v1/items/7"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert!(error.message.contains("item 7 does not exist"), "{error}");
    assert_eq!(seen.all()[3].method, "DELETE");
    assert_eq!(seen.all()[3].path, "/api/v1/items/7");

    // Credentials are the host's; paths stay under the base URL; arguments are checked.
    let count = seen.all().len();
    for (operation, params) in [
        (
            "get",
            json!({"path": "/x", "headers": {"Authorization": "Bearer other"}}),
        ),
        ("get", json!({"path": "/x", "headers": {"X-API-Key": "k"}})),
        ("get", json!({"path": "/../admin"})),
        ("get", json!({"path": "x"})),
        ("get", json!({"path": "/x?a=1"})),
        ("get", json!({"path": "/x", "body": 1})),
        ("request", json!({"method": "TRACE", "path": "/x"})),
    ] {
        let error = host
            .runtime
            .execute_connector("rest", operation, &params.to_string())
            .await
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidInput, "{params}: {error}");
    }
    assert_eq!(seen.all().len(), count, "refused calls sent nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_answers_are_retried_after_the_time_asked_for() {
    let (port, seen) = serve_scripted(|_, index| {
        if index == 0 {
            let mut busy = ScriptedResponse::json(503, json!({"message": "warming up"}));
            busy.headers.push(("retry-after".into(), "1".into()));
            busy
        } else {
            ScriptedResponse::json(200, json!({"ok": true}))
        }
    })
    .await;
    let host = rest_host(port).await;
    let started = Instant::now();
    let answer = host
        .connector_ok("rest", "get", json!({"path": "/status"}))
        .await;
    assert_eq!(answer, json!({"status": 200, "body": {"ok": true}}));
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(seen.all().len(), 2);

    // A service that stays down: the retries (max_retries: 2) run out, then unavailable.
    let (down, seen) = serve_scripted(|_, _| {
        let mut busy = ScriptedResponse::json(503, json!({"message": "maintenance"}));
        busy.headers.push(("retry-after".into(), "0".into()));
        busy
    })
    .await;
    let host = rest_host(down).await;
    let error = host
        .runtime
        .execute_connector("rest", "get", r#"{"path": "/status"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
    assert!(error.message.contains("maintenance"), "{error}");
    assert_eq!(seen.all().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_pagination_walks_pages_and_stops_at_the_limits() {
    // 7 records, served by offset/limit like most list APIs.
    let (port, seen) = serve_scripted(|request, _| {
        let offset: usize = param(&request.path, "start").unwrap().parse().unwrap();
        let limit: usize = param(&request.path, "count").unwrap().parse().unwrap();
        let records: Vec<Value> = (offset..7.min(offset + limit))
            .map(|i| json!({"id": i}))
            .collect();
        ScriptedResponse::json(200, json!({"data": {"records": records}, "total": 7}))
    })
    .await;
    let host = rest_host(port).await;
    let collected = host
        .connector_ok(
            "rest",
            "paginate",
            json!({
                "path": "/records",
                "query": {"status": "open"},
                "items_key": "/data/records",
                "offset_key": "start",
                "limit_key": "count",
                "page_size": 3
            }),
        )
        .await;
    assert_eq!(collected["count"], 7);
    assert_eq!(collected["pages"], 3);
    assert_eq!(collected["truncated"], false);
    assert_eq!(collected["next"], Value::Null);
    assert_eq!(collected["items"][6], json!({"id": 6}));
    let paths: Vec<String> = seen.all().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/api/records?status=open&start=0&count=3",
            "/api/records?status=open&start=3&count=3",
            "/api/records?status=open&start=6&count=3",
        ]
    );

    let collected = host
        .connector_ok(
            "rest",
            "paginate",
            json!({
                "path": "/records",
                "items_key": "/data/records",
                "offset_key": "start",
                "limit_key": "count",
                "page_size": 3,
                "max_items": 5
            }),
        )
        .await;
    assert_eq!(collected["count"], 5);
    assert_eq!(collected["truncated"], true);
    assert_eq!(collected["next"], 5);
    assert_eq!(param(&seen.all()[4].path, "count").as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_pagination_sends_each_token_back() {
    let (port, seen) =
        serve_scripted(
            |request, _| match param(&request.path, "pageToken").as_deref() {
                None => ScriptedResponse::json(
                    200,
                    json!({"items": [{"n": 1}, {"n": 2}], "nextPageToken": "CAI"}),
                ),
                Some("CAI") => ScriptedResponse::json(
                    200,
                    json!({"items": [{"n": 3}], "nextPageToken": "CAM"}),
                ),
                Some(_) => ScriptedResponse::json(200, json!({"items": [{"n": 4}]})),
            },
        )
        .await;
    let host = rest_host(port).await;
    let collected = host
        .connector_ok(
            "rest",
            "paginate",
            json!({
                "path": "/v1/projects/p/jobs",
                "style": "token",
                "token_param": "pageToken",
                "next_token_field": "nextPageToken"
            }),
        )
        .await;
    assert_eq!(collected["count"], 4);
    assert_eq!(collected["pages"], 3);
    assert_eq!(collected["truncated"], false);
    let paths: Vec<String> = seen.all().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/projects/p/jobs",
            "/api/v1/projects/p/jobs?pageToken=CAI",
            "/api/v1/projects/p/jobs?pageToken=CAM",
        ]
    );

    let collected = host
        .connector_ok(
            "rest",
            "paginate",
            json!({
                "path": "/v1/projects/p/jobs",
                "style": "token",
                "token_param": "pageToken",
                "next_token_field": "nextPageToken",
                "max_items": 2
            }),
        )
        .await;
    assert_eq!(collected["count"], 2);
    assert_eq!(collected["truncated"], true);
    assert_eq!(collected["next"], "CAI");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_pagination_follows_rel_next_on_the_same_endpoint_only() {
    let own_port = std::sync::Arc::new(std::sync::OnceLock::<u16>::new());
    let known = own_port.clone();
    let (port, seen) = serve_scripted(move |request, _| {
        let page: u32 = param(&request.path, "page")
            .map(|p| p.parse().unwrap())
            .unwrap_or(1);
        let port = known.get().copied().unwrap();
        let mut response =
            ScriptedResponse::json(200, json!([{"number": page * 10}, {"number": page * 10 + 1}]));
        let link = match page {
            1 => format!(
                "<http://127.0.0.1:{port}/api/repos/o/r/issues?per_page=2&page=2>; rel=\"next\", <http://127.0.0.1:{port}/api/repos/o/r/issues?per_page=2&page=3>; rel=\"last\""
            ),
            2 => "</api/repos/o/r/issues?per_page=2&page=3>; rel=\"next\"".to_owned(),
            3 => "<http://example.com/api/repos/o/r/issues?page=4>; rel=\"next\"".to_owned(),
            _ => String::new(),
        };
        response.headers.push(("link".into(), link));
        response
    })
    .await;
    own_port.set(port).unwrap();
    let host = rest_host(port).await;
    let collected = host
        .connector_ok(
            "rest",
            "paginate",
            json!({
                "path": "/repos/o/r/issues",
                "query": {"per_page": 2},
                "style": "link",
                "items_key": "",
                "max_pages": 2
            }),
        )
        .await;
    assert_eq!(collected["count"], 4);
    assert_eq!(collected["items"][3], json!({"number": 21}));
    assert_eq!(collected["truncated"], true);
    assert_eq!(collected["next"], "/api/repos/o/r/issues?per_page=2&page=3");
    let paths: Vec<String> = seen.all().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/api/repos/o/r/issues?per_page=2",
            "/api/repos/o/r/issues?per_page=2&page=2",
        ]
    );
    assert!(
        seen.all()
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer s3cret-token"))
    );

    // Page 3 points at another host: the connector stops rather than follow it.
    let error = host
        .runtime
        .execute_connector(
            "rest",
            "paginate",
            r#"{"path": "/repos/o/r/issues", "query": {"per_page": 2}, "style": "link", "items_key": ""}"#,
        )
        .await
        .unwrap_err();
    assert!(
        error.message.contains("outside the configured endpoint"),
        "{error}"
    );
    assert!(seen.all().iter().all(|r| !r.path.contains("page=4")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_configured_path() {
    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = healthy.clone();
    let (port, seen) = serve_scripted(move |_, _| {
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            ScriptedResponse::json(200, json!({"status": "UP"}))
        } else {
            ScriptedResponse::json(500, json!({"status": "DOWN"}))
        }
    })
    .await;
    let host = rest_host(port).await;
    let health = host.runtime.connector_health("rest").await.unwrap();
    assert_eq!(health.status, HealthStatus::Healthy, "{}", health.message);
    assert_eq!(seen.all()[0].path, "/api/health");
    assert_eq!(
        seen.all()[0].header("authorization"),
        Some("Bearer s3cret-token")
    );
    healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    let health = host.runtime.connector_health("rest").await.unwrap();
    assert_eq!(health.status, HealthStatus::Degraded, "{}", health.message);
    assert!(health.message.contains("500"), "{}", health.message);

    // Nothing listening: unreachable.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let host = rest_host(closed).await;
    let health = host.runtime.connector_health("rest").await.unwrap();
    assert_eq!(
        health.status,
        HealthStatus::Unreachable,
        "{}",
        health.message
    );

    // No endpoint configured: not configured, and operations say what to add.
    let host = TestHost::start("plugins:\n  rest:\n    config: {}\n", &[])
        .await
        .unwrap();
    host.load_builtin("rest").await;
    let health = host.runtime.connector_health("rest").await.unwrap();
    assert_eq!(
        health.status,
        HealthStatus::NotConfigured,
        "{}",
        health.message
    );
    let error = host
        .runtime
        .execute_connector("rest", "get", r#"{"path": "/x"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert!(
        error
            .message
            .contains("plugins.<this plugin>.endpoints.api.url"),
        "{error}"
    );
}
