//! The host's recent traces, kept in memory so the operator console can draw a turn's
//! waterfall (router, model calls, tools, connectors, SQL statements) with no collector.
//!
//! Fed by the same two pipelines as OTLP export: a span processor on the tracer provider (the
//! host's `tracing` spans, taken as they end) and the call-span worker (plugin calls, in
//! batches). Bounded three ways: traces kept (`telemetry.recent_traces`, the oldest go first),
//! spans per trace, and spans in all; attribute values are cut short. With the setting at 0
//! nothing here exists and, without OTLP export, no span is even built.
//!
//! The gateway finds the store through the current `tracing` dispatcher (`current`), as the
//! call-span pipeline is found: one source of truth for what is recorded.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanId, Status, TraceId};
use opentelemetry_sdk::trace::{SpanData, SpanProcessor};
use parking_lot::Mutex;
use serde::Serialize;
use tracing_subscriber::Layer;

/// Spans one trace keeps at most (later ones are counted as dropped).
const MAX_SPANS_PER_TRACE: usize = 256;
/// Spans all traces keep at most: past it, the oldest traces go.
const MAX_SPANS: usize = 16 * 1024;
/// Attributes one span keeps at most.
const MAX_ATTRIBUTES: usize = 24;
/// Characters of an attribute value kept (a statement's text, an error).
const MAX_VALUE_CHARS: usize = 300;

/// The recent traces of this process.
pub struct RecentTraces {
    keep: usize,
    ring: Mutex<Ring>,
}

impl std::fmt::Debug for RecentTraces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentTraces")
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Ring {
    traces: HashMap<TraceId, Trace>,
    /// Trace ids in the order their first span arrived.
    order: VecDeque<TraceId>,
    spans: usize,
}

#[derive(Default)]
struct Trace {
    spans: Vec<RecordedSpan>,
    dropped: u32,
}

/// One finished span, as the console shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedSpan {
    pub span_id: String,
    /// The parent's id, when it has one (it may be in another process: a remote parent).
    pub parent_span_id: Option<String>,
    pub name: String,
    /// Microseconds since the Unix epoch.
    pub start_us: i64,
    pub duration_us: i64,
    /// How it failed (`error.type` or the status message), when it did.
    pub error: Option<String>,
    /// `[key, value]` pairs, values as text.
    pub attributes: Vec<(String, String)>,
}

/// A trace in the list.
#[derive(Debug, Clone, Serialize)]
pub struct TraceSummary {
    pub trace_id: String,
    /// The name of its root span (the one whose parent is not in the trace), `agent.turn` for
    /// a turn.
    pub root: String,
    /// The conversation of a turn's trace.
    pub session: Option<String>,
    pub start_us: i64,
    pub duration_us: i64,
    pub spans: usize,
    pub errors: usize,
}

/// A whole trace, spans ordered by start.
#[derive(Debug, Clone, Serialize)]
pub struct TraceDetail {
    pub trace_id: String,
    pub spans: Vec<RecordedSpan>,
    /// Spans past the per-trace limit, not kept.
    pub dropped: u32,
}

impl RecentTraces {
    /// A store of the last `keep` traces (at least one).
    pub fn new(keep: usize) -> Arc<Self> {
        Arc::new(Self {
            keep: keep.max(1),
            ring: Mutex::default(),
        })
    }

    /// How many traces it keeps.
    pub fn capacity(&self) -> usize {
        self.keep
    }

    /// Keep a finished span.
    pub fn record(&self, span: &SpanData) {
        let trace_id = span.span_context.trace_id();
        let recorded = RecordedSpan::of(span);
        let mut ring = self.ring.lock();
        let ring = &mut *ring;
        let trace = match ring.traces.get_mut(&trace_id) {
            Some(trace) => trace,
            None => {
                ring.order.push_back(trace_id);
                ring.traces.entry(trace_id).or_default()
            }
        };
        // A root (the turn's span, which ends last) is kept past the limit: without it the
        // trace would have no root and no conversation.
        let root = recorded.parent_span_id.is_none() || span.parent_span_is_remote;
        if trace.spans.len() >= MAX_SPANS_PER_TRACE && !root {
            trace.dropped = trace.dropped.saturating_add(1);
            return;
        }
        trace.spans.push(recorded);
        ring.spans += 1;
        while ring.order.len() > self.keep || (ring.spans > MAX_SPANS && ring.order.len() > 1) {
            let Some(oldest) = ring.order.pop_front() else {
                break;
            };
            if let Some(gone) = ring.traces.remove(&oldest) {
                ring.spans -= gone.spans.len();
            }
        }
    }

