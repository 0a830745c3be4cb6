//! The export pipeline of plugin-call spans (`telemetry::CallSpan`): sampling and ids when a
//! call starts, a compact record queued when it ends, and a worker thread that turns records
//! into OpenTelemetry `SpanData` and hands them to its own OTLP exporter in batches.
//!
//! Why not the SDK's span and batch processor: a plugin call is the host's hottest path (a
//! small tool call is about ten microseconds in all). The SDK's span allocates its name and
//! attributes on the calling thread and frees them on the exporter's thread, so every call
//! also paid the allocator's slow path for memory another core had released. Here the calling
//! thread allocates nothing: the record holds shared (`Arc`) names, numbers and `'static`
//! labels; the span's name and attribute list are built on the worker, which frees them too.
//!
//! The worker follows the SDK's batch processor: records go into a bounded queue nobody
//! blocks on (so queueing never wakes a thread); the worker wakes on a control message (a full
//! batch, a flush, shutdown) or when the schedule delay has passed. A full queue drops the
//! record and counts it; the count is logged at the next export. Queue size, batch size and
//! delay are the tracer provider's too (`config::ExportBatch`, from the `OTEL_BSP_*` variables).
//! Flush and shutdown wait 5 s at most for the worker (the SDK's own limit), and an export
//! takes only what was queued when it began, so a steady stream of calls cannot starve it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::config::ExportBatch;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue, StringValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    IdGenerator as _, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample as _, SpanData,
    SpanEvents, SpanExporter, SpanLinks,
};

/// How long a flush or shutdown waits for the worker (as the SDK's batch processor does).
const WAIT_FOR_WORKER: Duration = Duration::from_secs(5);

/// What a plugin call is, known when it starts. Every string is shared or `'static`, so
/// making one allocates nothing.
#[derive(Clone, Debug)]
pub struct CallIdentity {
    /// `tool`, `connector`, `provider_chat`, `provider_embed`, `health`, `describe` (the
    /// metrics label).
    pub operation: &'static str,
    /// The plugin's name (its slot: a built-in's instance name).
    pub plugin: StringValue,
    /// `tool`, `connector`, `provider`, ...
    pub plugin_kind: &'static str,
    /// The tool or connector operation called, if any.
    pub target: Option<StringValue>,
    /// The revision's content digest.
    pub digest: StringValue,
}

/// What a call produced, recorded as it ends.
#[derive(Clone, Debug, Default)]
pub(super) struct CallResult {
    pub memory_peak_bytes: Option<i64>,
    pub output_bytes: Option<i64>,
    pub outcome: Option<&'static str>,
    /// The error kind of a failed call (`error.type`, and the span's error status).
    pub error: Option<&'static str>,
}

/// One finished, sampled call as it waits for export.
pub(super) struct CallRecord {
    pub context: SpanContext,
    pub parent_span_id: SpanId,
    pub parent_is_remote: bool,
    pub start: SystemTime,
    pub end: SystemTime,
    pub identity: CallIdentity,
    pub result: CallResult,
}

/// A started call's place in its trace.
pub(super) struct Begun {
    pub context: SpanContext,
    pub parent_span_id: SpanId,
    pub parent_is_remote: bool,
    /// Whether the sampler kept it (only sampled calls are exported).
    pub sampled: bool,
}

enum Control {
    /// A batch is full.
    Export,
    Flush(SyncSender<Result<(), String>>),
    /// Export what is queued (starting no batch after the deadline), then stop.
    Shutdown {
        reply: SyncSender<Result<(), String>>,
        deadline: Instant,
    },
}

/// Counters shared by the callers and the worker.
#[derive(Default)]
struct Shared {
    queued: AtomicUsize,
    export_requested: AtomicBool,
    dropped: AtomicU64,
}

