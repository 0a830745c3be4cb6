//! The OTLP span exporters and what is built around them: gRPC (tonic) or HTTP/protobuf
//! (blocking reqwest client, which is safe on the exporters' own threads), the sampler and the
//! resource (`service.name`, `service.version`), and the two export pipelines: the tracer
//! provider with its batch processor for the host's `tracing` spans, and the call-span
//! pipeline (`call_export`) for plugin calls, each with its own exporter to the same endpoint.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};

use std::sync::Arc;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as SpanExporterTrait};

use super::call_export::CallExport;
use super::recent::{RecentSpans, RecentTraces};
use crate::config::{ExportBatch, OtlpProtocol, ResolvedTelemetry, SamplerSetting};

/// Why export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("telemetry: {0}")]
    Config(String),
    #[error("telemetry: header `{name}` cannot be sent: {reason}")]
    Header { name: String, reason: String },
    #[error("telemetry: the OTLP {protocol} exporter for {endpoint} cannot be built: {source}")]
    Build {
        protocol: &'static str,
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("telemetry: the call-span exporter thread cannot be started: {0}")]
    Thread(#[source] std::io::Error),
}

/// The endpoint as logs and errors show it: without user information or query (credentials
/// belong in `headers`, but an operator may have put them in the URL).
pub fn redacted_endpoint(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(mut url) => {
            if !url.username().is_empty() || url.password().is_some() {
                let _ = url.set_username("");
                let _ = url.set_password(None);
            }
            url.set_query(None);
            url.to_string()
        }
        Err(_) => "(an endpoint that is not a URL)".to_owned(),
    }
}

/// The pipelines spans go through: the tracer provider behind the `tracing` layer and the
/// call-span pipeline behind `CallSpan`, to an endpoint and/or the recent-traces store.
pub struct Pipelines {
    pub(super) provider: SdkTracerProvider,
    pub(super) calls: std::sync::Arc<CallExport>,
    pub(super) recent: Option<Arc<RecentTraces>>,
}

impl Pipelines {
    /// Pipelines over two exporters to the same place (`spans` for the provider's batch
    /// processor, `calls` for the call-span worker), both sampling by `sampler` and batching
    /// by `batch`.
    pub fn new<E: SpanExporterTrait + 'static>(
        spans: E,
        calls: E,
        sampler: SamplerSetting,
        batch: ExportBatch,
        resource: Resource,
    ) -> Result<Self, ExportError> {
        Self::build(Some((spans, calls)), None, sampler, batch, resource)
    }

    /// Pipelines to `otlp`'s two exporters (as in `new`) when given, and into `recent` when
    /// given: a span goes to both, sampled once.
    pub fn build<E: SpanExporterTrait + 'static>(
        otlp: Option<(E, E)>,
        recent: Option<Arc<RecentTraces>>,
        sampler: SamplerSetting,
        batch: ExportBatch,
        resource: Resource,
    ) -> Result<Self, ExportError> {
        let (spans, calls) = otlp.unzip();
        let calls = CallExport::start(
            Both {
                otlp: calls,
                recent: recent.clone(),
            },
            self::sampler(sampler),
            &resource,
            batch,
        )
        .map_err(ExportError::Thread)?;
        let mut provider = SdkTracerProvider::builder();
        if let Some(spans) = spans {
            provider = provider.with_span_processor(
                BatchSpanProcessor::builder(spans)
                    .with_batch_config(
                        BatchConfigBuilder::default()
                            .with_max_queue_size(batch.max_queue)
                            .with_max_export_batch_size(batch.max_batch)
                            .with_scheduled_delay(batch.schedule_delay)
                            .build(),
                    )
                    .build(),
            );
        }
        if let Some(recent) = &recent {
            provider = provider.with_span_processor(RecentSpans(recent.clone()));
        }
        let provider = provider
            .with_sampler(self::sampler(sampler))
            .with_resource(resource)
            .build();
        Ok(Self {
            provider,
            calls: std::sync::Arc::new(calls),
            recent,
        })
    }

    /// Export every finished span now (blocks until the exporters answered or timed out).
    pub fn force_flush(&self) -> Result<(), String> {
        let calls = self.calls.force_flush();
        let spans = self.provider.force_flush().map_err(|e| e.to_string());
        calls.and(spans)
    }

    /// Flush and stop both pipelines, side by side: each waits 5 s at most for its exporter.
    pub fn shutdown(&self) -> Result<(), String> {
        std::thread::scope(|scope| {
            // Without a thread to spare, one after the other.
            let calls = std::thread::Builder::new()
                .name("databot-span-shutdown".to_owned())
                .spawn_scoped(scope, || self.calls.shutdown());
            let spans = self.provider.shutdown().map_err(|e| e.to_string());
            let calls = match calls {
                Ok(calls) => calls
                    .join()
                    .unwrap_or_else(|_| Err("the call-span shutdown panicked".to_owned())),
                Err(_) => self.calls.shutdown(),
            };
            calls.and(spans)
        })
    }
}

