//! Hot loading: swaps under load lose no call; a broken revision leaves the old one serving;
//! removal unloads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use databot::runtime::RuntimeEvent;
use databot_e2e::{TestHost, fixture, with_marker};

async fn wait_for(
    events: &mut tokio::sync::broadcast::Receiver<RuntimeEvent>,
    want: impl Fn(&RuntimeEvent) -> bool,
) -> RuntimeEvent {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Ok(event) if want(&event) => return event,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(error) => panic!("event stream ended: {error}"),
            }
        }
    })
    .await
    .expect("event within 30 s")
}

/// Write through a temporary file and rename, as operators are told to.
fn install(host: &TestHost, name: &str, bytes: &[u8]) {
    let temporary = host.dir.path().join(format!("{name}.partial"));
    std::fs::write(&temporary, bytes).unwrap();
    std::fs::rename(&temporary, host.plugins_dir().join(format!("{name}.wasm"))).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_swaps_under_load_lose_no_call() {
    let host = TestHost::start("", &["echo"]).await.unwrap();
    let _watcher = host.runtime.watch().unwrap();
    let mut events = host.runtime.subscribe();
    let original = std::fs::read(fixture("echo")).unwrap();
    let revisions = [with_marker(&original, "a"), with_marker(&original, "b")];

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let mut callers = Vec::new();
    for worker in 0..4 {
        let runtime = host.runtime.clone();
        let stop = stop.clone();
        let calls = calls.clone();
        callers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let text = format!("w{worker}");
                let output = runtime
                    .call_tool("echo", &format!(r#"{{"text":"{text}"}}"#))
                    .await
                    .unwrap_or_else(|e| panic!("a call failed during hot swap: {e}"));
                assert!(output.contains(&text));
                calls.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for swap in 0..100 {
        let bytes = &revisions[swap % 2];
        let digest = databot::digest::sha256_hex(bytes);
        install(&host, "echo", bytes);
        wait_for(
            &mut events,
            |e| matches!(e, RuntimeEvent::Loaded { digest: d, .. } if *d == digest),
        )
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.expect("no caller panicked");
    }
    assert!(calls.load(Ordering::Relaxed) > 100);
    let slot = host.runtime.plugin("echo").unwrap();
    assert_eq!(
        slot.current().digest,
        databot::digest::sha256_hex(&revisions[1])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_revision_keeps_the_old_one_serving() {
    let host = TestHost::start("", &["echo"]).await.unwrap();
    let _watcher = host.runtime.watch().unwrap();
    let mut events = host.runtime.subscribe();
    let before = host
        .runtime
        .plugin("echo")
        .unwrap()
        .current()
        .digest
        .clone();
    let original = std::fs::read(fixture("echo")).unwrap();
    install(&host, "echo", &original[..original.len() / 3]);
    wait_for(&mut events, |e| matches!(e, RuntimeEvent::Rejected { .. })).await;
    let status = host.runtime.status();
    let echo = status.iter().find(|s| s.name == "echo").unwrap();
    assert_eq!(echo.state, "degraded");
    assert!(echo.last_error.as_deref().unwrap().contains("truncated"));
    assert_eq!(
        host.runtime.plugin("echo").unwrap().current().digest,
        before
    );
    assert!(
        host.runtime
            .call_tool("echo", r#"{"text":"x"}"#)
            .await
            .is_ok()
    );

    // A good revision afterwards clears the error.
    install(&host, "echo", &with_marker(&original, "fixed"));
    wait_for(&mut events, |e| matches!(e, RuntimeEvent::Loaded { .. })).await;
    let status = host.runtime.status();
    assert_eq!(
        status.iter().find(|s| s.name == "echo").unwrap().state,
        "ready"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_files_load_and_removed_files_unload() {
    let host = TestHost::start("", &[]).await.unwrap();
    let _watcher = host.runtime.watch().unwrap();
    let mut events = host.runtime.subscribe();
    install(&host, "echo", &std::fs::read(fixture("echo")).unwrap());
    wait_for(
        &mut events,
        |e| matches!(e, RuntimeEvent::Loaded { plugin, .. } if plugin == "echo"),
    )
    .await;
    assert!(
        host.runtime
            .call_tool("echo", r#"{"text":"x"}"#)
            .await
            .is_ok()
    );
    std::fs::remove_file(host.plugins_dir().join("echo.wasm")).unwrap();
    wait_for(
        &mut events,
        |e| matches!(e, RuntimeEvent::Removed { plugin } if plugin == "echo"),
    )
    .await;
    assert!(
        host.runtime
            .call_tool("echo", r#"{"text":"x"}"#)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_finish_on_the_old_revision() {
    let host = TestHost::start("  budgets:\n    timeout_ms: 400\n", &["hostile"])
        .await
        .unwrap();
    let runtime = host.runtime.clone();
    // A spinning call holds the old revision until its deadline.
    let in_flight = tokio::spawn(async move { runtime.call_tool("spin", "{}").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let original = std::fs::read(fixture("hostile")).unwrap();
    host.runtime
        .load_bytes(
            with_marker(&original, "new"),
            databot::runtime::PluginSource::File(host.plugins_dir().join("hostile.wasm")),
        )
        .await
        .unwrap();
    let error = in_flight.await.unwrap().unwrap_err();
    assert_eq!(error.kind, databot::runtime::ErrorKind::Timeout);
}

/// A folder laid out as Kubernetes mounts a ConfigMap: `echo.wasm` links to
/// `..data/echo.wasm`, and `..data` links to the current version's folder; an update swaps
/// `..data` in one rename, so no event names a `.wasm` file.
fn configmap_version(plugins: &std::path::Path, version: &str, bytes: &[u8]) {
    let folder = plugins.join(format!("..{version}"));
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("echo.wasm"), bytes).unwrap();
    let link = plugins.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &link).unwrap();
    std::fs::rename(&link, plugins.join("..data")).unwrap();
    let entry = plugins.join("echo.wasm");
    if std::fs::symlink_metadata(&entry).is_err() {
        std::os::unix::fs::symlink("..data/echo.wasm", &entry).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_a_folder_all_take_a_swapped_configmap_revision() {
    let original = std::fs::read(fixture("echo")).unwrap();
    let host = TestHost::start_with("  rescan_seconds: 1\n", &[], |dir| {
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins)?;
        configmap_version(&plugins, "v1", &original);
        Ok(())
    })
    .await
    .unwrap();
    // A second replica on the same folder.
    let other = databot::runtime::Runtime::new(Arc::new(host.runtime.config().clone())).unwrap();
    other.load_configured().await.unwrap();
    let digest_of = |runtime: &databot::runtime::Runtime| {
        runtime
            .status()
            .into_iter()
            .find(|status| status.name == "echo")
            .and_then(|status| status.digest)
    };
    assert_eq!(digest_of(&host.runtime), digest_of(&other));
    let _watchers = (host.runtime.watch().unwrap(), other.watch().unwrap());
    let (mut first, mut second) = (host.runtime.subscribe(), other.subscribe());
    let revised = with_marker(&original, "configmap-v2");
    let digest = databot::digest::sha256_hex(&revised);
    configmap_version(&host.plugins_dir(), "v2", &revised);
    for events in [&mut first, &mut second] {
        wait_for(
            events,
            |e| matches!(e, RuntimeEvent::Loaded { digest: d, .. } if *d == digest),
        )
        .await;
    }
    assert_eq!(digest_of(&host.runtime).as_deref(), Some(digest.as_str()));
    assert_eq!(
        digest_of(&other).as_deref(),
        Some(digest.as_str()),
        "both replicas"
    );
    let output = other.call_tool("echo", r#"{"text":"hi"}"#).await.unwrap();
    assert!(output.contains("hi"));
}
