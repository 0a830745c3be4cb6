//! MCP `tools/call` side by side with Wassette (issue 15): a raw JSON-RPC driver (no MCP
//! client library on the measuring side) calls the small `echo` tool through `databot mcp`
//! over stdio and through `databot serve`'s `/mcp` over Streamable HTTP, and reports the
//! server process's CPU time per call next to the latency: one call at a time (p50, p99) and
//! 16 in flight (throughput). Wassette's numbers were measured on the same machine kind with
//! the same kind of driver; it cannot run here, so they are constants.
//!
//! `DATABOT_BENCH_CALLS` (default 5000) sets the calls per scenario, `DATABOT_BENCH_ROUNDS`
//! (default 3) the rounds; the table shows the median of the rounds.

use std::process::Stdio;
use std::time::{Duration, Instant};

use databot_e2e::http1::Http1Client;
use databot_e2e::{process_cpu_time, process_folder};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const IN_FLIGHT: usize = 16;
/// Wassette's server CPU per stdio `tools/call` of an echo tool (244-250 µs measured).
const WASSETTE_CPU_PER_CALL_US: f64 = 247.0;
/// databot's stdio throughput with 16 in flight was 1.2-1.6x Wassette's before issue 15; the
/// reference is that baseline (`BASELINE_STDIO_PIPELINED`, measured by this bench on the
/// commit before the MCP fast path) divided by the low end, 1.2, so the ratio is conservative.
const BASELINE_STDIO_PIPELINED: f64 = 11_438.0;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn call_line(id: usize) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hello","tag":7}}}}}}"#
    )
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"mcp-cpu-bench","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// Check a `tools/call` answer: a result with echo's output, not an error.
fn check_answer(text: &str) {
    assert!(
        text.contains("\"result\"") && text.contains("hello") && !text.contains("\"isError\":true"),
        "unexpected tools/call answer: {text}"
    );
}

struct Measured {
    p50: Duration,
    p99: Duration,
    sequential_cpu: Duration,
    throughput: f64,
    pipelined_cpu: Duration,
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(index).copied().unwrap_or_default()
}

/// `databot mcp` over a folder holding the `echo` plugin.
struct StdioServer {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: BufReader<tokio::process::ChildStdout>,
    pid: u32,
    _dir: tempfile::TempDir,
}

impl StdioServer {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = process_folder(dir.path(), &["echo"], false, "");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_databot_cli"))
            .arg("--config")
            .arg(&config)
            .arg("mcp")
            .env("DATABOT_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("databot mcp starts");
        let pid = child.id().expect("child pid");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut server = Self {
            child,
            stdin,
            stdout,
            pid,
            _dir: dir,
        };
        server.send(INITIALIZE).await;
        let answer = server.receive().await;
        assert!(answer.contains("protocolVersion"), "initialize: {answer}");
        server.send(INITIALIZED).await;
        server
    }

    async fn send(&mut self, line: &str) {
        let mut framed = String::with_capacity(line.len() + 1);
        framed.push_str(line);
        framed.push('\n');
        self.stdin
            .write_all(framed.as_bytes())
            .await
            .expect("write to databot mcp");
    }

    async fn receive(&mut self) -> String {
        let mut line = String::new();
        let read = self
            .stdout
            .read_line(&mut line)
            .await
            .expect("read from databot mcp");
        assert!(read > 0, "databot mcp closed its stdout");
        line
    }

    async fn measure(&mut self, calls: usize) -> Measured {
        // Warm up: the first calls instantiate and JIT-warm the component.
        for id in 1..=200 {
            self.send(&call_line(id)).await;
            check_answer(&self.receive().await);
        }
        let mut latencies = Vec::with_capacity(calls);
        let cpu = process_cpu_time(self.pid);
        for id in 0..calls {
            let started = Instant::now();
            self.send(&call_line(1000 + id)).await;
            check_answer(&self.receive().await);
            latencies.push(started.elapsed());
        }
        let sequential_cpu = (process_cpu_time(self.pid) - cpu) / calls as u32;

        let cpu = process_cpu_time(self.pid);
        let started = Instant::now();
        let mut sent = 0;
        let mut received = 0;
        while sent < IN_FLIGHT.min(calls) {
            self.send(&call_line(100_000 + sent)).await;
            sent += 1;
        }
        while received < calls {
            check_answer(&self.receive().await);
            received += 1;
            if sent < calls {
                self.send(&call_line(100_000 + sent)).await;
                sent += 1;
            }
        }
        let elapsed = started.elapsed();
        let pipelined_cpu = (process_cpu_time(self.pid) - cpu) / calls as u32;
        Measured {
            p50: percentile(&mut latencies, 0.50),
            p99: percentile(&mut latencies, 0.99),
            sequential_cpu,
            throughput: calls as f64 / elapsed.as_secs_f64(),
            pipelined_cpu,
        }
    }
}

impl Drop for StdioServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// One MCP session over Streamable HTTP on its own kept-alive connection.
struct HttpSession {
    client: Http1Client,
    session: String,
}

const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");

