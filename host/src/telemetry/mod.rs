//! Tracing and metrics: the process's `tracing` subscriber (logs to stderr, plus OpenTelemetry
//! OTLP export when configured), span names and attributes, W3C trace-context propagation, and
//! the runtime's Prometheus metrics registry.
//!
//! Submodules: `export` (OTLP exporter and tracer provider), `call_span` (the plugin-call span,
//! made on the OpenTelemetry SDK directly), `spans` (names, attribute helpers), `propagation`
//! (`traceparent` in and out), `metrics` (counters and histograms).
//!
//! With no endpoint configured there is no OpenTelemetry layer at all: the log formatter takes
//! events only, so no layer is interested in spans and they are not built; nothing is exported
//! or attempted.

pub mod call_span;
pub mod export;
pub mod metrics;
pub mod propagation;
pub mod spans;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::filter::{FilterExt, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

pub use self::call_span::{CallSpan, CallTrace, child_span};
pub use self::export::ExportError;
pub use self::metrics::{Budget, RuntimeMetrics};
use crate::config::{ResolvedTelemetry, TelemetryConfig};

/// Keeps export running; flushes and shuts the exporter down when dropped (or on `shutdown`).
/// Drop it outside async code, or while the Tokio runtime that built it is still running
/// (the gRPC exporter's connection lives there).
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    endpoint: Option<String>,
}

impl TelemetryGuard {
    /// A guard that exports nothing.
    pub fn disabled() -> Self {
        Self {
            provider: None,
            endpoint: None,
        }
    }

    /// Where spans go, when export is on.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// Export every finished span now (blocks until the exporter answered or timed out).
    pub fn force_flush(&self) -> Result<(), String> {
        match &self.provider {
            Some(provider) => provider.force_flush().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// Flush and stop the exporter.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
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
/// `info` or `databot=debug`), plus the export layer when `settings` is given. Returns the
/// provider to flush. Tests install it with `tracing::subscriber::set_default`.
pub fn subscriber(
    settings: Option<&ResolvedTelemetry>,
    log_filter: &str,
) -> Result<(Box<dyn Subscriber + Send + Sync>, Option<SdkTracerProvider>), ExportError> {
    let filter = EnvFilter::try_new(log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // The log formatter takes events only: log lines stay as they were, and with export off
    // no layer wants the spans, so they are never even built.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter.and(filter_fn(|metadata| metadata.is_event())));
    let provider = settings.map(export::tracer_provider).transpose()?;
    let otel = provider.as_ref().map(otel_layer);
    let tracer = provider
        .as_ref()
        .map(|provider| call_span::export_tracer_layer(provider.tracer("databot")));
    let subscriber = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .with(tracer);
    Ok((Box::new(subscriber), provider))
}

/// Resolve `config` against the process environment and install the global subscriber.
/// Invalid settings (a malformed endpoint, an unknown protocol) are an error; an unreachable
/// collector is not (exports fail later with a warning and are dropped). Call inside a Tokio
/// runtime context when gRPC export may be configured.
pub fn init(config: &TelemetryConfig, log_filter: &str) -> Result<TelemetryGuard, ExportError> {
    let settings = config
        .resolve(|name| std::env::var(name).ok())
        .map_err(ExportError::Config)?;
    let (subscriber, provider) = subscriber(settings.as_ref(), log_filter)?;
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        // Someone (a test harness, an embedding program) installed one already: keep theirs.
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
    Ok(TelemetryGuard {
        provider,
        endpoint: settings.map(|s| s.endpoint),
    })
}

/// A guard for a provider built by `subscriber` (tests flush through it).
pub fn guard(provider: Option<SdkTracerProvider>) -> TelemetryGuard {
    TelemetryGuard {
        provider,
        endpoint: None,
    }
}
