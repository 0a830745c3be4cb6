//! The MCP server end to end, driven by the official Python SDK (`mcp`, installed by
//! `.ci/python-deps.sh` when missing): over stdio (`databot mcp` as a child process) and over
//! Streamable HTTP on the gateway. Tools with their schemas, tool errors that leave the session
//! working (bad arguments, a trapping plugin), connector and health resources, unknown
//! resources, `list_changed` after a hot load and a removal, API keys and Origin/Host checks,
//! gateway shutdown with open MCP streams, W3C trace context from `_meta`.

use std::path::Path;
use std::time::Duration;

use databot_e2e::{TestHost, fixture, http_call, process_folder};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "mcp-test-key-0123456789";

/// Plugin settings shared by both transports (the runtime part of the config).
const PLUGINS: &str = r#"
plugins:
  echo:
    permissions:
      state: true
      connectors: [echo_connector]
  hostile:
    budgets:
      timeout_ms: 2000
"#;

/// Run `tests/mcp/client.py` with `settings`; its JSON report, which must show no failure.
async fn python_client(settings: Value) -> Value {
    let report = python_client_report(settings).await;
    assert!(
        report.get("fatal").is_none(),
        "the client failed: {report:#}"
    );
    report
}

/// Run `tests/mcp/client.py` with `settings`; its JSON report (`fatal` when it gave up).
async fn python_client_report(settings: Value) -> Value {
    databot_e2e::python::ensure_packages();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp/client.py");
    let run = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(settings.to_string())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the MCP client finishes within 4 minutes")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "the client printed no JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    report
}

