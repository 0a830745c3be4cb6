//! Channel benchmarks (issue 16), against the real `databot serve` with the built-in `slack`
//! channel, a fake Slack Web API and a fake provider on loopback:
//! - webhook to acknowledgement: 200 concurrent signed deliveries while every turn takes 2 s
//!   (target p99 ≤ 20 ms);
//! - 2,000 deliveries of which 20% are retries (`X-Slack-Retry-Num`): lost and answered-twice
//!   counts (target 0 and 0);
//! - first streamed post at the fake Slack after the provider's first token (target ≤ 300 ms).
//!
//! `cargo bench -p databot-e2e --bench channels`; prints one table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use databot_e2e::chat_platforms::{
    SlackExtra, deliver, eventually, fake_provider, fake_slack, requests_to, slack_config,
    slack_headers, slack_mention, unix_now,
};
use databot_e2e::served::ServedDatabot;
use databot_e2e::{ScriptedResponse, serve_scripted};

const SECRET: &str = "bench-signing-secret";

fn slack_yaml(slack_port: u16) -> String {
    slack_config(slack_port, SECRET, SlackExtra::default())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// 200 concurrent signed mentions (distinct chats and events); their acknowledgement times.
async fn acknowledgements(port: u16, round: usize) -> Vec<Duration> {
    let deliveries = (0..200).map(|i| async move {
        let body = slack_mention(
            &format!("EvAck{round}-{i}"),
            "U1",
            &format!("CACK{round}{i}"),
            &format!("1700000000.{i:06}"),
            "count the orders",
        );
        let headers = slack_headers(SECRET, unix_now(), &body);
        let started = Instant::now();
        let (status, _) = deliver(port, "POST", "/channels/slack", &headers, &body).await;
        assert_eq!(status, 200, "delivery {i} was not acknowledged");
        started.elapsed()
    });
    let mut times = futures::future::join_all(deliveries).await;
    times.sort();
    times
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("channels: benchmark");
        return;
    }
    let binary = env!("CARGO_BIN_EXE_databot_cli");

    // 1. Acknowledgement while turns are slow.
    let slow = fake_provider("ok", 1, Duration::from_secs(2)).await;
    let (slack_port, _) = fake_slack(|_, _| None).await;
    let served = ServedDatabot::start(binary, slow, &slack_yaml(slack_port)).await;
    acknowledgements(served.port, 99).await; // warm-up
    tokio::time::sleep(Duration::from_secs(3)).await;
    // For a profiler: `CHANNELS_PROFILE_ROUNDS=N` prints the host's pid, waits 5 s (attach
    // then), runs N bursts 2 s apart and stops.
    if let Some(rounds) = std::env::var("CHANNELS_PROFILE_ROUNDS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        println!("databot pid {}", served.pid);
        tokio::time::sleep(Duration::from_secs(5)).await;
        for round in 0..rounds {
            let times = acknowledgements(served.port, 1000 + round).await;
            println!(
                "round {round}: p50 {} p99 {}",
                ms(percentile(&times, 0.5)),
                ms(percentile(&times, 0.99))
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        return;
    }
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for round in 0..4 {
        let times = acknowledgements(served.port, round).await;
        p50s.push(percentile(&times, 0.5));
        p99s.push(percentile(&times, 0.99));
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    p50s.sort();
    p99s.sort();
    drop(served);

    // 2. 2,000 deliveries, 400 of them retries of earlier ones.
    let fast = fake_provider("done", 1, Duration::ZERO).await;
    let (slack_port, slack_seen) = fake_slack(|_, _| None).await;
    let served = ServedDatabot::start(binary, fast, &slack_yaml(slack_port)).await;
    let port = served.port;
    let unique = 1600;
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let plan: Vec<(usize, bool)> = (0..2000)
        .map(|i| {
            // Every fifth delivery repeats an event sent a little earlier.
            if i % 5 == 4 {
                ((i / 5) * 4, true)
            } else {
                (i - i / 5, false)
            }
        })
        .collect();
    let started = Instant::now();
    for batch in plan.chunks(50) {
        let requests = batch.iter().map(|&(event, retry)| {
            let sent = sent.clone();
            async move {
                let body = slack_mention(
                    &format!("EvLoad{event}"),
                    "U1",
                    &format!("CLOAD{}", event % 40),
                    &format!("1700000001.{event:06}"),
                    "hello",
                );
                let mut headers = slack_headers(SECRET, unix_now(), &body);
                if retry {
                    headers.push(("x-slack-retry-num".into(), "1".into()));
                    headers.push(("x-slack-retry-reason".into(), "http_timeout".into()));
                }
                // Like the platform: a 503 (the first copy still being handed on, or the bus
                // full) is delivered again a little later.
                let mut status = 0;
                for _ in 0..50 {
                    status = deliver(port, "POST", "/channels/slack", &headers, &body)
                        .await
                        .0;
                    if status != 503 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                if status == 200 {
                    sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                status
            }
        });
        let statuses = futures::future::join_all(requests).await;
        assert!(statuses.iter().all(|s| *s == 200), "statuses: {statuses:?}");
    }
    eventually(Duration::from_secs(180), || {
        requests_to(&slack_seen, "/chat.postMessage").len() >= unique
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let posts = requests_to(&slack_seen, "/chat.postMessage");
    let threads: std::collections::HashSet<String> = posts
        .iter()
        .map(|p| {
            p.json()["thread_ts"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let lost = unique - threads.len().min(unique);
    let twice = posts.len() - threads.len();
    let load_seconds = started.elapsed().as_secs_f64();
    drop(served);

    // 3. First streamed post after the provider's first token.
    let pause = Duration::from_millis(300);
    let (provider_port, provider_seen) = serve_scripted(move |_, _| {
        let mut response = ScriptedResponse::sse(&[
            serde_json::json!({"choices": [{"index": 0, "delta": {"content": "First "}}]}),
            serde_json::json!({"choices": [{"index": 0, "delta": {"content": "words, "}}]}),
            serde_json::json!({"choices": [{"index": 0, "delta": {"content": "then more."}, "finish_reason": "stop"}]}),
        ]);
        response.pause = pause;
        response
    })
    .await;
    let (slack_port, slack_seen) = fake_slack(|_, _| None).await;
    let served = ServedDatabot::start(binary, provider_port, &slack_yaml(slack_port)).await;
    let mut firsts = Vec::new();
    for i in 0..21 {
        let body = slack_mention(
            &format!("EvStream{i}"),
            "U1",
            &format!("CSTR{i}"),
            &format!("1700000002.{i:06}"),
            "stream",
        );
        let (status, _) = deliver(
            served.port,
            "POST",
            "/channels/slack",
            &slack_headers(SECRET, unix_now(), &body),
            &body,
        )
        .await;
        assert_eq!(status, 200);
        let thread = format!("1700000002.{i:06}");
        assert!(
            eventually(Duration::from_secs(10), || requests_to(
                &slack_seen,
                "/chat.postMessage"
            )
            .iter()
            .any(|p| p.json()["thread_ts"] == thread.as_str()))
            .await
        );
        let post = requests_to(&slack_seen, "/chat.postMessage")
            .into_iter()
            .find(|p| p.json()["thread_ts"] == thread.as_str())
            .expect("the post");
        let asked = provider_seen.all()[i].received_at;
        // The provider's first token left `pause` after its request arrived.
        firsts.push(post.received_at.saturating_duration_since(asked + pause));
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let warm: Vec<Duration> = firsts[1..].to_vec();
    let mut sorted = warm.clone();
    sorted.sort();

    println!("| channel benchmark | result | target |");
    println!("|---|---|---|");
    println!(
        "| webhook to ack, 200 concurrent signed deliveries, turns of 2 s: p50 / p99 (median of 4 rounds) | {} / {} | p99 ≤ 20 ms |",
        ms(p50s[p50s.len() / 2]),
        ms(p99s[p99s.len() / 2])
    );
    println!(
        "| 2,000 deliveries, 400 retries: lost / answered twice ({:.1} s) | {lost} / {twice} | 0 / 0 |",
        load_seconds
    );
    println!(
        "| first streamed post after the provider's first token: median / max of 20 | {} / {} | ≤ 300 ms |",
        ms(sorted[sorted.len() / 2]),
        ms(*sorted.last().unwrap_or(&Duration::ZERO))
    );
}
