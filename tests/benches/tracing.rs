//! Tracing overhead on a tool call: the same call through the full path with OpenTelemetry
//! export off (log formatter only, as `databot serve` runs with `telemetry.recent_traces: 0`)
//! and on: the batch
//! exporter over gRPC to the in-test OTLP receiver (which decodes every export), and over
//! HTTP/protobuf to a receiver that takes the bytes without decoding them (a collector on
//! another machine). Target: export on costs <= 10%.
//!
//! Two calls:
//! - `echo`: the smallest possible tool call (one span, about 10 µs in all): the worst case,
//!   where the fixed cost of building and exporting a span is the largest share;
//! - `sql_query`: a small real tool call, the `sql` tool querying 3 rows of SQLite through the
//!   `sql_connector` and the host's `sql` capability (three nested spans: tool, connector,
//!   statement).
//!
//! The receivers run in this process on the same 2 cores. The gRPC one decodes each export
//! and counts the spans: its decoding competes with the measured call for the two cores (the
//! scheduler at times runs it on the caller's core, whose caches it then evicts), so the gRPC
//! rows are an upper bound. The HTTP one only reads the bytes, so those rows are the host's own cost of
//! building, encoding and sending spans.
//!
//! A third export side sends both pipelines to an exporter that drops every batch: the host's
//! own cost of spans (ids, sampling, queueing, the worker's conversion) without encoding,
//! network or receiver. A fourth keeps the recent traces in memory with no endpoint (what
//! `databot serve` does by default, for the console's waterfall).
//!
//! Environment: `DATABOT_BENCH_PIN=1` pins the calling thread to CPU 0 and every other thread
//! to CPU 1 in the paired measurement (the scheduler then never runs the exporters or the
//! receivers on the caller's core); `DATABOT_BENCH_PROFILE_SIDE=off|on_grpc|on_http|
//! on_null_exporter` runs only 2,000 `echo` calls under that side, for a profiler.
//!
//! The subscriber is chosen per thread (`dispatcher::with_default`) and the calls run on a
//! current-thread runtime, so each case measures exactly its own subscriber; the receiver and
//! the exporter's connection run on a separate background runtime.

use criterion::{Criterion, criterion_group};
use databot::config::{OtlpProtocol, TelemetryConfig};
use databot_e2e::TestHost;
use databot_e2e::otlp::OtlpReceiver;

const ECHO_ARGS: &str = r#"{"text":"hello","tag":7}"#;
const SQL_ARGS: &str = r#"{"query":"SELECT id, name FROM items ORDER BY id"}"#;

/// A host with the echo tool and the `sql` tool over a SQLite `sql_connector` instance `lite`
/// (table `items`, 3 rows).
async fn host() -> TestHost {
    databot_e2e::sqlite_items_host(&["echo"]).await
}

