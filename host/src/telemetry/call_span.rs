//! The span of one plugin call, made directly with the OpenTelemetry SDK rather than through a
//! `tracing` span and `tracing-opentelemetry`: a plugin call is the host's hottest path (a
//! small tool call is about ten microseconds in all), and the direct span costs well under
//! half as much (no registry slot, no per-poll enter/exit bookkeeping, attributes built once).
//!
//! One source of truth for "is export on": the current `tracing` dispatcher. The export stack
//! built by `telemetry::subscriber` carries an `ExportTracer` layer (enabled for nothing, so it
//! sees no callsite) that hands out the tracer; with export off there is none and a call span
//! is a no-op that allocates nothing.
//!
//! Parenting: a call's parent is the caller's trace context (a nested call's, passed down
//! through the calling plugin's store) or else the current `tracing` span. While the call
//! runs, its context travels in the plugin's store, so the host's `tracing` spans made for
//! the plugin (SQL, Kafka, HTTP egress) and nested plugin calls sit under it (`child_span`).

use std::borrow::Cow;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt as _, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, Span as SdkSpan};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer;

/// The tracer of the export stack, found by downcasting the current dispatcher.
pub struct ExportTracer(pub(super) SdkTracer);

impl<S: tracing::Subscriber> Layer<S> for ExportTracer {}

/// `ExportTracer` as a layer that takes part in no callsite (a per-layer filter that is always
/// off): it costs nothing per span or event and only answers the downcast.
pub fn export_tracer_layer<S>(tracer: SdkTracer) -> impl Layer<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    ExportTracer(tracer).with_filter(tracing_subscriber::filter::LevelFilter::OFF)
}

/// Whether the current dispatcher exports spans.
fn export_on() -> bool {
    tracing::dispatcher::get_default(|dispatch| dispatch.is::<ExportTracer>())
}

/// Run `f` with the export tracer of the current dispatcher, when export is on. Nothing in `f`
/// may use the dispatcher (`tracing::Span::current()` there would see none: `get_default` does
/// not nest).
fn with_tracer<T>(f: impl FnOnce(&SdkTracer) -> T) -> Option<T> {
    let mut f = Some(f);
    tracing::dispatcher::get_default(|dispatch| {
        let tracer = dispatch.downcast_ref::<ExportTracer>()?;
        f.take().map(|f| f(&tracer.0))
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

/// The span of one plugin call; ends (and is exported) when dropped. With export off it holds
/// nothing and every method returns at once.
pub struct CallSpan {
    recording: Option<Recording>,
}

struct Recording {
    span: SdkSpan,
    parent: Context,
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
    /// Start a call span named `name()` with `attributes()` (both built only when export is
    /// on), under `parent` or, without one, under the current `tracing` span.
    pub fn start(
        parent: Option<&Context>,
        name: impl FnOnce() -> String,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Self {
        if !export_on() {
            return Self { recording: None };
        }
        let parent = match parent {
            Some(parent) => parent.clone(),
            None => tracing::Span::current().context(),
        };
        let recording = with_tracer(|tracer| {
            let span = tracer
                .span_builder(name())
                .with_kind(SpanKind::Internal)
                .with_attributes(attributes())
                .start_with_context(tracer, &parent);
            Recording { span, parent }
        });
        Self { recording }
    }

    /// Whether export is on for this call, so attributes are worth computing (the sampler may
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
                .map(|r| (r.parent.clone(), r.span.span_context().clone())),
        )
    }

    pub fn set_attribute(&mut self, attribute: KeyValue) {
        if let Some(recording) = &mut self.recording {
            recording.span.set_attribute(attribute);
        }
    }

    /// Mark the call failed, `kind` saying how (`error.type`).
    pub fn fail(&mut self, kind: &'static str) {
        if let Some(recording) = &mut self.recording {
            recording.span.set_status(Status::error(kind));
            recording
                .span
                .set_attribute(KeyValue::new("error.type", kind));
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
