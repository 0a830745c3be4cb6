//! The operations commands through the real binary: the sample warehouse of the embedded
//! default (queried with `/sql_query`, its schema found by `rag search`), `databot status` and
//! its exit codes, `databot init` (placeholders only, never overwriting unasked, its output
//! valid), and tool groups turned off and on at runtime.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// `databot ARGS` in `dir` with `env`: (exit code, stdout, stderr).
fn databot(dir: &Path, args: &[&str], env: &[(&str, &str)], input: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_databot_cli"))
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("DATABOT_LOG")
        .env_remove("DATABOT_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the databot binary runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("answers written");
    let output = child.wait_with_output().expect("it ends");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_embedded_default_has_a_sample_warehouse_to_query_and_search() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, out, err) = databot(
        dir.path(),
        &[
            "chat",
            "-m",
            r#"/sql_query {"query": "SELECT COUNT(*) AS orders FROM orders"}"#,
        ],
        &[],
        "",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("240"), "the sample's 240 orders: {out}");
    assert!(dir.path().join(".databot/sample.db").exists());
    // The source is read-only.
    let (_, out, _) = databot(
        dir.path(),
        &[
            "tool",
            "call",
            "sql_query",
            "--args",
            r#"{"query": "DELETE FROM orders"}"#,
        ],
        &[],
        "",
    );
    assert!(!out.contains("\"rows_affected\""), "{out}");
    let (code, out, err) = databot(
        dir.path(),
        &[
            "tool",
            "call",
            "sql_query",
            "--args",
            r#"{"query": "SELECT COUNT(*) AS n FROM orders"}"#,
        ],
        &[],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("240"), "nothing was deleted: {out}");
    // Its schema, with the comments kept in the SQL, is in the knowledge base.
    let (code, out, err) = databot(
        dir.path(),
        &["rag", "search", "orders by customer", "--json"],
        &[],
        "",
    );
    assert_eq!(code, 0, "{err}");
    let matches: serde_json::Value = serde_json::from_str(&out).expect("json");
    let sources: Vec<&str> = matches
        .as_array()
        .expect("matches")
        .iter()
        .filter_map(|m| m["source"].as_str())
        .collect();
    assert!(
        sources
            .iter()
            .any(|s| s.contains("schema:sample/") && s.ends_with(".orders")),
        "{sources:?}"
    );
    let text = matches.to_string();
    assert!(
        text.contains("who ordered"),
        "column comments are ingested: {text}"
    );
    // Work shown with progress bars stays quiet off a terminal.
    let (code, _, err) = databot(dir.path(), &["rag", "ingest", "--schemas"], &[], "");
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("[=") && !err.contains("ingesting"), "{err}");
}

#[test]
fn status_reports_each_part_and_fails_when_something_is_unhealthy() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join("plugins")).expect("plugins");
    std::fs::copy(
        databot_e2e::fixture("echo"),
        dir.path().join("plugins/echo.wasm"),
    )
    .expect("echo");
    std::fs::write(
        dir.path().join("healthy.yaml"),
        "runtime: {plugins_dir: plugins, data_dir: data, builtin_plugins: true, watch: false}
",
    )
    .expect("config");
    let (code, out, err) = databot(dir.path(), &["--config", "healthy.yaml", "status"], &[], "");
    assert_eq!(code, 0, "{out}{err}");
    for part in [
        "config",
        "data dir",
        "plugin",
        "echo",
        "provider",
        "offline",
        "sessions",
        "schedules",
        "all healthy",
    ] {
        assert!(out.contains(part), "`{part}` in {out}");
    }
    let broken_dir = tempfile::tempdir().expect("dir");
    let broken = databot_e2e::process_folder(
        broken_dir.path(),
        &["echo"],
        false,
        "plugins:\n  ghost:\n    path: ghost.wasm\n",
    );
    std::fs::write(
        broken_dir.path().join("plugins/bad.wasm"),
        b"not a component",
    )
    .expect("bad file");
    let (code, out, _) = databot(
        broken_dir.path(),
        &[
            "--config",
            broken.to_str().expect("utf-8"),
            "status",
            "--json",
        ],
        &[],
        "",
    );
    assert_eq!(code, 1, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["healthy"], false);
    let unhealthy: Vec<String> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["healthy"] == false)
        .map(|c| format!("{} {} {}", c["area"], c["name"], c["state"]))
        .collect();
    assert!(
        unhealthy
            .iter()
            .any(|c| c.contains("ghost") && c.contains("refused")),
        "{unhealthy:?}"
    );
    assert!(
        unhealthy
            .iter()
            .any(|c| c.contains("bad") && c.contains("refused")),
        "{unhealthy:?}"
    );
    // A config that does not load is a failure too, with the reason.
    std::fs::write(dir.path().join("bad.yaml"), "agent: {colour: red}\n").expect("bad config");
    let (code, out, _) = databot(dir.path(), &["--config", "bad.yaml", "status"], &[], "");
    assert_eq!(code, 1);
    assert!(out.contains("unknown field"), "{out}");
}

