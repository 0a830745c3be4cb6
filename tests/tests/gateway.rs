//! The HTTP gateway end to end, on loopback: messages and SSE through the bus and the agent,
//! auth, the failed-authentication lockout, rate limits, `Host`/`Origin` checks, JSON-only
//! bodies, bad and oversized requests, connection floods and deadlines, conversation ownership,
//! the server-set channel, memory scopes, bind safety, key rules, health, readiness, metrics.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use databot::config::GatewayConfig;
use databot::gateway::check_bind;
use databot_e2e::{TestHost, http_call, http_call_from};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Gateway {
    port: u16,
    host: TestHost,
}

async fn gateway(yaml: &str) -> Gateway {
    gateway_with("", yaml).await
}

/// A gateway over a host with `echo` (`runtime_yaml` added to its `runtime` section).
async fn gateway_with(runtime_yaml: &str, yaml: &str) -> Gateway {
    let host = TestHost::start(runtime_yaml, &["echo", "hostile"])
        .await
        .unwrap();
    host.load_builtin("offline").await;
    let port = host.start_gateway("offline", yaml).await;
    Gateway { port, host }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn error_code(body: &str) -> String {
    json(body)["error"]["code"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

const JSON: (&str, &str) = ("content-type", "application/json");
const KEY_A: &str = "key-a-0123456789abcdef";
const KEY_B: &str = "key-b-0123456789abcdef";
const AUTH_A: (&str, &str) = ("x-api-key", KEY_A);
const AUTH_B: (&str, &str) = ("x-api-key", KEY_B);
const TWO_KEYS: &str = "gateway:\n  api_keys: [\"key-a-0123456789abcdef\", \"key-b-0123456789abcdef\"]\n  rate_limit:\n    requests: 100000\n";

/// POST a message; (status, decoded body).
async fn say(port: u16, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
    let mut all = vec![JSON];
    all.extend_from_slice(headers);
    let (status, _, answer) =
        http_call(port, "POST", "/api/v1/message", &all, &body.to_string()).await;
    (status, json(&answer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_answered_and_its_conversation_continues() {
    let gw = gateway("").await;
    let (status, reply) = say(
        gw.port,
        &[],
        serde_json::json!({"content": "/echo {\"text\": \"over http\"}", "chat_id": "c1"}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["chat_id"], "c1");
    assert!(reply["content"].as_str().unwrap().contains("over http"));
    let (status, _) = say(
        gw.port,
        &[],
        serde_json::json!({"content": "again", "chat_id": "c1"}),
    )
    .await;
    assert_eq!(status, 200);
    let sessions = gw.host.sessions("sessions").await;
    assert_eq!(sessions.history("api:c1").await.unwrap().len(), 6);

    // Without chat_id a new conversation starts under a fresh random id, never a shared one.
    let (_, first) = say(gw.port, &[], serde_json::json!({"content": "hi"})).await;
    let (_, second) = say(gw.port, &[], serde_json::json!({"content": "hi"})).await;
    assert_ne!(first["chat_id"], second["chat_id"]);
    for id in [&first["chat_id"], &second["chat_id"]] {
        let id = id.as_str().unwrap();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
    }
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
    let gw = gateway(TWO_KEYS).await;
    let message = r#"{"content": "hi"}"#;
    let (status, _, body) = http_call(gw.port, "POST", "/api/v1/message", &[JSON], message).await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&body), "missing_api_key");
    let wrong = format!("Bearer {KEY_A}x");
    let (status, _, body) = http_call(
        gw.port,
        "POST",
        "/api/v1/message",
        &[JSON, ("authorization", &wrong)],
        message,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&body), "invalid_api_key");
    let bearer = format!("Bearer {KEY_A}");
    let (status, _, _) = http_call(
        gw.port,
        "POST",
        "/api/v1/message",
        &[JSON, ("authorization", &bearer)],
        message,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) =
        http_call(gw.port, "POST", "/api/v1/message", &[JSON, AUTH_B], message).await;
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
    assert_eq!(error_code(&body), "rate_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_of_zero_requests_is_off() {
    let gw = gateway("gateway:\n  rate_limit:\n    requests: 0\n    window_seconds: 60\n").await;
    for _ in 0..50 {
        let (status, headers, _) = http_call(gw.port, "GET", "/api/v1/plugins", &[], "").await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "x-ratelimit-limit"), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_and_lose_nothing() {
    let gw = gateway("gateway:\n  max_body_bytes: 1000\n").await;
    for body in [
        "not json",
        r#"{"content": ""}"#,
        r#"{"content": "x", "chat_id": "a:b"}"#,
        r#"{"content": "x", "chat_id": "cli:default"}"#,
        r#"{"content": "x", "chat_id": "../x"}"#,
        r#"{"content": "x", "chat_id": ""}"#,
        r#"{"content": "x", "unknown": 1}"#,
    ] {
        let (status, _, answer) =
            http_call(gw.port, "POST", "/api/v1/message", &[JSON], body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(error_code(&answer), "invalid_request", "{answer}");
        assert!(json(&answer)["error"]["message"].as_str().unwrap().len() > 5);
    }
    let huge = format!(r#"{{"content": "{}"}}"#, "x".repeat(5000));
    let (status, _, answer) = http_call(gw.port, "POST", "/api/v1/message", &[JSON], &huge).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(error_code(&answer), "payload_too_large");
    let (status, _, answer) = http_call(gw.port, "GET", "/nope", &[], "").await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&answer), "not_found");
    // The gateway still works.
    let (status, _) = say(gw.port, &[], serde_json::json!({"content": "hi"})).await;
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
    say(
        gw.port,
        &[],
        serde_json::json!({"content": "/echo {\"text\": \"m\"}"}),
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

/// Every protected route, with a body where it takes one.
const PROTECTED: [(&str, &str, &str); 6] = [
    ("GET", "/api/v1/plugins", ""),
    ("GET", "/api/v1/connectors", ""),
    ("GET", "/metrics", ""),
    (
        "POST",
        "/api/v1/message",
        r#"{"content": "/echo {\"text\": \"x\"}"}"#,
    ),
    (
        "POST",
        "/api/v1/stream",
        r#"{"content": "/echo {\"text\": \"x\"}"}"#,
    ),
    (
        "POST",
        "/mcp",
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_hosts_and_origins_are_refused_on_every_protected_route() {
    let gw = gateway(
        "gateway:\n  rate_limit:\n    requests: 100000\n  allowed_hosts: [\"bot.example.com\"]\n  allowed_origins: [\"https://ide.example.com\"]\n",
    )
    .await;
    let port = gw.port;
    let own_host = format!("localhost:{port}");
    let rebound = format!("evil.example:{port}");
    let accept = ("accept", "application/json, text/event-stream");
    let refusals: [(&[(&str, &str)], &str); 10] = [
        (&[("host", "evil.example")], "host_not_allowed"),
        (&[("host", &rebound)], "host_not_allowed"),
        (&[("host", "localhost.evil.example")], "host_not_allowed"),
        (
            &[("host", "bot.example.com.evil.example")],
            "host_not_allowed",
        ),
        (&[("origin", "http://evil.example")], "origin_not_allowed"),
        (
            &[("origin", &format!("http://evil.example:{port}"))],
            "origin_not_allowed",
        ),
        (&[("origin", "null")], "origin_not_allowed"),
        (
            &[("origin", "https://ide.example.com:8443")],
            "origin_not_allowed",
        ),
        (&[("sec-fetch-site", "cross-site")], "origin_not_allowed"),
        (
            &[("host", &rebound), ("origin", &format!("http://{rebound}"))],
            "host_not_allowed",
        ),
    ];
    for (method, path, body) in PROTECTED {
        for (extra, code) in &refusals {
            let mut headers = vec![JSON, accept];
            headers.extend_from_slice(extra);
            let (status, _, answer) = http_call(port, method, path, &headers, body).await;
            assert_eq!(status, 403, "{method} {path} {extra:?}: {answer}");
            assert_eq!(error_code(&answer), *code, "{method} {path} {extra:?}");
        }
        for extra in [
            &[("host", own_host.as_str())][..],
            &[("host", "127.0.0.1")],
            &[("host", "bot.example.com")],
            &[("origin", "http://localhost:5173")],
            &[("origin", "https://ide.example.com")],
            &[("sec-fetch-site", "same-origin")],
        ] {
            let mut headers = vec![JSON, accept];
            headers.extend_from_slice(extra);
            let (status, _, answer) = http_call(port, method, path, &headers, body).await;
            assert_eq!(status, 200, "{method} {path} {extra:?}: {answer}");
        }
    }
    // Exactly the allowed message and stream requests reached the agent: 6 x 2.
    let (_, _, metrics) = http_call(port, "GET", "/metrics", &[], "").await;
    assert!(metrics.contains("databot_turns_total 12\n"), "{metrics}");
    // Probes are not subject to the checks.
    let (status, _, _) = http_call(port, "GET", "/health", &[("host", "evil.example")], "").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_are_not_json_get_415_and_reach_nothing() {
    let gw = gateway("gateway:\n  rate_limit:\n    requests: 100000\n").await;
    let accept = ("accept", "application/json, text/event-stream");
    for (method, path, body) in PROTECTED.iter().filter(|(m, ..)| *m == "POST") {
        for content_type in [
            Some("text/plain"),
            Some("text/plain;charset=UTF-8"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonx"),
            None,
        ] {
            let mut headers = vec![accept];
            if let Some(content_type) = content_type {
                headers.push(("content-type", content_type));
            }
            let (status, _, answer) = http_call(gw.port, method, path, &headers, body).await;
            assert_eq!(status, 415, "{path} {content_type:?}: {answer}");
            assert_eq!(error_code(&answer), "unsupported_media_type");
        }
    }
    // A GET that declares a body must label it too.
    let (status, _, _) = http_call(
        gw.port,
        "GET",
        "/api/v1/plugins",
        &[("content-type", "text/plain")],
        "x=1",
    )
    .await;
    assert_eq!(status, 415);
    let (_, _, metrics) = http_call(gw.port, "GET", "/metrics", &[], "").await;
    assert!(metrics.contains("databot_turns_total 0\n"), "{metrics}");
    let sessions = gw.host.sessions("sessions").await;
    assert!(sessions.history("api:x").await.unwrap().is_empty());
}

/// The `databot` command line as a child process with `env` set; killed (and the test failed)
/// if it has not ended within a minute.
fn cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_databot_cli"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("DATABOT_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the databot binary runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`databot {args:?}` did not end");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn empty_and_short_keys_are_config_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("databot.yaml");
    let path = file.display().to_string();
    let env = [("GW_TEST_EMPTY_KEY", ""), ("GW_TEST_SHORT_KEY", "abc")];
    for (keys, position, says) in [
        ("[\"${GW_TEST_EMPTY_KEY}\"]", 0, "empty"),
        (
            "[\"0123456789abcdef\", \"${GW_TEST_SHORT_KEY}\"]",
            1,
            "at least 16",
        ),
        (
            "[\"0123456789abcdef\", \"0123456789 abcdef\"]",
            1,
            "visible ASCII",
        ),
        (
            "[\"0123456789abcdef\", \"0123456789abcdef\"]",
            1,
            "same key",
        ),
    ] {
        std::fs::write(
            &file,
            format!("gateway:\n  bind: 0.0.0.0:0\n  api_keys: {keys}\n"),
        )
        .unwrap();
        // `config check` reports it; `serve` refuses to start (never listening on 0.0.0.0).
        for args in [
            &["config", "check", &path][..],
            &["--config", &path, "serve"],
        ] {
            let output = cli(args, &env);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{args:?} {keys}: {stderr}");
            assert!(
                stderr.contains(&format!("gateway.api_keys[{position}]")) && stderr.contains(says),
                "{args:?} {keys}: {stderr}"
            );
            assert!(
                !stderr.contains("abcdef") && !stderr.contains("abc\""),
                "{stderr}"
            );
            assert!(!stderr.contains("listening"), "{stderr}");
        }
    }
    std::fs::write(&file, "gateway:\n  api_keys: [\"0123456789abcdef\"]\n").unwrap();
    let output = cli(&["config", "check", &path], &env);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_public_bind_needs_keys_and_an_empty_key_is_none() {
    let public = GatewayConfig {
        bind: "0.0.0.0:8080".into(),
        ..GatewayConfig::default()
    };
    let error = check_bind(&public).unwrap_err().to_string();
    assert!(error.contains("without API keys"), "{error}");
    assert!(check_bind(&GatewayConfig::default()).is_ok());
    let config = databot::config::Config::parse(
        "gateway:\n  bind: 0.0.0.0:8080\n  api_keys: [\"0123456789abcdef\"]\n",
        "t",
        |_| None,
    )
    .unwrap();
    assert!(check_bind(&config.gateway).is_ok());
    // A section built in code does not get around the key rules either.
    for keys in [serde_json::json!([""]), serde_json::json!(["short"])] {
        let weak = GatewayConfig {
            bind: "0.0.0.0:8080".into(),
            api_keys: serde_json::from_value(keys).unwrap(),
            ..GatewayConfig::default()
        };
        let error = check_bind(&weak).unwrap_err().to_string();
        assert!(error.contains("gateway.api_keys[0]"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_lock_out_the_address_not_the_keyed_clients() {
    let gw = gateway(&format!(
        "{TWO_KEYS}  auth_failures:\n    max_failures: 3\n    window_seconds: 60\n"
    ))
    .await;
    let port = gw.port;
    let ip = |last: u8| IpAddr::from([127, 0, 0, last]);
    let call = |source: IpAddr, headers: Vec<(&'static str, &'static str)>| async move {
        http_call_from(source, port, "GET", "/api/v1/plugins", &headers, "").await
    };
    // A stranger at 127.0.0.2 guesses: 401 three times, then 429 with Retry-After for every
    // request without a valid key, on every protected route.
    for guess in ["wrong-0123456789abcdef", "", "key-a-0123456789abcdeX"] {
        let headers = if guess.is_empty() {
            vec![]
        } else {
            vec![("x-api-key", guess)]
        };
        let (status, _, body) = call(ip(2), headers).await;
        assert_eq!(status, 401, "{body}");
    }
    for headers in [vec![("x-api-key", "wrong-0123456789abcdef")], vec![]] {
        let (status, response_headers, body) = call(ip(2), headers).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(error_code(&body), "too_many_auth_failures");
        let retry: u64 = header(&response_headers, "retry-after")
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
    }
    let (status, _, _) = http_call_from(
        ip(2),
        port,
        "POST",
        "/api/v1/message",
        &[JSON],
        r#"{"content": "x"}"#,
    )
    .await;
    assert_eq!(status, 429);
    // Keyed clients are not affected: not at other addresses, not at the stranger's own.
    assert_eq!(call(ip(1), vec![AUTH_A]).await.0, 200);
    assert_eq!(call(ip(2), vec![AUTH_B]).await.0, 200);
    let (status, reply) = say(
        port,
        &[AUTH_A],
        serde_json::json!({"content": "/echo {\"text\": \"ok\"}"}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    // A key that works does not unlock the address for guesses.
    assert_eq!(
        call(ip(2), vec![("x-api-key", "guess-0123456789abcdef")])
            .await
            .0,
        429
    );
    // Another address is counted on its own.
    assert_eq!(
        call(ip(3), vec![("x-api-key", "guess-0123456789abcdef")])
            .await
            .0,
        401
    );
    // Host and Origin refusals are not authentication failures.
    for _ in 0..5 {
        let (status, _, _) = http_call_from(
            ip(5),
            port,
            "GET",
            "/api/v1/plugins",
            &[("host", "evil.example")],
            "",
        )
        .await;
        assert_eq!(status, 403);
    }
    assert_eq!(call(ip(5), vec![]).await.0, 401);
}

/// Open `count` connections to the gateway that never complete a request: a third send
/// nothing, a third part of a request line, a third a request line and part of the headers.
async fn half_open(port: u16, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for n in 0..count {
        let mut socket = TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("connection {n} of the flood: {e}"));
        let partial: &[u8] = match n % 3 {
            0 => b"",
            1 => b"GET /api/v1/plu",
            _ => b"POST /api/v1/message HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le",
        };
        if !partial.is_empty() {
            // The server may already have closed it to make room; that is fine.
            let _ = socket.write_all(partial).await;
        }
        held.push(socket);
    }
    held
}

/// How many of `sockets` the server has closed within `wait` (read gives end of file or an
/// error).
async fn closed_by_server(sockets: Vec<TcpStream>, wait: Duration) -> usize {
    let mut reads = tokio::task::JoinSet::new();
    for mut socket in sockets {
        reads.spawn(async move {
            let mut buffer = [0u8; 512];
            loop {
                match tokio::time::timeout(wait, socket.read(&mut buffer)).await {
                    Err(_) => return false,
                    Ok(Ok(0)) | Ok(Err(_)) => return true,
                    // A refusal (e.g. 408) before the close: keep reading to the end.
                    Ok(Ok(_)) => continue,
                }
            }
        });
    }
    let mut closed = 0;
    while let Some(result) = reads.join_next().await {
        closed += usize::from(result.unwrap());
    }
    closed
}

/// The flood size this process can afford: both ends of every connection live here.
fn affordable_flood(wanted: usize) -> usize {
    let open_files = databot::process_limits::raise_open_file_limit().expect("the open-file limit");
    let affordable = open_files.saturating_sub(2048) / 2;
    assert!(
        affordable >= 1000,
        "the open-file limit ({open_files}) is too low for this test; raise `ulimit -Hn`"
    );
    wanted.min(affordable)
}

/// /health, a keyed GET and a keyed message, each answered within `within`.
async fn still_answering(port: u16, within: Duration) {
    let started = Instant::now();
    let health = tokio::time::timeout(within, http_call(port, "GET", "/health", &[], "")).await;
    assert_eq!(health.expect("/health answers during the flood").0, 200);
    let keyed = tokio::time::timeout(
        within,
        http_call(port, "GET", "/api/v1/plugins", &[AUTH_A], ""),
    )
    .await;
    assert_eq!(
        keyed.expect("a keyed request answers during the flood").0,
        200
    );
    let message = tokio::time::timeout(
        within,
        say(
            port,
            &[AUTH_A],
            serde_json::json!({"content": "/echo {\"text\": \"alive\"}"}),
        ),
    )
    .await
    .expect("a keyed message answers during the flood");
    assert_eq!(message.0, 200, "{}", message.1);
    assert!(message.1["content"].as_str().unwrap().contains("alive"));
    assert!(started.elapsed() < within * 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_half_open_connections_leaves_the_gateway_answering() {
    let flood = affordable_flood(2500);
    let gw = gateway(&format!(
        "{TWO_KEYS}  header_read_timeout_seconds: 8\n  idle_timeout_seconds: 8\n"
    ))
    .await;
    let started = Instant::now();
    let held = half_open(gw.port, flood).await;
    still_answering(gw.port, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "answered while the whole flood was held"
    );
    // Every flood connection is closed by its head deadline, none kept open past it.
    let closed = closed_by_server(held, Duration::from_secs(12)).await;
    assert_eq!(
        closed, flood,
        "all {flood} half-open connections closed by the server"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    still_answering(gw.port, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_the_longest_waiting_connections_make_room() {
    let flood = affordable_flood(2000);
    // Deadlines far away: only making room closes anything here.
    let gw = gateway(&format!(
        "{TWO_KEYS}  max_connections: 200\n  header_read_timeout_seconds: 120\n  idle_timeout_seconds: 120\n"
    ))
    .await;
    let held = half_open(gw.port, flood).await;
    still_answering(gw.port, Duration::from_secs(5)).await;
    let closed = closed_by_server(held, Duration::from_secs(2)).await;
    // At most the cap's worth of the flood is still open.
    assert!(closed >= flood - 200, "{closed} of {flood} closed");
    assert!(
        closed < flood,
        "connections within the cap are not closed early"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_bodies_and_idle_connections_are_cut_at_their_deadlines() {
    let gw = gateway_with(
        "  budgets:\n    timeout_ms: 2500\n",
        "gateway:\n  header_read_timeout_seconds: 1\n  idle_timeout_seconds: 1\n  body_read_timeout_seconds: 1\n",
    )
    .await;
    let port = gw.port;
    let connect = || TcpStream::connect(("127.0.0.1", port));
    let cut_within = |socket: TcpStream, wait: Duration| async move {
        closed_by_server(vec![socket], wait).await == 1
    };

    // Nothing sent, part of a head, and a head dripped a byte at a time: all closed.
    let silent = connect().await.unwrap();
    let mut partial = connect().await.unwrap();
    partial
        .write_all(b"GET /health HTTP/1.1\r\nHost: 1")
        .await
        .unwrap();
    let mut drip = connect().await.unwrap();
    let dripping = tokio::spawn(async move {
        for byte in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaa" {
            if drip.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    let started = Instant::now();
    assert!(cut_within(silent, Duration::from_secs(4)).await);
    assert!(cut_within(partial, Duration::from_secs(4)).await);
    assert!(
        dripping.await.unwrap(),
        "the dripping head was cut before it ended"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // A kept-alive connection goes after its idle deadline.
    let mut kept = connect().await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let read = kept.read(&mut buffer).await.unwrap();
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"));
    assert!(cut_within(kept, Duration::from_secs(4)).await);

    // A body that does not arrive in time: 408, and the connection goes.
    let mut slow_body = connect().await.unwrap();
    slow_body
        .write_all(b"POST /api/v1/message HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"content\": ")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(4), slow_body.read_to_end(&mut answer))
        .await
        .expect("the slow body is cut")
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_read_timeout_seconds"), "{answer}");

    // A request in flight is never cut: a turn that takes longer than every deadline.
    let started = Instant::now();
    let (status, reply) = say(port, &[], serde_json::json!({"content": "/spin {}"})).await;
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "the turn ran its course"
    );
    assert_eq!(status, 200, "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_belongs_to_the_key_that_opened_it() {
    let gw = gateway(TWO_KEYS).await;
    let port = gw.port;
    let (status, opened) = say(
        port,
        &[AUTH_A],
        serde_json::json!({"content": "/echo {\"text\": \"secret plan\"}"}),
    )
    .await;
    assert_eq!(status, 200, "{opened}");
    let chat = opened["chat_id"].as_str().unwrap().to_owned();
    let (status, _) = say(
        port,
        &[AUTH_A],
        serde_json::json!({"content": "more", "chat_id": chat}),
    )
    .await;
    assert_eq!(status, 200);

    // Another key can neither continue it nor stream into it: 404.
    let (status, refused) = say(
        port,
        &[AUTH_B],
        serde_json::json!({"content": "/echo {\"text\": \"hijack\"}", "chat_id": chat}),
    )
    .await;
    assert_eq!(status, 404, "{refused}");
    assert_eq!(refused["error"]["code"], "conversation_not_found");
    let body = serde_json::json!({"content": "x", "chat_id": chat}).to_string();
    let (status, _, streamed) =
        http_call(port, "POST", "/api/v1/stream", &[JSON, AUTH_B], &body).await;
    assert_eq!(status, 404, "{streamed}");
    let sessions = gw.host.sessions("sessions").await;
    let history = sessions.history(&format!("api:{chat}")).await.unwrap();
    assert_eq!(history.len(), 6, "only key A's two turns");
    assert!(!format!("{history:?}").contains("hijack"));

    // A name the client picks is claimed by its first user.
    let (status, _) = say(
        port,
        &[AUTH_B],
        serde_json::json!({"content": "x", "chat_id": "team"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = say(
        port,
        &[AUTH_A],
        serde_json::json!({"content": "x", "chat_id": "team"}),
    )
    .await;
    assert_eq!(status, 404);

    // Generated ids: 128 bits, hex, never repeated.
    let mut ids = std::collections::HashSet::new();
    for _ in 0..40 {
        let (_, opened) = say(port, &[AUTH_B], serde_json::json!({"content": "x"})).await;
        let id = opened["chat_id"].as_str().unwrap().to_owned();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        assert!(ids.insert(id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channel_and_the_sender_are_set_by_the_server() {
    let gw = gateway("").await;
    for body in [
        serde_json::json!({"content": "/echo {\"text\": \"in\"}", "channel": "cli", "chat_id": "default"}),
        serde_json::json!({"content": "/echo {\"text\": \"in\"}", "sender_id": "cli"}),
    ] {
        let (status, answer) = say(gw.port, &[], body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("unknown field")
        );
    }
    let (status, _) = say(
        gw.port,
        &[],
        serde_json::json!({"content": "/echo {\"text\": \"in\"}", "chat_id": "default"}),
    )
    .await;
    assert_eq!(status, 200);
    let sessions = gw.host.sessions("sessions").await;
    assert!(sessions.history("cli:default").await.unwrap().is_empty());
    assert_eq!(sessions.history("api:default").await.unwrap().len(), 4);
}

/// Recall through the gateway: the tool's answer.
async fn recall(port: u16, auth: (&str, &str), chat: Option<&str>) -> String {
    let mut body = serde_json::json!({"content": "/memory {\"action\": \"recall\"}"});
    if let Some(chat) = chat {
        body["chat_id"] = chat.into();
    }
    let (status, reply) = say(port, &[auth], body).await;
    assert_eq!(status, 200, "{reply}");
    reply["content"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memories_follow_the_configured_scope_between_keys_and_chats() {
    // (scope, seen in key A's other chat, seen by key B)
    for (scope, other_chat, other_key) in [
        (None, true, false),
        (Some("user"), true, false),
        (Some("conversation"), false, false),
        (Some("global"), true, true),
    ] {
        let agent = scope.map_or(String::new(), |s| format!("agent:\n  memory_scope: {s}\n"));
        let gw = gateway(&format!("{agent}{TWO_KEYS}")).await;
        let (status, first) = say(
            gw.port,
            &[AUTH_A],
            serde_json::json!({"content": "/memory {\"action\": \"remember\", \"key\": \"warehouse\", \"value\": \"pg-on-5432\"}"}),
        )
        .await;
        assert_eq!(status, 200, "{first}");
        let chat = first["chat_id"].as_str().unwrap().to_owned();
        assert!(
            recall(gw.port, AUTH_A, Some(&chat))
                .await
                .contains("pg-on-5432"),
            "{scope:?}"
        );
        assert_eq!(
            recall(gw.port, AUTH_A, None).await.contains("pg-on-5432"),
            other_chat,
            "{scope:?}: another chat of the same key"
        );
        assert_eq!(
            recall(gw.port, AUTH_B, None).await.contains("pg-on-5432"),
            other_key,
            "{scope:?}: another key"
        );
    }
}

/// A child process killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_binary_keeps_answering_a_flood_past_its_open_file_limit() {
    let flood = affordable_flood(3000);
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().port()
    };
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    std::fs::copy(
        databot_e2e::fixture("echo"),
        dir.path().join("plugins/echo.wasm"),
    )
    .unwrap();
    let config = dir.path().join("databot.yaml");
    std::fs::write(
        &config,
        format!(
            "runtime:\n  plugins_dir: {dir}/plugins\n  data_dir: {dir}/data\n  watch: false\nrag:\n  enabled: false\ngateway:\n  bind: 127.0.0.1:{port}\n  api_keys: [\"{KEY_A}\"]\n  header_read_timeout_seconds: 60\n",
            dir = dir.path().display()
        ),
    )
    .unwrap();
    // The server may open 1,024 files at most: far fewer than the flood's connections.
    let _server = Killed(
        std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 1024 && exec \"$0\" --config \"$1\" serve")
            .arg(env!("CARGO_BIN_EXE_databot_cli"))
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    loop {
        if let Ok(Ok(mut socket)) = tokio::time::timeout(
            Duration::from_millis(200),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        {
            let _ = socket.shutdown().await;
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "databot serve did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held = half_open(port, flood).await;
    still_answering(port, Duration::from_secs(5)).await;
    // Most of the flood was closed to make room; what is left stays under the file limit.
    let closed = closed_by_server(held, Duration::from_secs(2)).await;
    assert!(closed >= flood - 1024, "{closed} of {flood} closed");
    still_answering(port, Duration::from_secs(5)).await;
}
