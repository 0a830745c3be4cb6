//! Hostile guests are contained with a clear error while a well-behaved plugin keeps answering.

use std::time::{Duration, Instant};

use databot::runtime::ErrorKind;
use databot_e2e::{TestHost, serve_http};

const CONFIG: &str = r#"
  budgets:
    timeout_ms: 500
    memory_mb: 32
  circuit_breaker:
    failure_threshold: 1000
plugins:
  hostile:
    budgets:
      max_output_bytes: 65536
    permissions:
      http:
        allow: ["allowed.invalid", "localhost", "127.0.0.1", "169.254.169.254", "10.0.0.1"]
      filesystem:
        - { host: "{dir}/granted", guest: /data, mode: ro }
  echo:
    permissions:
      state: true
      connectors: [echo_connector]
    config:
      greeting: hello
"#;

async fn host() -> TestHost {
    TestHost::start_with(CONFIG, &["hostile", "echo", "echo_connector"], |dir| {
        std::fs::create_dir_all(dir.join("granted"))?;
        std::fs::write(dir.join("granted/ok.txt"), "inside")?;
        std::fs::write(dir.join("secret.txt"), "outside")
    })
    .await
    .expect("host starts")
}

async fn hostile(host: &TestHost, tool: &str, args: &str) -> databot::runtime::CallError {
    match host.runtime.call_tool(tool, args).await {
        Ok(value) => panic!("{tool} should have failed, returned {value}"),
        Err(error) => error,
    }
}