#[test]
fn status_without_a_provider_is_unhealthy() {
    let dir = tempfile::tempdir().expect("dir");
    let config =
        databot_e2e::process_folder(dir.path(), &["echo"], false, "agent: {provider: nowhere}\n");
    let (code, out, _) = databot(
        dir.path(),
        &["--config", config.to_str().expect("utf-8"), "status"],
        &[],
        "",
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("! provider") && out.contains("nowhere"),
        "{out}"
    );
}

#[test]
fn init_writes_placeholders_never_secrets_and_never_overwrites_unasked() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = "sk-this-must-never-be-written-0123456789";
    // openai, default model, a public bind, a PostgreSQL source named `shop`, Slack, data dir.
    let answers = "openai\n\n0.0.0.0:8080\npostgres\nshop\nslack\n/var/lib/databot\n";
    let (code, out, err) = databot(
        dir.path(),
        &["init", "--output", "databot.yaml"],
        &[("OPENAI_API_KEY", secret), ("SLACK_BOT_TOKEN", secret)],
        answers,
    );
    assert_eq!(code, 0, "{out}{err}");
    let written = std::fs::read_to_string(dir.path().join("databot.yaml")).expect("written");
    assert!(!written.contains(secret), "{written}");
    for variable in [
        "OPENAI_API_KEY",
        "SHOP_URL",
        "DATABOT_API_KEY",
        "SLACK_SIGNING_SECRET",
        "SLACK_BOT_TOKEN",
    ] {
        assert!(
            written.contains(&format!("${{{variable}}}")),
            "{variable} in {written}"
        );
        assert!(
            out.contains(variable),
            "{variable} is named in the output: {out}"
        );
    }
    // With the variables set, the file passes `config check`.
    let env: Vec<(&str, &str)> = vec![
        ("OPENAI_API_KEY", secret),
        ("SHOP_URL", "postgres://reader:pw@127.0.0.1:5432/test"),
        ("DATABOT_API_KEY", "0123456789abcdef0123456789"),
        ("SLACK_SIGNING_SECRET", "signing-secret"),
        ("SLACK_BOT_TOKEN", secret),
    ];
    let (code, out, err) = databot(dir.path(), &["config", "check", "databot.yaml"], &env, "");
    assert_eq!(code, 0, "{out}{err}");
    // Without them, the check names what is missing.
    let (code, _, err) = databot(dir.path(), &["config", "check", "databot.yaml"], &[], "");
    assert_ne!(code, 0);
    assert!(
        err.contains("OPENAI_API_KEY") || err.contains("DATABOT_API_KEY"),
        "{err}"
    );
    // Asked before replacing: `n` (or no answer) keeps the file.
    let (code, out, _) = databot(dir.path(), &["init", "--output", "databot.yaml"], &[], "\n");
    assert_eq!(code, 0);
    assert!(out.contains("left databot.yaml as it is"), "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("databot.yaml")).expect("kept"),
        written
    );
    // `y` replaces it, here with the defaults: offline, loopback, no secrets.
    let (code, out, _) = databot(
        dir.path(),
        &["init", "--output", "databot.yaml"],
        &[],
        "y\n\n\n\n\n\n",
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no secrets needed"), "{out}");
    let (code, _, err) = databot(dir.path(), &["config", "check", "databot.yaml"], &[], "");
    assert_eq!(code, 0, "{err}");
}