/// The two runtimes, the receivers, and the subscribers (export off, gRPC, HTTP).
struct Setup {
    /// Runs the receivers and the gRPC exporter's connection.
    background: tokio::runtime::Runtime,
    /// Runs the measured calls.
    calls: tokio::runtime::Runtime,
    grpc_receiver: OtlpReceiver,
    http_receiver: OtlpReceiver,
    /// `(label, subscriber)`: export off first.
    sides: Vec<(&'static str, tracing::Dispatch)>,
    guards: Vec<databot::telemetry::TelemetryGuard>,
}

fn setup() -> Setup {
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("background runtime");
    let calls = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("call runtime");
    let grpc_receiver = background.block_on(OtlpReceiver::grpc()).count_only();
    let http_receiver = background.block_on(OtlpReceiver::http()).discard();
    let (off, no_export) = databot::telemetry::subscriber(None, "info").expect("subscriber");
    assert!(no_export.endpoint().is_none());
    let mut sides = vec![("off", tracing::Dispatch::new(off))];
    let mut guards = Vec::new();
    for (label, protocol, endpoint) in [
        ("on_grpc", OtlpProtocol::Grpc, &grpc_receiver.endpoint),
        (
            "on_http",
            OtlpProtocol::HttpProtobuf,
            &http_receiver.endpoint,
        ),
    ] {
        let settings = TelemetryConfig {
            endpoint: Some(endpoint.clone()),
            protocol: Some(protocol),
            ..TelemetryConfig::default()
        }
        .resolve(|_| None)
        .expect("settings")
        .expect("export on");
        let (on, guard) = {
            let _entered = background.enter();
            databot::telemetry::subscriber(Some(&settings), "info").expect("exporter")
        };
        sides.push((label, tracing::Dispatch::new(on)));
        guards.push(guard);
    }
    // The host's own cost: spans built, queued and batched, then dropped by the exporter.
    let null = databot::telemetry::Pipelines::new(
        NullExporter,
        NullExporter,
        databot::config::SamplerSetting::ParentBasedAlwaysOn,
        databot::config::ExportBatch::default(),
        opentelemetry_sdk::Resource::builder_empty().build(),
    )
    .expect("pipelines");
    // No endpoint, the console's recent traces kept in memory (`serve`'s default).
    let (recent, recent_guard) =
        databot::telemetry::subscriber_keeping(None, 100, "info").expect("recent traces");
    sides.push(("recent_traces", tracing::Dispatch::new(recent)));
    guards.push(recent_guard);
    sides.push((
        "on_null_exporter",
        tracing::Dispatch::new(databot::telemetry::subscriber_with_export(
            Some(&null),
            "info",
        )),
    ));
    guards.push(databot::telemetry::guard(null));
    Setup {
        background,
        calls,
        grpc_receiver,
        http_receiver,
        sides,
        guards,
    }
}

impl Setup {
    /// Flush what is queued and check the receiver got spans at all.
    fn finish(self) {
        for guard in &self.guards {
            guard.force_flush().expect("flush");
        }
        assert!(
            self.grpc_receiver.span_count() > 0,
            "the gRPC receiver got spans"
        );
        assert!(
            self.http_receiver.bytes() > 0,
            "the HTTP receiver got spans"
        );
        drop(self.guards);
        drop(self.background);
    }
}

/// An exporter that drops every batch: what export costs the host before encoding and sending.
#[derive(Debug)]
struct NullExporter;

impl opentelemetry_sdk::trace::SpanExporter for NullExporter {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        drop(batch);
        Ok(())
    }
}

const CALLS: [(&str, &str); 2] = [("echo", ECHO_ARGS), ("sql_query", SQL_ARGS)];

/// Criterion, one case after the other: a host per subscriber, each call under each.
fn tracing_overhead(c: &mut Criterion) {
    let setup = setup();
    let mut group = c.benchmark_group("tracing_tool_call");
    for (side, dispatch) in &setup.sides {
        tracing::dispatcher::with_default(dispatch, || {
            let host = setup.calls.block_on(host());
            for (tool, args) in CALLS {
                let name = format!("{}_export_{side}", tool.trim_end_matches("_query"));
                group.bench_function(name, |b| {
                    b.to_async(&setup.calls)
                        .iter(|| async { host.runtime.call_tool(tool, args).await.expect("call") })
                });
            }
        });
    }
    group.finish();
    setup.finish();
}

