//! Agent-core benchmarks (prints medians and percentiles; see docs/benchmarks.md):
//! 1. one agent turn with one tool call against an instant OpenAI-compatible server on
//!    loopback: the whole turn, which bounds the host's overhead (provider component, HTTP on
//!    loopback, tool call, SQLite persistence) since the server itself takes ~0 time;
//! 2. 1,000 concurrent conversations through the HTTP gateway: lost messages, throughput, p99;
//! 3. streaming: time from the provider's server writing a chunk to the SSE event reaching the
//!    gateway's client.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use databot_e2e::{ScriptedResponse, TestHost, http_call, serve_scripted};
use serde_json::json;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn openai_config(port: u16) -> String {
    format!(
        "plugins:\n  openai:\n    permissions:\n      http:\n        allow: [\"127.0.0.1:{port}\"]\n        allow_private: true\n    config:\n      base_url: \"http://127.0.0.1:{port}/v1\"\n"
    )
}

async fn turn_overhead() {
    let (port, _) = serve_scripted(|request, _| {
        let last_is_tool = request.json()["messages"].as_array().and_then(|m| m.last()).is_some_and(|m| m["role"] == "tool");
        let message = if last_is_tool {
            json!({ "role": "assistant", "content": "done" })
        } else {
            json!({ "role": "assistant", "content": null, "tool_calls": [{ "id": "c", "type": "function", "function": { "name": "echo", "arguments": "{\"text\":\"x\"}" } }] })
        };
        ScriptedResponse::json(200, json!({ "choices": [{ "index": 0, "message": message, "finish_reason": "stop" }], "usage": {} }))
    })
    .await;
    let host = TestHost::start(&openai_config(port), &["echo"])
        .await
        .unwrap();
    host.load_builtin("openai").await;
    let agent = host.agent("openai", false).await;
    // The provider's own time: the same two provider calls a turn makes, measured alone.
    let request =
        json!({ "messages": [{ "role": "user", "content": "go" }], "tools": [] }).to_string();
    let mut provider = Vec::new();
    for _ in 0..220 {
        let started = Instant::now();
        host.runtime
            .provider_chat("openai", &request, None)
            .await
            .unwrap();
        provider.push(started.elapsed());
    }
    let provider_p50 = percentile(&mut provider[20..], 0.5);
    let mut samples = Vec::new();
    for i in 0..220 {
        let started = Instant::now();
        let outcome = agent.turn(&format!("bench:{i}"), "go", None).await.unwrap();
        assert_eq!(outcome.tool_calls, 1);
        if i >= 20 {
            samples.push(started.elapsed());
        }
    }
    let turn_p50 = percentile(&mut samples, 0.5);
    println!(
        "agent turn with one tool call (instant loopback provider): p50 {turn_p50:?}, p99 {:?} over {} turns",
        percentile(&mut samples, 0.99),
        samples.len()
    );
    println!(
        "provider call through the component (instant loopback server): p50 {provider_p50:?}; host overhead of the turn (turn - 2 provider calls): p50 {:?}",
        turn_p50.saturating_sub(provider_p50 * 2)
    );
}

async fn thousand_conversations() {
    let host = TestHost::start("", &["echo"]).await.unwrap();
    host.load_builtin("offline").await;
    let port = host
        .start_gateway(
            "offline",
            "gateway:\n  rate_limit:\n    requests: 1000000\n",
        )
        .await;
    let started = Instant::now();
    let requests = (0..1000).map(|i| {
        tokio::spawn(async move {
            let body =
                format!(r#"{{"content": "/echo {{\"text\": \"m{i}\"}}", "chat_id": "bench{i}"}}"#);
            let sent = Instant::now();
            let (status, _, answer) = http_call(
                port,
                "POST",
                "/api/v1/message",
                &[("content-type", "application/json")],
                &body,
            )
            .await;
            let ok = status == 200 && answer.contains(&format!("m{i}"));
            (ok, sent.elapsed())
        })
    });
    let mut latencies = Vec::new();
    let mut lost = 0;
    for request in requests.collect::<Vec<_>>() {
        let (ok, latency) = request.await.unwrap();
        if !ok {
            lost += 1;
        }
        latencies.push(latency);
    }
    let total = started.elapsed();
    println!(
        "1000 concurrent conversations via the gateway: {lost} lost, {:.0} messages/s, p50 {:?}, p99 {:?}, all in {total:?}",
        1000.0 / total.as_secs_f64(),
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.99)
    );
}

async fn streaming_latency() {
    const CHUNKS: usize = 200;
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let provider_port = listener.local_addr().unwrap().port();
    let stamps = sent.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let stamps = stamps.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 65536];
                let _ = socket.read(&mut buffer).await;
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n").await;
                for i in 0..CHUNKS {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    let chunk = format!(
                        "data: {}\n\n",
                        json!({"choices": [{"index": 0, "delta": {"content": format!("t{i} ")}}]})
                    );
                    stamps.lock().unwrap().push(Instant::now());
                    let _ = socket.write_all(chunk.as_bytes()).await;
                }
                let _ = socket.write_all(b"data: {\"choices\": [{\"index\": 0, \"delta\": {}, \"finish_reason\": \"stop\"}]}\n\ndata: [DONE]\n\n").await;
            });
        }
    });
    let host = TestHost::start(&openai_config(provider_port), &[])
        .await
        .unwrap();
    host.load_builtin("openai").await;
    let port = host.start_gateway("openai", "").await;
    // Read the SSE response as it arrives and stamp each delta.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let body = r#"{"content": "stream please", "chat_id": "sse"}"#;
    let request = format!(
        "POST /api/v1/stream HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut arrived = Vec::new();
    let mut pending = String::new();
    let mut head = String::new();
    let mut buffer = vec![0u8; 65536];
    loop {
        let read = socket.read(&mut buffer).await.unwrap();
        if read == 0 {
            break;
        }
        let now = Instant::now();
        if head.len() < 512 {
            head.push_str(&String::from_utf8_lossy(&buffer[..read]));
        }
        pending.push_str(&String::from_utf8_lossy(&buffer[..read]));
        while let Some(at) = pending.find("event: delta") {
            arrived.push(now);
            pending.drain(..at + "event: delta".len());
        }
    }
    let sent = sent.lock().unwrap().clone();
    assert!(
        !arrived.is_empty(),
        "no delta event arrived; the gateway answered: {head}"
    );
    assert_eq!(arrived.len(), sent.len(), "every chunk became an event");
    let mut added: Vec<Duration> = sent
        .iter()
        .zip(&arrived)
        .map(|(s, a)| a.saturating_duration_since(*s))
        .collect();
    println!(
        "streaming, provider chunk written -> SSE event read: p50 {:?}, p99 {:?} over {} chunks",
        percentile(&mut added, 0.5),
        percentile(&mut added, 0.99),
        added.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("agent: benchmark");
        return;
    }
    turn_overhead().await;
    thousand_conversations().await;
    streaming_latency().await;
}
