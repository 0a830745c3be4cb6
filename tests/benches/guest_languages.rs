//! Plugins written in Python (componentize-py): the template's component loaded cold (compiled)
//! and warm (from the compile cache, in a fresh runtime, as a restart does), and the
//! instantiate + call time of its tool next to the Rust `echo` fixture's. Prints medians; see
//! docs/benchmarks.md. Needs componentize-py (`.ci/python-deps.sh` installs it).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use databot::cli::plugin::{Kind, build};
use databot::cli::python_plugin;
use databot::config::Config;
use databot::runtime::Runtime;

const COLD_RUNS: usize = 3;
const WARM_RUNS: usize = 11;
const CALLS: usize = 2000;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn percentile(mut samples: Vec<Duration>, p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn runtime(data_dir: &Path) -> Runtime {
    let yaml = format!(
        "runtime:\n  plugins_dir: {}\n  data_dir: {}\n  builtin_plugins: false\n  watch: false\n",
        data_dir.join("plugins").display(),
        data_dir.display()
    );
    Runtime::new(Arc::new(
        Config::parse(&yaml, "bench.yaml", |_| None).unwrap(),
    ))
    .unwrap()
}

/// Load time of `wasm` in a new runtime over `data_dir` (its compile cache).
async fn load(data_dir: &Path, wasm: &Path) -> (Runtime, Duration) {
    let runtime = runtime(data_dir);
    let started = Instant::now();
    runtime.load_file(wasm).await.unwrap();
    (runtime, started.elapsed())
}

async fn call_times(runtime: &Runtime, tool: &str, args: &str) -> Vec<Duration> {
    for _ in 0..50 {
        runtime.call_tool(tool, args).await.unwrap();
    }
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        runtime.call_tool(tool, args).await.unwrap();
        samples.push(started.elapsed());
    }
    samples
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("guest_languages: benchmark");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("bench_py");
    python_plugin::create(Kind::Tool, "bench_py", &project).unwrap();
    let wasm = build(&project).expect("the Python template builds (is componentize-py installed?)");
    let size_mb = std::fs::metadata(&wasm).unwrap().len() as f64 / 1e6;

    let mut cold = Vec::new();
    for run in 0..COLD_RUNS {
        let data = dir.path().join(format!("cold-{run}"));
        cold.push(load(&data, &wasm).await.1);
    }
    let warm_data = dir.path().join("cold-0");
    let mut warm = Vec::new();
    let mut last = None;
    for _ in 0..WARM_RUNS {
        let (runtime, elapsed) = load(&warm_data, &wasm).await;
        warm.push(elapsed);
        last = Some(runtime);
    }
    let python = last.unwrap();
    let python_calls = call_times(&python, "bench_py_greet", r#"{"name":"ada"}"#).await;

    let rust = runtime(&dir.path().join("rust"));
    rust.load_file(&databot_e2e::fixture("echo")).await.unwrap();
    let rust_calls = call_times(&rust, "echo", r#"{"text":"ada"}"#).await;

    println!("python component: {size_mb:.1} MB");
    println!(
        "load, cold (compiled), median of {COLD_RUNS}: {:.0} ms",
        median(cold).as_secs_f64() * 1e3
    );
    println!(
        "load, warm (compile cache, fresh runtime), median of {WARM_RUNS}: {:.1} ms",
        median(warm).as_secs_f64() * 1e3
    );
    for (name, samples) in [("python", python_calls), ("rust echo", rust_calls)] {
        println!(
            "instantiate + call, {name}: p50 {:.1} µs, p99 {:.1} µs ({CALLS} calls)",
            percentile(samples.clone(), 0.5).as_secs_f64() * 1e6,
            percentile(samples, 0.99).as_secs_f64() * 1e6
        );
    }
}