    /// The newest traces first, `limit` at most; only turns (`agent.turn` roots) when
    /// `turns_only`.
    pub fn list(&self, limit: usize, turns_only: bool) -> Vec<TraceSummary> {
        let ring = self.ring.lock();
        ring.order
            .iter()
            .rev()
            .filter_map(|id| ring.traces.get(id).map(|trace| summary(*id, trace)))
            .filter(|summary| !turns_only || summary.root == super::spans::AGENT_TURN)
            .take(limit)
            .collect()
    }

    /// The trace `trace_id` (32 hex digits), if it is still kept.
    pub fn trace(&self, trace_id: &str) -> Option<TraceDetail> {
        let id = TraceId::from_hex(trace_id).ok()?;
        let ring = self.ring.lock();
        let trace = ring.traces.get(&id)?;
        let mut spans = trace.spans.clone();
        spans.sort_by_key(|span| span.start_us);
        Some(TraceDetail {
            trace_id: id.to_string(),
            spans,
            dropped: trace.dropped,
        })
    }

    /// The store of the current `tracing` dispatcher, when it records recent traces.
    pub fn current() -> Option<Arc<Self>> {
        tracing::dispatcher::get_default(|dispatch| {
            dispatch
                .downcast_ref::<RecentTracesHandle>()
                .map(|handle| handle.0.clone())
        })
    }
}

fn summary(id: TraceId, trace: &Trace) -> TraceSummary {
    let ids: std::collections::HashSet<&str> =
        trace.spans.iter().map(|s| s.span_id.as_str()).collect();
    let roots: Vec<&RecordedSpan> = trace
        .spans
        .iter()
        .filter(|s| s.parent_span_id.as_deref().is_none_or(|p| !ids.contains(p)))
        .collect();
    // A turn's root when there is one; otherwise the earliest root.
    let root = roots
        .iter()
        .find(|s| s.name == super::spans::AGENT_TURN)
        .or_else(|| roots.iter().min_by_key(|s| s.start_us))
        .copied();
    let start_us = trace.spans.iter().map(|s| s.start_us).min().unwrap_or(0);
    let end_us = trace
        .spans
        .iter()
        .map(|s| s.start_us.saturating_add(s.duration_us))
        .max()
        .unwrap_or(start_us);
    TraceSummary {
        trace_id: id.to_string(),
        root: root.map(|s| s.name.clone()).unwrap_or_default(),
        session: root.and_then(|s| {
            s.attributes
                .iter()
                .find(|(key, _)| key == "databot.session")
                .map(|(_, value)| value.clone())
        }),
        start_us,
        duration_us: end_us - start_us,
        spans: trace.spans.len(),
        errors: trace.spans.iter().filter(|s| s.error.is_some()).count(),
    }
}

impl RecordedSpan {
    fn of(span: &SpanData) -> Self {
        let micros = |time: SystemTime| {
            time.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        };
        let start_us = micros(span.start_time);
        let duration_us = span
            .end_time
            .duration_since(span.start_time)
            .unwrap_or(Duration::ZERO)
            .as_micros();
        let mut error = match &span.status {
            Status::Error { description } => Some(description.to_string()),
            _ => None,
        };
        let mut attributes = Vec::new();
        for pair in &span.attributes {
            let key = pair.key.as_str();
            let value = cut(pair.value.to_string());
            if key == "error.type" || key == "otel.status_code" && value == "ERROR" {
                if key == "error.type" || error.is_none() {
                    error = Some(value.clone()).filter(|v| !v.is_empty());
                }
                if key == "otel.status_code" {
                    continue;
                }
            }
            if attributes.len() < MAX_ATTRIBUTES {
                attributes.push((key.to_owned(), value));
            }
        }
        Self {
            span_id: span.span_context.span_id().to_string(),
            parent_span_id: (span.parent_span_id != SpanId::INVALID)
                .then(|| span.parent_span_id.to_string()),
            name: cut(span.name.to_string()),
            start_us,
            duration_us: i64::try_from(duration_us).unwrap_or(i64::MAX),
            error: error.map(|e| if e.is_empty() { "error".to_owned() } else { e }),
            attributes,
        }
    }
}

