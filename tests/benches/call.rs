//! Instantiate + call of a small Rust tool with JSON arguments, fresh instance per call,
//! through the full path (schema validation, breaker, budgets, store, instance, call).

use criterion::{Criterion, criterion_group, criterion_main};
use databot_e2e::TestHost;

fn call(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let host = runtime.block_on(TestHost::start("", &["echo"])).unwrap();
    let mut group = c.benchmark_group("tool_call");
    group.bench_function("echo_fresh_instance", |b| {
        b.to_async(&runtime).iter(|| async {
            host.runtime
                .call_tool("echo", r#"{"text":"hello","tag":7}"#)
                .await
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, call);
criterion_main!(benches);