/// The calling side of the pipeline: samples, makes ids and queues records.
pub struct CallExport {
    sampler: Sampler,
    ids: RandomIdGenerator,
    max_batch: usize,
    records: SyncSender<CallRecord>,
    control: SyncSender<Control>,
    shared: Arc<Shared>,
    shut_down: AtomicBool,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for CallExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallExport")
            .field("queued", &self.shared.queued.load(Ordering::Relaxed))
            .field("shut_down", &self.shut_down.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl CallExport {
    /// Start the worker that exports through `exporter`, with `resource` on every span.
    pub fn start<E: SpanExporter + 'static>(
        mut exporter: E,
        sampler: Sampler,
        resource: &Resource,
        settings: ExportBatch,
    ) -> std::io::Result<Self> {
        exporter.set_resource(resource);
        let (records, record_queue) = sync_channel(settings.max_queue);
        let (control, control_queue) = sync_channel(64);
        let shared = Arc::new(Shared::default());
        let worker = Worker {
            exporter,
            records: record_queue,
            shared: shared.clone(),
            settings,
            // The same scope as the `tracing` spans' tracer, so a backend groups them together.
            scope: InstrumentationScope::builder("databot").build(),
        };
        let worker = std::thread::Builder::new()
            .name("databot-call-spans".to_owned())
            .spawn(move || worker.run(control_queue))?;
        Ok(Self {
            sampler,
            ids: RandomIdGenerator::default(),
            max_batch: settings.max_batch,
            records,
            control,
            shared,
            shut_down: AtomicBool::new(false),
            worker: Mutex::new(Some(worker)),
        })
    }

    /// Place a call starting now under `parent`: its ids and the sampler's decision (asked
    /// with the call's operation label as the name). `None` when telemetry is suppressed in
    /// `parent` or the pipeline is shut down.
    pub(super) fn begin(&self, parent: &Context, operation: &'static str) -> Option<Begun> {
        if self.shut_down.load(Ordering::Relaxed) || parent.is_telemetry_suppressed() {
            return None;
        }
        let span_id = self.ids.new_span_id();
        let parent_span = parent.span();
        let parent_context = parent_span.span_context();
        let (trace_id, parent_span_id, parent_is_remote, flags) = if parent_context.is_valid() {
            (
                parent_context.trace_id(),
                parent_context.span_id(),
                parent_context.is_remote(),
                parent_context.trace_flags(),
            )
        } else {
            (
                self.ids.new_trace_id(),
                SpanId::INVALID,
                false,
                TraceFlags::default(),
            )
        };
        let sampling = self.sampler.should_sample(
            Some(parent),
            trace_id,
            operation,
            &SpanKind::Internal,
            &[],
            &[],
        );
        let sampled = sampling.decision == SamplingDecision::RecordAndSample;
        Some(Begun {
            context: SpanContext::new(
                trace_id,
                span_id,
                flags.with_sampled(sampled),
                false,
                sampling.trace_state,
            ),
            parent_span_id,
            parent_is_remote,
            sampled,
        })
    }

    /// Queue a finished call; never blocks (a full queue drops it and counts it).
    pub(super) fn submit(&self, record: CallRecord) {
        // Counted before it is sent, so the worker never takes more than was counted.
        let queued = self.shared.queued.fetch_add(1, Ordering::AcqRel) + 1;
        match self.records.try_send(record) {
            Ok(()) => {
                if queued >= self.max_batch
                    && !self.shared.export_requested.swap(true, Ordering::AcqRel)
                    && self.control.try_send(Control::Export).is_err()
                {
                    self.shared.export_requested.store(false, Ordering::Release);
                }
            }
            Err(TrySendError::Full(_)) => {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Export everything queued now; waits for the exporter's answer (5 s at most).
    pub fn force_flush(&self) -> Result<(), String> {
        if self.shut_down.load(Ordering::Acquire) {
            return Ok(());
        }
        let (reply, answer) = sync_channel(1);
        self.send_control(Control::Flush(reply))?;
        Self::await_worker(&answer, "flush")
    }

    /// Export what is queued, shut the exporter down and stop the worker, within 5 s: past
    /// that the worker starts no further batch and is left to finish on its own. Later calls
    /// are not recorded; a second shutdown does nothing.
    pub fn shutdown(&self) -> Result<(), String> {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (reply, answer) = sync_channel(1);
        let deadline = Instant::now() + WAIT_FOR_WORKER;
        self.send_control(Control::Shutdown { reply, deadline })?;
        let result = Self::await_worker(&answer, "shutdown");
        let worker = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // Joined only once it has answered (or died): a worker stuck in an export is left.
        if let Some(worker) = worker
            && (result.is_ok() || worker.is_finished())
            && worker.join().is_err()
        {
            return Err("the call-span exporter's thread panicked".to_owned());
        }
        result
    }

    /// Hand the worker a control message without ever blocking (its queue holds 64).
    fn send_control(&self, message: Control) -> Result<(), String> {
        self.control.try_send(message).map_err(|error| match error {
            TrySendError::Full(_) => {
                "the call-span exporter is busy with earlier requests".to_owned()
            }
            TrySendError::Disconnected(_) => "the call-span exporter has stopped".to_owned(),
        })
    }

    /// The worker's answer to a flush or shutdown.
    fn await_worker(answer: &Receiver<Result<(), String>>, request: &str) -> Result<(), String> {
        match answer.recv_timeout(WAIT_FOR_WORKER) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "the call-span exporter did not finish the {request} within {} s",
                WAIT_FOR_WORKER.as_secs()
            )),
            Err(RecvTimeoutError::Disconnected) => Err(format!(
                "the call-span exporter stopped before the {request} (it was shut down)"
            )),
        }
    }
}

impl Drop for CallExport {
    /// The last holder gone without a shutdown (an embedder that kept no guard): export what
    /// is queued before returning, as the SDK's provider does when dropped.
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::warn!("plugin-call spans were not all exported: {error}");
        }
    }
}

