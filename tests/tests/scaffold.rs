//! `databot plugin new` produces crates that build to working components, for every kind.

use std::sync::Arc;

use databot::cli::plugin::{Kind, build};
use databot::cli::scaffold::{contract, create, write_contract};
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
        builds_from_itself(&crate_dir);
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

/// The crate needs nothing of this repository: no file names it, and every local package
/// cargo resolves (the SDK, its macros and types) is inside the crate's own folder.
fn builds_from_itself(crate_dir: &std::path::Path) {
    let repository = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    for entry in walk(crate_dir) {
        let text = std::fs::read_to_string(&entry).unwrap();
        assert!(
            !text.contains(&repository),
            "{} names the repository",
            entry.display()
        );
    }
    let metadata = std::process::Command::new("cargo")
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--no-deps",
        ])
        .current_dir(crate_dir)
        .output()
        .unwrap();
    assert!(
        metadata.status.success(),
        "{}",
        String::from_utf8_lossy(&metadata.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout).unwrap();
    let crate_dir = crate_dir.canonicalize().unwrap();
    let manifests: Vec<&str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| package["manifest_path"].as_str().unwrap())
        .collect();
    assert_eq!(
        manifests.len(),
        4,
        "the plugin, the SDK, its macros and types: {manifests:?}"
    );
    for manifest in manifests {
        assert!(
            std::path::Path::new(manifest).starts_with(&crate_dir),
            "{manifest} is outside the new crate"
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn the_contract_is_written_for_other_toolchains() {
    let dir = tempfile::tempdir().unwrap();
    write_contract(dir.path()).unwrap();
    let written = std::fs::read_to_string(dir.path().join("databot.wit")).unwrap();
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/databot.wit"),
    )
    .unwrap();
    assert_eq!(written, source);
    assert_eq!(contract().count(), 1);
}
