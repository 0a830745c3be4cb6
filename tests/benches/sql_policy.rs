//! The SQL policy's cost per statement (prints p50 and p99; see docs/benchmarks.md): the
//! lexical pass and the screen (the fast path) on typical analytical queries of each dialect,
//! and the parse and walk for the statements the screen leaves to them (the last case).
//! Target: p50 under 20 µs.

use std::time::{Duration, Instant};

use databot::capabilities::sql::SqlPolicy;
use databot::capabilities::sql::policy::SqlDialect;

const ROUNDS: usize = 20_000;

const CASES: &[(&str, SqlDialect, &str)] = &[
    (
        "postgres: join, filter, group, order",
        SqlDialect::Postgres,
        "SELECT c.region, date_trunc('month', o.created) AS month, count(*) AS orders,
                sum(o.amount) AS revenue, avg(o.amount) FILTER (WHERE o.status = 'paid') AS paid_avg
         FROM sales.orders o JOIN sales.customers c ON c.id = o.customer_id
         WHERE o.created >= now() - interval '90 days' AND c.country IN ('DE', 'FR', 'NL')
         GROUP BY 1, 2 HAVING count(*) > 10 ORDER BY revenue DESC LIMIT 100",
    ),
    (
        "postgres: CTE and window",
        SqlDialect::Postgres,
        "WITH daily AS (
           SELECT date_trunc('day', created) AS day, sum(amount) AS total -- revenue per day
           FROM sales.orders WHERE status <> 'cancelled' GROUP BY 1)
         SELECT day, total, avg(total) OVER (ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) AS week_avg,
                rank() OVER (ORDER BY total DESC) AS rank
         FROM daily ORDER BY day DESC LIMIT 30",
    ),
    (
        "mysql: join, filter, group, order",
        SqlDialect::Mysql,
        "SELECT c.region, DATE_FORMAT(o.created, '%Y-%m') AS month, COUNT(*) AS orders,
                SUM(o.amount) AS revenue, ROUND(AVG(o.amount), 2) AS avg_amount
         FROM orders o JOIN customers c ON c.id = o.customer_id
         WHERE o.created >= NOW() - INTERVAL 90 DAY AND c.country IN ('DE', 'FR', 'NL')
         GROUP BY 1, 2 HAVING COUNT(*) > 10 ORDER BY revenue DESC LIMIT 100",
    ),
    (
        "sqlite: join, filter, group, order",
        SqlDialect::Sqlite,
        "SELECT c.region, strftime('%Y-%m', o.created) AS month, count(*) AS orders,
                sum(o.amount) AS revenue, round(avg(o.amount), 2) AS avg_amount
         FROM orders o JOIN customers c ON c.id = o.customer_id
         WHERE o.created >= date('now', '-90 days') AND c.country IN ('DE', 'FR', 'NL')
         GROUP BY 1, 2 HAVING count(*) > 10 ORDER BY revenue DESC LIMIT 100",
    ),
    (
        "trino: join, filter, group, order",
        SqlDialect::Trino,
        "SELECT c.region, date_trunc('month', o.created) AS month, count(*) AS orders,
                sum(o.amount) AS revenue, approx_percentile(o.amount, 0.5) AS median_amount
         FROM hive.sales.orders o JOIN hive.sales.customers c ON c.id = o.customer_id
         WHERE o.created >= current_date - INTERVAL '90' DAY AND c.country IN ('DE', 'FR', 'NL')
         GROUP BY 1, 2 HAVING count(*) > 10 ORDER BY revenue DESC LIMIT 100",
    ),
    (
        "postgres: EXPLAIN of the first (parse and walk)",
        SqlDialect::Postgres,
        "EXPLAIN SELECT c.region, date_trunc('month', o.created) AS month, count(*) AS orders,
                sum(o.amount) AS revenue, avg(o.amount) FILTER (WHERE o.status = 'paid') AS paid_avg
         FROM sales.orders o JOIN sales.customers c ON c.id = o.customer_id
         WHERE o.created >= now() - interval '90 days' AND c.country IN ('DE', 'FR', 'NL')
         GROUP BY 1, 2 HAVING count(*) > 10 ORDER BY revenue DESC LIMIT 100",
    ),
];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    let policy = SqlPolicy::default();
    println!("SQL policy check, {ROUNDS} rounds per statement (target: p50 < 20 µs)");
    for (name, dialect, sql) in CASES {
        // Warm the allowlists and the allocator.
        for _ in 0..1_000 {
            policy
                .check(*dialect, sql, false)
                .expect("the case is accepted");
        }
        let mut samples = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let checked = policy.check(*dialect, sql, false);
            samples.push(started.elapsed());
            std::hint::black_box(checked).expect("the case is accepted");
        }
        samples.sort();
        println!(
            "{name:<48} p50 {:>7.2} µs   p99 {:>7.2} µs",
            percentile(&samples, 0.5).as_secs_f64() * 1e6,
            percentile(&samples, 0.99).as_secs_f64() * 1e6,
        );
    }
}
