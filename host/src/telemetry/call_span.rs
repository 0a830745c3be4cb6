//! The span of one plugin call, recorded by the host's own call-span pipeline
//! (`telemetry::call_export`) rather than as a `tracing` span or an SDK span: a plugin call is
//! the host's hottest path (a small tool call is about ten microseconds in all), and on the
//! calling thread this costs ids, a sampler decision, two clock reads and one queued record,
//! with no allocation.
//!
//! One source of truth for "is export on": the current `tracing` dispatcher. The export stack
//! built by `telemetry::subscriber` carries an `ExportTracer` layer (enabled for nothing, so it
//! sees no callsite) that hands out the call-span pipeline; with export off there is none and
//! a call span is a no-op that allocates nothing.
//!
//! Parenting: a call's parent is the caller's trace context (a nested call's, passed down
//! through the calling plugin's store) or else the current `tracing` span. While the call
//! runs, its context travels in the plugin's store, so the host's `tracing` spans made for
//! the plugin (SQL, Kafka, HTTP egress) and nested plugin calls sit under it (`child_span`).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, Status, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer;

use super::call_export::{CallExport, CallIdentity, CallRecord, CallResult};

/// The call-span pipeline of the export stack, found by downcasting the current dispatcher.
pub struct ExportTracer(pub(super) Arc<CallExport>);

impl<S: tracing::Subscriber> Layer<S> for ExportTracer {}

/// `ExportTracer` as a layer that takes part in no callsite (a per-layer filter that is always
/// off): it costs nothing per span or event and only answers the downcast.
pub fn export_tracer_layer<S>(calls: Arc<CallExport>) -> impl Layer<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    ExportTracer(calls).with_filter(tracing_subscriber::filter::LevelFilter::OFF)
}

/// The call-span pipeline of the current dispatcher, when export is on.
fn current_export() -> Option<Arc<CallExport>> {
    tracing::dispatcher::get_default(|dispatch| {
        dispatch
            .downcast_ref::<ExportTracer>()
            .map(|tracer| tracer.0.clone())
    })
}

/// Stands for a span recorded by someone else (a `CallSpan`) inside a `Context`, so that
/// children find their parent: it has the span's identity and records nothing itself.
#[derive(Debug)]
struct RecordedElsewhere(SpanContext);

impl opentelemetry::trace::Span for RecordedElsewhere {
    fn add_event_with_timestamp<T>(
        &mut self,
        _name: T,
        _timestamp: std::time::SystemTime,
        _attributes: Vec<KeyValue>,
    ) where
        T: Into<Cow<'static, str>>,
    {
    }
    fn span_context(&self) -> &SpanContext {
        &self.0
    }
    fn is_recording(&self) -> bool {
        false
    }
    fn set_attribute(&mut self, _attribute: KeyValue) {}
    fn set_status(&mut self, _status: Status) {}
    fn update_name<T>(&mut self, _new_name: T)
    where
        T: Into<Cow<'static, str>>,
    {
    }
    fn add_link(&mut self, _span_context: SpanContext, _attributes: Vec<KeyValue>) {}
    fn end_with_timestamp(&mut self, _timestamp: std::time::SystemTime) {}
}

/// The span of one plugin call; ends (and is queued for export) when dropped. With export off
/// it holds nothing and every method returns at once.
pub struct CallSpan {
    recording: Option<Recording>,
}

struct Recording {
    export: Arc<CallExport>,
    parent: Context,
    /// Only sampled calls are queued; unsampled ones still pass their context on.
    sampled: bool,
    /// What is queued when the call ends (`end` is set then).
    record: CallRecord,
}

/// A call's trace context as the plugin's store keeps it: turned into a `Context` (which
/// allocates) only when something inside the call needs one. Empty outside a traced call.
#[derive(Clone, Default)]
pub struct CallTrace(Option<(Context, SpanContext)>);

impl CallTrace {
    /// Whether there is a traced call to be the parent of anything.
    pub fn is_traced(&self) -> bool {
        self.0.is_some()
    }

    /// The context children of the call get: the call's parent, with the call as current span.
    pub fn context(&self) -> Context {
        match &self.0 {
            Some((parent, span)) => parent.with_span(RecordedElsewhere(span.clone())),
            None => Context::new(),
        }
    }
}

impl CallSpan {
    /// Start the span of the call `identity()` describes (built only when export is on),
    /// under `parent` or, without one, under the current `tracing` span.
    pub fn start(parent: Option<&Context>, identity: impl FnOnce() -> CallIdentity) -> Self {
        let Some(export) = current_export() else {
            return Self { recording: None };
        };
        let parent = match parent {
            Some(parent) => parent.clone(),
            None => tracing::Span::current().context(),
        };
        let identity = identity();
        let recording = export.begin(&parent, identity.operation).map(|begun| {
            let start = SystemTime::now();
            Recording {
                export,
                parent,
                sampled: begun.sampled,
                record: CallRecord {
                    context: begun.context,
                    parent_span_id: begun.parent_span_id,
                    parent_is_remote: begun.parent_is_remote,
                    start,
                    end: start,
                    identity,
                    result: CallResult::default(),
                },
            }
        });
        Self { recording }
    }

    /// Whether export is on for this call, so results are worth recording (the sampler may
    /// still drop the span; its children then follow the parent's decision).
    pub fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    /// The trace context for what this call does (nested calls, capability spans); empty with
    /// export off.
    pub fn trace(&self) -> CallTrace {
        CallTrace(
            self.recording
                .as_ref()
                .map(|r| (r.parent.clone(), r.record.context.clone())),
        )
    }

    /// The guest's peak linear memory during the call.
    pub fn set_memory_peak(&mut self, bytes: usize) {
        if let Some(recording) = &mut self.recording {
            recording.record.result.memory_peak_bytes = Some(super::spans::int(bytes));
        }
    }

    /// How the call ended: `ok` or its error kind.
    pub fn set_outcome(&mut self, outcome: &'static str) {
        if let Some(recording) = &mut self.recording {
            recording.record.result.outcome = Some(outcome);
        }
    }

    /// The size of what the call returned.
    pub fn set_output_bytes(&mut self, bytes: usize) {
        if let Some(recording) = &mut self.recording {
            recording.record.result.output_bytes = Some(super::spans::int(bytes));
        }
    }

    /// Mark the call failed, `kind` saying how (`error.type`, error status).
    pub fn fail(&mut self, kind: &'static str) {
        if let Some(recording) = &mut self.recording {
            recording.record.result.error = Some(kind);
        }
    }
}

impl Drop for CallSpan {
    fn drop(&mut self) {
        if let Some(mut recording) = self.recording.take()
            && recording.sampled
        {
            recording.record.end = SystemTime::now();
            recording.export.submit(recording.record);
        }
    }
}

/// Make a host `tracing` span done on a plugin's behalf (SQL, Kafka, HTTP) a child of the call
/// traced by `trace`; a no-op with export off or outside a traced call.
pub fn child_span(span: tracing::Span, trace: &CallTrace) -> tracing::Span {
    if !span.is_disabled() && trace.is_traced() {
        // Only fails when the span has started already, which a span just made has not.
        let _ = span.set_parent(trace.context());
    }
    span
}
