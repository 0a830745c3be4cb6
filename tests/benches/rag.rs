//! Knowledge-base benchmarks (prints medians and percentiles, then criterion's estimates; see
//! docs/benchmarks.md):
//! 1. ingest 10,000 chunks into the embedded store, vectors given (store work and the file
//!    write), and end to end with embeddings from the `offline` provider component;
//! 2. top-5 search over those 10,000 chunks (384 dimensions): the store alone with a
//!    precomputed query vector (target p50 <= 5 ms) and end to end with the query embedded by
//!    the `offline` component.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use databot::rag::{Chunk, EmbeddedStore, Rag, VectorStore};
use databot_e2e::TestHost;

const CHUNKS: usize = 10_000;
const DIM: usize = 384;

const WORDS: &[&str] = &[
    "order",
    "customer",
    "invoice",
    "payment",
    "refund",
    "shipment",
    "warehouse",
    "product",
    "stock",
    "price",
    "discount",
    "country",
    "region",
    "session",
    "event",
    "click",
    "campaign",
    "budget",
    "revenue",
    "margin",
    "supplier",
    "contract",
    "ticket",
    "incident",
    "deploy",
    "cluster",
    "topic",
    "partition",
    "offset",
    "lag",
    "schema",
    "table",
    "column",
    "index",
    "partition",
    "snapshot",
    "lineage",
    "quality",
    "freshness",
    "latency",
];

/// A deterministic pseudo-random sequence (no dependency needed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn unit_vector(&mut self) -> Vec<f32> {
        let mut v: Vec<f32> = (0..DIM)
            .map(|_| (self.next() % 2000) as f32 / 1000.0 - 1.0)
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }
}

fn chunks(with_vectors: bool) -> Vec<Chunk> {
    let mut rng = Lcg(42);
    (0..CHUNKS)
        .map(|i| {
            let text: Vec<&str> = (0..40)
                .map(|_| WORDS[rng.next() as usize % WORDS.len()])
                .collect();
            let source = format!("doc:bench/file{}.md#chunk{}", i / 100, i % 100);
            Chunk {
                id: format!("{i:08}"),
                group: format!("doc:bench/file{}.md", i / 100),
                hash: "bench".into(),
                text: format!("Section {i}. {}", text.join(" ")),
                metadata: Default::default(),
                vector: if with_vectors {
                    rng.unit_vector()
                } else {
                    Vec::new()
                },
                source,
            }
        })
        .collect()
}

fn percentiles(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{label}: p50 {:?}  p95 {:?}  p99 {:?}  ({} runs)",
        at(0.5),
        at(0.95),
        at(0.99),
        samples.len()
    );
}

fn main() {
    // `-- --test` (criterion's smoke mode): every step once, to check the benchmark runs.
    let quick = std::env::args().any(|a| a == "--test");
    let runs = |full: usize| if quick { 1 } else { full };
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let host = tokio.block_on(async {
        let host = TestHost::start("rag: {provider: offline}", &[])
            .await
            .expect("host");
        host.load_builtin("offline").await;
        host
    });
    let with_vectors = chunks(true);
    let without_vectors = chunks(false);
    let dir = tempfile::tempdir().expect("temp dir");

    // 1. Ingest, once each with percentiles over a few runs.
    let mut store_ingest = Vec::new();
    for run in 0..runs(5) {
        let store = EmbeddedStore::open(&dir.path().join(format!("ingest{run}.bin"))).unwrap();
        let batch = with_vectors.clone();
        let started = Instant::now();
        tokio.block_on(store.upsert(batch, "bench")).unwrap();
        store_ingest.push(started.elapsed());
    }
    percentiles(
        "ingest 10k chunks, vectors given (embedded store + file)",
        store_ingest,
    );
    let mut e2e_ingest = Vec::new();
    for _ in 0..runs(3) {
        let rag = Rag::with_store(
            host.runtime.clone(),
            host.runtime.config().rag.clone(),
            Arc::new(EmbeddedStore::in_memory()),
        );
        let batch = without_vectors.clone();
        let started = Instant::now();
        tokio.block_on(rag.embed_and_upsert(batch)).unwrap();
        e2e_ingest.push(started.elapsed());
    }
    percentiles("ingest 10k chunks with offline embeddings", e2e_ingest);

    // 2. Search over 10k chunks.
    let store = Arc::new(EmbeddedStore::in_memory());
    tokio
        .block_on(store.upsert(with_vectors.clone(), "bench"))
        .unwrap();
    let query = Lcg(7).unit_vector();
    let mut search = Vec::new();
    for _ in 0..runs(2000) {
        let started = Instant::now();
        let hits = store.search_now(&query, 5, None);
        search.push(started.elapsed());
        assert_eq!(hits.len(), 5);
    }
    percentiles(
        "top-5 search, 10k x 384, store only (target p50 <= 5 ms)",
        search,
    );
    let rag = Rag::with_store(
        host.runtime.clone(),
        host.runtime.config().rag.clone(),
        store.clone(),
    );
    let mut e2e_search = Vec::new();
    for _ in 0..runs(300) {
        let started = Instant::now();
        let hits = tokio
            .block_on(rag.search("refund for a customer order shipment", 5, None))
            .unwrap();
        e2e_search.push(started.elapsed());
        assert_eq!(hits.len(), 5);
    }
    percentiles(
        "top-5 search with the query embedded by offline",
        e2e_search,
    );

    // Criterion's estimates for the same operations.
    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("rag");
    group.sample_size(10);
    group.bench_function("ingest_10k_embedded_store", |b| {
        b.iter_batched(
            || (EmbeddedStore::in_memory(), with_vectors.clone()),
            |(store, batch)| tokio.block_on(store.upsert(batch, "bench")).unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.finish();
    let mut group = criterion.benchmark_group("rag");
    group.bench_function("search_top5_10k_store", |b| {
        b.iter(|| store.search_now(&query, 5, None))
    });
    group.bench_function("search_top5_10k_end_to_end", |b| {
        b.iter(|| {
            tokio
                .block_on(rag.search("refund for a customer order shipment", 5, None))
                .unwrap()
        })
    });
    group.finish();
    criterion.final_summary();
}
