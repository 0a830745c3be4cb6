//! Per-plugin circuit breaker: consecutive plugin faults (traps, timeouts, budget breaches)
//! open it; while open, calls fail fast; after the cool-down one probe call is let through.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use crate::config::BreakerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

struct Inner {
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probing: bool,
}

pub struct CircuitBreaker {
    threshold: u32,
    open_for: Duration,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    pub fn new(config: &BreakerConfig) -> Self {
        Self {
            threshold: config.failure_threshold.max(1),
            open_for: Duration::from_secs(config.open_seconds),
            inner: Mutex::new(Inner {
                consecutive_failures: 0,
                opened_at: None,
                probing: false,
            }),
        }
    }

    /// May a call go ahead? `Err(remaining)` while open.
    pub fn admit(&self) -> Result<(), Duration> {
        let mut inner = self.inner.lock();
        let Some(opened_at) = inner.opened_at else {
            return Ok(());
        };
        let elapsed = opened_at.elapsed();
        if elapsed < self.open_for || inner.probing {
            return Err(self.open_for.saturating_sub(elapsed));
        }
        inner.probing = true;
        Ok(())
    }

    pub fn record(&self, plugin_fault: bool) {
        let mut inner = self.inner.lock();
        inner.probing = false;
        if plugin_fault {
            inner.consecutive_failures += 1;
            if inner.consecutive_failures >= self.threshold {
                inner.opened_at = Some(Instant::now());
            }
        } else {
            inner.consecutive_failures = 0;
            inner.opened_at = None;
        }
    }

    /// An admitted call ended without an outcome (no concurrency slot, or its future was
    /// dropped): let the next call probe instead.
    pub fn abandon_probe(&self) {
        self.inner.lock().probing = false;
    }

    pub fn state(&self) -> BreakerState {
        let inner = self.inner.lock();
        match inner.opened_at {
            None => BreakerState::Closed,
            Some(at) if at.elapsed() >= self.open_for => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.inner.lock().consecutive_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_after_cooldown() {
        let breaker = CircuitBreaker::new(&BreakerConfig {
            failure_threshold: 2,
            open_seconds: 0,
        });
        breaker.record(true);
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.record(true);
        assert_ne!(breaker.state(), BreakerState::Closed);
        // open_seconds 0: the next call is the probe, a second concurrent one is refused.
        assert!(breaker.admit().is_ok());
        assert!(breaker.admit().is_err());
        breaker.record(false);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.admit().is_ok());
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe() {
        let breaker = CircuitBreaker::new(&BreakerConfig {
            failure_threshold: 1,
            open_seconds: 0,
        });
        breaker.record(true);
        assert!(breaker.admit().is_ok());
        assert!(breaker.admit().is_err());
        breaker.abandon_probe();
        assert!(breaker.admit().is_ok());
    }

    #[test]
    fn stays_open_during_cooldown() {
        let breaker = CircuitBreaker::new(&BreakerConfig {
            failure_threshold: 1,
            open_seconds: 60,
        });
        breaker.record(true);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.admit().is_err());
    }
}