impl HttpSession {
    async fn open(port: u16) -> Self {
        let mut client = Http1Client::new(port);
        let answer = client
            .post_json("/mcp", &[ACCEPT], INITIALIZE, false)
            .await
            .expect("initialize over HTTP");
        assert_eq!(answer.status, 200, "initialize: {}", answer.text());
        let session = answer
            .header("mcp-session-id")
            .expect("an Mcp-Session-Id")
            .to_owned();
        let answer = client
            .post_json(
                "/mcp",
                &[ACCEPT, ("mcp-session-id", &session)],
                INITIALIZED,
                false,
            )
            .await
            .expect("initialized over HTTP");
        assert!(answer.status < 300, "initialized: {}", answer.status);
        Self { client, session }
    }

    async fn call(&mut self, id: usize) {
        let answer = self
            .client
            .post_json(
                "/mcp",
                &[ACCEPT, ("mcp-session-id", &self.session)],
                &call_line(id),
                false,
            )
            .await
            .expect("tools/call over HTTP");
        assert_eq!(answer.status, 200, "tools/call: {}", answer.text());
        check_answer(&answer.text());
    }
}

async fn measure_http(port: u16, pid: u32, calls: usize) -> Measured {
    let mut one = HttpSession::open(port).await;
    for id in 1..=200 {
        one.call(id).await;
    }
    let mut latencies = Vec::with_capacity(calls);
    let cpu = process_cpu_time(pid);
    for id in 0..calls {
        let started = Instant::now();
        one.call(1000 + id).await;
        latencies.push(started.elapsed());
    }
    let sequential_cpu = (process_cpu_time(pid) - cpu) / calls as u32;

    let mut sessions = Vec::with_capacity(IN_FLIGHT);
    for _ in 0..IN_FLIGHT {
        sessions.push(HttpSession::open(port).await);
    }
    let per_session = calls.div_ceil(IN_FLIGHT);
    let cpu = process_cpu_time(pid);
    let started = Instant::now();
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|mut session| {
            tokio::spawn(async move {
                for id in 0..per_session {
                    session.call(100_000 + id).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client task");
    }
    let elapsed = started.elapsed();
    let total = per_session * IN_FLIGHT;
    let pipelined_cpu = (process_cpu_time(pid) - cpu) / total as u32;
    Measured {
        p50: percentile(&mut latencies, 0.50),
        p99: percentile(&mut latencies, 0.99),
        sequential_cpu,
        throughput: total as f64 / elapsed.as_secs_f64(),
        pipelined_cpu,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn us(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn report(transport: &str, rounds: &[Measured]) {
    let p50 = median(rounds.iter().map(|m| us(m.p50)).collect());
    let p99 = median(rounds.iter().map(|m| us(m.p99)).collect());
    let sequential_cpu = median(rounds.iter().map(|m| us(m.sequential_cpu)).collect());
    let throughput = median(rounds.iter().map(|m| m.throughput).collect());
    let pipelined_cpu = median(rounds.iter().map(|m| us(m.pipelined_cpu)).collect());
    println!(
        "| {transport} | one at a time: p50 / p99 | {p50:.0} µs / {p99:.0} µs | server CPU per call {sequential_cpu:.1} µs ({:.1}x less than Wassette's {WASSETTE_CPU_PER_CALL_US} µs) |",
        WASSETTE_CPU_PER_CALL_US / sequential_cpu
    );
    let reference = if BASELINE_STDIO_PIPELINED > 0.0 {
        format!(
            "{:.1}x Wassette's ≈{:.0} calls/s",
            throughput / (BASELINE_STDIO_PIPELINED / 1.2),
            BASELINE_STDIO_PIPELINED / 1.2
        )
    } else {
        "no baseline recorded".to_owned()
    };
    println!(
        "| {transport} | {IN_FLIGHT} in flight: throughput | {throughput:.0} calls/s ({reference}) | server CPU per call {pipelined_cpu:.1} µs ({:.1}x less) |",
        WASSETTE_CPU_PER_CALL_US / pipelined_cpu
    );
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no arguments of its own.
    let calls = env_number("DATABOT_BENCH_CALLS", 5000);
    let rounds = env_number("DATABOT_BENCH_ROUNDS", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let mut stdio = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let mut server = StdioServer::start().await;
            stdio.push(server.measure(calls).await);
        }
        let mut http = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let served = databot_e2e::served::ServedDatabot::start(
                env!("CARGO_BIN_EXE_databot_cli"),
                // No provider is called: MCP reaches tools only.
                9,
                "",
            )
            .await;
            http.push(measure_http(served.port, served.pid, calls).await);
        }
        println!(
            "\nMCP tools/call of `echo` ({calls} calls per scenario, median of {rounds} rounds)\n"
        );
        println!("| transport | scenario | databot | CPU |");
        println!("|---|---|---|---|");
        report("stdio", &stdio);
        report("Streamable HTTP", &http);
        let stdio_cpu = median(stdio.iter().map(|m| us(m.pipelined_cpu)).collect());
        let http_cpu = median(http.iter().map(|m| us(m.pipelined_cpu)).collect());
        println!(
            "\ntarget: at most 50 µs server CPU per call: stdio {}, HTTP {}",
            if stdio_cpu <= 50.0 { "met" } else { "NOT met" },
            if http_cpu <= 50.0 { "met" } else { "NOT met" }
        );
    });
}