/// The worker thread's state.
struct Worker<E> {
    exporter: E,
    records: Receiver<CallRecord>,
    shared: Arc<Shared>,
    settings: ExportBatch,
    scope: InstrumentationScope,
}

impl<E: SpanExporter> Worker<E> {
    fn run(mut self, control: Receiver<Control>) {
        let mut last_export = Instant::now();
        loop {
            let wait = self
                .settings
                .schedule_delay
                .saturating_sub(last_export.elapsed());
            match control.recv_timeout(wait) {
                Ok(Control::Export) => {
                    self.shared.export_requested.store(false, Ordering::Release);
                    let _ = self.export_queued(None);
                    last_export = Instant::now();
                }
                Ok(Control::Flush(reply)) => {
                    let _ = reply.send(self.export_queued(None));
                    last_export = Instant::now();
                }
                Ok(Control::Shutdown { reply, deadline }) => {
                    let _ = reply.send(self.finish(deadline));
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.export_queued(None);
                    last_export = Instant::now();
                }
                // Every sender is gone (the subscriber was dropped without a shutdown).
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.finish(Instant::now() + WAIT_FOR_WORKER);
                    return;
                }
            }
        }
    }

    /// Export what is queued, then shut the exporter down.
    fn finish(&mut self, deadline: Instant) -> Result<(), String> {
        let exported = self.export_queued(Some(deadline));
        let shut = self.exporter.shutdown().map_err(|e| e.to_string());
        exported.and(shut)
    }

    /// Export the records queued when this began (not those queued meanwhile, so calls that
    /// keep coming cannot hold a flush forever), in batches of at most `max_batch`, starting
    /// none after `deadline`. Failures are logged and the spans dropped: a collector that is
    /// down must not grow the host's memory.
    fn export_queued(&mut self, deadline: Option<Instant>) -> Result<(), String> {
        let dropped = self.shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "plugin-call spans were dropped: the export queue was full (the collector is slow or unreachable)"
            );
        }
        let mut remaining = self.shared.queued.load(Ordering::Acquire);
        let mut outcome = Ok(());
        while remaining > 0 {
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Err(format!(
                    "{remaining} plugin-call spans were not exported before the deadline"
                ));
            }
            let batch: Vec<SpanData> = self
                .records
                .try_iter()
                .take(remaining.min(self.settings.max_batch))
                .map(|record| span_data(record, &self.scope))
                .collect();
            if batch.is_empty() {
                break;
            }
            let count = batch.len();
            remaining -= count;
            self.shared.queued.fetch_sub(count, Ordering::AcqRel);
            if let Err(error) = futures::executor::block_on(self.exporter.export(batch)) {
                tracing::warn!(spans = count, "exporting plugin-call spans failed: {error}");
                outcome = Err(error.to_string());
            }
        }
        outcome
    }
}

