//! End to end, side by side with the original (issue 15): `databot serve` as a child process
//! (the real binary path: gateway, bus, agent, openai provider component, SQLite sessions with
//! the default durability), router and RAG off, an OpenAI-compatible mock on loopback that
//! answers at once, and clients on loopback. Each scenario runs in `ROUNDS` rounds; the table
//! shows the median of the rounds next to the original's numbers (measured on the same machine
//! kind; the original cannot run here) and the ratio.
//!
//! Scenarios: plain answer, one client, sequential (p50, throughput); 50 concurrent chats
//! (throughput, p50); the gateway process's CPU per plain message; one tool call per turn,
//! sequential (p50, p95, p99) and 50 concurrent (throughput); a streamed answer to a client
//! that keeps its connection and to one that opens a new connection each time (p50 to the
//! `done` event). The last three also guard against transport stalls (Nagle and delayed
//! ACKs): the tool-call p95 must stay within 2x its p50, the kept connection as fast as a new
//! one.
//!
//! `DATABOT_BENCH_ROUNDS` (default 4) and `DATABOT_BENCH_SCALE` (default 1.0, the share of the
//! default message counts) shorten a run.

use std::time::{Duration, Instant};

use databot_e2e::http1::Http1Client;
use databot_e2e::mock_openai::serve_mock_openai;
use databot_e2e::served::ServedDatabot as Databot;

const CONCURRENT: usize = 50;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(index).copied().unwrap_or_default()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// One message through `/api/v1/message`; its latency. Panics on a wrong answer: a benchmark
/// of wrong answers measures nothing.
async fn message(client: &mut Http1Client, chat: &str, content: &str, expect: &str) -> Duration {
    let body = serde_json::json!({ "content": content, "chat_id": chat }).to_string();
    let started = Instant::now();
    let answer = client
        .post_json("/api/v1/message", &[], &body, false)
        .await
        .expect("message answered");
    let elapsed = started.elapsed();
    let text = answer.text();
    assert!(
        answer.status == 200 && text.contains(expect),
        "unexpected answer {}: {text}",
        answer.status
    );
    elapsed
}

/// One streamed answer through `/api/v1/stream`: time to its `done` event.
async fn streamed(client: &mut Http1Client, chat: &str, content: &str, close: bool) -> Duration {
    let body = serde_json::json!({ "content": content, "chat_id": chat }).to_string();
    let started = Instant::now();
    let answer = client
        .post_json("/api/v1/stream", &[], &body, close)
        .await
        .expect("stream answered");
    let elapsed = started.elapsed();
    let text = answer.text();
    assert!(
        answer.status == 200 && text.contains("event: done") && text.contains("answer: "),
        "unexpected stream {}: {text}",
        answer.status
    );
    elapsed
}

struct Sequential {
    latencies: Vec<Duration>,
    throughput: f64,
    cpu_per_message: Duration,
}

async fn sequential(databot: &Databot, round: usize, count: usize, tool: bool) -> Sequential {
    let mut client = Http1Client::new(databot.port);
    let kind = if tool { "tool" } else { "plain" };
    let cpu = databot.cpu();
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let chat = format!("{kind}-seq-{round}-{}", i / 10);
        let (content, expect) = if tool {
            (format!("tool m{i}"), "done: ".to_owned())
        } else {
            (format!("m{i}"), format!("answer: m{i}"))
        };
        latencies.push(message(&mut client, &chat, &content, &expect).await);
    }
    let elapsed = started.elapsed();
    let cpu_used = databot.cpu().saturating_sub(cpu);
    assert_eq!(client.connections, 1, "the client kept its connection");
    Sequential {
        latencies,
        throughput: count as f64 / elapsed.as_secs_f64(),
        cpu_per_message: cpu_used / count as u32,
    }
}

struct Concurrent {
    latencies: Vec<Duration>,
    throughput: f64,
}

async fn concurrent(databot: &Databot, round: usize, per_chat: usize, tool: bool) -> Concurrent {
    let kind = if tool { "tool" } else { "plain" };
    let started = Instant::now();
    let chats = (0..CONCURRENT).map(|c| {
        let port = databot.port;
        tokio::spawn(async move {
            let mut client = Http1Client::new(port);
            let chat = format!("{kind}-many-{round}-{c}");
            let mut latencies = Vec::with_capacity(per_chat);
            for i in 0..per_chat {
                let (content, expect) = if tool {
                    (format!("tool c{c}m{i}"), "done: ".to_owned())
                } else {
                    (format!("c{c}m{i}"), format!("answer: c{c}m{i}"))
                };
                latencies.push(message(&mut client, &chat, &content, &expect).await);
            }
            latencies
        })
    });
    let mut latencies = Vec::new();
    for chat in chats.collect::<Vec<_>>() {
        latencies.extend(chat.await.expect("chat task"));
    }
    let elapsed = started.elapsed();
    Concurrent {
        throughput: latencies.len() as f64 / elapsed.as_secs_f64(),
        latencies,
    }
}

async fn streaming(
    databot: &Databot,
    round: usize,
    count: usize,
    new_connection: bool,
) -> Vec<Duration> {
    let mut client = Http1Client::new(databot.port);
    let kind = if new_connection { "new" } else { "kept" };
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let chat = format!("stream-{kind}-{round}-{}", i / 10);
        latencies.push(streamed(&mut client, &chat, &format!("s{i}"), new_connection).await);
    }
    let expected = if new_connection { count } else { 1 };
    assert_eq!(client.connections, expected, "connections opened");
    latencies
}

