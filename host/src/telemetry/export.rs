//! The OTLP span exporter and the tracer provider around it: gRPC (tonic) or HTTP/protobuf
//! (blocking reqwest client, which is safe on the batch processor's own thread), a batch
//! processor, the sampler and the resource (`service.name`, `service.version`).

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

use crate::config::{OtlpProtocol, ResolvedTelemetry, SamplerSetting};

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

/// Build the tracer provider that batches spans to the configured endpoint. Needs a Tokio
/// runtime context for gRPC (the channel's worker runs on it). Connecting is lazy: an
/// unreachable collector is not an error here; failed exports are logged and dropped.
pub fn tracer_provider(settings: &ResolvedTelemetry) -> Result<SdkTracerProvider, ExportError> {
    let timeout = Duration::from_millis(settings.timeout_ms);
    let build_error = |source| ExportError::Build {
        protocol: settings.protocol.as_str(),
        endpoint: redacted_endpoint(&settings.endpoint),
        source,
    };
    let exporter = match settings.protocol {
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
    };
    let resource = Resource::builder_empty()
        .with_service_name(settings.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler(settings.sampler))
        .with_resource(resource)
        .build())
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
