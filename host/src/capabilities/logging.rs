//! `logging` capability: guest log lines become host `tracing` events tagged with the plugin,
//! one event a line. Lines are cut at `MAX_LINE`; the log's field formatter
//! (`telemetry::log_format`) escapes line breaks and other control characters, so a plugin
//! cannot forge log lines. Each call may write `budgets.max_log_bytes`, and each plugin, over
//! all its calls, `budgets.max_log_bytes_per_minute`; lines past either are dropped and
//! counted. A call's drops are reported in one line when it ends; a plugin's rate drops at most
//! once a minute.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::contract::databot::plugin::logging::{Host, Level};

use super::StoreState;

/// Longest guest log line kept; longer lines are cut (a plugin cannot flood the host's logs).
const MAX_LINE: usize = 4096;

/// How often a plugin's rate drops are reported at most.
const RATE_REPORT_EVERY: Duration = Duration::from_secs(60);

/// The log bytes one call may still write, and what it lost past them.
#[derive(Debug)]
pub struct LogBudget {
    remaining: u64,
    dropped_lines: u64,
    dropped_bytes: u64,
    /// The plugin's rate over all its calls.
    rate: Arc<LogRate>,
    /// Did the plugin's rate drop a line of this call?
    rate_dropped: bool,
}

impl LogBudget {
    pub fn new(limit: u64, rate: Arc<LogRate>) -> Self {
        Self {
            remaining: limit,
            dropped_lines: 0,
            dropped_bytes: 0,
            rate,
            rate_dropped: false,
        }
    }

    /// Take `bytes` from the call's budget and the plugin's rate; `false` (and the line
    /// counted as dropped) when they do not fit. After a drop every later line of the call
    /// is dropped too: the log never shows a call's lines with a gap in the middle.
    fn take(&mut self, bytes: usize) -> bool {
        let bytes = bytes as u64;
        if self.rate_dropped {
            self.rate.count_dropped(bytes);
            return false;
        }
        if bytes > self.remaining {
            self.remaining = 0;
            self.dropped_lines += 1;
            self.dropped_bytes += bytes;
            return false;
        }
        if !self.rate.take(bytes) {
            self.remaining = 0;
            self.rate_dropped = true;
            return false;
        }
        self.remaining -= bytes;
        true
    }

    /// Did this call lose lines (to its own budget or the plugin's rate)?
    pub fn dropped(&self) -> bool {
        self.dropped_lines > 0 || self.rate_dropped
    }

    /// One warning for the lines this call lost to its budget, if any; the plugin's rate
    /// drops when a minute has passed since they were last reported.
    pub fn report_dropped(&self, plugin: &str) {
        if self.dropped_lines > 0 {
            tracing::warn!(
                plugin,
                dropped_lines = self.dropped_lines,
                dropped_bytes = self.dropped_bytes,
                "the call wrote more log than its budget; the lines past it were dropped (plugins.{plugin}.budgets.max_log_bytes)"
            );
        }
        if self.rate_dropped {
            self.rate.report_if_due(plugin, Instant::now());
        }
    }
}

/// One plugin's log rate over all its calls: `budgets.max_log_bytes_per_minute`, a token
/// bucket that refills continuously and holds at most a minute's worth.
#[derive(Debug)]
pub struct LogRate {
    per_minute: u64,
    state: parking_lot::Mutex<RateState>,
}

#[derive(Debug)]
struct RateState {
    tokens: f64,
    refilled: Instant,
    dropped_lines: u64,
    dropped_bytes: u64,
    reported: Option<Instant>,
}

impl LogRate {
    pub fn new(per_minute: u64) -> Arc<Self> {
        Arc::new(Self {
            per_minute,
            state: parking_lot::Mutex::new(RateState {
                tokens: per_minute as f64,
                refilled: Instant::now(),
                dropped_lines: 0,
                dropped_bytes: 0,
                reported: None,
            }),
        })
    }

    fn take(&self, bytes: u64) -> bool {
        self.take_at(bytes, Instant::now())
    }

    fn take_at(&self, bytes: u64, now: Instant) -> bool {
        let mut state = self.state.lock();
        let elapsed = now.saturating_duration_since(state.refilled).as_secs_f64();
        let capacity = self.per_minute as f64;
        state.tokens = (state.tokens + elapsed * capacity / 60.0).min(capacity);
        state.refilled = now;
        if bytes as f64 <= state.tokens {
            state.tokens -= bytes as f64;
            true
        } else {
            state.dropped_lines += 1;
            state.dropped_bytes += bytes;
            false
        }
    }

