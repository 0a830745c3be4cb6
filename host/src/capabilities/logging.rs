//! `logging` capability: guest log lines become host `tracing` events tagged with the plugin,
//! one event a line. Lines are cut at `MAX_LINE`; the log's field formatter
//! (`telemetry::log_format`) escapes line breaks and other control characters, so a plugin
//! cannot forge log lines. Each call may write `budgets.max_log_bytes`; lines past it are
//! dropped, counted, and reported in one line when the call ends.

use crate::runtime::bindings::databot::plugin::logging::{Host, Level};

use super::StoreState;

/// Longest guest log line kept; longer lines are cut (a plugin cannot flood the host's logs).
const MAX_LINE: usize = 4096;

/// The log bytes one call may still write, and what it lost past them.
#[derive(Debug)]
pub struct LogBudget {
    remaining: u64,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl LogBudget {
    pub fn new(limit: u64) -> Self {
        Self {
            remaining: limit,
            dropped_lines: 0,
            dropped_bytes: 0,
        }
    }

    /// Take `bytes` from the budget; `false` (and the line counted as dropped) when they do
    /// not fit.
    fn take(&mut self, bytes: usize) -> bool {
        let bytes = bytes as u64;
        if bytes <= self.remaining {
            self.remaining -= bytes;
            true
        } else {
            self.remaining = 0;
            self.dropped_lines += 1;
            self.dropped_bytes += bytes;
            false
        }
    }

    /// One warning for the lines this call lost, if any.
    pub fn report_dropped(&self, plugin: &str) {
        if self.dropped_lines > 0 {
            tracing::warn!(
                plugin,
                dropped_lines = self.dropped_lines,
                dropped_bytes = self.dropped_bytes,
                "the call wrote more log than its budget; the lines past it were dropped (plugins.{plugin}.budgets.max_log_bytes)"
            );
        }
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

    #[test]
    fn lines_past_the_budget_are_dropped_and_counted() {
        let mut budget = LogBudget::new(100);
        assert!(budget.take(60));
        assert!(budget.take(40));
        assert!(!budget.take(1));
        assert!(!budget.take(500));
        assert_eq!((budget.dropped_lines, budget.dropped_bytes), (2, 501));
    }

    #[test]
    fn a_line_that_does_not_fit_closes_the_budget() {
        let mut budget = LogBudget::new(100);
        assert!(!budget.take(150));
        // A smaller line after a dropped one is dropped too: the log never shows a call's
        // lines with a gap in the middle.
        assert!(!budget.take(10));
    }
}