/// Runs `tool` (three times at once) while echo answers concurrently; echo must never fail.
async fn contained(host: &TestHost, tool: &str, args: &str) -> databot::runtime::CallError {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let runtime = host.runtime.clone();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let answered = std::sync::Arc::new(AtomicU64::new(0));
    let (flag, count) = (stop.clone(), answered.clone());
    let well_behaved = tokio::spawn(async move {
        while !flag.load(Ordering::Relaxed) {
            let result = runtime.call_tool("echo", r#"{"text":"still here"}"#).await;
            assert!(result.expect("echo keeps answering").contains("still here"));
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    let (first, second, third) = tokio::join!(
        hostile(host, tool, args),
        hostile(host, tool, args),
        hostile(host, tool, args)
    );
    assert_eq!(first.kind, second.kind);
    assert_eq!(first.kind, third.kind);
    // Echo must have answered, during or right after the hostile calls.
    while answered.load(Ordering::Relaxed) < 3 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stop.store(true, Ordering::Relaxed);
    well_behaved.await.expect("echo never failed");
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_is_stopped_at_the_deadline() {
    let host = host().await;
    let error = contained(&host, "spin", "{}").await;
    assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
    let started = Instant::now();
    let error = hostile(&host, "spin", "{}").await;
    let elapsed = started.elapsed();
    assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
    assert!(error.message.contains("500 ms deadline"), "{error}");
    assert!(
        elapsed < Duration::from_millis(500 + 100 + 150),
        "stopped after {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_growth_past_the_cap_is_refused() {
    let host = host().await;
    let error = contained(&host, "grow_memory", r#"{"amount": 100}"#).await;
    assert_eq!(error.kind, ErrorKind::MemoryExceeded, "{error}");
    assert!(error.message.contains("32 MiB budget"), "{error}");
    // Under the cap it works.
    assert_eq!(
        host.runtime
            .call_tool("grow_memory", r#"{"amount": 4}"#)
            .await
            .unwrap(),
        "4"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_overflow_is_a_trap() {
    let host = host().await;
    let error = contained(&host, "deep_recursion", "{}").await;
    assert_eq!(error.kind, ErrorKind::Trap, "{error}");
    assert!(error.message.contains("stack overflow"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_is_a_trap_with_the_message() {
    let host = host().await;
    let error = contained(&host, "panic", "{}").await;
    assert_eq!(error.kind, ErrorKind::Trap, "{error}");
    assert!(error.message.contains("panicked on purpose"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_trap_is_contained() {
    let host = host().await;
    let error = contained(&host, "trap", "{}").await;
    assert_eq!(error.kind, ErrorKind::Trap, "{error}");
    assert!(error.message.contains("unreachable"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_output_is_refused() {
    let host = host().await;
    let error = contained(&host, "big_output", r#"{"amount": 200000}"#).await;
    assert_eq!(error.kind, ErrorKind::OutputTooLarge, "{error}");
    assert!(error.message.contains("max_output_bytes"), "{error}");
    assert!(
        host.runtime
            .call_tool("big_output", r#"{"amount": 10}"#)
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_a_host_not_granted_is_denied_with_the_config_line() {
    let host = host().await;
    let error = contained(&host, "http_get", r#"{"target": "http://example.com/"}"#).await;
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    assert!(error.message.contains("HttpRequestDenied"), "{error}");
    assert!(
        error
            .message
            .contains("plugins.hostile.permissions.http.allow"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_private_addresses_is_denied_without_allow_private() {
    let host = host().await;
    let port = serve_http("secret", "text/plain").await;
    for target in [
        format!("http://127.0.0.1:{port}/"),
        // A name is checked after DNS resolution, not by its spelling.
        format!("http://localhost:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/".to_owned(),
    ] {
        let error = hostile(&host, "http_get", &format!(r#"{{"target": "{target}"}}"#)).await;
        assert_eq!(error.kind, ErrorKind::Denied, "{target}: {error}");
        assert!(
            error.message.contains("allow_private: true"),
            "{target}: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_is_confined_to_the_preopen() {
    let host = host().await;
    assert_eq!(
        host.runtime
            .call_tool("read_file", r#"{"target": "/data/ok.txt"}"#)
            .await
            .unwrap(),
        "\"inside\""
    );
    let outside = host.dir.path().join("secret.txt").display().to_string();
    for target in [
        "/data/../secret.txt",
        "/data/../../etc/passwd",
        "/etc/passwd",
        outside.as_str(),
    ] {
        let error = hostile(&host, "read_file", &format!(r#"{{"target": "{target}"}}"#)).await;
        assert_eq!(error.kind, ErrorKind::Denied, "{target}: {error}");
    }
    let error = hostile(&host, "write_file", r#"{"target": "/data/new.txt"}"#).await;
    assert_eq!(error.kind, ErrorKind::Denied, "read-only preopen: {error}");
    assert!(!host.dir.path().join("granted/new.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_is_empty() {
    let host = host().await;
    // SAFETY: tests in this binary do not read this variable concurrently.
    unsafe { std::env::set_var("DATABOT_TEST_SECRET", "hunter2") };
    let output = host.runtime.call_tool("read_env", "{}").await.unwrap();
    let value: serde_json::Value = serde_json::from_str(&output).unwrap();
    assert_eq!(value["vars"], serde_json::json!([]), "{output}");
    assert!(!output.contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_not_granted_are_denied_and_granted_ones_work() {
    let host = host().await;
    let error = hostile(&host, "call_connector", r#"{"target": "echo_connector"}"#).await;
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    assert!(
        error
            .message
            .contains(r#"plugins.hostile.permissions.connectors: ["echo_connector"]"#),
        "{error}"
    );
    let output = host
        .runtime
        .call_tool(
            "ping_connector",
            r#"{"connector": "echo_connector", "text": "hi"}"#,
        )
        .await
        .unwrap();
    assert_eq!(output, r#"{"pong":"hi"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_are_validated_against_the_schema_before_the_call() {
    let host = host().await;
    for (args, expect) in [
        (r#"{"text": 5}"#, "/text"),
        (r#"{}"#, "\"text\" is a required property"),
        ("not json", "not valid JSON"),
        ("[1]", "must be a JSON object"),
    ] {
        let error = host.runtime.call_tool("echo", args).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidInput, "{args}: {error}");
        assert!(error.message.contains(expect), "{args}: {error}");
    }
    let error = host
        .runtime
        .call_tool("no_such_tool", "{}")
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_config_capabilities_work_when_granted() {
    let host = host().await;
    assert_eq!(
        host.runtime
            .call_tool("counter", r#"{"key": "a"}"#)
            .await
            .unwrap(),
        "1"
    );
    assert_eq!(
        host.runtime
            .call_tool("counter", r#"{"key": "a"}"#)
            .await
            .unwrap(),
        "2"
    );
    assert_eq!(
        host.runtime
            .call_tool("read_config", r#"{"key": "greeting"}"#)
            .await
            .unwrap(),
        "\"hello\""
    );
    assert_eq!(
        host.runtime
            .call_tool("read_config", r#"{"key": "missing"}"#)
            .await
            .unwrap(),
        "null"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_denied_without_a_grant() {
    let host = TestHost::start("", &["echo"]).await.unwrap();
    let error = host
        .runtime
        .call_tool("counter", r#"{"key": "a"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    assert!(
        error
            .message
            .contains("plugins.echo.permissions.state: true"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_preopen_folder_refuses_the_plugin_with_the_reason() {
    let host = TestHost::start(CONFIG, &["hostile"]).await.unwrap();
    let status = host.runtime.status();
    let hostile = status.iter().find(|s| s.name == "hostile").expect("listed");
    assert_eq!(hostile.state, "refused");
    let reason = hostile.last_error.as_deref().unwrap();
    assert!(
        reason.contains("plugins.hostile.permissions.filesystem"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_faults_open_the_circuit_breaker() {
    let host = TestHost::start(
        "  budgets:\n    timeout_ms: 200\n  circuit_breaker:\n    failure_threshold: 2\n    open_seconds: 60\n",
        &["hostile", "echo"],
    )
    .await
    .unwrap();
    for _ in 0..2 {
        assert_eq!(hostile(&host, "trap", "{}").await.kind, ErrorKind::Trap);
    }
    let error = hostile(&host, "big_output", r#"{"amount": 1}"#).await;
    assert_eq!(error.kind, ErrorKind::CircuitOpen, "{error}");
    let status = host.runtime.status();
    let hostile_status = status.iter().find(|s| s.name == "hostile").unwrap();
    assert_eq!(
        hostile_status.breaker,
        Some(databot::runtime::BreakerState::Open)
    );
    // Other plugins are not affected.
    assert!(
        host.runtime
            .call_tool("echo", r#"{"text": "ok"}"#)
            .await
            .is_ok()
    );
}

/// A body the plugin neither finished nor dropped is ended as failed when the call ends: the
/// server sees a cut connection, never a complete request the plugin did not complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_the_plugin_never_finished_never_reaches_the_server_complete() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let received = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("the upload connects");
        let mut bytes = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut bytes)).await;
        bytes
    });
    let config = format!(
        "plugins:\n  hostile:\n    budgets: {{timeout_ms: 1000}}\n    permissions:\n      http:\n        allow: [\"127.0.0.1:{port}\"]\n        allow_private: true\n"
    );
    let host = TestHost::start(&config, &["hostile"])
        .await
        .expect("host starts");
    let result = host
        .runtime
        .call_tool(
            "abandoned_upload",
            &format!(r#"{{"target": "http://127.0.0.1:{port}/upload"}}"#),
        )
        .await;
    let error = result.expect_err("the server never answers: the deadline ends the call");
    assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
    let bytes = received.await.expect("the server task");
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("POST /upload"), "{text:?}");
    assert!(text.contains("partial upload"), "{text:?}");
    assert!(
        !text.contains("\r\n0\r\n\r\n"),
        "the server got a complete chunked request: {text:?}"
    );
}
