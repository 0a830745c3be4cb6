//! What the host refuses at load, the compile cache, and plugins named in config by path.

use databot::runtime::{PluginSource, read_manifest};
use databot_e2e::{TestHost, fixture};

async fn refusal(bytes: Vec<u8>) -> String {
    let host = TestHost::start("", &[]).await.unwrap();
    match host
        .runtime
        .load_bytes(bytes, PluginSource::File("x.wasm".into()))
        .await
    {
        Ok(_) => panic!("must be refused"),
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test]
async fn another_contract_major_is_refused_with_the_reason() {
    let reason = refusal(std::fs::read(fixture("other_major")).unwrap()).await;
    assert!(reason.contains("databot:plugin@1.0.0"), "{reason}");
    assert!(reason.contains("rebuild it"), "{reason}");
}

#[tokio::test]
async fn a_plugin_built_against_an_earlier_release_of_the_contract_line_loads_and_runs() {
    let host = TestHost::start("", &["contract_0_1_0"]).await.unwrap();
    let result = host
        .runtime
        .call_tool("old_echo", r#"{"still": "works"}"#)
        .await
        .unwrap();
    assert_eq!(result, r#"{"still": "works"}"#);
}

#[tokio::test]
async fn core_module_is_refused() {
    // The smallest valid core module: magic + version 1.
    let reason = refusal(vec![0, b'a', b's', b'm', 1, 0, 0, 0]).await;
    assert!(
        reason.contains("core WebAssembly module, not a component"),
        "{reason}"
    );
}

#[tokio::test]
async fn truncated_and_non_wasm_files_are_refused() {
    let bytes = std::fs::read(fixture("echo")).unwrap();
    let reason = refusal(bytes[..bytes.len() / 2].to_vec()).await;
    assert!(reason.contains("damaged or truncated"), "{reason}");
    let reason = refusal(b"#!/bin/sh\necho hi\n".to_vec()).await;
    assert!(reason.contains("not a WebAssembly file"), "{reason}");
}

#[tokio::test]
async fn broken_files_in_the_folder_show_in_status_and_others_load() {
    let host = TestHost::start("", &["echo"]).await.unwrap();
    std::fs::write(host.plugins_dir().join("broken.wasm"), b"garbage").unwrap();
    host.runtime.load_configured().await.unwrap();
    let status = host.runtime.status();
    let broken = status
        .iter()
        .find(|s| s.name == "broken")
        .expect("broken is listed");
    assert_eq!(broken.state, "refused");
    assert!(
        broken
            .last_error
            .as_deref()
            .unwrap()
            .contains("not a WebAssembly file")
    );
    assert!(
        host.runtime
            .call_tool("echo", r#"{"text":"x"}"#)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn manifest_is_readable_without_running_the_plugin() {
    let manifest = read_manifest(&std::fs::read(fixture("echo")).unwrap()).unwrap();
    assert_eq!(manifest.name, "echo");
    assert_eq!(manifest.kind, databot::runtime::PluginKind::Tool);
    assert_eq!(manifest.contract, databot::contract::CONTRACT_VERSION);
    assert!(manifest.capabilities.contains(&"state".to_owned()));
}

#[tokio::test]
async fn tool_descriptions_come_from_doc_comments_and_schemas_from_types() {
    let host = TestHost::start("", &["echo"]).await.unwrap();
    let tools = host.runtime.tools();
    let echo = tools.iter().find(|t| t.name == "echo").unwrap();
    assert_eq!(echo.description, "Return the text.");
    assert_eq!(echo.input_schema["properties"]["text"]["type"], "string");
    assert_eq!(
        echo.input_schema["properties"]["text"]["description"],
        "Text to return."
    );
}

#[tokio::test]
async fn second_start_uses_the_compile_cache() {
    let host = TestHost::start("", &["echo"]).await.unwrap();
    let config = host.runtime.config().clone();
    let first = host.runtime.plugin("echo").unwrap().current();
    assert_eq!(
        first.compiled_from,
        databot::runtime::cache::CompileSource::Compiled
    );
    let again = databot::runtime::Runtime::new(std::sync::Arc::new(config)).unwrap();
    again.load_configured().await.unwrap();
    let second = again.plugin("echo").unwrap().current();
    assert_eq!(
        second.compiled_from,
        databot::runtime::cache::CompileSource::Cache
    );
    assert!(
        again
            .call_tool("echo", r#"{"text":"cached"}"#)
            .await
            .unwrap()
            .contains("cached")
    );
}

#[tokio::test]
async fn plugins_can_be_named_in_config_by_path() {
    let path = fixture("echo_connector");
    let host = TestHost::start(
        &format!(
            "plugins:\n  echo_connector:\n    path: {}\n",
            path.display()
        ),
        &[],
    )
    .await
    .unwrap();
    let health = host
        .runtime
        .connector_health("echo_connector")
        .await
        .unwrap();
    assert_eq!(health.message, "ok");
    let output = host
        .runtime
        .execute_connector("echo_connector", "ping", r#"{"text":"x"}"#)
        .await
        .unwrap();
    assert_eq!(output, r#"{"pong":"x"}"#);
}

#[tokio::test]
async fn disabled_plugins_do_not_load() {
    let host = TestHost::start("plugins:\n  echo:\n    enabled: false\n", &["echo"])
        .await
        .unwrap();
    assert!(host.runtime.plugin("echo").is_none());
}
