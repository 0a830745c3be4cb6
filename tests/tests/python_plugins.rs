//! Python plugins (componentize-py): the template builds, loads and answers; a Python tool is
//! held to the same sandbox as a Rust one (deadline, memory cap, no sockets) and a misbehaving
//! call leaves the plugin serving.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use databot::cli::plugin::{Kind, build};
use databot::cli::{python_plugin, scaffold};
use databot::runtime::ErrorKind;
use databot_e2e::TestHost;

/// Builds the Python project in `dir` and installs the component in `host`'s plugins folder.
async fn install(host: &TestHost, dir: &Path) -> PathBuf {
    let project = dir.to_owned();
    let wasm = tokio::task::spawn_blocking(move || build(&project))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the Python plugin builds: {e:#}"));
    let installed = host.plugins_dir().join(wasm.file_name().unwrap());
    std::fs::copy(&wasm, &installed).unwrap();
    host.runtime
        .load_file(&installed)
        .await
        .unwrap_or_else(|e| panic!("the Python plugin loads: {e:#}"));
    installed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_template_builds_loads_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("greeter_py");
    python_plugin::create(Kind::Tool, "greeter_py", &project).unwrap();
    assert!(project.join("wit/databot.wit").is_file());
    let host = TestHost::start("", &[]).await.unwrap();
    install(&host, &project).await;
    let greeting = host
        .tool_ok("greeter_py_greet", serde_json::json!({"name": "ada"}))
        .await;
    assert_eq!(greeting, serde_json::json!({"greeting": "hello, ada"}));
    // The manifest came from manifest.json, the contract from this host.
    let status = host.runtime.status();
    assert_eq!(status[0].name, "greeter_py");
    assert_eq!(status[0].kind.as_deref(), Some("tool"));
    // Arguments are checked against the schema the Python code declared.
    let error = host
        .tool_err("greeter_py_greet", serde_json::json!({"name": 7}))
        .await;
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    // Only tools have a Python template; the error says how to write another kind.
    let other = python_plugin::create(Kind::Connector, "conn_py", &dir.path().join("conn"));
    assert!(format!("{:#}", other.unwrap_err()).contains("databot plugin wit"));
}

const SANDBOX: &str = r#"
  budgets:
    timeout_ms: 2000
    memory_mb: 96
  circuit_breaker:
    failure_threshold: 1000
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_tool_is_held_to_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/python_sandbox");
    for file in ["app.py", "manifest.json"] {
        std::fs::copy(fixture.join(file), dir.path().join(file)).unwrap();
    }
    scaffold::write_contract(&dir.path().join("wit")).unwrap();
    let host = TestHost::start(SANDBOX, &[]).await.unwrap();
    install(&host, dir.path()).await;
    let echo = || host.tool_ok("py_echo", serde_json::json!({"text": "still here"}));
    assert_eq!(echo().await["text"], "still here");

    // An endless loop ends at the deadline.
    let started = Instant::now();
    let error = host.tool_err("py_spin", serde_json::json!({})).await;
    assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
    assert!(
        started.elapsed() < Duration::from_millis(2000 + 500),
        "stopped after {:?}",
        started.elapsed()
    );
    assert_eq!(echo().await["text"], "still here");

    // Memory past the budget is refused; under it, it works.
    let error = host
        .tool_err("py_hog", serde_json::json!({"mib": 300}))
        .await;
    assert_eq!(error.kind, ErrorKind::MemoryExceeded, "{error}");
    assert!(error.message.contains("96 MiB budget"), "{error}");
    assert_eq!(
        host.tool_ok("py_hog", serde_json::json!({"mib": 4})).await["held"],
        4
    );

    // No sockets: a connection to a loopback listener is refused in the guest and never
    // reaches the listener.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let error = host
        .tool_err("py_connect", serde_json::json!({"port": port}))
        .await;
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    assert!(error.message.contains("connect refused"), "{error}");
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "the guest reached the listener");
    assert_eq!(echo().await["text"], "still here");
}
