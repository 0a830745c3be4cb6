//! Data-plane benchmarks (prints medians; see docs/benchmarks.md):
//! 1. a 100,000-row query on the local PostgreSQL through the `sql` tool -> `sql_connector`
//!    -> host `sql` capability, caps on (raised to fit the result), against the same query
//!    through raw sqlx in this process; the target is at most 1.5x;
//! 2. memory: the peak resident growth of a 1,000,000-row query through the same path with
//!    the default caps (10,000 rows, 8 MiB), which must be bounded by the caps, not the result;
//! 3. consumer-group lag for 100 partitions through `kafka_connector` -> host `kafka`
//!    capability against the local broker (tansu on 127.0.0.1:9092); target <= 100 ms.

use std::time::{Duration, Instant};

use databot_e2e::TestHost;
use databot_e2e::memory::{reset_peak, status_kib};
use serde_json::json;
use sqlx::{Connection, Row};

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";
const RUNS: usize = 9;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let schema = format!("databot_bench_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(PG)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432");
    for statement in [
        format!("CREATE SCHEMA {schema}"),
        format!(
            "CREATE TABLE {schema}.rows AS SELECT g AS id, 'name ' || g AS name, g * 1.5::float8 AS value, now() - g * interval '1 second' AS created FROM generate_series(1, 1000000) g"
        ),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut conn)
            .await
            .expect("setup");
    }
    let query = format!(
        "SELECT id, name, value, created FROM {schema}.rows WHERE id <= 100000 ORDER BY id"
    );

    // Raw sqlx: the same rows decoded into Rust values in this process.
    let mut raw = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let rows = sqlx::query(sqlx::AssertSqlSafe(query.clone()))
            .fetch_all(&mut conn)
            .await
            .expect("raw query");
        let mut checksum = 0i64;
        for row in &rows {
            let id: i32 = row.get(0);
            let _name: String = row.get(1);
            let _value: f64 = row.get(2);
            let _created: sqlx::types::chrono::DateTime<sqlx::types::chrono::Utc> = row.get(3);
            checksum += i64::from(id);
        }
        assert_eq!(checksum, 5_000_050_000);
        raw.push(started.elapsed());
    }

    let yaml = format!(
        "data:\n  sql:\n    warehouse: {{url: \"{PG}\", max_rows: 200000, max_bytes: 67108864}}\n    capped: {{url: \"{PG}\"}}\nplugins:\n  warehouse:\n    builtin: sql_connector\n    config: {{source: warehouse}}\n    permissions: {{sql: [warehouse]}}\n    budgets: {{timeout_ms: 60000, memory_mb: 512, max_output_bytes: 134217728}}\n  capped:\n    builtin: sql_connector\n    config: {{source: capped}}\n    permissions: {{sql: [capped]}}\n  sql:\n    config: {{connectors: [warehouse, capped]}}\n    permissions: {{connectors: [warehouse, capped]}}\n    budgets: {{timeout_ms: 60000, memory_mb: 512, max_output_bytes: 134217728}}\n"
    );
    let host = TestHost::start(&yaml, &[]).await.expect("host starts");
    host.load_builtin("sql").await;
    let args = json!({"connection": "warehouse", "query": query}).to_string();
    let mut through = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let out = host
            .runtime
            .call_tool("sql_query", &args)
            .await
            .expect("tool query");
        through.push(started.elapsed());
        assert!(out.len() > 1_000_000);
    }
    let out: serde_json::Value = serde_json::from_str(
        &host
            .runtime
            .call_tool("sql_query", &args)
            .await
            .expect("tool"),
    )
    .expect("json");
    assert_eq!(out["row_count"], 100_000);
    assert_eq!(out["truncated"], false);

    let raw_median = median(raw);
    let through_median = median(through);
    println!("100,000 rows, raw sqlx:                median {raw_median:?}");
    println!("100,000 rows, tool -> connector -> cap: median {through_median:?}");
    println!(
        "ratio: {:.2}x (target <= 1.5x)",
        through_median.as_secs_f64() / raw_median.as_secs_f64()
    );

    // Memory bounded by the caps: 1,000,000 rows asked for, 10,000 returned.
    let all = json!({"connection": "capped", "query": format!("SELECT id, name, value, created FROM {schema}.rows ORDER BY id")}).to_string();
    let _ = host
        .runtime
        .call_tool("sql_query", &all)
        .await
        .expect("warm");
    let before = status_kib("VmRSS:");
    reset_peak();
    let mut capped_times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let out: serde_json::Value = serde_json::from_str(
            &host
                .runtime
                .call_tool("sql_query", &all)
                .await
                .expect("capped"),
        )
        .expect("json");
        capped_times.push(started.elapsed());
        assert_eq!(out["row_count"], 10_000);
        assert_eq!(out["truncated"], true);
    }
    let peak = status_kib("VmHWM:");
    println!(
        "1,000,000 rows asked, default caps: {:?} median, peak RSS growth {} KiB (RSS before {} KiB)",
        median(capped_times),
        peak.saturating_sub(before),
        before
    );

    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut conn)
        .await;

    kafka_lag().await;
}

async fn kafka_lag() {
    use rdkafka::ClientConfig;
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/start-tansu.sh");
    let started = std::process::Command::new("bash")
        .arg(script)
        .status()
        .expect("bash");
    assert!(started.success(), "a broker must run on 127.0.0.1:9092");
    let broker = "127.0.0.1:9092";
    let topic = format!("databot_bench_{}", std::process::id());
    let group = format!("databot_bench_group_{}", std::process::id());
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .create()
        .expect("admin");
    admin
        .create_topics(
            &[NewTopic::new(&topic, 100, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topic");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .create()
        .expect("producer");
    for partition in 0..100 {
        for i in 0..3 {
            let value = format!("m{i}");
            producer
                .send(
                    FutureRecord::<str, str>::to(&topic)
                        .partition(partition)
                        .payload(&value),
                    Duration::from_secs(10),
                )
                .await
                .expect("produce");
        }
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut offsets = TopicPartitionList::new();
    for partition in 0..100 {
        offsets
            .add_partition_offset(&topic, partition, Offset::Offset(1))
            .expect("tpl");
    }
    consumer.commit(&offsets, CommitMode::Sync).expect("commit");

    let yaml = format!(
        "data:\n  kafka:\n    local: {{bootstrap_servers: \"{broker}\"}}\nplugins:\n  kafka_connector:\n    config: {{cluster: local}}\n    permissions: {{kafka: [local]}}\n"
    );
    let host = TestHost::start(&yaml, &[]).await.expect("host starts");
    host.load_builtin("kafka_connector").await;
    let params = json!({"group": group, "topics": [topic]});
    let mut samples = Vec::new();
    for run in 0..25 {
        let started = Instant::now();
        let out = host
            .connector("kafka_connector", "consumer_group_lag", params.clone())
            .await
            .expect("lag");
        let elapsed = started.elapsed();
        assert_eq!(out["result"]["total_lag"], 200, "{out}");
        assert_eq!(
            out["result"]["partitions"].as_array().map(Vec::len),
            Some(100)
        );
        // The first call also connects the clients; it is reported apart.
        if run == 0 {
            println!("consumer-group lag, 100 partitions, first call (connects): {elapsed:?}");
        } else {
            samples.push(elapsed);
        }
    }
    println!(
        "consumer-group lag, 100 partitions: median {:?} (target <= 100 ms)",
        median(samples)
    );
}
