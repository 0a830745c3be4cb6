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
    host.tool_err(tool, serde_json::from_str(args).expect("JSON arguments"))
        .await
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_map_past_its_limit_ends_the_call_with_the_limit() {
    let host = host().await;
    let error = hostile(&host, "header_overflow", "{}").await;
    assert_eq!(error.kind, ErrorKind::Trap, "{error}");
    assert!(
        error
            .message
            .contains("header map over the host's limit of 12 KiB"),
        "{error}"
    );
}

/// The allowlist is checked before a connection is counted: a burst of requests the policy
/// refuses never reaches the call's connection limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_policy_refuses_take_no_connection() {
    let host = host().await;
    let answer = host
        .runtime
        .call_tool(
            "many_connections",
            r#"{"target": "http://not-granted.invalid/x", "amount": 100}"#,
        )
        .await
        .expect("refused requests are the guest's to handle");
    assert_eq!(answer, "\"100 sent, 100 refused\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_holds_at_most_its_open_files() {
    let host = host().await;
    let fds_before = databot_e2e::contained::open_descriptors();
    let error = hostile(
        &host,
        "open_files",
        r#"{"target": "/data/ok.txt", "amount": 5000}"#,
    )
    .await;
    assert_eq!(error.kind, ErrorKind::FileLimit, "{error}");
    assert!(
        error.message.contains("64 files open")
            && error
                .message
                .contains("plugins.hostile.budgets.max_open_files"),
        "{error}"
    );
    // The call's files are closed with it.
    assert!(databot_e2e::contained::open_descriptors() <= fds_before + 4);
    // Within the limit, opening files works.
    let opened = host
        .runtime
        .call_tool("open_files", r#"{"target": "/data/ok.txt", "amount": 10}"#)
        .await
        .expect("ten files open");
    assert_eq!(opened, "10");
    // A read stream keeps its file open after the descriptor is dropped: it still counts.
    let error = hostile(
        &host,
        "open_streams",
        r#"{"target": "/data/ok.txt", "amount": 5000}"#,
    )
    .await;
    assert_eq!(error.kind, ErrorKind::FileLimit, "{error}");
    assert!(databot_e2e::contained::open_descriptors() <= fds_before + 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_methods_authorities_and_paths_are_bounded() {
    let host = host().await;
    let answer = host
        .runtime
        .call_tool("request_field_bounds", "{}")
        .await
        .expect("the setters answer");
    let seen: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        seen,
        serde_json::json!({
            "method_32": true,
            "method_33": false,
            "authority_1024": true,
            "authority_1025": false,
            "authority_1m": false,
            "path_8192": true,
            "path_8193": false,
        })
    );
}

// --- What a plugin makes the host hold -------------------------------------------------------
//
// Each attack runs in a child process of this test binary under a memory limit (see
// `databot_e2e::contained`), one hostile call at a time next to a well-behaved plugin, with the
// host's peak RSS and descriptors sampled. The bounds, stated once:

/// The hostile plugin's memory budget in these attacks.
const ATTACK_MEMORY_MB: u64 = 32;
/// Host RSS growth allowed beyond the call's memory budget: allocator slack, the pool slot's
/// page tables, Tokio's buffers and the measuring itself.
const RSS_SLACK_MIB: u64 = 24;
/// The child's `RLIMIT_DATA`: the host, its runtime and one attack fit well within it; an
/// attack that regresses to the review's gigabytes does not.
const CHILD_DATA_LIMIT: u64 = 1536 * 1024 * 1024;
/// The well-behaved neighbour during an attack: median and worst call.
const NEIGHBOUR_P50_MS: u64 = 10;
const NEIGHBOUR_MAX_MS: u64 = 1_000;

const ATTACK_CONFIG: &str = r#"
  budgets:
    timeout_ms: 5000
    memory_mb: 32
  circuit_breaker:
    failure_threshold: 1000
plugins:
  hostile:
    budgets:
      max_connections: 24
    permissions:
      state: true
      http:
        allow: ["127.0.0.1"]
        allow_private: true
  hostile_provider: {}
  echo: {}
"#;

/// The ignored entry a child runs: the case named by `ATTACK_CASE` (nothing without it).
#[test]
#[ignore = "run by the contained-attack tests in a child process"]
fn contained_attack_child() {
    let Some(case) = databot_e2e::contained::child_case() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run_attack(&case));
}

async fn run_attack(case: &str) {
    let _log = databot::telemetry::init(&Default::default(), "info").expect("logging");
    let host = TestHost::start(ATTACK_CONFIG, &["hostile", "hostile_provider", "echo"])
        .await
        .expect("host starts");
    let runtime = host.runtime.clone();
    let neighbour = move || {
        let runtime = runtime.clone();
        async move {
            runtime
                .call_tool("echo", r#"{"text":"still here"}"#)
                .await
                .is_ok_and(|answer| answer.contains("still here"))
        }
    };
    let runtime = host.runtime.clone();
    let outcome = |result: Result<String, databot::runtime::CallError>| match result {
        Ok(answer) => serde_json::json!({"ok": answer}),
        Err(error) => serde_json::json!({"kind": error.kind.as_str(), "error": error.message}),
    };
    match case {
        "http_bodies" => {
            let attack = runtime.call_tool("unsent_requests", r#"{"amount": 5000}"#);
            databot_e2e::contained::measure(neighbour, async { outcome(attack.await) }).await;
        }
        "request_fields" => {
            let attack = runtime.call_tool("long_requests", r#"{"amount": 20000}"#);
            databot_e2e::contained::measure(neighbour, async { outcome(attack.await) }).await;
        }
        "header_maps" => {
            let attack = runtime.call_tool("header_maps", r#"{"amount": 20000}"#);
            databot_e2e::contained::measure(neighbour, async { outcome(attack.await) }).await;
        }
        "stream_events" => {
            let attack = async {
                let (sink, mut events) = databot::events::event_queue(1024, Default::default());
                // A listener slower than the provider: it pauses after every event.
                let listener = tokio::spawn(async move {
                    let mut seen = 0u64;
                    while let Some(event) = events.recv().await {
                        if let databot::events::TurnEvent::Delta { text } = event {
                            seen += text.len() as u64;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    seen
                });
                let request = r#"{"messages":[{"role":"user","content":"flood 100000 200000"}]}"#;
                let result = runtime
                    .provider_chat("hostile_provider", request, Some(sink))
                    .await;
                let seen = listener.await.expect("the listener");
                let mut outcome = outcome(result);
                outcome["listener_bytes"] = seen.into();
                let big = r#"{"messages":[{"role":"user","content":"flood 500 4194304"}]}"#;
                let (sink, _events) = databot::events::event_queue(1024, Default::default());
                let result = runtime
                    .provider_chat("hostile_provider", big, Some(sink))
                    .await;
                outcome["oversized"] = match result {
                    Ok(_) => "accepted".into(),
                    Err(error) => error.kind.as_str().into(),
                };
                outcome
            };
            databot_e2e::contained::measure(neighbour, attack).await;
        }
        "connections" => {
            let (port, _held) = silent_server().await;
            let arguments =
                format!(r#"{{"target": "http://127.0.0.1:{port}/slow", "amount": 300}}"#);
            let attack = runtime.call_tool("many_connections", &arguments);
            databot_e2e::contained::measure(neighbour, async { outcome(attack.await) }).await;
        }
        "connections_everywhere" => {
            // The child's open-file limit is low (the parent sets it): the host's share for
            // outgoing connections runs out, the gateway still accepts.
            let (port, _held) = silent_server().await;
            let gateway = host
                .start_gateway("hostile_provider", "gateway: {}\n")
                .await;
            let arguments =
                format!(r#"{{"target": "http://127.0.0.1:{port}/slow", "amount": 64}}"#);
            let attack = async {
                let calls: Vec<_> = (0..12)
                    .map(|_| {
                        let runtime = runtime.clone();
                        let arguments = arguments.clone();
                        tokio::spawn(async move {
                            runtime.call_tool("many_connections", &arguments).await
                        })
                    })
                    .collect();
                // While every call holds what it could: the gateway answers.
                tokio::time::sleep(Duration::from_millis(150)).await;
                let health = tokio::time::timeout(
                    Duration::from_secs(2),
                    databot_e2e::http_call(gateway, "GET", "/health", &[], ""),
                )
                .await
                .map(|(status, _, _)| status);
                let mut outcomes = Vec::new();
                for call in calls {
                    outcomes.push(outcome(call.await.expect("the call task")));
                }
                serde_json::json!({
                    "calls": outcomes,
                    "health": health.ok(),
                    "limit": runtime.outgoing_connection_limit(),
                })
            };
            databot_e2e::contained::measure(neighbour, attack).await;
        }
        "log_flood" => {
            let attack = runtime.call_tool("log_flood", r#"{"amount": 300000}"#);
            databot_e2e::contained::measure(neighbour, async { outcome(attack.await) }).await;
        }
        "state_flood" => {
            let attack = async {
                let calls: Vec<_> = (0..4)
                    .map(|_| {
                        let runtime = runtime.clone();
                        tokio::spawn(async move {
                            runtime.call_tool("state_flood", r#"{"amount": 300}"#).await
                        })
                    })
                    .collect();
                let mut outcomes = Vec::new();
                for call in calls {
                    outcomes.push(outcome(call.await.expect("the call task")));
                }
                let file = host.dir.path().join("data/state/hostile.state");
                let size = std::fs::metadata(&file).map_or(0, |m| m.len());
                serde_json::json!({"calls": outcomes, "file_bytes": size})
            };
            databot_e2e::contained::measure(neighbour, attack).await;
        }
        other => panic!("no attack named {other}"),
    }
}

/// A loopback server that accepts connections and never answers; keep the handle alive.
async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    (port, held)
}

fn contained_attack(case: &str, open_files: Option<u64>) -> databot_e2e::contained::Contained {
    databot_e2e::contained::run_contained(
        "contained_attack_child",
        case,
        databot_e2e::contained::ChildLimits {
            data_bytes: CHILD_DATA_LIMIT,
            open_files,
        },
    )
}

/// The attack's outcome, and the bounds every attack must keep: host memory within the call's
/// budget plus the slack, the neighbour answering within its bounds.
fn within_bounds(contained: &databot_e2e::contained::Contained) -> &serde_json::Value {
    let report = &contained.report;
    let growth_mib = contained.kib("rss_growth_kib") / 1024;
    assert!(
        growth_mib <= ATTACK_MEMORY_MB + RSS_SLACK_MIB,
        "host RSS grew {growth_mib} MiB during the attack (budget {ATTACK_MEMORY_MB} MiB + {RSS_SLACK_MIB} MiB): {report}"
    );
    assert!(
        report["neighbour_p50_us"].as_u64().unwrap() <= NEIGHBOUR_P50_MS * 1000,
        "the neighbour slowed down: {report}"
    );
    assert!(
        report["neighbour_max_us"].as_u64().unwrap() <= NEIGHBOUR_MAX_MS * 1000,
        "the neighbour stalled: {report}"
    );
    &report["outcome"]
}

#[test]
fn unsent_http_bodies_are_charged_to_the_call_memory_budget() {
    let error = over_the_memory_budget("http_bodies");
    assert!(error.contains("host objects"), "{error}");
}

/// An attack that must end as the call's `memory_exceeded`, naming the key; its error.
fn over_the_memory_budget(case: &str) -> String {
    let contained = contained_attack(case, None);
    let outcome = within_bounds(&contained);
    assert_eq!(outcome["kind"], "memory_exceeded", "{outcome}");
    let error = outcome["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("plugins.hostile.budgets.memory_mb"),
        "{error}"
    );
    error
}

#[test]
fn requests_with_the_longest_fields_are_charged_to_the_call_memory_budget() {
    over_the_memory_budget("request_fields");
}

#[test]
fn header_maps_are_charged_to_the_call_memory_budget() {
    over_the_memory_budget("header_maps");
}

#[test]
fn a_provider_flooding_its_stream_is_held_to_the_queue_and_its_deadline() {
    let contained = contained_attack("stream_events", None);
    let outcome = within_bounds(&contained);
    // 20 GB of events against a listener that pauses after each: the deadline ends it.
    assert_eq!(outcome["kind"], "timeout", "{outcome}");
    assert!(contained.report["attack_ms"].as_u64().unwrap() < 5_000 + 1_000 + 1_000);
    assert!(outcome["listener_bytes"].as_u64().unwrap() > 0, "{outcome}");
    assert_eq!(outcome["oversized"], "output_too_large", "{outcome}");
}

#[test]
fn one_call_holds_at_most_its_connections() {
    let contained = contained_attack("connections", None);
    let outcome = within_bounds(&contained);
    assert_eq!(outcome["kind"], "connection_limit", "{outcome}");
    assert!(
        outcome["error"]
            .as_str()
            .unwrap()
            .contains("plugins.hostile.budgets.max_connections"),
        "{outcome}"
    );
    // Both ends of each connection live in the child: 24 connections, 48 descriptors, and a
    // few for the runtime's own use.
    let fds = contained.report["fds_growth"].as_u64().unwrap();
    assert!(
        fds <= 2 * 24 + 8,
        "{fds} descriptors opened: {}",
        contained.report
    );
    // After the call its ends of the connections are closed; the silent server keeps its own.
    let after = contained.report["fds_after_growth"].as_u64().unwrap();
    assert!(
        after <= 24 + 4,
        "{after} descriptors still open: {}",
        contained.report
    );
}

#[test]
fn outgoing_connections_of_all_calls_leave_the_gateway_its_descriptors() {
    // 1,024 open files: 256 for outgoing connections, 640 for the gateway, the rest reserved.
    let contained = contained_attack("connections_everywhere", Some(1024));
    let outcome = within_bounds(&contained);
    assert_eq!(outcome["limit"], 256, "{outcome}");
    assert_eq!(outcome["health"], 200, "the gateway answered: {outcome}");
    // Twelve calls of 64 connections: each stops at its own 24 (`connection_limit`) or, once
    // the host's 256 are open, is refused the rest, which it may handle (this plugin does);
    // none takes the process's last descriptors.
    let calls = outcome["calls"].as_array().unwrap();
    let refused_by_host = calls.iter().filter(|call| {
        call["ok"].as_str().is_some_and(|ok| {
            let ok = ok.trim_matches('"');
            ok.starts_with("64 sent") && !ok.ends_with(" 0 refused")
        })
    });
    assert!(refused_by_host.count() >= 1, "{outcome}");
    assert!(
        calls
            .iter()
            .all(|call| call["kind"] == "connection_limit" || call["ok"].is_string()),
        "{outcome}"
    );
    assert!(
        !contained.stderr.contains("Too many open files"),
        "the process ran out of descriptors"
    );
}

#[test]
fn a_log_flood_is_cut_to_the_budgets_and_cannot_forge_host_lines() {
    let contained = contained_attack("log_flood", None);
    let outcome = within_bounds(&contained);
    assert_eq!(outcome["ok"], "300000", "{outcome}");
    // 1.2 GB asked for; the call's budget is 256 KiB and every line carries its attribution.
    let plugin_lines: Vec<&str> = contained
        .stderr
        .lines()
        .filter(|line| line.contains("hostile"))
        .collect();
    let plugin_bytes: usize = plugin_lines.iter().map(|line| line.len() + 1).sum();
    assert!(
        plugin_bytes <= 256 * 1024 * 2,
        "{plugin_bytes} bytes of the plugin's lines reached the log"
    );
    assert!(
        contained.stderr.len() < 4 * 1024 * 1024,
        "{}",
        contained.stderr.len()
    );
    assert!(
        contained
            .stderr
            .lines()
            .all(|line| !line.starts_with("2026-12-06T00:00:00.000000Z")),
        "a plugin forged a host log line"
    );
    assert!(
        contained
            .stderr
            .contains("plugins.hostile.budgets.max_log_bytes"),
        "the drops are reported once"
    );
    assert_eq!(
        contained
            .stderr
            .matches("plugins.hostile.budgets.max_log_bytes)")
            .count(),
        1
    );
}

#[test]
fn state_floods_stay_on_disk_within_the_limit_and_stall_no_neighbour() {
    let contained = contained_attack("state_flood", None);
    let outcome = within_bounds(&contained);
    let file_bytes = outcome["file_bytes"].as_u64().unwrap();
    assert!(
        file_bytes > 0 && file_bytes <= 32 * 1024 * 1024,
        "the state file holds {file_bytes} bytes"
    );
    // Writes past the limit are refused to the plugin; the calls themselves end well.
    let mut taken = 0;
    for call in outcome["calls"].as_array().unwrap() {
        let Some(writes) = call["ok"].as_str() else {
            panic!("the call should end well: {call}");
        };
        let writes: u64 = writes.parse().unwrap();
        assert!(writes > 0, "{call}");
        taken += writes;
    }
    // 300 keys of 64 KiB do not fit 16 MiB: some writes were refused.
    assert!(taken < 4 * 600, "no write was refused: {outcome}");
}
