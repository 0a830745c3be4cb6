//! Tracing overhead on a tool call: the same call through the full path with OpenTelemetry
//! export off (log formatter only, as `databot serve` runs by default) and on (batch exporter
//! over gRPC to the in-test OTLP receiver). Target: export on costs <= 10%.
//!
//! Two calls:
//! - `echo`: the smallest possible tool call (one span, about 10 µs in all): the worst case,
//!   where the fixed cost of building and exporting a span is the largest share;
//! - `sql_query`: a small real tool call, the `sql` tool querying 3 rows of SQLite through the
//!   `sql_connector` and the host's `sql` capability (three nested spans: tool, connector,
//!   statement).
//!
//! The receiver runs in this process on the same 2 cores; it decodes each export and counts
//! the spans without keeping them, so its own work stays small and what is measured is the
//! host's cost of building and exporting spans.
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

/// The two runtimes, the receiver, and the two subscribers (export off, export on).
struct Setup {
    /// Runs the receiver and the exporter's connection.
    background: tokio::runtime::Runtime,
    /// Runs the measured calls.
    calls: tokio::runtime::Runtime,
    receiver: OtlpReceiver,
    off: tracing::Dispatch,
    on: tracing::Dispatch,
    guard: databot::telemetry::TelemetryGuard,
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
    let receiver = background.block_on(OtlpReceiver::grpc()).count_only();
    let settings = TelemetryConfig {
        endpoint: Some(receiver.endpoint.clone()),
        protocol: Some(OtlpProtocol::Grpc),
        ..TelemetryConfig::default()
    }
    .resolve(|_| None)
    .expect("settings")
    .expect("export on");
    let (off, no_provider) = databot::telemetry::subscriber(None, "info").expect("subscriber");
    assert!(no_provider.is_none());
    let (on, provider) = {
        let _entered = background.enter();
        databot::telemetry::subscriber(Some(&settings), "info").expect("exporter")
    };
    Setup {
        guard: databot::telemetry::guard(provider),
        off: tracing::Dispatch::new(off),
        on: tracing::Dispatch::new(on),
        background,
        calls,
        receiver,
    }
}

impl Setup {
    /// Flush what is queued and check the receiver got spans at all.
    fn finish(self) {
        self.guard.force_flush().expect("flush");
        assert!(self.receiver.span_count() > 0, "the receiver got the spans");
        drop(self.background);
    }
}

const CALLS: [(&str, &str); 2] = [("echo", ECHO_ARGS), ("sql_query", SQL_ARGS)];

/// Criterion, one case after the other: a host per subscriber, each call under each.
fn tracing_overhead(c: &mut Criterion) {
    let setup = setup();
    let mut group = c.benchmark_group("tracing_tool_call");
    for (side, dispatch) in [("off", &setup.off), ("on_grpc", &setup.on)] {
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
/// worker's scheduling) hits both sides alike: `ROUNDS` rounds, each a batch of calls under
/// each subscriber (the order alternating), and the median over rounds of each batch's mean
/// per call. Prints the overhead of each call.
fn paired(quick: bool) {
    use std::time::{Duration, Instant};
    const ROUNDS: usize = 41;
    let setup = setup();
    let host = setup.calls.block_on(host());
    let rounds = if quick { 1 } else { ROUNDS };
    for ((tool, args), batch) in CALLS.into_iter().zip([2000, 100]) {
        let batch = if quick { 2 } else { batch };
        let mut timings: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            for side in [round % 2, 1 - round % 2] {
                let dispatch = if side == 0 { &setup.off } else { &setup.on };
                let per_call = tracing::dispatcher::with_default(dispatch, || {
                    setup.calls.block_on(async {
                        let started = Instant::now();
                        for _ in 0..batch {
                            host.runtime.call_tool(tool, args).await.expect("call");
                        }
                        started.elapsed() / batch
                    })
                });
                timings[side].push(per_call);
            }
        }
        let [mut off_times, mut on_times] = timings;
        off_times.sort();
        on_times.sort();
        let (off_p50, on_p50) = (off_times[off_times.len() / 2], on_times[on_times.len() / 2]);
        println!(
            "paired {tool}: export off p50 {off_p50:?}, export on p50 {on_p50:?}: overhead {:+.1}% ({rounds} rounds of {batch} calls each side)",
            (on_p50.as_secs_f64() / off_p50.as_secs_f64() - 1.0) * 100.0
        );
    }
    drop(host);
    setup.finish();
}

criterion_group!(benches, tracing_overhead);

fn main() {
    // `-- --test` (criterion's smoke mode): one short round, to check the benchmark runs.
    paired(std::env::args().any(|a| a == "--test"));
    benches();
    Criterion::default().configure_from_args().final_summary();
}
