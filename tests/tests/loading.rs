//! What the host refuses at load, the compile cache, and plugins named in config by path.

use databot::runtime::{PluginSource, read_manifest};
use databot_e2e::{TestHost, fixture, with_marker};

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

/// Runs the `databot` binary; its stdout, or a panic with its stderr.
fn databot(args: &[&std::ffi::OsStr]) -> Result<String, String> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_databot_cli"))
        .args(args)
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn keygen(path: &std::path::Path) -> String {
    databot(&[
        "plugin".as_ref(),
        "keygen".as_ref(),
        "--out".as_ref(),
        path.as_os_str(),
    ])
    .unwrap();
    let public = std::fs::read_to_string(path.with_extension("key.pub")).unwrap();
    public.trim().to_owned()
}

fn sign(file: &std::path::Path, key: &std::path::Path) -> Result<String, String> {
    databot(&[
        "plugin".as_ref(),
        "sign".as_ref(),
        file.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_signatures_required_only_files_a_trusted_key_signed_as_they_are_load() {
    use databot::runtime::RuntimeEvent;
    let keys = tempfile::tempdir().unwrap();
    let acme = keys.path().join("acme.key");
    let acme_public = keygen(&acme);
    let stranger = keys.path().join("stranger.key");
    keygen(&stranger);
    // A key is never overwritten.
    let again = databot(&[
        "plugin".as_ref(),
        "keygen".as_ref(),
        "--out".as_ref(),
        acme.as_os_str(),
    ]);
    assert!(again.unwrap_err().contains("exists"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&acme).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let yaml = format!(
        "  watch: true\n  require_signatures: true\n  trusted_keys:\n    acme: \"{acme_public}\"\n"
    );
    let acme_id = databot::signature::PublicKey::parse(&acme_public)
        .unwrap()
        .id();
    let host = TestHost::start_with(&yaml, &[], |dir| {
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins)?;
        let copy = |name: &str| {
            let path = plugins.join(format!("{name}.wasm"));
            std::fs::copy(fixture(name), &path).unwrap();
            path
        };
        // Signed by acme: loads.
        let signed = copy("echo");
        let printed = sign(&signed, &acme).unwrap();
        assert!(printed.contains(&acme_id), "{printed}");
        // Unsigned.
        copy("echo_connector");
        // Signed by a key the host does not trust.
        let strangers = copy("contract_0_1_0");
        sign(&strangers, &stranger).unwrap();
        // Signed by acme, then changed.
        let tampered = copy("vectors_user");
        sign(&tampered, &acme).unwrap();
        let bytes = std::fs::read(&tampered).unwrap();
        std::fs::write(&tampered, with_marker(&bytes, "changed")).unwrap();
        Ok(())
    })
    .await
    .unwrap();
    let status = host.runtime.status();
    let of = |source: &str| {
        status
            .iter()
            .find(|plugin| plugin.source.ends_with(source))
            .unwrap_or_else(|| panic!("{source} in status: {status:#?}"))
    };
    let echo = of("echo.wasm");
    assert_eq!(echo.state, "ready");
    let signer = echo.signer.as_ref().unwrap();
    assert_eq!(
        (signer.key.as_str(), signer.key_id.as_str()),
        ("acme", acme_id.as_str())
    );
    let refused = |source: &str| {
        let plugin = of(source);
        assert_eq!(plugin.state, "refused", "{plugin:?}");
        plugin.last_error.clone().unwrap()
    };
    let unsigned = refused("echo_connector.wasm");
    assert!(
        unsigned.contains("not signed") && unsigned.contains(&acme_id),
        "{unsigned}"
    );
    let strangers = refused("contract_0_1_0.wasm");
    assert!(
        strangers.contains("does not list") && strangers.contains("`acme`"),
        "{strangers}"
    );
    let tampered = refused("vectors_user.wasm");
    assert!(tampered.contains("does not match its bytes"), "{tampered}");
    // Signing a file in the watched folder loads it: the signature counts as a change.
    let _watcher = host.runtime.watch().unwrap();
    let mut events = host.runtime.subscribe();
    sign(&host.plugins_dir().join("echo_connector.wasm"), &acme).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            if let Ok(RuntimeEvent::Loaded { plugin, .. }) = events.recv().await
                && plugin == "echo_connector"
            {
                break;
            }
        }
    })
    .await
    .expect("the signed connector loads");
    // `plugin list` and `plugin inspect` show the signer.
    let config = host.dir.path().join("databot.yaml");
    std::fs::write(
        &config,
        format!(
            "runtime:\n  plugins_dir: {}\n  data_dir: {}\n  builtin_plugins: false\n  watch: false\n{yaml}",
            host.plugins_dir().display(),
            host.dir.path().join("data").display()
        )
        .replace("  watch: true\n", ""),
    )
    .unwrap();
    let list = databot(&[
        "--config".as_ref(),
        config.as_os_str(),
        "plugin".as_ref(),
        "list".as_ref(),
        "--json".as_ref(),
    ])
    .unwrap();
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let signers: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["signer"].is_object())
        .map(|p| {
            (
                p["name"].as_str().unwrap().into(),
                p["signer"]["key"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        signers,
        [
            ("echo".into(), "acme".into()),
            ("echo_connector".into(), "acme".into())
        ]
    );
    let inspected = databot(&[
        "--config".as_ref(),
        config.as_os_str(),
        "plugin".as_ref(),
        "inspect".as_ref(),
        host.plugins_dir().join("echo.wasm").as_os_str(),
    ])
    .unwrap();
    let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(inspected["signer"]["key_id"], acme_id.as_str());
    let refused_inspect = databot(&[
        "--config".as_ref(),
        config.as_os_str(),
        "plugin".as_ref(),
        "inspect".as_ref(),
        host.plugins_dir().join("vectors_user.wasm").as_os_str(),
    ])
    .unwrap_err();
    assert!(
        refused_inspect.contains("does not match"),
        "{refused_inspect}"
    );
    // Without the requirement an unsigned file loads, a stranger's signature is passed over
    // as unsigned, and a signature that does not match is still refused.
    let relaxed = TestHost::start(
        &format!("  trusted_keys:\n    acme: \"{acme_public}\"\n"),
        &["echo_connector"],
    )
    .await
    .unwrap();
    assert_eq!(relaxed.runtime.status()[0].state, "ready");
    assert!(relaxed.runtime.status()[0].signer.is_none());
    let mismatch = relaxed.plugins_dir().join("echo_connector.wasm.sig");
    std::fs::copy(host.plugins_dir().join("echo.wasm.sig"), &mismatch).unwrap();
    let reason = relaxed
        .runtime
        .load_file(&relaxed.plugins_dir().join("echo_connector.wasm"))
        .await
        .err()
        .expect("a signature that does not match is refused");
    assert!(
        format!("{reason:#}").contains("does not match"),
        "{reason:#}"
    );
}

#[tokio::test]
async fn signature_settings_that_cannot_work_are_refused_at_start() {
    let error = TestHost::start("  require_signatures: true\n", &[])
        .await
        .err()
        .expect("refused");
    assert!(format!("{error:#}").contains("lists no key"), "{error:#}");
    let error = TestHost::start("  trusted_keys:\n    acme: \"ed25519:short\"\n", &[])
        .await
        .err()
        .expect("refused");
    let error = format!("{error:#}");
    assert!(
        error.contains("runtime.trusted_keys.acme") && error.contains("base64"),
        "{error}"
    );
    // Signing something that is not a plugin is refused.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.key");
    keygen(&key);
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"junk").unwrap();
    assert!(
        sign(&junk, &key)
            .unwrap_err()
            .contains("not a loadable plugin")
    );
    assert!(!dir.path().join("junk.wasm.sig").exists());
}
