//! Attacks run in a child process under a memory limit, measured from inside.
//!
//! The parent test re-runs its own test binary with `ATTACK_CASE` set, selecting one ignored
//! entry test, with `RLIMIT_DATA` lowered first so a host that regresses fails that child (its
//! allocations fail) instead of taking the machine down. `RLIMIT_DATA` counts the writable
//! private memory a process maps, which is what a runaway host allocates; `RLIMIT_AS` cannot
//! be used because wasmtime reserves gigabytes of address space (never touched) per memory.
//!
//! Inside, `measure` samples what the host holds while the attack runs next to a well-behaved
//! plugin: peak RSS over the baseline (the kernel's high-water mark, so nothing is missed
//! between samples), peak open descriptors, and the neighbour's call latencies. The child
//! prints one `ATTACK-REPORT` line of JSON; `run_contained` returns it with the child's
//! stderr (the host's log).

use std::future::Future;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::memory::{reset_peak, status_kib};

/// The environment variable naming the case a child runs.
pub const CASE_VAR: &str = "ATTACK_CASE";
const REPORT_PREFIX: &str = "ATTACK-REPORT ";

/// The case this process was started to run, if it is a child.
pub fn child_case() -> Option<String> {
    std::env::var(CASE_VAR).ok()
}

/// What a child measured, and what it wrote to stderr.
#[derive(Debug)]
pub struct Contained {
    pub report: Value,
    pub stderr: String,
}

impl Contained {
    pub fn kib(&self, key: &str) -> u64 {
        self.report[key].as_u64().unwrap_or(u64::MAX)
    }
}

/// Limits set on the child before it starts.
#[derive(Debug, Clone, Copy)]
pub struct ChildLimits {
    /// `RLIMIT_DATA`, bytes.
    pub data_bytes: u64,
    /// `RLIMIT_NOFILE` (soft and hard), when set.
    pub open_files: Option<u64>,
}

/// Run the ignored test `entry` of this test binary as a child with `case` and `limits`; its
/// report, or a panic with what the child said.
pub fn run_contained(entry: &str, case: &str, limits: ChildLimits) -> Contained {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().expect("the test binary");
    let mut command = Command::new(exe);
    command
        .args([
            entry,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CASE_VAR, case)
        .env("RUST_LOG", "info");
    // SAFETY: only async-signal-safe calls (setrlimit) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let data = libc::rlimit {
                rlim_cur: limits.data_bytes,
                rlim_max: limits.data_bytes,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &data) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(files) = limits.open_files {
                let nofile = libc::rlimit {
                    rlim_cur: files,
                    rlim_max: files,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &nofile) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let output = command.output().expect("the child runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = stdout
        .lines()
        .find_map(|line| line.split_once(REPORT_PREFIX).map(|(_, json)| json))
        .and_then(|json| serde_json::from_str(json).ok());
    match report {
        Some(report) if output.status.success() => Contained { report, stderr },
        _ => panic!(
            "attack `{case}` did not finish in its child ({}):\n--- stdout\n{stdout}\n--- stderr (last 4 KiB)\n{}",
            output.status,
            &stderr[stderr.len().saturating_sub(4096)..]
        ),
    }
}

/// Open descriptors of this process.
pub fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count() as u64)
}

fn percentile(sorted: &[u64], per_mille: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(sorted.len() - 1) * per_mille / 1000]
}

/// Latencies of `neighbour` calls, in microseconds, sorted.
async fn neighbour_latencies<F, Fut>(neighbour: &F, calls: usize) -> Vec<u64>
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut latencies = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        assert!(neighbour().await, "the well-behaved plugin failed");
        latencies.push(started.elapsed().as_micros() as u64);
    }
    latencies.sort_unstable();
    latencies
}

/// Run `attack` while `neighbour` (a well-behaved call, `true` when it answered right) runs
/// in a loop; print the report this child is measured by. `extra` goes into the report.
pub async fn measure<F, Fut, A>(neighbour: F, attack: A)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
    A: Future<Output = Value>,
{
    let neighbour = Arc::new(neighbour);
    // Warm up, then the neighbour's latency alone.
    neighbour_latencies(neighbour.as_ref(), 50).await;
    let alone = neighbour_latencies(neighbour.as_ref(), 200).await;

    let stop = Arc::new(AtomicBool::new(false));
    let peak_fds = Arc::new(AtomicU64::new(open_descriptors()));
    let sampler = {
        let (stop, peak_fds) = (stop.clone(), peak_fds.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak_fds.fetch_max(open_descriptors(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let fds_before = open_descriptors();
    let rss_before = status_kib("VmRSS:");
    reset_peak();
    let beside = {
        let (stop, neighbour) = (stop.clone(), neighbour.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                assert!(
                    neighbour().await,
                    "the well-behaved plugin failed during the attack"
                );
                latencies.push(started.elapsed().as_micros() as u64);
            }
            latencies
        })
    };
    let started = Instant::now();
    let outcome = attack.await;
    let attack_ms = started.elapsed().as_millis() as u64;
    let peak_rss = status_kib("VmHWM:");
    stop.store(true, Ordering::Relaxed);
    let mut during = beside.await.expect("the neighbour loop");
    let _ = sampler.join();
    // What stays open once the attack's call is over (its connections must have closed).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fds_after = open_descriptors();
    during.sort_unstable();
    let report = json!({
        "outcome": outcome,
        "attack_ms": attack_ms,
        "rss_before_kib": rss_before,
        "rss_growth_kib": peak_rss.saturating_sub(rss_before),
        "fds_before": fds_before,
        "fds_growth": peak_fds.load(Ordering::Relaxed).saturating_sub(fds_before),
        "fds_after_growth": fds_after.saturating_sub(fds_before),
        "neighbour_alone_p50_us": percentile(&alone, 500),
        "neighbour_calls": during.len(),
        "neighbour_p50_us": percentile(&during, 500),
        "neighbour_p99_us": percentile(&during, 990),
        "neighbour_max_us": during.last().copied().unwrap_or(0),
    });
    println!("{REPORT_PREFIX}{report}");
}
