//! Start-up with 20 plugins on a warm compile cache, hot-swap latency (uncached compile
//! included) and resident memory with 20 idle plugins. Prints medians; see docs/benchmarks.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use databot::config::Config;
use databot::runtime::{Runtime, RuntimeEvent};
use databot_e2e::{fixture, with_marker};

const PLUGINS: usize = 20;
const RUNS: usize = 11;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn resident_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Twenty distinct connector plugins: the fixture with its manifest name rewritten (same length).
fn write_plugins(folder: &std::path::Path) {
    let original = std::fs::read(fixture("echo_connector")).unwrap();
    let needle = br#""name":"echo_connector""#;
    for index in 0..PLUGINS {
        let replacement = format!(r#""name":"echo_connec_{index:02}""#);
        assert_eq!(replacement.len(), needle.len());
        let mut bytes = original.clone();
        let mut at = 0;
        while let Some(found) = bytes[at..].windows(needle.len()).position(|w| w == needle) {
            let start = at + found;
            bytes[start..start + needle.len()].copy_from_slice(replacement.as_bytes());
            at = start + needle.len();
        }
        std::fs::write(folder.join(format!("plugin_{index:02}.wasm")), bytes).unwrap();
    }
}

fn config(dir: &std::path::Path) -> Arc<Config> {
    let yaml = format!(
        "runtime:\n  plugins_dir: {}\n  data_dir: {}\n  builtin_plugins: false\n",
        dir.join("plugins").display(),
        dir.join("data").display()
    );
    Arc::new(Config::parse(&yaml, "bench.yaml", |_| None).unwrap())
}

async fn start(dir: &std::path::Path) -> (Runtime, Duration) {
    let started = Instant::now();
    let runtime = Runtime::new(config(dir)).unwrap();
    runtime.load_configured().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(
        runtime
            .status()
            .iter()
            .filter(|s| s.state == "ready")
            .count(),
        PLUGINS
    );
    (runtime, elapsed)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        println!("lifecycle: benchmark");
        return;
    }
    // Child mode: one warm start in a fresh process, then report resident memory.
    if let Some(index) = args.iter().position(|a| a == "--rss-of") {
        let dir = std::path::PathBuf::from(&args[index + 1]);
        let (_runtime, _) = start(&dir).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        println!("{:.1}", resident_mb());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    write_plugins(&dir.path().join("plugins"));

    // Cold start fills the cache; then warm starts are measured.
    let (cold_runtime, cold) = start(dir.path()).await;
    drop(cold_runtime);
    let mut warm = Vec::new();
    for _ in 0..RUNS {
        let (runtime, elapsed) = start(dir.path()).await;
        warm.push(elapsed);
        drop(runtime);
    }

    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--rss-of")
        .arg(dir.path())
        .output()
        .unwrap();
    let rss = String::from_utf8_lossy(&child.stdout).trim().to_owned();

    let (runtime, _) = start(dir.path()).await;

    let _watcher = runtime.watch().unwrap();
    let mut events = runtime.subscribe();
    let original = std::fs::read(dir.path().join("plugins/plugin_00.wasm")).unwrap();
    let mut swaps = Vec::new();
    for run in 0..RUNS {
        let bytes = with_marker(&original, &format!("swap-{run}-{}", std::process::id()));
        let digest = databot::digest::sha256_hex(&bytes);
        let temporary = dir.path().join("swap.partial");
        std::fs::write(&temporary, &bytes).unwrap();
        let landed = Instant::now();
        std::fs::rename(&temporary, dir.path().join("plugins/plugin_00.wasm")).unwrap();
        loop {
            match events.recv().await {
                Ok(RuntimeEvent::Loaded { digest: d, .. }) if d == digest => break,
                Ok(RuntimeEvent::Rejected { reason, .. }) => panic!("swap refused: {reason}"),
                _ => {}
            }
        }
        swaps.push(landed.elapsed());
    }

    println!("start, {PLUGINS} plugins, cold cache: {cold:?}");
    println!(
        "start, {PLUGINS} plugins, warm cache: median {:?} over {RUNS} runs",
        median(warm)
    );
    println!("resident memory with {PLUGINS} idle plugins (fresh process, warm cache): {rss} MB");
    println!(
        "hot swap, file landed -> new revision callable: median {:?} over {RUNS} runs",
        median(swaps)
    );
}
