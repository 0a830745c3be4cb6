//! Sliding-window rate limits per client.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

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