fn cut(mut text: String) -> String {
    if let Some((index, _)) = text.char_indices().nth(MAX_VALUE_CHARS) {
        text.truncate(index);
        text.push('…');
    }
    text
}

/// The provider's processor that keeps each span as it ends.
#[derive(Debug)]
pub(super) struct RecentSpans(pub(super) Arc<RecentTraces>);

impl SpanProcessor for RecentSpans {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.0.record(&span);
        }
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

/// The layer that answers `RecentTraces::current`: it takes part in no callsite.
pub(super) struct RecentTracesHandle(pub(super) Arc<RecentTraces>);

impl<S: tracing::Subscriber> Layer<S> for RecentTracesHandle {}

pub(super) fn handle_layer<S>(recent: Arc<RecentTraces>) -> impl Layer<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    RecentTracesHandle(recent).with_filter(tracing_subscriber::filter::LevelFilter::OFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{SpanContext, SpanKind, TraceFlags, TraceState};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    fn span(trace: u128, id: u64, parent: u64, name: &'static str) -> SpanData {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + id);
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(trace),
                SpanId::from(id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from(parent),
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: name.into(),
            start_time: start,
            end_time: start + Duration::from_millis(5),
            attributes: vec![
                KeyValue::new("databot.session", "api:x"),
                KeyValue::new("db.query.text", "x".repeat(1000)),
            ],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    #[test]
    fn keeps_the_newest_traces_with_their_roots() {
        let recent = RecentTraces::new(2);
        recent.record(&span(1, 2, 1, "chat"));
        recent.record(&span(1, 1, 0, "agent.turn"));
        recent.record(&span(2, 3, 0, "plugin.load"));
        let list = recent.list(10, false);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].root, "plugin.load");
        assert_eq!(list[1].root, "agent.turn");
        assert_eq!(list[1].session.as_deref(), Some("api:x"));
        assert_eq!(list[1].spans, 2);
        assert_eq!(recent.list(10, true).len(), 1);
        // A third trace pushes the oldest out.
        recent.record(&span(3, 4, 0, "agent.turn"));
        let ids: Vec<String> = recent
            .list(10, false)
            .into_iter()
            .map(|t| t.trace_id)
            .collect();
        assert_eq!(
            ids,
            [
                TraceId::from(3u128).to_string(),
                TraceId::from(2u128).to_string()
            ]
        );
        assert!(recent.trace(&TraceId::from(1u128).to_string()).is_none());
        let detail = recent.trace(&TraceId::from(3u128).to_string()).unwrap();
        assert_eq!(detail.spans[0].name, "agent.turn");
        // Long values are cut.
        let text = &detail.spans[0].attributes[1].1;
        assert_eq!(text.chars().count(), MAX_VALUE_CHARS + 1);
        assert!(recent.trace("not hex").is_none());
    }

    #[test]
    fn a_trace_keeps_a_bounded_number_of_spans() {
        let recent = RecentTraces::new(4);
        for id in 2..=(MAX_SPANS_PER_TRACE as u64 + 11) {
            recent.record(&span(7, id, 1, "x"));
        }
        let detail = recent.trace(&TraceId::from(7u128).to_string()).unwrap();
        assert_eq!(detail.spans.len(), MAX_SPANS_PER_TRACE);
        assert_eq!(detail.dropped, 10);
        // The root, which ends last, is kept all the same.
        recent.record(&span(7, 1, 0, "agent.turn"));
        let listed = recent.list(1, true);
        assert_eq!(listed[0].root, "agent.turn");
        assert_eq!(listed[0].session.as_deref(), Some("api:x"));
    }
}
