//! Scheduler benchmarks (issue 17):
//! - slot to start with 1,000 schedules loaded, on the embedded default (SQLite): 1,000 jobs
//!   every 10 s spread over the 10 s (about 100 runs a second), and 1,000 jobs due in the same
//!   second (a burst); each run one call of the `echo` tool. Target: p99 ≤ 100 ms.
//! - claiming overhead per run on PostgreSQL: making one due slot into a run and starting it
//!   (`materialize` + `claim`, the two transactions a run costs), one job at a time and 200
//!   jobs due at once. Target: ≤ 2 ms per run.
//!
//! `cargo bench -p databot-e2e --bench schedules`; prints one table.

use std::time::{Duration, Instant};

use databot::config::JobSpec;
use databot::schedules::store::{RunEnd, RunStatus, now_ms};
use databot::schedules::{JobOrigin, ScheduleStore};
use databot_e2e::TestHost;
use databot_e2e::schedules::{SchedulerUnderTest, postgres_sessions};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn echo_job(name: &str, every: &str) -> JobSpec {
    serde_json::from_value(serde_json::json!({
        "name": name, "every": every, "tool": "echo", "arguments": {"text": "tick"},
        "misfire_grace_seconds": 60
    }))
    .expect("a job")
}

/// Start-minus-due of every finished run of the jobs `prefix-0..count`, in ms, sorted.
async fn lags(store: &ScheduleStore, prefix: &str, count: usize) -> Vec<f64> {
    let mut lags = Vec::new();
    for index in 0..count {
        for run in store
            .history(&format!("{prefix}-{index}"), 1000)
            .await
            .expect("history")
        {
            if let Some(started) = run.started_at
                && run.status == RunStatus::Succeeded
            {
                lags.push((started - run.due_at) as f64);
            }
        }
    }
    lags.sort_by(f64::total_cmp);
    lags
}

async fn pause_all(store: &ScheduleStore, prefix: &str, count: usize) {
    for index in 0..count {
        store
            .set_paused(
                &format!("{prefix}-{index}"),
                true,
                now_ms(),
                databot::schedules::store::Only::Any,
            )
            .await
            .expect("paused");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// 1,000 schedules on SQLite: spread over 10 s, then all due in one second.
async fn slot_to_start() -> Vec<(String, String)> {
    let host = TestHost::start("", &["echo"]).await.expect("host");
    let url = format!("sqlite://{}", host.dir.path().join("sessions.db").display());
    let scheduler = SchedulerUnderTest::start(&host, &url, "bench", "").await;
    let store = scheduler.schedules.store.clone();
    let mut rows = Vec::new();

    // Spread: anchors 10 ms apart, so the 1,000 jobs fall due evenly over each 10 s.
    let start = now_ms() + 2_000;
    for index in 0..1000 {
        store
            .add(
                echo_job(&format!("spread-{index}"), "10s"),
                JobOrigin::Operator,
                "bench",
                None,
                start - 10_000 + index * 10,
            )
            .await
            .expect("job");
    }
    tokio::time::sleep(Duration::from_secs(32)).await;
    pause_all(&store, "spread", 1000).await;
    let spread = lags(&store, "spread", 1000).await;
    rows.push((
        format!(
            "slot to start, 1,000 jobs every 10 s spread evenly ({} runs)",
            spread.len()
        ),
        format!(
            "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            percentile(&spread, 0.5),
            percentile(&spread, 0.99),
            spread.last().copied().unwrap_or_default()
        ),
    ));

    // Burst: 1,000 more jobs whose slots fall in the same second.
    let anchor = now_ms() + 3_000;
    for index in 0..1000 {
        store
            .add(
                echo_job(&format!("burst-{index}"), "1h"),
                JobOrigin::Operator,
                "bench",
                None,
                anchor - 3_600_000 + index,
            )
            .await
            .expect("job");
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    pause_all(&store, "burst", 1000).await;
    let burst = lags(&store, "burst", 1000).await;
    rows.push((
        format!(
            "slot to start, 1,000 jobs due in the same second ({} runs)",
            burst.len()
        ),
        format!(
            "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            percentile(&burst, 0.5),
            percentile(&burst, 0.99),
            burst.last().copied().unwrap_or_default()
        ),
    ));
    scheduler.stop().await;
    rows
}

/// `materialize` + `claim` on PostgreSQL, per run.
async fn claim_overhead() -> Vec<(String, String)> {
    let url = postgres_sessions("databot_sched_bench").await;
    let sessions = databot::agent::sessions::SessionStore::connect(&url)
        .await
        .expect("PostgreSQL sessions");
    let store = ScheduleStore::open(&sessions, "bench".into(), Duration::from_secs(30))
        .await
        .expect("tables");
    let ended = RunEnd {
        status: RunStatus::Succeeded,
        output: None,
        error: None,
        trace_id: None,
        delivered: None,
        digest: None,
    };
    // One job due at a time: each step is one slot made into a run and started.
    let origin = now_ms() - 1_000_000;
    store
        .add(
            echo_job("single", "1s"),
            JobOrigin::Operator,
            "bench",
            None,
            origin,
        )
        .await
        .expect("job");
    let mut single = Vec::new();
    let first = store
        .get("single")
        .await
        .expect("job")
        .next_slot
        .expect("slot");
    for step in 0..300 {
        let now = first + step * 1000;
        let started = Instant::now();
        store
            .materialize(now, 256, |_| 0)
            .await
            .expect("materialize");
        let claimed = store.claim(now, 256).await.expect("claim");
        let elapsed = started.elapsed();
        assert_eq!(claimed.len(), 1, "one run per step");
        if step >= 20 {
            single.push(elapsed.as_secs_f64() * 1000.0);
        }
        store
            .finish(&claimed[0], &ended, now)
            .await
            .expect("finish");
    }
    single.sort_by(f64::total_cmp);
    store
        .remove("single", databot::schedules::store::Only::Any)
        .await
        .expect("removed");

    // 200 jobs due at once, claimed in batches.
    let base = now_ms() - 1_000_000;
    for index in 0..200 {
        store
            .add(
                echo_job(&format!("many-{index}"), "1h"),
                JobOrigin::Operator,
                "bench",
                None,
                base,
            )
            .await
            .expect("job");
    }
    let due = base + 3_600_000;
    let started = Instant::now();
    let mut runs = 0;
    while runs < 200 {
        store
            .materialize(due, 256, |_| 0)
            .await
            .expect("materialize");
        runs += store.claim(due, 256).await.expect("claim").len();
    }
    let batch = started.elapsed().as_secs_f64() * 1000.0 / runs as f64;
    vec![
        (
            "claim overhead on PostgreSQL, one due job (materialize + claim)".into(),
            format!(
                "median {:.2} ms, p99 {:.2} ms per run",
                percentile(&single, 0.5),
                percentile(&single, 0.99)
            ),
        ),
        (
            "claim overhead on PostgreSQL, 200 jobs due together".into(),
            format!("{batch:.2} ms per run"),
        ),
    ]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("schedules: benchmark");
        return;
    }
    let mut rows = claim_overhead().await;
    rows.extend(slot_to_start().await);
    println!("| measurement | result |\n|---|---|");
    for (what, result) in rows {
        println!("| {what} | {result} |");
    }
}