/// Export off and on measured in alternation on one host, so drift (other load, the SQLite
/// worker's scheduling) hits every side alike: `ROUNDS` rounds, each a batch of calls under
/// each subscriber (the order rotating), and the median over rounds of each batch's mean per
/// call. Prints the overhead of each export side over export off, for each call.
fn paired(quick: bool) {
    use std::time::{Duration, Instant};
    const ROUNDS: usize = 41;
    let setup = setup();
    let host = setup.calls.block_on(host());
    let rounds = if quick { 1 } else { ROUNDS };
    let sides = setup.sides.len();
    let pin = std::env::var_os("DATABOT_BENCH_PIN").is_some();
    for ((tool, args), batch) in CALLS.into_iter().zip([2000, 100]) {
        let batch = if quick { 2 } else { batch };
        let mut timings: Vec<Vec<Duration>> = vec![Vec::new(); sides];
        let mut cpu_times: Vec<Vec<Duration>> = vec![Vec::new(); sides];
        for round in 0..rounds {
            for turn in 0..sides {
                let side = (round + turn) % sides;
                if pin {
                    pin_threads();
                }
                let (per_call, cpu_per_call) =
                    tracing::dispatcher::with_default(&setup.sides[side].1, || {
                        setup.calls.block_on(async {
                            let (started, cpu_started) = (Instant::now(), thread_cpu_time());
                            for _ in 0..batch {
                                host.runtime.call_tool(tool, args).await.expect("call");
                            }
                            (
                                started.elapsed() / batch,
                                thread_cpu_time().saturating_sub(cpu_started) / batch,
                            )
                        })
                    });
                timings[side].push(per_call);
                cpu_times[side].push(cpu_per_call);
            }
        }
        let medians = medians_of(&mut timings);
        let cpu_medians = medians_of(&mut cpu_times);
        let overhead = |m: &[Duration], side: usize| {
            (m[side].as_secs_f64() / m[0].as_secs_f64() - 1.0) * 100.0
        };
        for side in 1..sides {
            println!(
                "paired {tool}: export off p50 {:?}, {} p50 {:?}: overhead {:+.1}%; calling thread's CPU {:?} -> {:?}: {:+.1}% ({rounds} rounds of {batch} calls each side)",
                medians[0],
                setup.sides[side].0,
                medians[side],
                overhead(&medians, side),
                cpu_medians[0],
                cpu_medians[side],
                overhead(&cpu_medians, side),
            );
        }
    }
    drop(host);
    setup.finish();
}

/// `DATABOT_BENCH_PIN`: the calling thread alone on CPU 0, every other thread of the process
/// (exporters, receivers, SQLite workers) on CPU 1, so the scheduler never puts export work
/// on the caller's core.
fn pin_threads() {
    fn pin(tid: libc::pid_t, cpu: usize) {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity only
        // read and write that set.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() };
    pin(me, 0);
    for task in std::fs::read_dir("/proc/self/task").expect("threads") {
        let tid: libc::pid_t = task
            .expect("thread")
            .file_name()
            .to_string_lossy()
            .parse()
            .expect("thread id");
        if tid != me {
            pin(tid, 1);
        }
    }
}

/// The median of each side's measurements.
fn medians_of(times: &mut [Vec<std::time::Duration>]) -> Vec<std::time::Duration> {
    times
        .iter_mut()
        .map(|times| {
            times.sort();
            times[times.len() / 2]
        })
        .collect()
}

/// CPU time this thread has used: the calls' own cost, without what the exporter and the
/// receiver on the other core take from the machine.
fn thread_cpu_time() -> std::time::Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID always exists on Linux.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

criterion_group!(benches, tracing_overhead);

/// `DATABOT_BENCH_PROFILE_SIDE=LABEL`: only `echo` calls under that side, for a profiler
/// (`valgrind --tool=callgrind --toggle-collect='*call_tool*'` counts each side's instructions).
fn profile_side(label: &str) {
    let setup = setup();
    let host = setup.calls.block_on(host());
    let (_, dispatch) = setup
        .sides
        .iter()
        .find(|(side, _)| *side == label)
        .expect("a side of the benchmark");
    tracing::dispatcher::with_default(dispatch, || {
        setup.calls.block_on(async {
            for _ in 0..2000 {
                host.runtime
                    .call_tool("echo", ECHO_ARGS)
                    .await
                    .expect("call");
            }
        })
    });
    drop(host);
    setup.finish();
}

fn main() {
    if let Ok(side) = std::env::var("DATABOT_BENCH_PROFILE_SIDE") {
        profile_side(&side);
        return;
    }
    // `-- --test` (criterion's smoke mode): one short round, to check the benchmark runs.
    paired(std::env::args().any(|a| a == "--test"));
    benches();
    Criterion::default().configure_from_args().final_summary();
}
