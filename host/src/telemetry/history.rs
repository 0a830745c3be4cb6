//! The runtime's metrics over time: every `every`, what changed since the last look (turns,
//! failed turns, the model's tool calls, plugin calls and failures, the mean turn time), the
//! last `keep` looks kept, for the console's overview charts. One task per history; it ends
//! when the history is dropped.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use super::metrics::{RuntimeMetrics, Totals};

/// One interval's activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sample {
    /// The end of the interval, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub turns: u64,
    pub failed_turns: u64,
    pub tool_calls: u64,
    pub plugin_calls: u64,
    pub plugin_failures: u64,
    /// Mean time of the interval's turns, in milliseconds (0 without turns).
    pub mean_turn_ms: f64,
}

impl Sample {
    fn between(before: &Totals, now: &Totals, at_ms: i64) -> Self {
        let turns = now.turns.saturating_sub(before.turns);
        let micros = now.turn_micros.saturating_sub(before.turn_micros);
        Self {
            at_ms,
            turns,
            failed_turns: now.failed_turns.saturating_sub(before.failed_turns),
            tool_calls: now.tool_calls.saturating_sub(before.tool_calls),
            plugin_calls: now.plugin_calls.saturating_sub(before.plugin_calls),
            plugin_failures: now.plugin_failures.saturating_sub(before.plugin_failures),
            mean_turn_ms: if turns == 0 {
                0.0
            } else {
                micros as f64 / turns as f64 / 1000.0
            },
        }
    }
}

pub struct MetricsHistory {
    every: Duration,
    keep: usize,
    samples: Mutex<VecDeque<Sample>>,
}

impl MetricsHistory {
    /// Start sampling `metrics` every `every`, keeping the last `keep` samples. Needs a Tokio
    /// runtime.
    pub fn start(metrics: Arc<RuntimeMetrics>, every: Duration, keep: usize) -> Arc<Self> {
        let history = Arc::new(Self {
            every,
            keep: keep.max(1),
            samples: Mutex::default(),
        });
        // The first sample counts from here, not from whenever the task first runs.
        let before = metrics.totals();
        tokio::spawn(sample_until_dropped(
            metrics,
            before,
            Arc::downgrade(&history),
        ));
        history
    }

    /// The interval between samples.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().iter().copied().collect()
    }

    fn push(&self, sample: Sample) {
        let mut samples = self.samples.lock();
        if samples.len() >= self.keep {
            samples.pop_front();
        }
        samples.push_back(sample);
    }
}

async fn sample_until_dropped(
    metrics: Arc<RuntimeMetrics>,
    mut before: Totals,
    history: Weak<MetricsHistory>,
) {
    let Some(every) = history.upgrade().map(|h| h.every) else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(history) = history.upgrade() else {
            return;
        };
        let now = metrics.totals();
        history.push(Sample::between(&before, &now, crate::timing::now_ms()));
        before = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wait up to 5 s for `history` to hold at least `count` samples.
    async fn samples(history: &MetricsHistory, count: usize) -> Vec<Sample> {
        for _ in 0..500 {
            let samples = history.samples();
            if samples.len() >= count {
                return samples;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        history.samples()
    }

    #[tokio::test]
    async fn samples_what_changed_and_keeps_the_last() {
        let metrics = Arc::new(RuntimeMetrics::default());
        let history = MetricsHistory::start(metrics.clone(), Duration::from_millis(40), 2);
        // Counted after the start: in the first sample or the second.
        metrics.turn(Duration::from_millis(30), 2, false);
        metrics.turn(Duration::from_millis(10), 0, true);
        let first = samples(&history, 2).await;
        let turns: u64 = first.iter().map(|s| s.turns).sum();
        let failed: u64 = first.iter().map(|s| s.failed_turns).sum();
        let tools: u64 = first.iter().map(|s| s.tool_calls).sum();
        assert_eq!((turns, failed, tools), (2, 1, 2));
        let busy = first
            .iter()
            .find(|s| s.turns > 0)
            .expect("a sample with the turns");
        assert!(busy.mean_turn_ms > 0.0);
        // Only the last two are kept; later ones saw nothing.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let later = history.samples();
        assert_eq!(later.len(), 2);
        assert!(later.iter().all(|s| s.turns == 0), "{later:?}");
        // Dropped: its task ends at the next look.
        let weak = Arc::downgrade(&history);
        drop(history);
        assert!(weak.upgrade().is_none());
    }
}
