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
//! The subscriber is installed per thread (`set_default`) and the calls run on a
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

fn tracing_overhead(c: &mut Criterion) {
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
    let mut group = c.benchmark_group("tracing_tool_call");

    {
        let (subscriber, provider) =
            databot::telemetry::subscriber(None, "info").expect("subscriber");
        assert!(provider.is_none());
        let _default = tracing::subscriber::set_default(subscriber);
        let host = calls.block_on(host());
        group.bench_function("echo_export_off", |b| {
            b.to_async(&calls).iter(|| async {
                host.runtime
                    .call_tool("echo", ECHO_ARGS)
                    .await
                    .expect("call")
            })
        });
        group.bench_function("sql_export_off", |b| {
            b.to_async(&calls).iter(|| async {
                host.runtime
                    .call_tool("sql_query", SQL_ARGS)
                    .await
                    .expect("call")
            })
        });
    }

    {
        let settings = TelemetryConfig {
            endpoint: Some(receiver.endpoint.clone()),
            protocol: Some(OtlpProtocol::Grpc),
            ..TelemetryConfig::default()
        }
        .resolve(|_| None)
        .expect("settings")
        .expect("export on");
        let (subscriber, provider) = {
            let _entered = background.enter();
            databot::telemetry::subscriber(Some(&settings), "info").expect("exporter")
        };
        let guard = databot::telemetry::guard(provider);
        let _default = tracing::subscriber::set_default(subscriber);
        let host = calls.block_on(host());
        group.bench_function("echo_export_on_grpc", |b| {
            b.to_async(&calls).iter(|| async {
                host.runtime
                    .call_tool("echo", ECHO_ARGS)
                    .await
                    .expect("call")
            })
        });
        group.bench_function("sql_export_on_grpc", |b| {
            b.to_async(&calls).iter(|| async {
                host.runtime
                    .call_tool("sql_query", SQL_ARGS)
                    .await
                    .expect("call")
            })
        });
        guard.force_flush().expect("flush");
        assert!(receiver.span_count() > 0, "the receiver got the spans");
    }
    group.finish();
}

/// Export off and on measured in alternation on one host, so drift (other load, the SQLite
/// worker's scheduling) hits both sides alike: `ROUNDS` rounds, each a batch of calls under
/// each subscriber (the order alternating), and the median over rounds of each batch's mean
/// per call. Prints the overhead of each call.
fn paired(quick: bool) {
    use std::time::{Duration, Instant};
    const ROUNDS: usize = 41;
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
    let (off, _) = databot::telemetry::subscriber(None, "info").expect("subscriber");
    let (on, provider) = {
        let _entered = background.enter();
        databot::telemetry::subscriber(Some(&settings), "info").expect("exporter")
    };
    let guard = databot::telemetry::guard(provider);
    let off = tracing::Dispatch::new(off);
    let on = tracing::Dispatch::new(on);
    let host = calls.block_on(host());
    let rounds = if quick { 1 } else { ROUNDS };
    for (tool, args, batch) in [("echo", ECHO_ARGS, 2000), ("sql_query", SQL_ARGS, 100)] {
        let batch = if quick { 2 } else { batch };
        let mut timings: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            for side in [round % 2, 1 - round % 2] {
                let dispatch = if side == 0 { &off } else { &on };
                let per_call = tracing::dispatcher::with_default(dispatch, || {
                    calls.block_on(async {
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
    guard.force_flush().expect("flush");
    assert!(receiver.span_count() > 0, "the receiver got the spans");
}

criterion_group!(benches, tracing_overhead);

fn main() {
    // `-- --test` (criterion's smoke mode): one short round, to check the benchmark runs.
    paired(std::env::args().any(|a| a == "--test"));
    benches();
    Criterion::default().configure_from_args().final_summary();
}
