//! The host's recent traces, kept in memory so the operator console can draw a turn's
//! waterfall (router, model calls, tools, connectors, SQL statements) with no collector.
//!
//! Fed by the same two pipelines as OTLP export: a span processor on the tracer provider (the
//! host's `tracing` spans, taken as they end) and the call-span worker (plugin calls, in
//! batches). Bounded three ways: traces kept (`telemetry.recent_traces` turns, and as many
//! traces of other work kept apart so they never push a turn out), spans per trace, and spans
//! in all; attribute values are cut short. With the setting at 0
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
/// Roots a full trace still takes past `MAX_SPANS_PER_TRACE` (its turn's span, which ends
/// last); bounded, as several turns may share one trace (a client's `traceparent`).
const MAX_EXTRA_ROOTS: usize = 8;
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

/// The traces kept, in three groups so that a busy host's other traces (health checks,
/// plugin loads, embedding calls) never push a turn out: turns (an `agent.turn` root, known
/// from the moment it starts, so a running turn is one), other finished traces, and traces
/// whose root is still running and not a turn's. Each group keeps `keep` traces; past the
/// span limit the other traces go first, then the open ones; a turn gives way only to a turn.
///
/// The groups' queues are lazily cleaned: a trace that changes group (its root ends) or is
/// removed leaves a stale entry behind, recognised by its sequence number and group and
/// skipped when it reaches the front.
#[derive(Default)]
struct Ring {
    traces: HashMap<TraceId, Trace>,
    queues: [VecDeque<(u64, TraceId)>; 3],
    /// Live traces in each group (the queues may hold stale entries too).
    counts: [usize; 3],
    next_seq: u64,
    spans: usize,
}

/// A trace's group in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Turn = 0,
    Other = 1,
    Open = 2,
}

struct Trace {
    /// When its first span arrived, in ring order: newer traces have larger numbers.
    seq: u64,
    group: Group,
    spans: Vec<RecordedSpan>,
    dropped: u32,
}

impl Ring {
    fn push(&mut self, group: Group, seq: u64, id: TraceId) {
        self.queues[group as usize].push_back((seq, id));
        self.counts[group as usize] += 1;
        // Stale entries are dropped at the front as they come; a queue mostly stale (traces
        // that left the group out of order) is compacted so it stays bounded.
        let queue = &self.queues[group as usize];
        if queue.len() > 2 * self.counts[group as usize] + 64 {
            let traces = &self.traces;
            self.queues[group as usize].retain(|(seq, id)| is_live(traces, group, *seq, id));
        }
    }

    /// The oldest live trace of `group`, stale entries before it dropped.
    fn oldest(&mut self, group: Group) -> Option<(u64, TraceId)> {
        let traces = &self.traces;
        let queue = &mut self.queues[group as usize];
        while let Some((seq, id)) = queue.front() {
            if is_live(traces, group, *seq, id) {
                return Some((*seq, *id));
            }
            queue.pop_front();
        }
        None
    }

    fn remove(&mut self, id: &TraceId) {
        if let Some(gone) = self.traces.remove(id) {
            self.spans -= gone.spans.len();
            self.counts[gone.group as usize] -= 1;
        }
    }

    /// Moves a trace into the group its root names: a turn when the root is a turn's (as it
    /// starts or ends), another finished trace when any other root ends.
    fn classify(&mut self, id: TraceId, turn: bool) {
        let Some(trace) = self.traces.get_mut(&id) else {
            return;
        };
        let to = if turn { Group::Turn } else { Group::Other };
        // A turn stays a turn; another root of the same trace (several remote parents) does
        // not change it back.
        if trace.group == to || trace.group == Group::Turn {
            return;
        }
        let (from, seq) = (trace.group, trace.seq);
        trace.group = to;
        self.counts[from as usize] -= 1;
        self.push(to, seq, id);
    }

    /// The oldest live trace of `group` other than `current`.
    fn oldest_except(&mut self, group: Group, current: &TraceId) -> Option<(u64, TraceId)> {
        self.oldest(group)?;
        let traces = &self.traces;
        self.queues[group as usize]
            .iter()
            .find(|(seq, id)| id != current && is_live(traces, group, *seq, id))
            .copied()
    }

