//! Prometheus series of the scheduler: runs by job and outcome, and the lag between a run's
//! due time (its slot, plus jitter) and its start. Jobs the agent made are counted together
//! under `job="agent"`, so conversations cannot grow the series without bound.

use std::collections::BTreeMap;
use std::time::Duration;

use parking_lot::Mutex;

use super::store::JobOrigin;
use crate::telemetry::metrics::{Histogram, Labels, sample};

pub struct ScheduleMetrics {
    /// (job, outcome) -> runs
    runs: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Every attempt's end, for live views (`watch`).
    ended: tokio::sync::broadcast::Sender<RunEnded>,
    lag: Mutex<Histogram>,
    /// Deliveries that did not go out, by target kind.
    delivery_failures: Mutex<BTreeMap<&'static str, u64>>,
}

/// One attempt of some job ended with this outcome. It names no job: every principal's live
/// view hears of it, and each reads only the jobs it may see.
#[derive(Debug, Clone, Copy)]
pub struct RunEnded {
    pub outcome: &'static str,
}

impl Default for ScheduleMetrics {
    fn default() -> Self {
        Self {
            runs: Mutex::default(),
            ended: tokio::sync::broadcast::channel(64).0,
            lag: Mutex::default(),
            delivery_failures: Mutex::default(),
        }
    }
}

impl ScheduleMetrics {
    /// Attempts as they end (a slow reader misses some: it should read the history again).
    pub fn watch(&self) -> tokio::sync::broadcast::Receiver<RunEnded> {
        self.ended.subscribe()
    }

    /// One attempt ended with `outcome` (`succeeded`, `failed`, `retrying`, `cancelled`, …).
    pub fn run(&self, job: &str, origin: JobOrigin, outcome: &'static str) {
        let _ = self.ended.send(RunEnded { outcome });
        let job = match origin {
            JobOrigin::Agent => "agent",
            _ => job,
        };
        *self
            .runs
            .lock()
            .entry((job.to_owned(), outcome))
            .or_default() += 1;
    }

    pub fn lag(&self, lag: Duration) {
        self.lag.lock().observe(lag);
    }

    pub fn delivery_failed(&self, target: &'static str) {
        *self.delivery_failures.lock().entry(target).or_default() += 1;
    }

    /// Runs of `job` that ended with `outcome` (for tests and status).
    pub fn runs(&self, job: &str, outcome: &str) -> u64 {
        self.runs
            .lock()
            .iter()
            .filter(|((j, o), _)| j == job && *o == outcome)
            .map(|(_, n)| n)
            .sum()
    }

    /// Append every series in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP databot_schedule_runs_total Scheduled job attempts by job and outcome (agent-made jobs as job=\"agent\").\n# TYPE databot_schedule_runs_total counter\n");
        for ((job, outcome), count) in self.runs.lock().iter() {
            let labels = Labels::new().with("job", job).with("outcome", outcome);
            sample(out, "databot_schedule_runs_total", &labels, count);
        }
        out.push_str("# HELP databot_schedule_failures_total Scheduled job attempts that failed or timed out.\n# TYPE databot_schedule_failures_total counter\n");
        let runs = self.runs.lock();
        let mut failures: BTreeMap<&str, u64> = BTreeMap::new();
        for ((job, outcome), count) in runs.iter() {
            if matches!(*outcome, "failed" | "retrying") {
                *failures.entry(job).or_default() += count;
            }
        }
        for (job, count) in failures {
            sample(
                out,
                "databot_schedule_failures_total",
                &Labels::new().with("job", job),
                count,
            );
        }
        out.push_str("# HELP databot_schedule_lag_seconds Time from a run's due time (slot plus jitter) to its start.\n# TYPE databot_schedule_lag_seconds histogram\n");
        self.lag
            .lock()
            .render(out, "databot_schedule_lag_seconds", &Labels::new());
        out.push_str("# HELP databot_schedule_delivery_failures_total Results that could not be delivered, by target kind.\n# TYPE databot_schedule_delivery_failures_total counter\n");
        for (target, count) in self.delivery_failures.lock().iter() {
            sample(
                out,
                "databot_schedule_delivery_failures_total",
                &Labels::new().with("target", target),
                count,
            );
        }
    }
}
