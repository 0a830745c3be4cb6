//! Tracing and metrics: the process's `tracing` subscriber (logs to stderr, plus OpenTelemetry
//! OTLP export when configured), span names and attributes, W3C trace-context propagation, and
//! the runtime's Prometheus metrics registry.
//!
//! Submodules: `export` (OTLP exporters and the two export pipelines), `call_span` (the
//! plugin-call span) and `call_export` (its allocation-free pipeline), `spans` (names,
//! attribute helpers), `propagation` (`traceparent` in and out), `metrics` (counters and
//! histograms, labels escaped by construction), `log_format` (log fields with control
//! characters escaped, so plugin-controlled text cannot forge log lines).
//!
//! `recent` keeps the last traces in memory for the operator console (`telemetry.recent_traces`,
//! on by default): spans then go through the same pipelines as for export, into memory. With no
//! endpoint configured and `recent_traces: 0` there is no OpenTelemetry layer at all: the log
//! formatter takes events only, so no layer is interested in spans and they are not built;
//! nothing is exported or attempted.

mod call_export;
pub mod call_span;
pub mod export;
pub mod history;
pub mod log_format;
pub mod metrics;
pub mod propagation;
pub mod recent;
pub mod spans;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::filter::{FilterExt, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

pub use self::call_export::CallIdentity;
pub use self::call_span::{CallSpan, CallTrace, child_span};
pub use self::export::{ExportError, Pipelines};
pub use self::metrics::{Budget, RuntimeMetrics};
pub use self::recent::RecentTraces;
use crate::config::{ResolvedTelemetry, TelemetryConfig};

/// Keeps export running; flushes and shuts the exporters down when dropped (or on `shutdown`).
/// Drop it outside async code, or while the Tokio runtime that built it is still running
/// (the gRPC exporters' connections live there).
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    export: Option<Pipelines>,
    endpoint: Option<String>,
}

impl TelemetryGuard {
    /// A guard that exports nothing.
    pub fn disabled() -> Self {
        Self {
            export: None,
            endpoint: None,
        }
    }

    /// Where spans go, when export is on.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// Export every finished span now (blocks until the exporters answered or timed out).
    pub fn force_flush(&self) -> Result<(), String> {
        match &self.export {
            Some(export) => export.force_flush(),
            None => Ok(()),
        }
    }

    /// Flush and stop the exporters.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(export) = self.export.take()
            && let Err(error) = export.shutdown()
        {
            tracing::warn!("trace export did not shut down cleanly: {error}");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The filter of the export layer: the host's own spans (`databot::*`) at `INFO` and above,
/// whatever the log level; never the exporter's own HTTP/gRPC internals.
pub fn export_filter() -> Targets {
    Targets::new().with_target("databot", tracing::Level::INFO)
}

/// The OpenTelemetry layer over `provider`, filtered by `export_filter`.
pub fn otel_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync + 'static
where
    S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("databot"))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_level(false)
        .with_tracked_inactivity(false)
        // Nothing here reads `opentelemetry::Context::current()` (propagation asks the span);
        // activating a context on every poll of a guest call would cost for nothing.
        .with_context_activation(false)
        .with_filter(export_filter())
}

/// A subscriber: the stderr log formatter under `log_filter` (an `EnvFilter` directive, e.g.
/// `info` or `databot=debug`), plus the export layers when `settings` is given, and the guard
/// that flushes them. Keep the guard as long as spans should be exported: dropping it (even
/// as `let (subscriber, _) = ...`) flushes and stops export. Tests install the subscriber with
/// `tracing::subscriber::set_default`.
pub fn subscriber(
    settings: Option<&ResolvedTelemetry>,
    log_filter: &str,
) -> Result<(Box<dyn Subscriber + Send + Sync>, TelemetryGuard), ExportError> {
    subscriber_keeping(settings, 0, log_filter)
}

/// `subscriber`, also keeping the last `recent_traces` traces in memory (`RecentTraces`)
/// when that is more than 0.
pub fn subscriber_keeping(
    settings: Option<&ResolvedTelemetry>,
    recent_traces: usize,
    log_filter: &str,
) -> Result<(Box<dyn Subscriber + Send + Sync>, TelemetryGuard), ExportError> {
    let recent = (recent_traces > 0).then(|| RecentTraces::new(recent_traces));
    let export = match (settings, recent) {
        (Some(settings), recent) => Some(export::pipelines(settings, recent)?),
        (None, Some(recent)) => Some(export::recent_only(recent)?),
        (None, None) => None,
    };
    let subscriber = subscriber_with_export(export.as_ref(), log_filter);
    Ok((
        subscriber,
        TelemetryGuard {
            export,
            endpoint: settings.map(|s| s.endpoint.clone()),
        },
    ))
}

/// The subscriber of `subscriber`, exporting through already built pipelines (or not at all):
/// for an embedding program or a benchmark with exporters of its own. Keep `export` in a
/// guard (`guard`) to flush it.
pub fn subscriber_with_export(
    export: Option<&Pipelines>,
    log_filter: &str,
) -> Box<dyn Subscriber + Send + Sync> {
    let filter = EnvFilter::try_new(log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // The log formatter takes events only: log lines stay as they were, and with export off
    // no layer wants the spans, so they are never even built.
    let fmt = tracing_subscriber::fmt::layer()
        .fmt_fields(log_format::EscapedFields)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter.and(filter_fn(|metadata| metadata.is_event())));
    let otel = export.map(|export| otel_layer(&export.provider));
    let calls = export.map(|export| call_span::export_tracer_layer(export.calls.clone()));
    let recent = export
        .and_then(|export| export.recent.clone())
        .map(recent::handle_layer);
    Box::new(
        tracing_subscriber::registry()
            .with(fmt)
            .with(otel)
            .with(calls)
            .with(recent),
    )
}

/// A guard over pipelines built by the caller (`subscriber_with_export`).
pub fn guard(export: Pipelines) -> TelemetryGuard {
    TelemetryGuard {
        export: Some(export),
        endpoint: None,
    }
}

/// Resolve `config` against the process environment and install the global subscriber.
/// Invalid settings (a malformed endpoint, an unknown protocol) are an error; an unreachable
/// collector is not (exports fail later with a warning and are dropped). Call inside a Tokio
/// runtime context when gRPC export may be configured.
pub fn init(config: &TelemetryConfig, log_filter: &str) -> Result<TelemetryGuard, ExportError> {
    let settings = config
        .resolve(|name| std::env::var(name).ok())
        .map_err(ExportError::Config)?;
    let (subscriber, guard) =
        subscriber_keeping(settings.as_ref(), config.recent_traces(), log_filter)?;
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        // Someone (a test harness, an embedding program) installed one already: keep theirs
        // (dropping `guard` stops the pipelines built for nothing).
        return Ok(TelemetryGuard::disabled());
    }
    if let Some(settings) = &settings {
        tracing::info!(
            endpoint = %export::redacted_endpoint(&settings.endpoint),
            protocol = settings.protocol.as_str(),
            service = %settings.service_name,
            "exporting traces over OTLP"
        );
    }
    Ok(guard)
}