/// The call-span worker's exporter: into the recent traces and to the endpoint, each when
/// there is one.
#[derive(Debug)]
struct Both<E> {
    otlp: Option<E>,
    recent: Option<Arc<RecentTraces>>,
}

impl<E: SpanExporterTrait> SpanExporterTrait for Both<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if let Some(recent) = &self.recent {
            for span in batch.iter().filter(|s| s.span_context.is_sampled()) {
                recent.record(span);
            }
        }
        match &self.otlp {
            Some(otlp) => otlp.export(batch).await,
            None => Ok(()),
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.otlp
            .as_ref()
            .map_or(Ok(()), |otlp| otlp.shutdown_with_timeout(timeout))
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.otlp
            .as_ref()
            .map_or(Ok(()), SpanExporterTrait::force_flush)
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(otlp) = &mut self.otlp {
            otlp.set_resource(resource);
        }
    }
}

/// Pipelines into `recent` only (no endpoint): sampled always (a remote parent's decision
/// followed), call spans handed over within a quarter of a second so a turn's waterfall is
/// whole soon after it ends.
pub fn recent_only(recent: Arc<RecentTraces>) -> Result<Pipelines, ExportError> {
    Pipelines::build::<SpanExporter>(
        None,
        Some(recent),
        SamplerSetting::ParentBasedAlwaysOn,
        ExportBatch {
            schedule_delay: Duration::from_millis(250),
            ..ExportBatch::default()
        },
        Resource::builder_empty()
            .with_service_name(crate::config::DEFAULT_SERVICE_NAME)
            .build(),
    )
}

/// Build the pipelines that export to the configured endpoint. Needs a Tokio runtime context
/// for gRPC (the channels' workers run on it). Connecting is lazy: an unreachable collector is
/// not an error here; failed exports are logged and dropped.
pub fn pipelines(
    settings: &ResolvedTelemetry,
    recent: Option<Arc<RecentTraces>>,
) -> Result<Pipelines, ExportError> {
    Pipelines::build(
        Some((span_exporter(settings)?, span_exporter(settings)?)),
        recent,
        settings.sampler,
        settings.batch,
        resource(settings),
    )
}

/// An OTLP exporter to the configured endpoint.
fn span_exporter(settings: &ResolvedTelemetry) -> Result<SpanExporter, ExportError> {
    let timeout = Duration::from_millis(settings.timeout_ms);
    let build_error = |source| ExportError::Build {
        protocol: settings.protocol.as_str(),
        endpoint: redacted_endpoint(&settings.endpoint),
        source,
    };
    Ok(match settings.protocol {
        OtlpProtocol::Grpc => {
            let mut headers = http::HeaderMap::new();
            for (name, value) in &settings.headers {
                let header_name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| {
                    ExportError::Header {
                        name: name.clone(),
                        reason: e.to_string(),
                    }
                })?;
                let header_value =
                    http::HeaderValue::from_str(value).map_err(|e| ExportError::Header {
                        name: name.clone(),
                        reason: e.to_string(),
                    })?;
                headers.insert(header_name, header_value);
            }
            SpanExporter::builder()
                .with_tonic()
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(timeout)
                .with_metadata(
                    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers),
                )
                .build()
                .map_err(build_error)?
        }
        OtlpProtocol::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(timeout)
            .with_headers(
                settings
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<HashMap<_, _>>(),
            )
            .build()
            .map_err(build_error)?,
    })
}

/// The resource every exported span carries.
fn resource(settings: &ResolvedTelemetry) -> Resource {
    Resource::builder_empty()
        .with_service_name(settings.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

fn sampler(setting: SamplerSetting) -> Sampler {
    match setting {
        SamplerSetting::AlwaysOn => Sampler::AlwaysOn,
        SamplerSetting::AlwaysOff => Sampler::AlwaysOff,
        SamplerSetting::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        SamplerSetting::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        SamplerSetting::Ratio {
            ratio,
            parent_based: false,
        } => Sampler::TraceIdRatioBased(ratio),
        SamplerSetting::Ratio {
            ratio,
            parent_based: true,
        } => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_and_queries_never_reach_logs() {
        assert_eq!(
            super::redacted_endpoint("https://user:secret@otel.example.com:4318/v1/traces?token=x"),
            "https://otel.example.com:4318/v1/traces"
        );
        assert_eq!(
            super::redacted_endpoint("http://127.0.0.1:4317"),
            "http://127.0.0.1:4317/"
        );
    }
}
