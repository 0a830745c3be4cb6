//! Sliding-window rate limits per client: in memory (one process), or shared by the replicas
//! through PostgreSQL (`SharedLimiter`).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sqlx::{AnyPool, Row};

/// The limiter the gateway asks for every protected request.
pub enum Limiter {
    Local(RateLimiter),
    Shared(SharedLimiter),
}

impl Limiter {
    pub async fn check(&self, client: &str) -> Decision {
        match self {
            Self::Local(limiter) => limiter.check(client),
            Self::Shared(limiter) => limiter.check(client).await,
        }
    }
}

/// Requests counted per client in fixed windows in PostgreSQL, judged as a sliding window:
/// the previous window's count weighs by how much of it the sliding window still covers. One
/// statement per request. Concurrent requests of one client may pass the limit by the few
/// that were judged at the same instant. While the database cannot be reached, the
/// replica's own in-memory limiter judges (each replica then allows the limit on its own).
pub struct SharedLimiter {
    pool: AnyPool,
    limit: u32,
    window: Duration,
    fallback: RateLimiter,
    checks: std::sync::atomic::AtomicU64,
    /// Set once the table exists.
    schema: tokio::sync::OnceCell<()>,
}

/// Longest a request waits for the shared count (the pool is the sessions'); past it the
/// replica judges alone.
const SHARED_WAIT: Duration = Duration::from_millis(250);
/// Checks between two deletions of windows no judgement needs any more.
const EXPIRE_EVERY: u64 = 4096;

const SHARED_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS databot_rate_limits (
    bucket TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    hits BIGINT NOT NULL,
    PRIMARY KEY (bucket, window_start))";

/// `$1` bucket, `$2` this window's start, `$3` the previous one's, `$4` the window (ms),
/// `$5` how much of the previous window the sliding window covers (ms), `$6` the limit.
/// Counts the request only when it is allowed.
const SHARED_CHECK: &str = "WITH counts AS (
        SELECT COALESCE(SUM(CASE WHEN window_start = $2 THEN hits END), 0)::BIGINT AS cur,
               COALESCE(SUM(CASE WHEN window_start = $3 THEN hits END), 0)::BIGINT AS prev
        FROM databot_rate_limits WHERE bucket = $1 AND window_start IN ($2, $3)),
    decision AS (
        SELECT cur, prev, (cur * $4 + prev * $5) < $6 * $4 AS allowed FROM counts),
    added AS (
        INSERT INTO databot_rate_limits (bucket, window_start, hits)
        SELECT $1, $2, 1 FROM decision WHERE allowed
        ON CONFLICT (bucket, window_start) DO UPDATE SET hits = databot_rate_limits.hits + 1
        RETURNING hits)
    SELECT allowed, cur, prev FROM decision";

impl SharedLimiter {
    /// A limiter on `pool` (PostgreSQL); its table is created on first use.
    pub fn new(pool: AnyPool, limit: u32, window: Duration) -> Self {
        Self {
            pool,
            limit,
            window,
            fallback: RateLimiter::new(limit, window),
            checks: std::sync::atomic::AtomicU64::new(0),
            schema: tokio::sync::OnceCell::new(),
        }
    }

    pub async fn check(&self, client: &str) -> Decision {
        let window = i64::try_from(self.window.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let now = crate::timing::now_ms();
        let current = now - now.rem_euclid(window);
        let covered = window - (now - current);
        if self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(EXPIRE_EVERY)
        {
            let pool = self.pool.clone();
            tokio::spawn(async move {
                let expired =
                    sqlx::query("DELETE FROM databot_rate_limits WHERE window_start < $1")
                        .bind(current - window)
                        .execute(&pool)
                        .await;
                if let Err(error) = expired {
                    tracing::debug!("expiring rate-limit windows: {error}");
                }
            });
        }
        let created = self
            .schema
            .get_or_try_init(|| async {
                sqlx::query(SHARED_SCHEMA)
                    .execute(&self.pool)
                    .await
                    .map(|_| ())
            })
            .await;
        if let Err(error) = created {
            tracing::warn!(
                "the shared rate limit has no table ({error}); this replica judges alone"
            );
            return self.fallback.check(client);
        }
        let row = tokio::time::timeout(
            SHARED_WAIT,
            sqlx::query(SHARED_CHECK)
                .bind(client)
                .bind(current)
                .bind(current - window)
                .bind(window)
                .bind(covered)
                .bind(i64::from(self.limit))
                .fetch_one(&self.pool),
        )
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut));
        let row = match row {
            Ok(row) => row,
            Err(error) => {
                tracing::warn!(
                    "the shared rate limit cannot be read ({error}); this replica judges alone"
                );
                return self.fallback.check(client);
            }
        };
        let (allowed, cur, prev) = match (
            row.try_get::<bool, _>(0),
            row.try_get::<i64, _>(1),
            row.try_get::<i64, _>(2),
        ) {
            (Ok(allowed), Ok(cur), Ok(prev)) => (allowed, cur, prev),
            _ => return self.fallback.check(client),
        };
        // Requests the sliding window holds, this one included when it passed.
        let used = (cur * window + prev * covered + window - 1) / window + i64::from(allowed);
        let remaining = i64::from(self.limit).saturating_sub(used).max(0);
        Decision {
            allowed,
            limit: self.limit,
            remaining: u32::try_from(remaining).unwrap_or(0),
            retry_after: if allowed {
                Duration::ZERO
            } else {
                Duration::from_millis(u64::try_from(covered).unwrap_or(0).max(1))
            },
        }
    }
}

pub struct RateLimiter {
    limit: u32,
    window: Duration,
    clients: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// The outcome for one request: allowed or not, what remains, when to retry.
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    pub retry_after: Duration,
}

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            clients: Mutex::default(),
        }
    }

    pub fn check(&self, client: &str) -> Decision {
        let now = Instant::now();
        let mut clients = self.clients.lock();
        // Forget idle clients now and then, so the map does not grow without bound.
        if clients.len() > 10_000 {
            let window = self.window;
            clients.retain(|_, hits| hits.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let hits = clients.entry(client.to_owned()).or_default();
        while hits
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            hits.pop_front();
        }
        let used = hits.len() as u32;
        if used >= self.limit {
            let retry_after = hits.front().map_or(self.window, |oldest| {
                self.window.saturating_sub(now.duration_since(*oldest))
            });
            return Decision {
                allowed: false,
                limit: self.limit,
                remaining: 0,
                retry_after,
            };
        }
        hits.push_back(now);
        Decision {
            allowed: true,
            limit: self.limit,
            remaining: self.limit - used - 1,
            retry_after: Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_client_within_the_window() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        assert_eq!(limiter.check("a").remaining, 1);
        assert_eq!(limiter.check("a").remaining, 0);
        let refused = limiter.check("a");
        assert!(!refused.allowed);
        assert!(refused.retry_after > Duration::from_secs(58));
        assert!(limiter.check("b").allowed);
    }

    #[test]
    fn the_window_slides() {
        let limiter = RateLimiter::new(1, Duration::from_millis(30));
        assert!(limiter.check("a").allowed);
        assert!(!limiter.check("a").allowed);
        std::thread::sleep(Duration::from_millis(40));
        assert!(limiter.check("a").allowed);
    }
}
