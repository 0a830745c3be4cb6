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

use super::call_export::CallExport;
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

/// The export pipelines of one endpoint: the tracer provider behind the `tracing` layer and
/// the call-span pipeline behind `CallSpan`.
pub struct Pipelines {
    pub(super) provider: SdkTracerProvider,
    pub(super) calls: std::sync::Arc<CallExport>,
}

impl Pipelines {
    /// Pipelines over two exporters to the same place (`spans` for the provider's batch
    /// processor, `calls` for the call-span worker), both sampling by `sampler` and batching
    /// by `batch`.
    pub fn new<E: opentelemetry_sdk::trace::SpanExporter + 'static>(
        spans: E,
        calls: E,
        sampler: SamplerSetting,
        batch: ExportBatch,
        resource: Resource,
    ) -> Result<Self, ExportError> {
        let calls = CallExport::start(calls, self::sampler(sampler), &resource, batch)
            .map_err(ExportError::Thread)?;
        let processor = BatchSpanProcessor::builder(spans)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(batch.max_queue)
                    .with_max_export_batch_size(batch.max_batch)
                    .with_scheduled_delay(batch.schedule_delay)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(self::sampler(sampler))
            .with_resource(resource)
            .build();
        Ok(Self {
            provider,
            calls: std::sync::Arc::new(calls),
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

/// Build the pipelines that export to the configured endpoint. Needs a Tokio runtime context
/// for gRPC (the channels' workers run on it). Connecting is lazy: an unreachable collector is
/// not an error here; failed exports are logged and dropped.
pub fn pipelines(settings: &ResolvedTelemetry) -> Result<Pipelines, ExportError> {
    Pipelines::new(
        span_exporter(settings)?,
        span_exporter(settings)?,
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