    fn count_dropped(&self, bytes: u64) {
        let mut state = self.state.lock();
        state.dropped_lines += 1;
        state.dropped_bytes += bytes;
    }

    /// Log the drops since the last report, unless one was made within the last minute.
    /// `true` when it logged.
    fn report_if_due(&self, plugin: &str, now: Instant) -> bool {
        let mut state = self.state.lock();
        let due = state
            .reported
            .is_none_or(|last| now.saturating_duration_since(last) >= RATE_REPORT_EVERY);
        if !due || state.dropped_lines == 0 {
            return false;
        }
        tracing::warn!(
            plugin,
            dropped_lines = state.dropped_lines,
            dropped_bytes = state.dropped_bytes,
            "the plugin wrote more log than its rate allows; the lines past it were dropped (plugins.{plugin}.budgets.max_log_bytes_per_minute)"
        );
        state.dropped_lines = 0;
        state.dropped_bytes = 0;
        state.reported = Some(now);
        true
    }
}

impl Host for StoreState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let plugin = self.grants.plugin.as_str();
        if !self.log.take(message.len().min(MAX_LINE)) {
            return Ok(());
        }
        let message = if message.len() > MAX_LINE {
            let cut = message.floor_char_boundary(MAX_LINE);
            format!("{}… ({} bytes cut)", &message[..cut], message.len() - cut)
        } else {
            message
        };
        match level {
            Level::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            Level::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unlimited() -> Arc<LogRate> {
        LogRate::new(u64::MAX / 2)
    }

    #[test]
    fn lines_past_the_budget_are_dropped_and_counted() {
        let mut budget = LogBudget::new(100, unlimited());
        assert!(budget.take(60));
        assert!(budget.take(40));
        assert!(!budget.take(1));
        assert!(!budget.take(500));
        assert_eq!((budget.dropped_lines, budget.dropped_bytes), (2, 501));
    }

    #[test]
    fn a_line_that_does_not_fit_closes_the_budget() {
        let mut budget = LogBudget::new(100, unlimited());
        assert!(!budget.take(150));
        // A smaller line after a dropped one is dropped too: the log never shows a call's
        // lines with a gap in the middle.
        assert!(!budget.take(10));
    }

    #[test]
    fn the_plugin_rate_spans_calls_and_refills_over_the_minute() {
        let rate = LogRate::new(6_000);
        let start = Instant::now();
        assert!(rate.take_at(4_000, start));
        assert!(rate.take_at(2_000, start));
        assert!(!rate.take_at(1, start));
        // 100 bytes a second come back.
        assert!(rate.take_at(1_000, start + Duration::from_secs(10)));
        assert!(!rate.take_at(1, start + Duration::from_secs(10)));
        // Never more than a minute's worth.
        assert!(!rate.take_at(6_001, start + Duration::from_secs(3_600)));
        assert!(rate.take_at(6_000, start + Duration::from_secs(3_600)));
    }

    #[test]
    fn a_call_over_the_plugin_rate_drops_the_rest_of_its_lines() {
        let rate = LogRate::new(100);
        let mut first = LogBudget::new(1_000, rate.clone());
        assert!(first.take(80));
        assert!(!first.take(30));
        assert!(!first.take(1));
        assert!(first.dropped() && first.dropped_lines == 0);
        let mut second = LogBudget::new(1_000, rate.clone());
        assert!(!second.take(30));
        assert_eq!(rate.state.lock().dropped_lines, 3);
    }

    #[test]
    fn rate_drops_are_reported_at_most_once_a_minute() {
        let rate = LogRate::new(10);
        let start = Instant::now();
        assert!(!rate.take_at(20, start));
        assert!(rate.report_if_due("p", start));
        assert!(!rate.take_at(20, start));
        assert!(!rate.report_if_due("p", start + Duration::from_secs(30)));
        assert!(rate.report_if_due("p", start + Duration::from_secs(61)));
        // Nothing dropped since: nothing to say.
        assert!(!rate.report_if_due("p", start + Duration::from_secs(200)));
    }
}
