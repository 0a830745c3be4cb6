//! Memory over many conversations (issue 15): `databot serve` (child process, openai provider
//! against a loopback mock, SQLite sessions) answers one message in each of 100,000 distinct
//! conversations from 50 concurrent clients; resident memory is read after a warm-up, right
//! after the last answer, and once the conversations have gone idle for 40 s (a conversation's
//! bus worker ends when its queue is empty; pools shrink on their own idle timers). Target:
//! growth under 50 MB after idle.
//!
//! `DATABOT_BENCH_CONVERSATIONS` changes the count (default 100,000).

use std::time::{Duration, Instant};

use databot_e2e::http1::Http1Client;
use databot_e2e::mock_openai::serve_mock_openai;
use databot_e2e::served::ServedDatabot;

const CLIENTS: usize = 50;
/// How long the conversations stay idle before the last reading.
const IDLE: Duration = Duration::from_secs(40);

async fn conversations(port: u16, prefix: &str, count: usize) {
    let tasks = (0..CLIENTS).map(|client| {
        let prefix = prefix.to_owned();
        tokio::spawn(async move {
            let mut http = Http1Client::new(port);
            let mut i = client;
            while i < count {
                let body = serde_json::json!({ "content": format!("m{i}"), "chat_id": format!("{prefix}{i}") })
                    .to_string();
                let answer = http
                    .post_json("/api/v1/message", &[], &body, false)
                    .await
                    .expect("answered");
                assert_eq!(answer.status, 200, "{}", answer.text());
                i += CLIENTS;
            }
        })
    });
    for task in tasks.collect::<Vec<_>>() {
        task.await.expect("client task");
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("soak: benchmark");
        return;
    }
    let count: usize = std::env::var("DATABOT_BENCH_CONVERSATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let provider = serve_mock_openai().await;
    let databot = ServedDatabot::start(env!("CARGO_BIN_EXE_databot_cli"), provider, "").await;
    conversations(databot.port, "warm-", 2_000).await;
    tokio::time::sleep(IDLE).await;
    let before = databot.rss_kib();
    let started = Instant::now();
    conversations(databot.port, "soak-", count).await;
    let elapsed = started.elapsed();
    let after = databot.rss_kib();
    tokio::time::sleep(IDLE).await;
    let idle = databot.rss_kib();
    println!(
        "{count} conversations in {elapsed:.1?} ({:.0} messages/s): RSS {:.1} MiB after warm-up, {:.1} MiB after the last answer (+{:.1}), {:.1} MiB once idle (+{:.1} MiB; target < 50 MB)",
        count as f64 / elapsed.as_secs_f64(),
        mib(before),
        mib(after),
        mib(after.saturating_sub(before)),
        mib(idle),
        mib(idle.saturating_sub(before)),
    );
}