#[test]
fn tool_groups_turn_tools_off_and_on_at_runtime_without_touching_the_yaml() {
    let dir = tempfile::tempdir().expect("dir");
    let config = databot_e2e::process_folder(
        dir.path(),
        &["echo"],
        false,
        "agent:\n  tool_groups:\n    echoes: {description: Test tools, tools: [echo]}\n",
    );
    let yaml_before = std::fs::read_to_string(&config).expect("yaml");
    let config = config.to_str().expect("utf-8");
    let (code, out, _) = databot(dir.path(), &["--config", config, "tool", "groups"], &[], "");
    assert_eq!(code, 0);
    assert!(
        out.contains("echoes") && out.contains("scheduling") && out.contains("shell"),
        "{out}"
    );
    let (code, out, _) = databot(
        dir.path(),
        &["--config", config, "tool", "disable", "echoes"],
        &[],
        "",
    );
    assert_eq!(code, 0, "{out}");
    let (_, out, _) = databot(dir.path(), &["--config", config, "tool", "list"], &[], "");
    assert!(
        !out.contains("echo "),
        "turned-off tools are not listed: {out}"
    );
    let (code, _, err) = databot(
        dir.path(),
        &[
            "--config",
            config,
            "tool",
            "call",
            "echo",
            "--args",
            r#"{"text": "x"}"#,
        ],
        &[],
        "",
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("turned off") && err.contains("`echoes`"),
        "{err}"
    );
    let (code, _, err) = databot(
        dir.path(),
        &["--config", config, "tool", "disable", "nope"],
        &[],
        "",
    );
    assert_ne!(code, 0);
    assert!(err.contains("no tool group named `nope`"), "{err}");
    let (code, _, _) = databot(
        dir.path(),
        &["--config", config, "tool", "enable", "echoes"],
        &[],
        "",
    );
    assert_eq!(code, 0);
    let (code, out, _) = databot(
        dir.path(),
        &[
            "--config",
            config,
            "tool",
            "call",
            "echo",
            "--args",
            r#"{"text": "back"}"#,
        ],
        &[],
        "",
    );
    assert_eq!(code, 0);
    assert!(out.contains("back"), "{out}");
    assert_eq!(
        std::fs::read_to_string(config).expect("yaml"),
        yaml_before,
        "the YAML is never rewritten"
    );
    assert!(dir.path().join("data/tool_groups.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_host_follows_tool_groups_changed_over_its_api_and_by_another_process() {
    let host = databot_e2e::TestHost::start(
        "agent:\n  tool_groups:\n    echoes: {tools: [echo]}\n",
        &["echo"],
    )
    .await
    .expect("host");
    let port = host.start_gateway("offline", "gateway: {}\n").await;
    let json = [("content-type", "application/json")];
    let (status, _, body) = databot_e2e::http_call(
        port,
        "POST",
        "/api/v1/tool-groups/echoes/disable",
        &json,
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(host.runtime.resolve_tool("echo").is_none());
    let error = host
        .tool_err("echo", serde_json::json!({"text": "x"}))
        .await;
    assert!(error.to_string().contains("turned off"), "{error}");
    let (status, _, _) = databot_e2e::http_call(
        port,
        "POST",
        "/api/v1/tool-groups/missing/enable",
        &json,
        "",
    )
    .await;
    assert_eq!(status, 404);
    // Another process (the CLI) turns it back on in the same data dir: seen within a second.
    let other = databot::runtime::tool_groups::ToolGroups::new(
        &host.runtime.config().agent.tool_groups,
        Some(host.dir.path().join("data/tool_groups.json")),
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    other.set_enabled("echoes", true).expect("on");
    let back = databot_e2e::chat_platforms::eventually(std::time::Duration::from_secs(5), || {
        host.runtime.resolve_tool("echo").is_some()
    })
    .await;
    assert!(back, "the host saw the other process's change");
    let (_, _, body) = databot_e2e::http_call(port, "GET", "/api/v1/tool-groups", &[], "").await;
    let groups: serde_json::Value = serde_json::from_str(&body).expect("json");
    let echoes = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["name"] == "echoes")
        .cloned()
        .expect("listed");
    assert_eq!(echoes["enabled"], true);
}

#[test]
fn the_agent_schedules_from_a_chat_under_the_operators_limits() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join("plugins")).expect("plugins");
    std::fs::write(
        dir.path().join("databot.yaml"),
        "runtime: {plugins_dir: plugins, data_dir: data, builtin_plugins: true, watch: false}\nrag: {enabled: false}\nschedules:\n  agent: {min_interval_seconds: 3600}\n",
    )
    .expect("config");
    let (code, out, err) = databot(
        dir.path(),
        &[
            "--config",
            "databot.yaml",
            "chat",
            "-m",
            r#"/cron {"action": "add", "name": "standup", "cron": "0 9 * * MON-FRI", "timezone": "Europe/Berlin", "prompt": "post the standup reminder"}"#,
        ],
        &[],
        "",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Scheduled `standup`"), "{out}");
    let (code, out, err) = databot(
        dir.path(),
        &[
            "--config",
            "databot.yaml",
            "chat",
            "-m",
            r#"/cron {"action": "add", "name": "spam", "every": "1m", "prompt": "x"}"#,
        ],
        &[],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("shortest interval allowed is 3600 s"), "{out}");
    let (_, out, _) = databot(
        dir.path(),
        &["--config", "databot.yaml", "cron", "list", "--json"],
        &[],
        "",
    );
    let jobs: serde_json::Value = serde_json::from_str(&out).expect("json");
    let jobs = jobs.as_array().expect("jobs");
    assert_eq!(jobs.len(), 1, "{out}");
    assert_eq!(jobs[0]["origin"], "agent");
    assert_eq!(jobs[0]["owner"], "cli:local");
    assert_eq!(jobs[0]["when"], "cron 0 9 * * MON-FRI (Europe/Berlin)");
    // Turning the `scheduling` group off takes the tool away from the agent.
    databot(
        dir.path(),
        &["--config", "databot.yaml", "tool", "disable", "scheduling"],
        &[],
        "",
    );
    let (_, out, _) = databot(
        dir.path(),
        &[
            "--config",
            "databot.yaml",
            "chat",
            "-m",
            r#"/cron {"action": "list"}"#,
        ],
        &[],
        "",
    );
    assert!(
        out.contains("no tool named `cron`"),
        "the model is not offered it: {out}"
    );
}
