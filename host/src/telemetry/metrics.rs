//! Runtime metrics owned by each `Runtime` (`Runtime::metrics()`): plugin calls by plugin,
//! operation and outcome, call and provider latency histograms, budgets hit, and tokens in and
//! out. The gateway renders them in Prometheus text format on `/metrics`.
//!
//! Recording is a short mutex-protected map update per call, independent of whether
//! OpenTelemetry export is on; it allocates only the first time a plugin is seen (labels
//! other than the plugin name are `&'static str`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A cumulative latency histogram with the fixed `LATENCY_BUCKETS`.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Observations at or below each bound (not cumulative here; summed when rendered).
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(index) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[index] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Append the `_bucket`, `_sum` and `_count` lines of `name` with `labels`.
    pub fn render(&self, out: &mut String, name: &str, labels: &Labels) {
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(self.buckets) {
            cumulative += count;
            sample(
                out,
                &format!("{name}_bucket"),
                &labels.clone().with("le", bound),
                cumulative,
            );
        }
        sample(
            out,
            &format!("{name}_bucket"),
            &labels.clone().with("le", "+Inf"),
            self.count,
        );
        sample(
            out,
            &format!("{name}_sum"),
            labels,
            format_args!("{:.6}", self.sum),
        );
        sample(out, &format!("{name}_count"), labels, self.count);
    }
}

/// The labels of one series, rendered as Prometheus text (`a="x",b="y"`). A value can only be
/// added through `with`, which escapes it, so no label value reaches the output unescaped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(String);

impl Labels {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `name="value"`. Names are the host's own identifiers (`[a-zA-Z_][a-zA-Z0-9_]*`);
    /// the value is anything and is escaped.
    pub fn with(mut self, name: &'static str, value: impl std::fmt::Display) -> Self {
        debug_assert!(
            name.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "label name {name:?}"
        );
        if !self.0.is_empty() {
            self.0.push(',');
        }
        self.0.push_str(name);
        self.0.push_str("=\"");
        self.0.push_str(&escape(&value.to_string()));
        self.0.push('"');
        self
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Append one sample line: `metric{labels} value` (`metric value` without labels).
pub fn sample(out: &mut String, metric: &str, labels: &Labels, value: impl std::fmt::Display) {
    if labels.0.is_empty() {
        let _ = writeln!(out, "{metric} {value}");
    } else {
        let _ = writeln!(out, "{metric}{{{}}} {value}", labels.0);
    }
}

/// Which budget stopped a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Budget {
    /// The deadline (epoch interruption or the host's timer).
    Timeout,
    /// Linear memory growth past `memory_mb`.
    Memory,
    /// A result over `max_output_bytes`.
    Output,
    /// No concurrency slot within the deadline.
    Concurrency,
    /// Outgoing connections past `max_connections`.
    Connections,
    /// Open files past `max_open_files`.
    OpenFiles,
    /// Log lines dropped past `max_log_bytes` or `max_log_bytes_per_minute`.
    Log,
}

impl Budget {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Memory => "memory",
            Self::Output => "output",
            Self::Concurrency => "concurrency",
            Self::Connections => "connections",
            Self::OpenFiles => "open_files",
            Self::Log => "log",
        }
    }
}

/// One plugin's series.
#[derive(Default)]
struct PluginSeries {
    /// (operation, outcome) -> calls
    calls: BTreeMap<(&'static str, &'static str), u64>,
    /// operation -> latency
    latency: BTreeMap<&'static str, Histogram>,
    /// budget -> times hit
    budgets: BTreeMap<Budget, u64>,
}

