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

use criterion::{Criterion, criterion_group, criterion_main};
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

criterion_group!(benches, tracing_overhead);
criterion_main!(benches);