/// What both transports must show for the plugins `echo` and `echo_connector`.
fn assert_session(out: &Value) {
    assert_eq!(out["server"], "databot", "{out:#}");
    // Only notifications reached the client's handler: no unparsable output, no stray errors.
    let notifications = out["notifications"].as_array().expect("notifications");
    assert!(
        notifications
            .iter()
            .all(|n| n.as_str().is_some_and(|n| n.starts_with("notifications/"))),
        "{notifications:?}"
    );
    assert_eq!(out["tools_list_changed"], true, "{out:#}");
    assert_eq!(out["resources"], true, "{out:#}");

    // Every tool with its description and JSON Schema.
    let tools = out["tools"].as_object().expect("a tool map");
    for name in ["echo", "counter", "read_config", "ping_connector"] {
        assert!(tools.contains_key(name), "{name} missing: {out:#}");
    }
    let echo = &tools["echo"];
    assert_eq!(echo["description"], "Return the text.");
    assert_eq!(echo["input_schema"]["type"], "object");
    assert_eq!(
        echo["input_schema"]["properties"]["text"]["type"], "string",
        "{echo:#}"
    );
    assert!(
        echo["input_schema"]["required"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("text"))),
        "{echo:#}"
    );

    // A call: text content plus structured content.
    let call = &out["echo"];
    assert_eq!(call["is_error"], false, "{call:#}");
    assert_eq!(call["structured"]["text"], "hi from mcp", "{call:#}");
    let text: Value = serde_json::from_str(call["text"].as_str().unwrap()).unwrap();
    assert_eq!(text["text"], "hi from mcp");

    // Bad calls are tool errors with a readable reason, and the session goes on.
    for (case, needle) in [
        ("missing_argument", "text"),
        ("wrong_type", "invalid_input"),
        ("unknown_tool", "no_such_tool"),
    ] {
        let result = &out[case];
        assert_eq!(result["is_error"], true, "{case}: {result:#}");
        let message = result["text"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{case}: {message}");
    }
    assert!(
        out["missing_argument"]["text"]
            .as_str()
            .unwrap()
            .contains("invalid_input")
    );
    assert_eq!(out["echo_after_errors"]["is_error"], false, "{out:#}");
    assert_eq!(out["echo_after_errors"]["structured"]["text"], "still here");

    // Resources: the health overview and one per connector.
    let resources = out["resources_list"].as_object().expect("a resource map");
    let health = &resources["databot://health"];
    assert_eq!(health["mime_type"], "application/json");
    let connector = &resources["connector://echo_connector"];
    assert_eq!(connector["name"], "echo_connector");
    assert!(
        connector["description"].as_str().unwrap().contains("ping"),
        "{connector:#}"
    );
    assert_eq!(resources.len(), 2, "{resources:?}");

    let health = &out["health"]["json"];
    let connectors = health["connectors"].as_array().expect("connectors");
    assert_eq!(connectors.len(), 1, "{health:#}");
    assert_eq!(connectors[0]["name"], "echo_connector");
    assert_eq!(connectors[0]["status"], "healthy");
    let plugins: Vec<&str> = health["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(plugins.contains(&"echo") && plugins.contains(&"echo_connector"));

    let read = &out["connector"];
    assert_eq!(read["uri"], "connector://echo_connector");
    assert_eq!(read["mime_type"], "application/json");
    assert_eq!(
        read["json"],
        json!({"name": "echo_connector", "status": "healthy", "message": "ok", "operations": ["ping"]})
    );

    // Unknown resources are MCP errors, not crashes.
    for case in ["unknown_connector", "unknown_uri"] {
        let error = &out[case];
        assert!(error["exception"].is_string(), "{case}: {error:#}");
        assert!(
            error["message"].as_str().unwrap().contains("no resource"),
            "{case}: {error:#}"
        );
    }
}

/// Hot load of `hostile`, its crashing tools, then its removal.
fn assert_hot_reload(out: &Value) {
    assert_eq!(out["list_changed_after_load"], true, "{out:#}");
    assert!(
        out["tools_after_load"]
            .as_object()
            .is_some_and(|t| t.contains_key("trap") && t.contains_key("echo")),
        "{out:#}"
    );
    for case in ["trap", "panic"] {
        let result = &out[case];
        assert_eq!(result["is_error"], true, "{case}: {result:#}");
        assert!(
            result["text"].as_str().unwrap().contains("trap"),
            "{case}: {result:#}"
        );
    }
    assert_eq!(out["echo_after_trap"]["is_error"], false, "{out:#}");
    assert_eq!(out["echo_after_trap"]["structured"]["text"], "survived");
    assert_eq!(out["list_changed_after_remove"], true, "{out:#}");
    let after = out["tools_after_remove"].as_object().expect("tools");
    assert!(
        !after.contains_key("trap") && after.contains_key("echo"),
        "{out:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_serves_tools_resources_errors_and_list_changed() {
    let dir = tempfile::tempdir().unwrap();
    let config = process_folder(dir.path(), &["echo", "echo_connector"], true, PLUGINS);
    let plugins = dir.path().join("plugins");
    let errlog = dir.path().join("stderr.log");
    let out = python_client(json!({
        "transport": "stdio",
        "command": env!("CARGO_BIN_EXE_databot_cli"),
        // Debug logging on purpose: logs must go to stderr, never into the protocol.
        "args": ["--config", config, "--log", "debug", "mcp"],
        "cwd": dir.path(),
        "errlog": errlog,
        "plugins_dir": plugins,
        "hot_plugin": fixture("hostile"),
    }))
    .await;
    let log = std::fs::read_to_string(&errlog).unwrap_or_default();
    assert!(out["protocol_version"].is_string(), "{out:#}\n{log}");
    assert_session(&out);
    assert_hot_reload(&out);
    assert!(log.contains("plugin loaded"), "logs go to stderr: {log}");
}

/// A gateway with keys (and `gateway_yaml` added to its section) over a watched host with
/// `echo` and `echo_connector`.
async fn gateway(
    mcp_yaml: &str,
    gateway_yaml: &str,
) -> (TestHost, u16, databot::runtime::hotload::HotLoader) {
    let host = TestHost::start(
        &format!("  watch: true\n{PLUGINS}{mcp_yaml}"),
        &["echo", "echo_connector"],
    )
    .await
    .unwrap();
    host.load_builtin("offline").await;
    let watcher = host.runtime.watch().unwrap();
    let port = host
        .start_gateway(
            "offline",
            &format!(
                "gateway:\n  api_keys: [\"{KEY}\"]\n  rate_limit:\n    requests: 100000\n  cors_origins: [\"https://app.example.com:443\"]\n{gateway_yaml}"
            ),
        )
        .await;
    (host, port, watcher)
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;
const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");
const JSON_BODY: (&str, &str) = ("content-type", "application/json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_serves_the_same_session_behind_the_api_keys() {
    let (host, port, _watcher) = gateway("", "").await;
    let bearer = format!("Bearer {KEY}");
    let out = python_client(json!({
        "transport": "http",
        "url": format!("http://127.0.0.1:{port}/mcp"),
        "headers": { "Authorization": bearer },
        "plugins_dir": host.plugins_dir(),
        "hot_plugin": fixture("hostile"),
    }))
    .await;
    assert_session(&out);
    assert_hot_reload(&out);

    // The same client without a key, or with a wrong one, does not get in.
    for headers in [json!({}), json!({ "Authorization": "Bearer wrong" })] {
        let refused = python_client_report(json!({
            "transport": "http",
            "url": format!("http://127.0.0.1:{port}/mcp"),
            "headers": headers,
        }))
        .await;
        assert!(refused["fatal"].is_string(), "{refused:#}");
        assert_eq!(refused["http_statuses"], json!([401]), "{refused:#}");
        assert!(refused.get("tools").is_none(), "{refused:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_checks_keys_origin_and_host() {
    let (_host, port, _watcher) = gateway(
        "",
        "  allowed_hosts: [\"bot.example.com\"]\n  allowed_origins: [\"https://ide.example.com:443\"]\n",
    )
    .await;
    let bearer = format!("Bearer {KEY}");
    let auth = ("authorization", bearer.as_str());

    let (status, _, body) = http_call(port, "POST", "/mcp", &[JSON_BODY, ACCEPT], INITIALIZE).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("missing_api_key"), "{body}");
    let (status, _, _) = http_call(
        port,
        "POST",
        "/mcp",
        &[JSON_BODY, ACCEPT, ("authorization", "Bearer nope")],
        INITIALIZE,
    )
    .await;
    assert_eq!(status, 401);
    let (status, headers, body) = http_call(
        port,
        "POST",
        "/mcp",
        &[JSON_BODY, ACCEPT, ("x-api-key", KEY)],
        INITIALIZE,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        headers.iter().any(|(n, _)| n == "mcp-session-id"),
        "{headers:?}"
    );
    assert!(body.contains("databot"), "{body}");

    // DNS rebinding: a foreign Origin is refused even with a valid key; loopback, CORS and
    // configured origins pass.
    for (origin, expected) in [
        ("http://evil.example", 403),
        ("https://app.example.com.evil.example", 403),
        ("null", 403),
        ("http://localhost:5173", 200),
        ("http://127.0.0.1:9999", 200),
        ("https://app.example.com", 200),
        ("https://ide.example.com", 200),
    ] {
        let (status, _, body) = http_call(
            port,
            "POST",
            "/mcp",
            &[JSON_BODY, ACCEPT, auth, ("origin", origin)],
            INITIALIZE,
        )
        .await;
        assert_eq!(status, expected, "origin {origin}: {body}");
    }

    // Host: loopback and configured names pass, any other is refused.
    for (host_header, expected) in [
        ("evil.example", 403),
        (&*format!("evil.example:{port}"), 403),
        ("bot.example.com", 200),
        (&*format!("localhost:{port}"), 200),
    ] {
        let status = post_with_host(port, host_header, &bearer).await;
        assert_eq!(status, expected, "host {host_header}");
    }

    // Other routes are unaffected by the MCP checks.
    let (status, _, _) = http_call(
        port,
        "GET",
        "/health",
        &[("origin", "http://evil.example")],
        "",
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_mcp_can_be_switched_off() {
    let (_host, port, _watcher) = gateway("mcp:\n  http: false\n", "").await;
    let bearer = format!("Bearer {KEY}");
    let (status, _, _) = http_call(
        port,
        "POST",
        "/mcp",
        &[JSON_BODY, ACCEPT, ("authorization", &bearer)],
        INITIALIZE,
    )
    .await;
    assert_eq!(status, 404);
}

/// POST an initialize with a chosen `Host` header; the status code.
async fn post_with_host(port: u16, host: &str, bearer: &str) -> u16 {
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nauthorization: {bearer}\r\ncontent-length: {}\r\n\r\n{INITIALIZE}",
        INITIALIZE.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 64];
    let read = socket.read(&mut head).await.unwrap();
    String::from_utf8_lossy(&head[..read])
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_shutdown_ends_open_mcp_streams() {
    use std::sync::Arc;

    let host = TestHost::start("", &["echo"]).await.unwrap();
    host.load_builtin("offline").await;
    let config = databot::config::Config::parse("", "gateway.yaml", |_| None).unwrap();
    let sessions = host.sessions("sessions").await;
    let agent = Arc::new(host.agent("offline", false).await);
    let bus = Arc::new(databot::bus::MemoryBus::new(
        agent,
        databot::bus::BusLimits::default(),
    ));
    let state = databot::gateway::GatewayState::new(
        &config.gateway,
        host.runtime.clone(),
        bus,
        sessions,
        "offline".to_owned(),
        None,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway = config.gateway.clone();
    let server = tokio::spawn(async move {
        databot::gateway::serve_on(listener, state, &gateway, async {
            let _ = stopped.await;
        })
        .await
    });

    // A session with its server-to-client event stream open.
    let (status, headers, body) =
        http_call(port, "POST", "/mcp", &[JSON_BODY, ACCEPT], INITIALIZE).await;
    assert_eq!(status, 200, "{body}");
    let session = headers
        .iter()
        .find(|(n, _)| n == "mcp-session-id")
        .map(|(_, v)| v.clone())
        .expect("a session id");
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let (status, _, _) = http_call(
        port,
        "POST",
        "/mcp",
        &[JSON_BODY, ACCEPT, ("mcp-session-id", &session)],
        initialized,
    )
    .await;
    assert_eq!(status, 202);
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!(
        "GET /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\nmcp-session-id: {session}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 256];
    let read = stream.read(&mut head).await.unwrap();
    assert!(
        String::from_utf8_lossy(&head[..read]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head[..read])
    );

    // The stream is open; shutting down must not wait for it forever.
    stop.send(()).unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(10), server).await;
    assert!(
        matches!(finished, Ok(Ok(Ok(())))),
        "the gateway did not shut down with an MCP stream open: {finished:?}"
    );
}

/// The W3C trace context in a `tools/call` request's `_meta` parents the `mcp.tools/call` span,
/// and the runtime's spans of that call sit below it (exported to a real OTLP receiver).
#[tokio::test(flavor = "current_thread")]
async fn meta_traceparent_parents_the_tool_call_span() {
    use databot::config::{OtlpProtocol, TelemetryConfig};
    use databot_e2e::otlp::OtlpReceiver;

    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT_ID: &str = "00f067aa0ba902b7";

    let receiver = OtlpReceiver::http().await;
    let settings = TelemetryConfig {
        endpoint: Some(receiver.endpoint.clone()),
        protocol: Some(OtlpProtocol::HttpProtobuf),
        ..TelemetryConfig::default()
    }
    .resolve(|_| None)
    .expect("valid settings")
    .expect("export on");
    let (subscriber, guard) =
        databot::telemetry::subscriber(Some(&settings), "warn").expect("exporter builds");
    // Current-thread runtime: every task of this test runs under this subscriber.
    let _default = databot_e2e::otlp::set_thread_subscriber(subscriber);

    let host = TestHost::start("", &["echo"]).await.unwrap();
    host.load_builtin("offline").await;
    let port = host.start_gateway("offline", "").await;
    let (status, headers, body) =
        http_call(port, "POST", "/mcp", &[JSON_BODY, ACCEPT], INITIALIZE).await;
    assert_eq!(status, 200, "{body}");
    let session = headers
        .iter()
        .find(|(n, _)| n == "mcp-session-id")
        .map(|(_, v)| v.clone())
        .expect("a session id");
    let session_header = ("mcp-session-id", session.as_str());
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let (status, _, _) = http_call(
        port,
        "POST",
        "/mcp",
        &[JSON_BODY, ACCEPT, session_header],
        initialized,
    )
    .await;
    assert_eq!(status, 202);
    let call = json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {
            "name": "echo",
            "arguments": {"text": "traced"},
            "_meta": {"traceparent": format!("00-{TRACE_ID}-{PARENT_ID}-01")}
        }
    });
    let (status, _, body) = http_call(
        port,
        "POST",
        "/mcp",
        &[JSON_BODY, ACCEPT, session_header],
        &call.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("traced"), "{body}");

    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::task::spawn_blocking(move || guard.force_flush())
        .await
        .expect("flush task")
        .expect("flush");
    let spans = receiver
        .wait_for(Duration::from_secs(10), |spans| {
            spans.iter().any(|s| s.name == "mcp.tools/call")
        })
        .await;
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let span = spans
        .iter()
        .find(|s| s.name == "mcp.tools/call")
        .unwrap_or_else(|| panic!("no mcp.tools/call span in {names:?}"));
    assert_eq!(span.trace_id, TRACE_ID, "{span:?}");
    assert_eq!(span.parent_span_id, PARENT_ID, "{span:?}");
    assert_eq!(span.str_attr("tool"), Some("echo"), "{span:?}");
    assert!(
        spans
            .iter()
            .any(|s| s.parent_span_id == span.span_id && s.trace_id == TRACE_ID),
        "the runtime's spans of the call are children of mcp.tools/call: {spans:#?}"
    );
}

/// A POST to `/mcp` with the JSON body and `Accept` headers every MCP client sends.
async fn post_mcp(
    port: u16,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut all = vec![JSON_BODY, ACCEPT];
    all.extend_from_slice(headers);
    http_call(port, "POST", "/mcp", &all, body).await
}

/// The JSON-RPC message in an answer to a POST: the body itself (`application/json`) or the
/// `data:` line of the SSE event that carries it.
fn rpc_answer(body: &str) -> Value {
    let text = body
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .find(|data| data.starts_with('{'))
        .unwrap_or(body);
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON-RPC ({e}): {body}"))
}

/// An initialised MCP session over HTTP with the test key: its id.
async fn open_http_session(port: u16) -> String {
    let key = ("x-api-key", KEY);
    let (status, headers, body) = post_mcp(port, &[key], INITIALIZE).await;
    assert_eq!(status, 200, "{body}");
    let session = headers
        .iter()
        .find(|(n, _)| n == "mcp-session-id")
        .map(|(_, v)| v.clone())
        .expect("a session id");
    let (status, _, _) = post_mcp(
        port,
        &[key, ("mcp-session-id", &session)],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(status, 202);
    session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sessions_used_only_for_tool_calls_stay_open_and_idle_ones_close() {
    let (_host, port, _watcher) = gateway("mcp:\n  session_idle_seconds: 2\n", "").await;
    let key = ("x-api-key", KEY);
    let busy = open_http_session(port).await;
    let idle = open_http_session(port).await;
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#;
    // Twice the idle time of nothing but direct tool calls: the session stays.
    for _ in 0..20 {
        let (status, _, body) = post_mcp(port, &[key, ("mcp-session-id", &busy)], call).await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The session that saw nothing is gone (404: the client opens a new one).
    let (status, _, _) = post_mcp(port, &[key, ("mcp-session-id", &idle)], call).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_direct_tool_calls_answer_as_the_library_does() {
    let (_host, port, _watcher) = gateway("", "").await;
    let key = ("x-api-key", KEY);
    let session = open_http_session(port).await;
    let session = ("mcp-session-id", session.as_str());

    for call in [
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi","tag":3}}}"#,
        r#"{"jsonrpc":"2.0","id":"s-6","method":"tools/call","params":{"name":"echo","arguments":{"text":7}}}"#,
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"no_such_tool","arguments":{}}}"#,
    ] {
        // Direct: one JSON body.
        let (status, headers, direct) = post_mcp(port, &[key, session], call).await;
        assert_eq!(status, 200, "{direct}");
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == "content-type" && v.starts_with("application/json")),
            "{headers:?}"
        );
        // Through the library (a standard `Mcp-Method` header routes it there): an SSE event.
        let (status, headers, library) =
            post_mcp(port, &[key, session, ("mcp-method", "tools/call")], call).await;
        assert_eq!(status, 200, "{library}");
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == "content-type" && v.starts_with("text/event-stream")),
            "{headers:?}"
        );
        assert_eq!(rpc_answer(&direct), rpc_answer(&library), "{call}");
    }

    // An unknown or closed session is the library's 404, keys are still checked first, and a
    // body over the limit is refused.
    let call = r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#;
    let (status, _, _) = post_mcp(port, &[key, ("mcp-session-id", "no-such-session")], call).await;
    assert_eq!(status, 404);
    let (status, _, _) = post_mcp(port, &[session], call).await;
    assert_eq!(status, 401);
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{}"}}}}}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let (status, _, _) = post_mcp(port, &[key, session], &big).await;
    assert_eq!(status, 413);
    // The session still works.
    let (status, _, body) = post_mcp(port, &[key, session], call).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        rpc_answer(&body)["result"]["isError"],
        json!(false),
        "{body}"
    );
}

/// `databot mcp` over a folder with `echo` and `hostile`, driven line by line.
struct RawStdio {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    answers: tokio::sync::mpsc::UnboundedReceiver<Value>,
    _dir: tempfile::TempDir,
}

impl RawStdio {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = process_folder(dir.path(), &["echo", "hostile"], false, PLUGINS);
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_databot_cli"))
            .arg("--config")
            .arg(&config)
            .arg("mcp")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, answers) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout is not JSON-RPC ({e}): {line}"));
                if sender.send(value).is_err() {
                    return;
                }
            }
        });
        let mut raw = Self {
            child,
            stdin,
            answers,
            _dir: dir,
        };
        raw.send(INITIALIZE).await;
        assert_eq!(raw.answer().await["id"], json!(1));
        raw.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await;
        raw
    }

    async fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.write_all(b"\n").await.unwrap();
    }

    async fn answer(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(30), self.answers.recv())
            .await
            .expect("an answer in time")
            .expect("databot mcp is running")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_pipelines_calls_cancels_and_refuses_overlong_lines() {
    let mut raw = RawStdio::start().await;

    // Twenty calls written at once come back, each answered once, in any order.
    let batch: String = (100..120)
        .map(|id| {
            format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{{\"text\":\"n{id}\"}}}}}}\n"
            )
        })
        .collect();
    raw.stdin.write_all(batch.as_bytes()).await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 100..120 {
        let answer = raw.answer().await;
        let id = answer["id"].as_i64().unwrap();
        assert_eq!(answer["result"]["isError"], json!(false), "{answer}");
        assert!(
            answer["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains(&format!("n{id}")),
            "{answer}"
        );
        assert!(seen.insert(id), "answered twice: {answer}");
    }

    // A call cancelled while it runs is not answered (it still runs to its end, here spin's
    // 2 s timeout); the next one is.
    raw.send(r#"{"jsonrpc":"2.0","id":200,"method":"tools/call","params":{"name":"spin","arguments":{}}}"#)
        .await;
    raw.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":200,"reason":"test"}}"#)
        .await;
    raw.send(r#"{"jsonrpc":"2.0","id":201,"method":"tools/call","params":{"name":"echo","arguments":{"text":"after"}}}"#)
        .await;
    assert_eq!(raw.answer().await["id"], json!(201));
    // `spin` ends with a timeout error after 2 s; nothing arrives for it.
    let late = tokio::time::timeout(Duration::from_secs(4), raw.answers.recv()).await;
    assert!(late.is_err(), "a cancelled call was answered: {late:?}");

    // A line over 16 MiB is refused with a JSON-RPC error and the session goes on.
    let long = format!(
        r#"{{"jsonrpc":"2.0","id":300,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{}"}}}}}}"#,
        "y".repeat(16 * 1024 * 1024)
    );
    raw.send(&long).await;
    let refused = raw.answer().await;
    assert_eq!(refused["id"], Value::Null, "{refused}");
    assert_eq!(refused["error"]["code"], json!(-32600), "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("longer than"),
        "{refused}"
    );
    raw.send(r#"{"jsonrpc":"2.0","id":301,"method":"tools/list"}"#)
        .await;
    let listed = raw.answer().await;
    assert_eq!(listed["id"], json!(301));
    assert!(
        listed["result"]["tools"].as_array().unwrap().len() > 2,
        "{listed}"
    );

    // Closing stdin ends the server cleanly, after answering what is in flight.
    raw.send(r#"{"jsonrpc":"2.0","id":400,"method":"tools/call","params":{"name":"echo","arguments":{"text":"last"}}}"#)
        .await;
    drop(raw.stdin);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(30), raw.answers.recv())
            .await
            .unwrap()
            .unwrap()["id"],
        json!(400)
    );
    let status = tokio::time::timeout(Duration::from_secs(30), raw.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}
