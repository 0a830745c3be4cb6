//! Prometheus metrics of the gateway: requests by route and status with latency sums and
//! histograms, turns, per-plugin calls, failures and breaker state from the runtime's status,
//! and the runtime's own registry (`telemetry::metrics`: calls by outcome, latencies, budgets
//! hit, tokens).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::runtime::PluginStatus;
use crate::telemetry::RuntimeMetrics;
use crate::telemetry::metrics::{Histogram, Labels, sample};

#[derive(Default)]
pub struct Metrics {
    /// (route, status) -> (count, total seconds)
    requests: Mutex<BTreeMap<(String, u16), (u64, f64)>>,
    /// route -> latency histogram
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    turns: AtomicU64,
    failed_turns: AtomicU64,
}

/// Routes outside this list are counted as `other`, so metrics cannot be flooded with paths.
const ROUTES: [&str; 9] = [
    "/health",
    "/ready",
    "/metrics",
    "/api/v1/message",
    "/api/v1/stream",
    "/api/v1/plugins",
    "/api/v1/connectors",
    "/mcp",
    "other",
];

impl Metrics {
    pub fn record(&self, route: &str, status: u16, elapsed: Duration) {
        let route = ROUTES
            .iter()
            .copied()
            .find(|known| *known == route)
            .unwrap_or("other");
        self.latency
            .lock()
            .entry(route)
            .or_default()
            .observe(elapsed);
        let mut requests = self.requests.lock();
        let entry = requests.entry((route.to_owned(), status)).or_default();
        entry.0 += 1;
        entry.1 += elapsed.as_secs_f64();
    }

    pub fn turn(&self, failed: bool) {
        self.turns.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failed_turns.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn render(&self, plugins: &[PluginStatus], runtime: &RuntimeMetrics) -> String {
        let mut out = String::new();
        out.push_str("# HELP databot_http_requests_total HTTP requests by route and status.\n# TYPE databot_http_requests_total counter\n");
        let requests = self.requests.lock();
        for ((route, status), (count, _)) in requests.iter() {
            let labels = Labels::new().with("route", route).with("status", status);
            sample(&mut out, "databot_http_requests_total", &labels, count);
        }
        out.push_str("# HELP databot_http_request_seconds_sum Time spent answering, by route.\n# TYPE databot_http_request_seconds_sum counter\n");
        let mut by_route: BTreeMap<&str, f64> = BTreeMap::new();
        for ((route, _), (_, seconds)) in requests.iter() {
            *by_route.entry(route).or_default() += seconds;
        }
        for (route, seconds) in by_route {
            sample(
                &mut out,
                "databot_http_request_seconds_sum",
                &Labels::new().with("route", route),
                format_args!("{seconds:.6}"),
            );
        }
        drop(requests);
        out.push_str("# HELP databot_http_request_duration_seconds Time spent answering, by route.\n# TYPE databot_http_request_duration_seconds histogram\n");
        for (route, histogram) in self.latency.lock().iter() {
            histogram.render(
                &mut out,
                "databot_http_request_duration_seconds",
                &Labels::new().with("route", route),
            );
        }
        out.push_str("# HELP databot_turns_total Agent turns answered through the gateway.\n# TYPE databot_turns_total counter\n");
        sample(
            &mut out,
            "databot_turns_total",
            &Labels::new(),
            self.turns.load(Ordering::Relaxed),
        );
        sample(
            &mut out,
            "databot_turns_failed_total",
            &Labels::new(),
            self.failed_turns.load(Ordering::Relaxed),
        );
        out.push_str("# HELP databot_plugin_calls_total Calls into each plugin.\n# TYPE databot_plugin_calls_total counter\n");
        for plugin in plugins {
            let labels = Labels::new().with("plugin", &plugin.name);
            sample(
                &mut out,
                "databot_plugin_calls_total",
                &labels,
                plugin.calls,
            );
            sample(
                &mut out,
                "databot_plugin_failures_total",
                &labels,
                plugin.failures,
            );
            let open = plugin
                .breaker
                .is_some_and(|b| b != crate::runtime::BreakerState::Closed);
            sample(
                &mut out,
                "databot_plugin_breaker_open",
                &labels,
                u8::from(open),
            );
        }
        runtime.render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_are_escaped_in_labels() {
        // A refused file's status carries a name taken from its file name.
        let status = PluginStatus {
            name: "x\"} 1\nforged 2".into(),
            kind: None,
            version: None,
            description: None,
            source: "file".into(),
            digest: None,
            signer: None,
            state: "refused".into(),
            breaker: None,
            operations: Vec::new(),
            revisions: 0,
            calls: 3,
            failures: 1,
            last_error: None,
            budgets: None,
            capabilities: Vec::new(),
            mean_latency_ms: None,
        };
        let metrics = Metrics::default();
        metrics.record("/health", 200, Duration::from_millis(1));
        let out = metrics.render(&[status], &RuntimeMetrics::default());
        assert!(
            out.contains("databot_plugin_calls_total{plugin=\"x\\\"} 1\\nforged 2\"} 3\n"),
            "{out}"
        );
        assert!(!out.lines().any(|line| line.starts_with("forged")), "{out}");
        assert!(
            out.contains("databot_http_requests_total{route=\"/health\",status=\"200\"} 1\n"),
            "{out}"
        );
    }
}