/// The values of one round, in table order.
#[derive(Default, Clone)]
struct Round {
    plain_p50: f64,
    plain_throughput: f64,
    many_throughput: f64,
    many_p50: f64,
    cpu_per_message: f64,
    tool_p50: f64,
    tool_p95: f64,
    tool_p99: f64,
    tool_many_throughput: f64,
    stream_kept_p50: f64,
    stream_new_p50: f64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn scaled(count: usize, scale: f64) -> usize {
    ((count as f64 * scale).round() as usize).max(10)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("end_to_end: benchmark");
        return;
    }
    let rounds: usize = std::env::var("DATABOT_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let scale: f64 = std::env::var("DATABOT_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let provider = serve_mock_openai().await;
    let databot = Databot::start(env!("CARGO_BIN_EXE_databot_cli"), provider, "").await;
    // Warm-up: compile caches, first connections, SQLite pages.
    sequential(&databot, 1000, 200, false).await;
    sequential(&databot, 1000, 100, true).await;
    streaming(&databot, 1000, 50, false).await;

    let mut results = Vec::new();
    for round in 0..rounds {
        let plain = sequential(&databot, round, scaled(1000, scale), false).await;
        let mut plain_latencies = plain.latencies;
        let many = concurrent(&databot, round, scaled(40, scale), false).await;
        let mut many_latencies = many.latencies;
        let tool = sequential(&databot, round, scaled(500, scale), true).await;
        let mut tool_latencies = tool.latencies;
        let tool_many = concurrent(&databot, round, scaled(20, scale), true).await;
        let mut kept = streaming(&databot, round, scaled(300, scale), false).await;
        let mut new = streaming(&databot, round, scaled(300, scale), true).await;
        let values = Round {
            plain_p50: ms(percentile(&mut plain_latencies, 0.5)),
            plain_throughput: plain.throughput,
            many_throughput: many.throughput,
            many_p50: ms(percentile(&mut many_latencies, 0.5)),
            cpu_per_message: ms(plain.cpu_per_message),
            tool_p50: ms(percentile(&mut tool_latencies, 0.5)),
            tool_p95: ms(percentile(&mut tool_latencies, 0.95)),
            tool_p99: ms(percentile(&mut tool_latencies, 0.99)),
            tool_many_throughput: tool_many.throughput,
            stream_kept_p50: ms(percentile(&mut kept, 0.5)),
            stream_new_p50: ms(percentile(&mut new, 0.5)),
        };
        println!(
            "round {round}: plain {:.2} ms {:.0}/s | 50 chats {:.0}/s p50 {:.1} ms | cpu {:.3} ms/msg | tool p50 {:.2} p95 {:.2} p99 {:.2} ms | tool 50 chats {:.0}/s | stream kept {:.2} ms new {:.2} ms",
            values.plain_p50,
            values.plain_throughput,
            values.many_throughput,
            values.many_p50,
            values.cpu_per_message,
            values.tool_p50,
            values.tool_p95,
            values.tool_p99,
            values.tool_many_throughput,
            values.stream_kept_p50,
            values.stream_new_p50
        );
        results.push(values);
    }
    let m = |f: fn(&Round) -> f64| median(results.iter().map(f).collect());
    // (scenario, original, databot, unit, higher is better)
    let rows: [(&str, f64, f64, &str, bool); 11] = [
        (
            "plain, 1 client, sequential: p50",
            15.9,
            m(|r| r.plain_p50),
            "ms",
            false,
        ),
        (
            "plain, 1 client, sequential: throughput",
            61.0,
            m(|r| r.plain_throughput),
            "msg/s",
            true,
        ),
        (
            "plain, 50 concurrent chats: throughput",
            67.0,
            m(|r| r.many_throughput),
            "msg/s",
            true,
        ),
        (
            "plain, 50 concurrent chats: p50",
            717.0,
            m(|r| r.many_p50),
            "ms",
            false,
        ),
        (
            "gateway CPU per plain message",
            11.1,
            m(|r| r.cpu_per_message),
            "ms",
            false,
        ),
        (
            "one tool call, sequential: p50",
            27.5,
            m(|r| r.tool_p50),
            "ms",
            false,
        ),
        (
            "one tool call, sequential: p99",
            45.0,
            m(|r| r.tool_p99),
            "ms",
            false,
        ),
        (
            "one tool call, 50 concurrent: throughput",
            42.0,
            m(|r| r.tool_many_throughput),
            "msg/s",
            true,
        ),
        (
            "streaming, kept connection: p50",
            27.3,
            m(|r| r.stream_kept_p50),
            "ms",
            false,
        ),
        (
            "streaming, new connection each: p50",
            26.4,
            m(|r| r.stream_new_p50),
            "ms",
            false,
        ),
        (
            "(tool call p95, for the 2x-p50 check)",
            f64::NAN,
            m(|r| r.tool_p95),
            "ms",
            false,
        ),
    ];
    println!(
        "\nmedians of {rounds} rounds (databot serve child process, mock provider on loopback, router and RAG off)"
    );
    println!("| scenario | original | databot | ratio | 20x |");
    println!("|---|---|---|---|---|");
    for (name, original, ours, unit, higher) in rows {
        if original.is_nan() {
            println!("| {name} | | {ours:.2} {unit} | | |");
            continue;
        }
        let ratio = if higher {
            ours / original
        } else {
            original / ours
        };
        let verdict = if ratio >= 20.0 { "met" } else { "missed" };
        println!("| {name} | {original} {unit} | {ours:.2} {unit} | {ratio:.1}x | {verdict} |");
    }
    let tool_spread = m(|r| r.tool_p95) / m(|r| r.tool_p50);
    let kept_vs_new = m(|r| r.stream_kept_p50) / m(|r| r.stream_new_p50);
    println!(
        "\nno stalls: tool-call p95/p50 = {tool_spread:.2} (must be <= 2), streaming kept/new = {kept_vs_new:.2} (must be <= 1.2)"
    );
}
