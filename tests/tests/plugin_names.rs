//! Plugin and tool names: a component file cannot take a built-in plugin's name unless the
//! operator says so, and a replacement never runs with the built-in section's secrets; the
//! host's own tool names are reserved.

use databot_e2e::{ScriptedResponse, TestHost, fixture, serve_scripted, with_manifest_name};

fn config(port: u16, replace: bool) -> String {
    format!(
        r#"plugins:
  web_fetch:
    replace_builtin: {replace}
    permissions:
      http:
        allow: ["127.0.0.1:{port}"]
        allow_private: true
        secrets:
          - {{ host: "http://127.0.0.1:{port}", header: x-builtin-secret, value: "s3cret-for-the-built-in" }}
"#
    )
}

async fn host_with_builtin(port: u16, replace: bool) -> TestHost {
    let host = TestHost::start(&config(port, replace), &[])
        .await
        .expect("host starts");
    host.load_builtin("web_fetch").await;
    host
}

fn impostor(host: &TestHost, name: &str) -> std::path::PathBuf {
    let bytes = std::fs::read(fixture("hostile")).expect("the hostile fixture");
    let path = host.plugins_dir().join(format!("{name}_impostor.wasm"));
    std::fs::write(&path, with_manifest_name(&bytes, name)).expect("write");
    path
}

#[tokio::test]
async fn a_file_named_like_a_built_in_does_not_replace_it() {
    let (port, _seen) =
        serve_scripted(|_, _| ScriptedResponse::json(200, serde_json::json!({}))).await;
    let host = host_with_builtin(port, false).await;
    let path = impostor(&host, "web_fetch");
    let Err(error) = host.runtime.load_file(&path).await else {
        panic!("the file loaded");
    };
    let message = format!("{error:#}");
    assert!(
        message.contains("built-in") && message.contains("plugins.web_fetch.replace_builtin"),
        "{message}"
    );
    let tools: Vec<String> = host.runtime.tools().into_iter().map(|t| t.name).collect();
    assert!(tools.contains(&"web_fetch".to_owned()), "{tools:?}");
    assert!(!tools.contains(&"http_get".to_owned()), "{tools:?}");
}

#[tokio::test]
async fn a_replacement_the_operator_allows_runs_without_the_built_in_secrets() {
    let (port, seen) =
        serve_scripted(|_, _| ScriptedResponse::json(200, serde_json::json!({"ok": true}))).await;
    let host = host_with_builtin(port, true).await;
    let path = impostor(&host, "web_fetch");
    host.runtime
        .load_file(&path)
        .await
        .expect("the operator allowed the replacement");
    let tools: Vec<String> = host.runtime.tools().into_iter().map(|t| t.name).collect();
    assert!(tools.contains(&"http_get".to_owned()), "{tools:?}");
    host.runtime
        .call_tool(
            "http_get",
            &serde_json::json!({"target": format!("http://127.0.0.1:{port}/x")}).to_string(),
        )
        .await
        .expect("the replacement keeps the section's egress grant");
    let requests = seen.all();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header("x-builtin-secret"), None);
}

#[tokio::test]
async fn the_host_tool_names_are_reserved() {
    let host = TestHost::start("", &[]).await.expect("host starts");
    let path = impostor(&host, "memory");
    let Err(error) = host.runtime.load_file(&path).await else {
        panic!("the file loaded");
    };
    assert!(format!("{error:#}").contains("reserved"), "{error:#}");
    let config = databot::config::Config::parse(
        "plugins:\n  memory:\n    enabled: true\n",
        "test.yaml",
        |_| None,
    );
    let Err(error) = config else {
        panic!("a reserved section name is refused");
    };
    let message = format!("{error:#}");
    assert!(message.contains("reserved"), "{message}");
}
