//! The Kafka bus (issue 18): `databot serve` processes on loopback, tansu, the local
//! PostgreSQL (sessions on a schema of the run's own), the mock OpenAI-compatible provider
//! answering at once.
//!
//! - **added latency**: one client, one message at a time (`POST /api/v1/message`, kept
//!   connection), on one replica of the Kafka bus against one process on the in-process bus
//!   with the same PostgreSQL sessions; p50 and p99 of each and the difference (target: p50
//!   added ≤ 5 ms);
//! - **throughput**: 64 clients, each its own conversation, one message at a time, spread
//!   round-robin over 1 and over 3 replicas (and the in-process bus for reference): messages
//!   per second (two cores: three replicas share them);
//! - **failover**: 3 replicas, 60 conversations answered once; one replica is killed
//!   (`SIGKILL`); every conversation sends again through the others until answered: the time
//!   from the death to the last conversation answered (target ≤ 10 s; the group's
//!   `session.timeout.ms`, 6 s by default, is most of it).
//!
//! `DATABOT_BENCH_MESSAGES` changes the messages per measurement (default 2,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use databot_e2e::http1::Http1Client;
use databot_e2e::replicas::Replicas;

const BINARY: &str = env!("CARGO_BIN_EXE_databot_cli");
const CLIENTS: usize = 64;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

async fn send(client: &mut Http1Client, chat: &str, content: &str) -> Result<(), String> {
    let body = serde_json::json!({ "content": content, "chat_id": chat }).to_string();
    let answer = client
        .post_json("/api/v1/message", &[], &body, false)
        .await
        .map_err(|e| e.to_string())?;
    if answer.status != 200 {
        return Err(format!("{}: {}", answer.status, answer.text()));
    }
    let expected = format!("answer: {content}");
    if !answer.text().contains(&expected) {
        return Err(format!("unexpected answer {}", answer.text()));
    }
    Ok(())
}

/// Latencies of `count` sequential messages on `port` (after a warm-up).
async fn sequential(port: u16, count: usize) -> Vec<Duration> {
    let mut client = Http1Client::new(port);
    let chat = databot_e2e::unique_name("seq");
    for n in 0..50 {
        send(&mut client, &chat, &format!("warm {n}"))
            .await
            .expect("warm-up");
    }
    let mut latencies = Vec::with_capacity(count);
    for n in 0..count {
        let started = Instant::now();
        send(&mut client, &chat, &format!("m {n}"))
            .await
            .expect("answered");
        latencies.push(started.elapsed());
    }
    latencies.sort_unstable();
    latencies
}

/// Messages per second with `CLIENTS` conversations spread over `ports`.
async fn throughput(ports: &[u16], count: usize) -> f64 {
    let prefix = databot_e2e::unique_name("tput");
    // Every conversation answered once before timing (claims, group assignment).
    run_clients(ports, &format!("{prefix}w"), CLIENTS).await;
    let started = Instant::now();
    run_clients(ports, &prefix, count).await;
    count as f64 / started.elapsed().as_secs_f64()
}

async fn run_clients(ports: &[u16], prefix: &str, count: usize) {
    let ports = Arc::new(ports.to_vec());
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let ports = ports.clone();
            let chat = format!("{prefix}-{client}");
            tokio::spawn(async move {
                let mut connections: Vec<Http1Client> =
                    ports.iter().map(|port| Http1Client::new(*port)).collect();
                let mut n = client;
                while n < count {
                    let member = n % connections.len();
                    send(&mut connections[member], &chat, &format!("m {n}"))
                        .await
                        .expect("answered");
                    n += CLIENTS;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client");
    }
}

/// Time from a replica's death to every conversation answered again.
async fn failover() -> Duration {
    let mut replicas = Replicas::start(BINARY, 3, "").await;
    let prefix = databot_e2e::unique_name("failover");
    let conversations = 60;
    let ports = [replicas.port(0), replicas.port(2)];
    run_clients(
        &[replicas.port(0), replicas.port(1), replicas.port(2)],
        &prefix,
        conversations,
    )
    .await;
    let died = Instant::now();
    replicas.members[1].kill().await;
    let tasks: Vec<_> = (0..conversations)
        .map(|conversation| {
            let port = ports[conversation % 2];
            let chat = format!("{prefix}-{conversation}");
            tokio::spawn(async move {
                let mut client = Http1Client::new(port);
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    if send(&mut client, &chat, &format!("after {attempt}"))
                        .await
                        .is_ok()
                    {
                        return died.elapsed();
                    }
                    client = Http1Client::new(port);
                }
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for task in tasks {
        slowest = slowest.max(task.await.expect("conversation"));
    }
    slowest
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("scale_out: benchmark");
        return;
    }
    let count: usize = std::env::var("DATABOT_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);

    let baseline = Replicas::start_in_process(BINARY).await;
    let in_process = sequential(baseline.port(0), count).await;
    let in_process_tput = throughput(&[baseline.port(0)], count).await;
    drop(baseline);

    let one = Replicas::start(BINARY, 1, "").await;
    let kafka = sequential(one.port(0), count).await;
    let one_tput = throughput(&[one.port(0)], count).await;
    drop(one);

    let three = Replicas::start(BINARY, 3, "").await;
    let three_ports: Vec<u16> = (0..3).map(|index| three.port(index)).collect();
    let three_tput = throughput(&three_ports, count).await;
    drop(three);

    let failover = failover().await;

    let (p50_in, p99_in) = (percentile(&in_process, 0.5), percentile(&in_process, 0.99));
    let (p50_kafka, p99_kafka) = (percentile(&kafka, 0.5), percentile(&kafka, 0.99));
    println!("one client, sequential ({count} messages):");
    println!(
        "  in-process bus   p50 {:.2} ms  p99 {:.2} ms",
        ms(p50_in),
        ms(p99_in)
    );
    println!(
        "  Kafka bus        p50 {:.2} ms  p99 {:.2} ms",
        ms(p50_kafka),
        ms(p99_kafka)
    );
    println!(
        "  added by Kafka   p50 {:.2} ms  (target ≤ 5 ms)",
        ms(p50_kafka.saturating_sub(p50_in))
    );
    println!("{CLIENTS} conversations at once ({count} messages):");
    println!("  in-process bus, 1 process  {in_process_tput:.0} msg/s");
    println!("  Kafka bus, 1 replica       {one_tput:.0} msg/s");
    println!(
        "  Kafka bus, 3 replicas      {three_tput:.0} msg/s  ({:.2}x one replica, on 2 cores)",
        three_tput / one_tput
    );
    println!(
        "failover: a replica killed, all its conversations answered again after {:.2} s (target ≤ 10 s)",
        failover.as_secs_f64()
    );
}