#[derive(Default)]
struct Inner {
    /// plugin -> its series
    plugins: BTreeMap<String, PluginSeries>,
    /// provider -> chat latency as the agent saw it
    provider_latency: BTreeMap<String, Histogram>,
    /// (provider, "input" | "output") -> tokens
    tokens: BTreeMap<(String, &'static str), u64>,
}

impl Inner {
    /// The series of `plugin`, created on its first call.
    fn series(&mut self, plugin: &str) -> &mut PluginSeries {
        if !self.plugins.contains_key(plugin) {
            self.plugins
                .insert(plugin.to_owned(), PluginSeries::default());
        }
        // Proven invariant: inserted just above when missing (`entry` would allocate the key
        // on every call).
        self.plugins
            .get_mut(plugin)
            .expect("the plugin's series was just inserted")
    }
}

/// The runtime's metrics registry.
#[derive(Default)]
pub struct RuntimeMetrics {
    inner: Mutex<Inner>,
    /// The agent's turns, kept apart from the lock: one per turn, read every few seconds.
    turns: TurnCounters,
}

#[derive(Default)]
struct TurnCounters {
    ok: AtomicU64,
    failed: AtomicU64,
    micros: AtomicU64,
    tool_calls: AtomicU64,
}

/// Running totals since the process started, for sampling over time (`MetricsHistory`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub turns: u64,
    pub failed_turns: u64,
    /// Time spent in turns, in microseconds.
    pub turn_micros: u64,
    pub tool_calls: u64,
    pub plugin_calls: u64,
    pub plugin_failures: u64,
}

