//! Host memory held by oversized SQL results (issue target: the peak resident growth of 4
//! concurrent calls that each select one value far larger than the source's byte cap stays
//! below 4 x max_bytes + 32 MB), per database: PostgreSQL and MariaDB through the wire
//! guard, SQLite through its length limit. Prints the peak growth, the bound and the median
//! time of a round (each call must end with the too-large error, not a timeout).

use std::time::{Duration, Instant};

use databot::capabilities::sql::{SqlError, SqlSources, run};
use databot::config::Config;
use databot_e2e::memory::{reset_peak, status_kib};

const ROUNDS: usize = 5;
const CONCURRENT: usize = 4;
/// The default `max_bytes`.
const MAX_BYTES: u64 = 8 * 1024 * 1024;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let lite = dir.path().join("data.db");
    databot_e2e::sqlite_setup(&lite, "CREATE TABLE t (x INTEGER);").expect("SQLite set-up");
    let yaml = format!(
        "data:\n  sql:\n    pg: {{url: \"{pg}\", pool_size: {CONCURRENT}}}\n    my: {{url: \"mysql://root@127.0.0.1:3306/test\", pool_size: {CONCURRENT}}}\n    lite: {{url: \"sqlite://{lite}\", pool_size: {CONCURRENT}}}\n",
        pg = databot_e2e::POSTGRES_URL,
        lite = lite.display(),
    );
    let config = Config::parse(&yaml, "bench.yaml", |_| None).expect("config");
    let sources = SqlSources::from_config(&config).expect("sources");
    let bound_kib = (CONCURRENT as u64 * MAX_BYTES + 32 * 1024 * 1024) / 1024;
    println!(
        "sql_resources: {CONCURRENT} concurrent oversized calls, max_bytes {MAX_BYTES}, bound {} MiB",
        bound_kib / 1024
    );
    for (name, statement) in [
        ("pg", "SELECT repeat('x', 300000000)"),
        // MariaDB sends at most max_allowed_packet (16 MiB here) in one row.
        ("my", "SELECT REPEAT('x', 16000000)"),
        ("lite", "SELECT randomblob(300000000)"),
    ] {
        let source = sources.get(name).expect("source");
        // Warm the pool so connections are not counted.
        let warm: Vec<_> = (0..CONCURRENT)
            .map(|_| run(&source, "SELECT 1", &[], None, false))
            .collect();
        for result in futures::future::join_all(warm).await {
            result.expect("warm-up");
        }
        let mut growth = Vec::new();
        let mut times = Vec::new();
        for _ in 0..ROUNDS {
            let before = status_kib("VmRSS:");
            reset_peak();
            let started = Instant::now();
            let calls: Vec<_> = (0..CONCURRENT)
                .map(|_| run(&source, statement, &[], None, false))
                .collect();
            for result in futures::future::join_all(calls).await {
                match result {
                    Err(SqlError::TooLarge { .. }) => {}
                    other => panic!("{name}: expected the too-large error, got {other:?}"),
                }
            }
            times.push(started.elapsed());
            growth.push(status_kib("VmHWM:").saturating_sub(before));
        }
        growth.sort_unstable();
        times.sort_unstable();
        let worst = growth[growth.len() - 1];
        println!(
            "{name:>4}: peak RSS growth median {} KiB, worst {} KiB (bound {} KiB: {}); round median {:?}",
            growth[growth.len() / 2],
            worst,
            bound_kib,
            if worst < bound_kib { "ok" } else { "OVER" },
            times[times.len() / 2],
        );
        assert!(times[times.len() / 2] < Duration::from_secs(30));
    }
    sources.close().await;
}
