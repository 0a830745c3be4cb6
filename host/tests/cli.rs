//! The `databot` binary end to end: config check, inspect, tool call errors, serve + hot load.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use databot::runtime::builtin::builtin_bytes;

fn databot() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_databot"));
    command
        .env_remove("DATABOT_CONFIG")
        .env_remove("DATABOT_LOG");
    command
}

fn web_fetch_bytes() -> &'static [u8] {
    builtin_bytes("web_fetch").expect("web_fetch is built in")
}

fn isolated_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("databot.yaml");
    std::fs::write(
        &path,
        "runtime:\n  plugins_dir: plugins\n  data_dir: data\n  watch: true\ngateway:\n  bind: 127.0.0.1:0\n",
    )
    .unwrap();
    path
}

#[test]
fn config_check_reports_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let good = isolated_config(dir.path());
    let output = databot()
        .args(["config", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "runtime:\n  watch: true\n  wach: false\n").unwrap();
    let output = databot()
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.yaml:3:"), "{stderr}");
    assert!(stderr.contains("unknown field `wach`"), "{stderr}");
}

#[test]
fn inspect_shows_manifest_and_schemas_and_refuses_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web_fetch.wasm");
    std::fs::write(&file, web_fetch_bytes()).unwrap();
    let output = databot()
        .args(["plugin", "inspect"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["manifest"]["name"], "web_fetch");
    assert_eq!(report["operations"][0]["name"], "web_fetch");
    assert_eq!(
        report["operations"][0]["input_schema"]["required"][0],
        "url"
    );
    assert_eq!(report["sha256"].as_str().unwrap().len(), 64);

    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"hello").unwrap();
    let output = databot()
        .args(["plugin", "inspect"])
        .arg(&garbage)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a WebAssembly file"));
}

#[test]
fn tool_call_with_bad_arguments_exits_2_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = isolated_config(dir.path());
    let output = databot()
        .arg("--config")
        .arg(&config)
        .args(["tool", "call", "web_fetch", "--args", r#"{"ur": 1}"#])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid_input"), "{stderr}");
    assert!(
        stderr.contains("\"url\" is a required property"),
        "{stderr}"
    );
}

#[test]
fn serve_loads_and_hot_loads_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let config = isolated_config(dir.path());
    // A file may replace a built-in plugin only when the operator says so.
    let mut yaml = std::fs::read_to_string(&config).unwrap();
    yaml.push_str("plugins:\n  web_fetch:\n    replace_builtin: true\n");
    std::fs::write(&config, yaml).unwrap();
    let mut child = databot()
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(line) = lines.recv_timeout(Duration::from_millis(200))
                && line.contains(needle)
            {
                return line;
            }
        }
        panic!("`{needle}` did not appear in the log");
    };
    wait_for("databot is serving");
    // A file in the watched folder replaces the built-in revision.
    let temporary = dir.path().join("web_fetch.partial");
    std::fs::write(&temporary, web_fetch_bytes()).unwrap();
    std::fs::rename(&temporary, dir.path().join("plugins/web_fetch.wasm")).unwrap();
    let line = wait_for("plugin loaded");
    assert!(line.contains("web_fetch.wasm"), "{line}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn chat_one_message_runs_a_tool_through_the_offline_provider() {
    let dir = tempfile::tempdir().unwrap();
    let config = isolated_config(dir.path());
    let output = databot()
        .arg("--config")
        .arg(&config)
        .args([
            "chat",
            "-m",
            r#"/memory {"action": "remember", "key": "k", "value": "v"}"#,
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("`memory` returned"), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("[tool] memory"), "{stderr}");
    // The conversation and the memory are in the session store.
    assert!(dir.path().join("data/sessions.db").exists());
    let output = databot()
        .arg("--config")
        .arg(&config)
        .args(["chat", "-m", r#"/memory {"action": "recall"}"#])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains(r#""k":"v""#));
}

#[test]
fn chat_repl_answers_each_line_until_end_of_input() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let config = isolated_config(dir.path());
    let mut child = databot()
        .arg("--config")
        .arg(&config)
        .args(["chat", "--session", "repl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"/memory {\"action\": \"remember\", \"key\": \"a\", \"value\": \"1\"}\n/memory {\"action\": \"recall\"}\n")
        .unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(r#"{"remembered":"a"}"#), "{stdout}");
    assert!(stdout.contains(r#"{"a":"1"}"#), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("session `cli:repl`"), "{stderr}");
    assert_eq!(stderr.matches("[tool] memory ok").count(), 2, "{stderr}");
}