impl RuntimeMetrics {
    /// One turn of the agent ended after `elapsed`, having asked for `tool_calls` calls.
    pub fn turn(&self, elapsed: Duration, tool_calls: u32, failed: bool) {
        let counter = if failed {
            &self.turns.failed
        } else {
            &self.turns.ok
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.turns.micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.turns
            .tool_calls
            .fetch_add(u64::from(tool_calls), Ordering::Relaxed);
    }

    /// Every running total now.
    pub fn totals(&self) -> Totals {
        let (mut plugin_calls, mut plugin_failures) = (0, 0);
        for ((_, outcome), count) in self.inner.lock().plugins.values().flat_map(|s| &s.calls) {
            plugin_calls += count;
            if *outcome != crate::telemetry::spans::OUTCOME_OK {
                plugin_failures += count;
            }
        }
        let failed_turns = self.turns.failed.load(Ordering::Relaxed);
        Totals {
            turns: self.turns.ok.load(Ordering::Relaxed) + failed_turns,
            failed_turns,
            turn_micros: self.turns.micros.load(Ordering::Relaxed),
            tool_calls: self.turns.tool_calls.load(Ordering::Relaxed),
            plugin_calls,
            plugin_failures,
        }
    }

    /// One plugin call finished: `outcome` is `ok` or the error kind.
    pub fn plugin_call(
        &self,
        plugin: &str,
        operation: &'static str,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        let mut inner = self.inner.lock();
        let series = inner.series(plugin);
        *series.calls.entry((operation, outcome)).or_default() += 1;
        series
            .latency
            .entry(operation)
            .or_default()
            .observe(elapsed);
    }

    pub fn budget_hit(&self, plugin: &str, budget: Budget) {
        *self
            .inner
            .lock()
            .series(plugin)
            .budgets
            .entry(budget)
            .or_default() += 1;
    }

    /// One provider chat completion as the agent saw it, with the tokens it reported.
    pub fn provider_call(&self, provider: &str, elapsed: Duration, input: u64, output: u64) {
        let mut inner = self.inner.lock();
        inner
            .provider_latency
            .entry(provider.to_owned())
            .or_default()
            .observe(elapsed);
        *inner
            .tokens
            .entry((provider.to_owned(), "input"))
            .or_default() += input;
        *inner
            .tokens
            .entry((provider.to_owned(), "output"))
            .or_default() += output;
    }

    /// Calls of `plugin` that ended with `outcome` (for tests and status).
    pub fn calls(&self, plugin: &str, outcome: &str) -> u64 {
        self.inner.lock().plugins.get(plugin).map_or(0, |series| {
            series
                .calls
                .iter()
                .filter(|((_, o), _)| *o == outcome)
                .map(|(_, n)| n)
                .sum()
        })
    }

    /// The mean time of `plugin`'s calls so far, every operation together, in milliseconds.
    pub fn mean_latency_ms(&self, plugin: &str) -> Option<f64> {
        let inner = self.inner.lock();
        let series = inner.plugins.get(plugin)?;
        let (count, seconds) = series
            .latency
            .values()
            .fold((0, 0.0), |(n, s), h| (n + h.count, s + h.sum));
        (count > 0).then(|| seconds * 1000.0 / count as f64)
    }

    /// Times `plugin` hit `budget`.
    pub fn budgets_hit(&self, plugin: &str, budget: Budget) -> u64 {
        self.inner
            .lock()
            .plugins
            .get(plugin)
            .and_then(|series| series.budgets.get(&budget).copied())
            .unwrap_or(0)
    }

    /// Append every series in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP databot_agent_turns_total Turns of the agent (every channel, schedules included) by outcome.\n# TYPE databot_agent_turns_total counter\n");
        for (outcome, counter) in [("ok", &self.turns.ok), ("failed", &self.turns.failed)] {
            let labels = Labels::new().with("outcome", outcome);
            sample(
                out,
                "databot_agent_turns_total",
                &labels,
                counter.load(Ordering::Relaxed),
            );
        }
        out.push_str("# HELP databot_agent_turn_seconds_sum Time spent in turns.\n# TYPE databot_agent_turn_seconds_sum counter\n");
        sample(
            out,
            "databot_agent_turn_seconds_sum",
            &Labels::new(),
            self.turns.micros.load(Ordering::Relaxed) as f64 / 1e6,
        );
        out.push_str("# HELP databot_agent_tool_calls_total Tool calls the model asked for.\n# TYPE databot_agent_tool_calls_total counter\n");
        sample(
            out,
            "databot_agent_tool_calls_total",
            &Labels::new(),
            self.turns.tool_calls.load(Ordering::Relaxed),
        );
        let inner = self.inner.lock();
        out.push_str("# HELP databot_plugin_invocations_total Plugin calls by plugin, operation and outcome (ok or the error kind).\n# TYPE databot_plugin_invocations_total counter\n");
        for (plugin, series) in &inner.plugins {
            for ((operation, outcome), count) in &series.calls {
                let labels = Labels::new()
                    .with("plugin", plugin)
                    .with("operation", operation)
                    .with("outcome", outcome);
                sample(out, "databot_plugin_invocations_total", &labels, count);
            }
        }
        out.push_str("# HELP databot_plugin_errors_total Failed plugin calls by error kind.\n# TYPE databot_plugin_errors_total counter\n");
        let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
        for ((_, outcome), count) in inner.plugins.values().flat_map(|s| &s.calls) {
            if *outcome != crate::telemetry::spans::OUTCOME_OK {
                *errors.entry(outcome).or_default() += count;
            }
        }
        for (kind, count) in errors {
            let labels = Labels::new().with("kind", kind);
            sample(out, "databot_plugin_errors_total", &labels, count);
        }
        out.push_str("# HELP databot_plugin_call_duration_seconds Plugin call latency, admission to result.\n# TYPE databot_plugin_call_duration_seconds histogram\n");
        for (plugin, series) in &inner.plugins {
            for (operation, histogram) in &series.latency {
                histogram.render(
                    out,
                    "databot_plugin_call_duration_seconds",
                    &Labels::new()
                        .with("plugin", plugin)
                        .with("operation", operation),
                );
            }
        }
        out.push_str("# HELP databot_budget_exceeded_total Calls that hit a budget (timeout, memory, output, concurrency, connections, open_files, log).\n# TYPE databot_budget_exceeded_total counter\n");
        for (plugin, series) in &inner.plugins {
            for (budget, count) in &series.budgets {
                let labels = Labels::new()
                    .with("plugin", plugin)
                    .with("budget", budget.as_str());
                sample(out, "databot_budget_exceeded_total", &labels, count);
            }
        }
        out.push_str("# HELP databot_provider_call_duration_seconds Provider chat completions as the agent saw them.\n# TYPE databot_provider_call_duration_seconds histogram\n");
        for (provider, histogram) in &inner.provider_latency {
            histogram.render(
                out,
                "databot_provider_call_duration_seconds",
                &Labels::new().with("provider", provider),
            );
        }
        out.push_str("# HELP databot_gen_ai_tokens_total Tokens reported by providers, by direction.\n# TYPE databot_gen_ai_tokens_total counter\n");
        for ((provider, direction), count) in &inner.tokens {
            let labels = Labels::new()
                .with("provider", provider)
                .with("type", direction);
            sample(out, "databot_gen_ai_tokens_total", &labels, count);
        }
    }
}