/// The exported span of a record: GenAI's `execute_tool {name}` for tool calls, otherwise
/// `{operation} {plugin}.{target}` or `{operation} {plugin}`.
fn span_data(record: CallRecord, scope: &InstrumentationScope) -> SpanData {
    let CallIdentity {
        operation,
        plugin,
        plugin_kind,
        target,
        digest,
    } = record.identity;
    let result = record.result;
    let mut attributes = Vec::with_capacity(8);
    let name = match (operation, target) {
        ("tool", Some(tool)) => {
            let name = format!("execute_tool {tool}");
            attributes.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
            attributes.push(KeyValue::new("gen_ai.tool.name", tool));
            name
        }
        (_, target) => {
            attributes.push(KeyValue::new("databot.plugin.kind", plugin_kind));
            match target {
                Some(target) => {
                    let name = format!("{operation} {plugin}.{target}");
                    attributes.push(KeyValue::new("databot.operation.name", target));
                    name
                }
                None => format!("{operation} {plugin}"),
            }
        }
    };
    attributes.push(KeyValue::new("databot.plugin.name", plugin));
    attributes.push(KeyValue::new("databot.plugin.digest", digest));
    if let Some(peak) = result.memory_peak_bytes {
        attributes.push(KeyValue::new("databot.guest.memory_peak_bytes", peak));
    }
    if let Some(outcome) = result.outcome {
        attributes.push(KeyValue::new("databot.call.outcome", outcome));
    }
    if let Some(bytes) = result.output_bytes {
        attributes.push(KeyValue::new("databot.output.bytes", bytes));
    }
    let status = match result.error {
        Some(kind) => {
            attributes.push(KeyValue::new("error.type", kind));
            Status::error(kind)
        }
        None => Status::Unset,
    };
    SpanData {
        span_context: record.context,
        parent_span_id: record.parent_span_id,
        parent_span_is_remote: record.parent_is_remote,
        span_kind: SpanKind::Internal,
        name: name.into(),
        start_time: record.start,
        end_time: record.end,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _};
    use opentelemetry::{Context, Value};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{Sampler, SpanData};

    /// Keeps every exported span.
    #[derive(Debug, Clone, Default)]
    struct InMemorySpanExporter(Arc<std::sync::Mutex<Vec<SpanData>>>);

    impl InMemorySpanExporter {
        fn get_finished_spans(&self) -> Result<Vec<SpanData>, String> {
            Ok(self.0.lock().map_err(|e| e.to_string())?.clone())
        }
    }

    impl opentelemetry_sdk::trace::SpanExporter for InMemorySpanExporter {
        async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
            self.0.lock().expect("spans").extend(batch);
            Ok(())
        }
    }

    use super::{CallExport, CallIdentity, CallRecord, CallResult, ExportBatch};

    fn start<E: opentelemetry_sdk::trace::SpanExporter + 'static>(
        exporter: E,
        sampler: Sampler,
        settings: ExportBatch,
    ) -> CallExport {
        CallExport::start(
            exporter,
            sampler,
            &Resource::builder_empty().build(),
            settings,
        )
        .expect("worker")
    }

    fn identity(operation: &'static str, target: Option<&str>) -> CallIdentity {
        CallIdentity {
            operation,
            plugin: Arc::<str>::from("warehouse").into(),
            plugin_kind: "connector",
            target: target.map(|t| Arc::<str>::from(t).into()),
            digest: Arc::<str>::from("sha256:ab").into(),
        }
    }

    fn finish(export: &CallExport, parent: &Context, identity: CallIdentity, result: CallResult) {
        let begun = export.begin(parent, identity.operation).expect("begun");
        assert!(begun.sampled);
        let now = std::time::SystemTime::now();
        export.submit(CallRecord {
            context: begun.context,
            parent_span_id: begun.parent_span_id,
            parent_is_remote: begun.parent_is_remote,
            start: now,
            end: now,
            identity,
            result,
        });
    }

    fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    #[test]
    fn records_become_named_spans_with_their_attributes_under_their_parent() {
        let memory = InMemorySpanExporter::default();
        let export = start(memory.clone(), Sampler::AlwaysOn, ExportBatch::default());
        let root = export.begin(&Context::new(), "tool").expect("root");
        // A caller's context as propagation hands it over (`traceparent`): remote.
        let parent =
            Context::new().with_remote_span_context(opentelemetry::trace::SpanContext::new(
                root.context.trace_id(),
                root.context.span_id(),
                root.context.trace_flags(),
                true,
                Default::default(),
            ));
        finish(
            &export,
            &parent,
            identity("tool", Some("sql_query")),
            CallResult {
                outcome: Some("ok"),
                output_bytes: Some(42),
                ..CallResult::default()
            },
        );
        finish(
            &export,
            &Context::new(),
            identity("connector", Some("execute")),
            CallResult {
                outcome: Some("timeout"),
                error: Some("timeout"),
                memory_peak_bytes: Some(1 << 20),
                ..CallResult::default()
            },
        );
        finish(
            &export,
            &Context::new(),
            identity("health", None),
            CallResult::default(),
        );
        export.force_flush().expect("flushed");
        let spans = memory.get_finished_spans().expect("spans");
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(
            names,
            [
                "execute_tool sql_query",
                "connector warehouse.execute",
                "health warehouse"
            ]
        );
        let tool = &spans[0];
        assert_eq!(tool.span_context.trace_id(), root.context.trace_id());
        assert_eq!(tool.parent_span_id, root.context.span_id());
        assert!(tool.parent_span_is_remote);
        assert_eq!(tool.span_kind, SpanKind::Internal);
        assert_eq!(tool.instrumentation_scope.name(), "databot");
        assert_eq!(
            attribute(tool, "gen_ai.tool.name").map(|v| v.as_str().into_owned()),
            Some("sql_query".to_owned())
        );
        assert_eq!(
            attribute(tool, "databot.output.bytes"),
            Some(&Value::I64(42))
        );
        assert_eq!(tool.status, Status::Unset);
        let failed = &spans[1];
        assert_eq!(failed.status, Status::error("timeout"));
        assert_eq!(
            attribute(failed, "error.type").map(|v| v.as_str().into_owned()),
            Some("timeout".to_owned())
        );
        assert_eq!(
            attribute(failed, "databot.guest.memory_peak_bytes"),
            Some(&Value::I64(1 << 20))
        );
        assert_eq!(
            attribute(failed, "databot.operation.name").map(|v| v.as_str().into_owned()),
            Some("execute".to_owned())
        );
        assert_eq!(failed.parent_span_id, opentelemetry::trace::SpanId::INVALID);
        export.shutdown().expect("shut down");
        assert!(export.begin(&Context::new(), "tool").is_none());
        export.shutdown().expect("a second shutdown is a no-op");
    }

    #[test]
    fn the_sampler_decides_and_unsampled_calls_carry_the_decision() {
        let export = start(
            InMemorySpanExporter::default(),
            Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            ExportBatch::default(),
        );
        let begun = export.begin(&Context::new(), "tool").expect("begun");
        assert!(!begun.sampled);
        assert!(!begun.context.is_sampled());
        assert!(begun.context.is_valid());
        export.shutdown().expect("shut down");
    }

    /// An exporter that holds every export until the gate opens, counting spans.
    #[derive(Debug, Clone, Default)]
    struct GatedExporter {
        gate: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
        entered: Arc<std::sync::atomic::AtomicBool>,
        spans: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl opentelemetry_sdk::trace::SpanExporter for GatedExporter {
        async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
            self.entered
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let (open, opened) = &*self.gate;
            let mut open = open.lock().expect("gate");
            while !*open {
                open = opened.wait(open).expect("gate");
            }
            self.spans
                .fetch_add(batch.len(), std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        use std::sync::atomic::Ordering;
        let exporter = GatedExporter::default();
        let settings = ExportBatch {
            max_queue: 64,
            max_batch: 16,
            // Only full batches and the flush wake the worker.
            schedule_delay: std::time::Duration::from_secs(3600),
        };
        let export = start(exporter.clone(), Sampler::AlwaysOn, settings);
        let submit = |count: usize| {
            for _ in 0..count {
                finish(
                    &export,
                    &Context::new(),
                    identity("health", None),
                    CallResult::default(),
                );
            }
        };
        // A full batch wakes the worker, which takes it and then waits at the gate.
        submit(settings.max_batch);
        let waited = std::time::Instant::now();
        while !exporter.entered.load(Ordering::SeqCst) {
            assert!(
                waited.elapsed() < std::time::Duration::from_secs(10),
                "export began"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // The queue takes `max_queue` more; the next ten are dropped, counted, and the caller
        // was never blocked (this thread is the caller).
        submit(settings.max_queue + 10);
        assert_eq!(export.shared.dropped.load(Ordering::SeqCst), 10);
        let (open, opened) = &*exporter.gate;
        *open.lock().expect("gate") = true;
        opened.notify_all();
        export.force_flush().expect("flushed");
        assert_eq!(
            exporter.spans.load(Ordering::SeqCst),
            settings.max_batch + settings.max_queue
        );
        assert_eq!(export.shared.queued.load(Ordering::SeqCst), 0);
        assert_eq!(
            export.shared.dropped.load(Ordering::SeqCst),
            0,
            "logged and reset"
        );
        export.shutdown().expect("shut down");
    }

    #[test]
    fn dropping_the_last_holder_exports_what_is_queued() {
        let memory = InMemorySpanExporter::default();
        let export = start(memory.clone(), Sampler::AlwaysOn, ExportBatch::default());
        for _ in 0..3 {
            finish(
                &export,
                &Context::new(),
                identity("health", None),
                CallResult::default(),
            );
        }
        drop(export);
        assert_eq!(memory.get_finished_spans().expect("spans").len(), 3);
    }
}