    /// Drops traces until every group keeps at most `keep` and all spans fit; `current` is
    /// the trace that just took a span (its root when `root`). Past the span limit a trace
    /// never costs a newer turn its place: with no other or open trace left to drop, a turn
    /// takes an older turn's place, and otherwise its own newest span goes (the one before it
    /// when the newest is its root, which is kept).
    fn evict(&mut self, keep: usize, current: TraceId, root: bool) {
        for group in [Group::Turn, Group::Other, Group::Open] {
            while self.counts[group as usize] > keep {
                let Some((_, id)) = self.oldest(group) else {
                    break;
                };
                self.remove(&id);
            }
        }
        while self.spans > MAX_SPANS {
            let victim = self
                .oldest_except(Group::Other, &current)
                .or_else(|| self.oldest_except(Group::Open, &current));
            if let Some((_, id)) = victim {
                self.remove(&id);
                continue;
            }
            let Some((current_seq, current_group)) = self
                .traces
                .get(&current)
                .map(|trace| (trace.seq, trace.group))
            else {
                break;
            };
            let older_turn = match current_group {
                Group::Turn => self
                    .oldest_except(Group::Turn, &current)
                    .filter(|(seq, _)| *seq < current_seq),
                _ => None,
            };
            if let Some((_, id)) = older_turn {
                self.remove(&id);
                continue;
            }
            let Some(trace) = self.traces.get_mut(&current) else {
                break;
            };
            if let Some(index) = trace.spans.len().checked_sub(1 + usize::from(root)) {
                trace.spans.remove(index);
                trace.dropped = trace.dropped.saturating_add(1);
                self.spans -= 1;
            } else {
                break;
            }
        }
    }

    /// The trace `id`, made (as an open trace) if it is new.
    fn entry(&mut self, id: TraceId) {
        if !self.traces.contains_key(&id) {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.traces.insert(
                id,
                Trace {
                    seq,
                    group: Group::Open,
                    spans: Vec::new(),
                    dropped: 0,
                },
            );
            self.push(Group::Open, seq, id);
        }
    }
}