/// Escape a Prometheus label value (text format: backslash, double quote and line feed).
/// `Labels::with` applies it; nothing else should build label text.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let metrics = RuntimeMetrics::default();
        metrics.plugin_call("echo", "tool", "ok", Duration::from_millis(2));
        metrics.plugin_call("echo", "tool", "ok", Duration::from_millis(200));
        metrics.plugin_call("e\"vil", "tool", "timeout", Duration::from_secs(100));
        metrics.budget_hit("e\"vil", Budget::Timeout);
        metrics.provider_call("offline", Duration::from_millis(3), 10, 4);
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains("databot_plugin_invocations_total{plugin=\"echo\",operation=\"tool\",outcome=\"ok\"} 2"), "{out}");
        assert!(out.contains("databot_plugin_call_duration_seconds_bucket{plugin=\"echo\",operation=\"tool\",le=\"0.0025\"} 1"), "{out}");
        assert!(out.contains("databot_plugin_call_duration_seconds_bucket{plugin=\"echo\",operation=\"tool\",le=\"0.25\"} 2"), "{out}");
        assert!(out.contains("databot_plugin_call_duration_seconds_bucket{plugin=\"e\\\"vil\",operation=\"tool\",le=\"60\"} 0"), "{out}");
        assert!(out.contains("databot_plugin_call_duration_seconds_bucket{plugin=\"e\\\"vil\",operation=\"tool\",le=\"+Inf\"} 1"), "{out}");
        assert!(
            out.contains("databot_plugin_errors_total{kind=\"timeout\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("databot_budget_exceeded_total{plugin=\"e\\\"vil\",budget=\"timeout\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("databot_gen_ai_tokens_total{provider=\"offline\",type=\"input\"} 10"),
            "{out}"
        );
        assert!(
            out.contains("databot_provider_call_duration_seconds_count{provider=\"offline\"} 1"),
            "{out}"
        );
        assert_eq!(metrics.calls("echo", "ok"), 2);
        assert_eq!(metrics.budgets_hit("e\"vil", Budget::Timeout), 1);
    }

    #[test]
    fn no_label_value_can_break_out_of_its_series() {
        let metrics = RuntimeMetrics::default();
        let hostile = "a\\\"} 1\nforged_metric{x=\"y";
        metrics.plugin_call(hostile, "tool", "ok", Duration::from_millis(1));
        metrics.budget_hit(hostile, Budget::Memory);
        metrics.provider_call(hostile, Duration::from_millis(1), 1, 1);
        let mut out = String::new();
        metrics.render(&mut out);
        for line in out.lines() {
            assert!(!line.starts_with("forged_metric"), "{out}");
            if line.starts_with('#') {
                continue;
            }
            // Every sample line is `name{labels} value` with every quote escaped or closing
            // a label value it opened.
            let open = line.find('{').unwrap_or(line.len());
            let close = line.rfind('}').unwrap_or(line.len());
            let labels = &line[(open + 1).min(close)..close];
            let mut inside = false;
            let mut escaped = false;
            for c in labels.chars() {
                match (inside, escaped, c) {
                    (true, false, '\\') => escaped = true,
                    (true, true, _) => escaped = false,
                    (_, false, '"') => inside = !inside,
                    _ => {}
                }
            }
            assert!(!inside, "unbalanced quotes in {line:?}");
        }
        assert!(
            out.contains(r#"plugin="a\\\"} 1\nforged_metric{x=\"y""#),
            "{out}"
        );
    }

    #[test]
    fn labels_escape_every_value() {
        let labels = Labels::new()
            .with("a", "x\\y")
            .with("b", "q\"")
            .with("c", "l\nm");
        assert_eq!(labels.as_str(), r#"a="x\\y",b="q\"",c="l\nm""#);
        let mut out = String::new();
        sample(&mut out, "m", &Labels::new(), 3);
        sample(&mut out, "m", &labels, 4);
        assert_eq!(out, "m 3\nm{a=\"x\\\\y\",b=\"q\\\"\",c=\"l\\nm\"} 4\n");
    }
}
