//! `databot plugin new` produces crates that build to working components, for every kind.

use std::sync::Arc;

use databot::cli::plugin::{Kind, build};
use databot::cli::scaffold::create;
use databot::config::Config;
use databot::runtime::{PluginSource, Runtime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaffolded_plugins_build_and_load() {
    let dir = tempfile::tempdir().unwrap();
    // One target dir for the scaffolds, so the SDK compiles once; inside the temporary
    // folder, so its gigabyte of release artifacts goes when the test ends.
    let target = dir.path().join("target");
    // SAFETY: no other thread of this test binary reads the environment concurrently.
    unsafe { std::env::set_var("CARGO_TARGET_DIR", &target) };
    let config = format!(
        "runtime:\n  builtin_plugins: false\n  data_dir: {}\n",
        dir.path().join("data").display()
    );
    let runtime = Runtime::new(Arc::new(Config::parse(&config, "t", |_| None).unwrap())).unwrap();
    for (kind, name) in [
        (Kind::Tool, "scaffold_tool"),
        (Kind::Connector, "scaffold_connector"),
        (Kind::Provider, "scaffold_provider"),
        (Kind::Channel, "scaffold_channel"),
    ] {
        let crate_dir = dir.path().join(name);
        create(kind, name, &crate_dir).unwrap();
        let wasm = build(&crate_dir).unwrap_or_else(|e| panic!("{name} builds: {e:#}"));
        let bytes = std::fs::read(&wasm).unwrap();
        let revision = runtime
            .load_bytes(bytes, PluginSource::File(wasm))
            .await
            .unwrap();
        assert_eq!(revision.manifest.name, name);
    }
    let output = runtime
        .call_tool("scaffold_tool_greet", r#"{"name": "ada"}"#)
        .await
        .unwrap();
    assert_eq!(output, r#"{"greeting":"hello, ada"}"#);
    let output = runtime
        .execute_connector("scaffold_connector", "ping", r#"{"text": "x"}"#)
        .await
        .unwrap();
    assert_eq!(output, r#"{"pong":"x"}"#);
    // The channel exports the current `chat-channel` (not the 0.1.0 handler).
    let limits = runtime.channel_limits("scaffold_channel").await.unwrap();
    assert_eq!(limits.max_message_chars, 4000);
    assert!(create(Kind::Tool, "Bad-Name", &dir.path().join("bad")).is_err());
}
