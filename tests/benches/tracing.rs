//! Tracing overhead on a tool call: the same call through the full path with OpenTelemetry
//! export off (log formatter only, as `databot serve` runs by default) and on: the batch
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
//! and counts the spans: its decoding competes with the measured call for the machine (memory
//! bandwidth above all; instantiating a component is mostly copying), so the gRPC rows are an
//! upper bound. The HTTP one only reads the bytes, so those rows are the host's own cost of
//! building, encoding and sending spans.
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
    let (off, no_provider) = databot::telemetry::subscriber(None, "info").expect("subscriber");
    assert!(no_provider.is_none());
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
        let (on, provider) = {
            let _entered = background.enter();
            databot::telemetry::subscriber(Some(&settings), "info").expect("exporter")
        };
        sides.push((label, tracing::Dispatch::new(on)));
        guards.push(databot::telemetry::guard(provider));
    }
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
    for ((tool, args), batch) in CALLS.into_iter().zip([2000, 100]) {
        let batch = if quick { 2 } else { batch };
        let mut timings: Vec<Vec<Duration>> = vec![Vec::new(); sides];
        let mut cpu_times: Vec<Vec<Duration>> = vec![Vec::new(); sides];
        for round in 0..rounds {
            for turn in 0..sides {
                let side = (round + turn) % sides;
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

fn main() {
    // `-- --test` (criterion's smoke mode): one short round, to check the benchmark runs.
    paired(std::env::args().any(|a| a == "--test"));
    benches();
    Criterion::default().configure_from_args().final_summary();
}