fn is_live(traces: &HashMap<TraceId, Trace>, group: Group, seq: u64, id: &TraceId) -> bool {
    traces
        .get(id)
        .is_some_and(|trace| trace.seq == seq && trace.group == group)
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
        // A root: the turn's span (which ends last), or a span whose parent is in another
        // process. It finishes its trace, and is kept past the per-trace limit: without it
        // the trace would have no root and no conversation.
        let root = recorded.parent_span_id.is_none() || span.parent_span_is_remote;
        let turn = root && recorded.name == super::spans::AGENT_TURN;
        let mut ring = self.ring.lock();
        let ring = &mut *ring;
        ring.entry(trace_id);
        let Some(trace) = ring.traces.get_mut(&trace_id) else {
            return;
        };
        let limit = MAX_SPANS_PER_TRACE + if root { MAX_EXTRA_ROOTS } else { 0 };
        if trace.spans.len() >= limit {
            trace.dropped = trace.dropped.saturating_add(1);
            return;
        }
        trace.spans.push(recorded);
        ring.spans += 1;
        if root {
            ring.classify(trace_id, turn);
        }
        ring.evict(self.keep, trace_id, root);
    }

    /// A turn's root span started (`trace_id`'s spans are a turn's from now on, so the
    /// traces of other work never push it out while it runs).
    pub fn turn_started(&self, trace_id: TraceId) {
        let mut ring = self.ring.lock();
        ring.entry(trace_id);
        ring.classify(trace_id, true);
        ring.evict(self.keep, trace_id, false);
    }

    /// The newest traces first (by their first span), `limit` at most; only turns
    /// (`agent.turn` roots) when `turns_only`.
    pub fn list(&self, limit: usize, turns_only: bool) -> Vec<TraceSummary> {
        let ring = self.ring.lock();
        let mut newest: Vec<(u64, &TraceId)> = ring
            .traces
            .iter()
            .filter(|(_, trace)| !turns_only || trace.group == Group::Turn)
            .map(|(id, trace)| (trace.seq, id))
            .collect();
        newest.sort_unstable_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        newest
            .into_iter()
            .take(limit)
            .filter_map(|(_, id)| ring.traces.get(id).map(|trace| summary(*id, trace)))
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
    /// A root span of a turn marks its trace as a turn's as it starts. `tracing-opentelemetry`
    /// starts a span when its first child needs it, so this happens before the turn's model
    /// and tool calls end. Only roots are looked at (one per trace).
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        use opentelemetry::trace::{Span as _, TraceContextExt as _};
        let context = span.span_context();
        let parent = cx.span();
        let local_parent = parent.span_context().is_valid() && !parent.span_context().is_remote();
        if local_parent || !context.is_sampled() {
            return;
        }
        let trace_id = context.trace_id();
        if span
            .exported_data()
            .is_some_and(|data| data.name == super::spans::AGENT_TURN)
        {
            self.0.turn_started(trace_id);
        }
    }

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

    fn ids(list: Vec<TraceSummary>) -> Vec<String> {
        list.into_iter().map(|t| t.trace_id).collect()
    }

    fn id(trace: u128) -> String {
        TraceId::from(trace).to_string()
    }

    #[test]
    fn keeps_the_newest_traces_with_their_roots() {
        let recent = RecentTraces::new(1);
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
        // A second turn pushes the first out; the other trace stays.
        recent.record(&span(3, 4, 0, "agent.turn"));
        assert_eq!(ids(recent.list(10, false)), [id(3), id(2)]);
        assert!(recent.trace(&id(1)).is_none());
        let detail = recent.trace(&id(3)).unwrap();
        assert_eq!(detail.spans[0].name, "agent.turn");
        // Long values are cut.
        let text = &detail.spans[0].attributes[1].1;
        assert_eq!(text.chars().count(), MAX_VALUE_CHARS + 1);
        assert!(recent.trace("not hex").is_none());
    }

    #[test]
    fn other_traces_never_push_a_turn_out() {
        let recent = RecentTraces::new(3);
        // A finished turn, and a turn still running (its model call ended, the turn not yet).
        recent.record(&span(1, 2, 1, "chat"));
        recent.record(&span(1, 1, 0, "agent.turn"));
        recent.turn_started(TraceId::from(2u128));
        recent.record(&span(2, 4, 3, "chat"));
        // A flood of health checks and embedding calls.
        for trace in 100..1_100u128 {
            recent.record(&span(trace, 1, 0, "plugin.health"));
        }
        assert_eq!(ids(recent.list(10, true)), [id(2), id(1)]);
        // The running turn kept its spans; its root ends now.
        recent.record(&span(2, 3, 0, "agent.turn"));
        assert_eq!(ids(recent.list(10, true)), [id(2), id(1)]);
        assert_eq!(recent.trace(&id(2)).unwrap().spans.len(), 2);
        // The other traces: the newest three.
        let all = ids(recent.list(10, false));
        assert_eq!(all, [id(1_099), id(1_098), id(1_097), id(2), id(1)]);
        // The queues stayed bounded, stale entries and all.
        let ring = recent.ring.lock();
        assert!(ring.queues.iter().all(|queue| queue.len() <= 2 * 3 + 64));
        assert_eq!(ring.counts, [2, 3, 0]);
    }

    #[test]
    fn past_the_span_limit_other_traces_go_first() {
        let recent = RecentTraces::new(1_000);
        let per_trace = MAX_SPANS_PER_TRACE as u64;
        // Turns fill all but half a trace's room.
        let turns = (MAX_SPANS as u64 / per_trace) as u128;
        for trace in 0..turns {
            let spans = if trace == turns - 1 {
                per_trace / 2
            } else {
                per_trace
            };
            for span_id in 2..=spans {
                recent.record(&span(trace, span_id, 1, "chat"));
            }
            recent.record(&span(trace, 1, 0, "agent.turn"));
        }
        assert_eq!(recent.list(1_000, true).len(), turns as usize);
        // Other traces fill what is left and then take each other's place, not the turns'.
        for trace in 10_000..10_000 + 2 * per_trace as u128 {
            recent.record(&span(trace, 1, 0, "plugin.health"));
            for span_id in 2..=per_trace {
                recent.record(&span(trace, span_id, 1, "wasm.call"));
            }
        }
        assert_eq!(recent.list(1_000, true).len(), turns as usize);
        assert!(recent.ring.lock().spans <= MAX_SPANS);
        let newest_other = recent.list(1, false).remove(0);
        assert_eq!(newest_other.root, "plugin.health");
        let newest_other = recent.trace(&newest_other.trace_id).unwrap();
        assert_eq!(newest_other.spans.len() as u64, per_trace / 2);
        assert_eq!(newest_other.dropped as u64, per_trace / 2);
        // One whose root ends last keeps it all the same.
        for span_id in 2..=per_trace {
            recent.record(&span(20_000, span_id, 1, "wasm.call"));
        }
        recent.record(&span(20_000, 1, 0, "plugin.health"));
        let last = recent.trace(&id(20_000)).unwrap();
        assert!(last.spans.iter().any(|s| s.name == "plugin.health"));
        assert_eq!(recent.list(1_000, true).len(), turns as usize);
        // A new turn past the limit pushes the oldest turn out when nothing else is left.
        recent.turn_started(TraceId::from(50_000u128));
        for span_id in 1..=per_trace {
            recent.record(&span(50_000, span_id + 1, 1, "chat"));
        }
        recent.record(&span(50_000, 1, 0, "agent.turn"));
        let listed = ids(recent.list(1_000, true));
        assert_eq!(listed.len(), turns as usize);
        assert_eq!(listed[0], id(50_000));
        assert!(!listed.contains(&id(0)));
        assert!(recent.ring.lock().spans <= MAX_SPANS);
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
        // Many turns sharing one trace (one client's traceparent) keep only a few more roots.
        for id in 10_000..10_100 {
            recent.record(&span(7, id, 0, "agent.turn"));
        }
        let detail = recent.trace(&TraceId::from(7u128).to_string()).unwrap();
        assert_eq!(detail.spans.len(), MAX_SPANS_PER_TRACE + MAX_EXTRA_ROOTS);
    }

    #[test]
    fn a_turn_is_known_as_its_root_starts() {
        use opentelemetry::trace::{TraceContextExt as _, Tracer as _, TracerProvider as _};
        let recent = RecentTraces::new(1);
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_span_processor(RecentSpans(recent.clone()))
            .build();
        let tracer = provider.tracer("test");
        let turn = tracer.start(crate::telemetry::spans::AGENT_TURN);
        let turn_cx = opentelemetry::Context::current_with_span(turn);
        let mut model_call = tracer.start_with_context("chat", &turn_cx);
        opentelemetry::trace::Span::end(&mut model_call);
        // Other work ends while the turn runs; the turn's model call stays.
        // (each open while its call runs: unmarked, the turn would go as the oldest open one).
        for _ in 0..5 {
            let health = tracer.start("plugin.health");
            let health_cx = opentelemetry::Context::current_with_span(health);
            let mut call = tracer.start_with_context("wasm.call", &health_cx);
            opentelemetry::trace::Span::end(&mut call);
            health_cx.span().end();
        }
        let turn_id = turn_cx.span().span_context().trace_id().to_string();
        assert_eq!(recent.trace(&turn_id).unwrap().spans.len(), 1);
        turn_cx.span().end();
        let listed = recent.list(10, true);
        assert_eq!(ids(listed), std::slice::from_ref(&turn_id));
        assert_eq!(recent.trace(&turn_id).unwrap().spans.len(), 2);
        assert_eq!(recent.list(10, false).len(), 2);
        assert_eq!(recent.list(10, false)[1].spans, 2);
    }
}
