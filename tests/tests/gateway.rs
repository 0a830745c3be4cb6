//! The HTTP gateway end to end: messages and SSE through the bus and the agent, auth, rate
//! limits, bad and oversized requests, bind safety, health, readiness, metrics, status.

use databot::config::GatewayConfig;
use databot::gateway::check_bind;
use databot_e2e::{TestHost, http_call};

struct Gateway {
    port: u16,
    _host: TestHost,
}

async fn gateway(yaml: &str) -> Gateway {
    let host = TestHost::start("", &["echo"]).await.unwrap();
    host.load_builtin("offline").await;
    let port = host.start_gateway("offline", yaml).await;
    Gateway { port, _host: host }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_answered_and_its_conversation_continues() {
    let gw = gateway("").await;
    let (status, _, body) = http_call(
        gw.port,
        "POST",
        "/api/v1/message",
        &[JSON],
        r#"{"content": "/echo {\"text\": \"over http\"}", "chat_id": "c1"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["chat_id"], "c1");
    assert!(
        reply["content"].as_str().unwrap().contains("over http"),
        "{body}"
    );

    // Without chat_id a new conversation starts, never a shared one.
    let (_, _, first) = http_call(
        gw.port,
        "POST",
        "/api/v1/message",
        &[JSON],
        r#"{"content": "hi"}"#,
    )
    .await;
    let (_, _, second) = http_call(
        gw.port,
        "POST",
        "/api/v1/message",
        &[JSON],
        r#"{"content": "hi"}"#,
    )
    .await;
    let id = |b: &str| {
        serde_json::from_str::<serde_json::Value>(b).unwrap()["chat_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_ne!(id(&first), id(&second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_endpoint_sends_sse_events() {
    let gw = gateway("").await;
    let (status, headers, body) = http_call(
        gw.port,
        "POST",
        "/api/v1/stream",
        &[JSON],
        r#"{"content": "/echo {\"text\": \"streamed\"}", "chat_id": "s1"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        header(&headers, "content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(header(&headers, "x-chat-id"), Some("s1"));
    let events: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events.first(), Some(&"tool_start"), "{body}");
    assert!(
        events.contains(&"tool_result") && events.contains(&"delta"),
        "{body}"
    );
    assert_eq!(events.last(), Some(&"done"), "{body}");
    assert!(body.contains("streamed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_required_when_configured() {
    let gw = gateway("gateway:\n  api_keys: [\"k-one\", \"k-two\"]\n").await;
    let message = r#"{"content": "hi", "chat_id": "a"}"#;
    let (status, _, body) = http_call(gw.port, "POST", "/api/v1/message", &[JSON], message).await;
    assert_eq!(status, 401);
    assert!(body.contains("\"code\":\"missing_api_key\""), "{body}");
    let (status, _, body) = http_call(
        gw.port,
        "POST",
        "/api/v1/message",
        &[JSON, ("authorization", "Bearer k-wrong")],
        message,
    )
    .await;
    assert_eq!(status, 401);
    assert!(body.contains("\"code\":\"invalid_api_key\""), "{body}");
    let (status, _, _) = http_call(
        gw.port,
        "POST",
        "/api/v1/message",
        &[JSON, ("authorization", "Bearer k-one")],
        message,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = http_call(
        gw.port,
        "POST",
        "/api/v1/message",
        &[JSON, ("x-api-key", "k-two")],
        message,
    )
    .await;
    assert_eq!(status, 200);
    // Health stays open for probes; metrics do not.
    assert_eq!(http_call(gw.port, "GET", "/health", &[], "").await.0, 200);
    assert_eq!(http_call(gw.port, "GET", "/metrics", &[], "").await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_with_the_standard_headers() {
    let gw = gateway("gateway:\n  rate_limit:\n    requests: 2\n    window_seconds: 60\n").await;
    let (status, headers, _) = http_call(gw.port, "GET", "/api/v1/plugins", &[], "").await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-ratelimit-limit"), Some("2"));
    assert_eq!(header(&headers, "x-ratelimit-remaining"), Some("1"));
    http_call(gw.port, "GET", "/api/v1/plugins", &[], "").await;
    let (status, headers, body) = http_call(gw.port, "GET", "/api/v1/plugins", &[], "").await;
    assert_eq!(status, 429);
    assert_eq!(header(&headers, "x-ratelimit-remaining"), Some("0"));
    let retry: u64 = header(&headers, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert!(body.contains("\"code\":\"rate_limited\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_and_lose_nothing() {
    let gw = gateway("gateway:\n  max_body_bytes: 1000\n").await;
    for (body, expect) in [
        ("not json", "invalid_request"),
        (r#"{"content": ""}"#, "invalid_request"),
        (r#"{"content": "x", "chat_id": "a:b"}"#, "invalid_request"),
        (r#"{"content": "x", "unknown": 1}"#, "invalid_request"),
    ] {
        let (status, _, answer) =
            http_call(gw.port, "POST", "/api/v1/message", &[JSON], body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let error: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(error["error"]["code"], expect, "{answer}");
        assert!(error["error"]["message"].as_str().unwrap().len() > 5);
    }
    let huge = format!(r#"{{"content": "{}"}}"#, "x".repeat(5000));
    let (status, _, answer) = http_call(gw.port, "POST", "/api/v1/message", &[JSON], &huge).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("payload_too_large"));
    let (status, _, answer) = http_call(gw.port, "GET", "/nope", &[], "").await;
    assert_eq!(status, 404);
    assert!(answer.contains("\"code\":\"not_found\""));
    // The gateway still works.
    let (status, _, _) = http_call(
        gw.port,
        "POST",
        "/api/v1/message",
        &[JSON],
        r#"{"content": "hi"}"#,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cors_unless_configured() {
    let gw = gateway("").await;
    let (_, headers, _) = http_call(
        gw.port,
        "GET",
        "/health",
        &[("origin", "https://evil.example")],
        "",
    )
    .await;
    assert!(header(&headers, "access-control-allow-origin").is_none());
    let gw = gateway("gateway:\n  cors_origins: [\"https://console.example\"]\n").await;
    let (_, headers, _) = http_call(
        gw.port,
        "GET",
        "/health",
        &[("origin", "https://console.example")],
        "",
    )
    .await;
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://console.example")
    );
    let (_, headers, _) = http_call(
        gw.port,
        "GET",
        "/health",
        &[("origin", "https://evil.example")],
        "",
    )
    .await;
    assert!(header(&headers, "access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_metrics_and_status() {
    let gw = gateway("").await;
    let (status, _, body) = http_call(gw.port, "GET", "/ready", &[], "").await;
    assert_eq!(status, 200, "{body}");
    http_call(
        gw.port,
        "POST",
        "/api/v1/message",
        &[JSON],
        r#"{"content": "/echo {\"text\": \"m\"}"}"#,
    )
    .await;
    let (status, headers, metrics) = http_call(gw.port, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(
        header(&headers, "content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        metrics.contains("databot_http_requests_total{route=\"/api/v1/message\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("databot_turns_total 1"), "{metrics}");
    assert!(
        metrics.contains("databot_plugin_calls_total{plugin=\"echo\"} 1"),
        "{metrics}"
    );
    let (_, _, plugins) = http_call(gw.port, "GET", "/api/v1/plugins", &[], "").await;
    assert!(plugins.contains("\"name\":\"echo\""), "{plugins}");
    let (status, _, connectors) = http_call(gw.port, "GET", "/api/v1/connectors", &[], "").await;
    assert_eq!(status, 200, "{connectors}");
}

#[test]
fn a_public_bind_without_keys_is_refused() {
    let public = GatewayConfig {
        bind: "0.0.0.0:8080".into(),
        ..GatewayConfig::default()
    };
    let error = check_bind(&public).unwrap_err().to_string();
    assert!(error.contains("without API keys"), "{error}");
    assert!(check_bind(&GatewayConfig::default()).is_ok());
    let config = databot::config::Config::parse(
        "gateway:\n  bind: 0.0.0.0:8080\n  api_keys: [k]\n",
        "t",
        |_| None,
    )
    .unwrap();
    assert!(check_bind(&config.gateway).is_ok());
}
