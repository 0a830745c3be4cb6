//! The `telemetry` section: OpenTelemetry trace export (OTLP over gRPC or HTTP/protobuf).
//!
//! Resolution (`TelemetryConfig::resolve`): a key set in YAML wins over the standard `OTEL_*`
//! environment variable for the same setting (as OpenTelemetry SDKs let code-level settings win
//! over the environment); `OTEL_SDK_DISABLED=true` and `enabled: false` turn export off whatever
//! else is set. Without an endpoint from either place nothing is exported.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl OtlpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            other => Err(format!(
                "OTLP protocol `{other}` is not supported; use `grpc` or `http/protobuf`"
            )),
        }
    }
}

/// `telemetry:` in the YAML. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `false` turns export off even when an endpoint is set (here or in the environment);
    /// unset means "on when an endpoint is configured".
    #[serde(default)]
    pub enabled: Option<bool>,
    /// OTLP endpoint: `http://collector:4317` (gRPC) or `http://collector:4318` (HTTP; the
    /// path `/v1/traces` is added when the URL has no path).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `grpc` (default) or `http/protobuf`.
    #[serde(default)]
    pub protocol: Option<OtlpProtocol>,
    /// Resource `service.name` (default `databot`).
    #[serde(default)]
    pub service_name: Option<String>,
    /// Extra headers (gRPC metadata) on every export, e.g. an API key of a hosted backend.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Fraction of new traces to keep, 0.0..=1.0 (default 1.0); a sampled remote parent is
    /// always followed.
    #[serde(default)]
    pub sample_ratio: Option<f64>,
    /// Time allowed for one export request, in milliseconds (default 10000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Traces the host keeps in memory for the operator console's waterfall (default 100).
    /// 0 keeps none; then, with no endpoint either, spans are not even built.
    #[serde(default)]
    pub recent_traces: Option<usize>,
}

/// Traces kept in memory unless `telemetry.recent_traces` says otherwise.
pub const DEFAULT_RECENT_TRACES: usize = 100;
/// The most `telemetry.recent_traces` may keep.
pub const MAX_RECENT_TRACES: usize = 10_000;

/// The settings export runs with, after YAML and environment are merged.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedTelemetry {
    /// The exact URL spans are sent to.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    pub service_name: String,
    pub headers: BTreeMap<String, String>,
    pub sampler: SamplerSetting,
    pub timeout_ms: u64,
    pub batch: ExportBatch,
}

/// How finished spans are batched for export, the same for both export pipelines (the
/// `tracing` spans' and the plugin calls'): `OTEL_BSP_MAX_QUEUE_SIZE`,
/// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` and `OTEL_BSP_SCHEDULE_DELAY` (milliseconds), with the
/// OpenTelemetry SDK's defaults (2,048, 512, 5 s). A value that is not a positive whole number
/// is ignored, as the SDK ignores it; a batch is never larger than the queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExportBatch {
    pub max_queue: usize,
    pub max_batch: usize,
    pub schedule_delay: std::time::Duration,
}

impl Default for ExportBatch {
    fn default() -> Self {
        Self {
            max_queue: 2048,
            max_batch: 512,
            schedule_delay: std::time::Duration::from_secs(5),
        }
    }
}

impl ExportBatch {
    fn from_env(env: impl Fn(&str) -> Option<String>) -> Self {
        let number = |name: &str| {
            env(name)
                .and_then(|value| value.trim().parse::<u64>().ok())
                .filter(|value| *value > 0)
        };
        let defaults = Self::default();
        let max_queue = number("OTEL_BSP_MAX_QUEUE_SIZE")
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(defaults.max_queue);
        let max_batch = number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(defaults.max_batch)
            .min(max_queue);
        let schedule_delay = number("OTEL_BSP_SCHEDULE_DELAY")
            .map(std::time::Duration::from_millis)
            .unwrap_or(defaults.schedule_delay);
        Self {
            max_queue,
            max_batch,
            schedule_delay,
        }
    }
}

/// Which traces are recorded and exported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerSetting {
    AlwaysOn,
    AlwaysOff,
    /// Keep this fraction of traces; `parent_based` follows a remote parent's decision.
    Ratio {
        ratio: f64,
        parent_based: bool,
    },
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
}

pub const DEFAULT_SERVICE_NAME: &str = "databot";
const DEFAULT_TIMEOUT_MS: u64 = 10_000;

impl TelemetryConfig {
    /// How many recent traces to keep in memory (0: none), capped at `MAX_RECENT_TRACES`.
    pub fn recent_traces(&self) -> usize {
        self.recent_traces
            .unwrap_or(DEFAULT_RECENT_TRACES)
            .min(MAX_RECENT_TRACES)
    }

    /// Merge with the environment (`env` looks a variable up). `Ok(None)`: export is off.
    pub fn resolve(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<ResolvedTelemetry>, String> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if self.enabled == Some(false)
            || env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        {
            return Ok(None);
        }
        let protocol = match (self.protocol, env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")) {
            (Some(protocol), _) => protocol,
            (None, Some(text)) => OtlpProtocol::parse(&text)
                .map_err(|e| format!("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: {e}"))?,
            (None, None) => match env("OTEL_EXPORTER_OTLP_PROTOCOL") {
                Some(text) => OtlpProtocol::parse(&text)
                    .map_err(|e| format!("OTEL_EXPORTER_OTLP_PROTOCOL: {e}"))?,
                None => OtlpProtocol::Grpc,
            },
        };
        // (url, is it a base URL that needs the signal path for HTTP, where it came from)
        let endpoint = if let Some(url) = self.endpoint.as_deref().filter(|u| !u.trim().is_empty())
        {
            Some((url.trim().to_owned(), true, "telemetry.endpoint"))
        } else if let Some(url) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some((
                url.trim().to_owned(),
                false,
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            ))
        } else {
            env("OTEL_EXPORTER_OTLP_ENDPOINT")
                .map(|url| (url.trim().to_owned(), true, "OTEL_EXPORTER_OTLP_ENDPOINT"))
        };
        let Some((url, is_base, origin)) = endpoint else {
            if self.enabled == Some(true) {
                return Err(
                    "telemetry.enabled is true but no endpoint is set (telemetry.endpoint or OTEL_EXPORTER_OTLP_ENDPOINT)"
                        .into(),
                );
            }
            return Ok(None);
        };
        let parsed =
            url::Url::parse(&url).map_err(|e| format!("{origin}: `{url}` is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(format!(
                "{origin}: `{url}` must be an http:// or https:// URL with a host"
            ));
        }
        let endpoint = if protocol == OtlpProtocol::HttpProtobuf && is_base {
            let standard = origin == "OTEL_EXPORTER_OTLP_ENDPOINT";
            // The standard base variable always gets the signal path appended; the YAML key
            // only when the URL names no path of its own.
            if standard || matches!(parsed.path(), "" | "/") {
                format!("{}/v1/traces", url.trim_end_matches('/'))
            } else {
                url
            }
        } else {
            url
        };
        let service_name = self
            .service_name
            .clone()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
        let mut headers = BTreeMap::new();
        if let Some(text) = env("OTEL_EXPORTER_OTLP_HEADERS") {
            headers.extend(parse_headers(&text)?);
        }
        if let Some(text) = env("OTEL_EXPORTER_OTLP_TRACES_HEADERS") {
            headers.extend(parse_headers(&text)?);
        }
        headers.extend(self.headers.clone());
        let sampler = match self.sample_ratio {
            Some(ratio) => {
                if !(0.0..=1.0).contains(&ratio) {
                    return Err(format!(
                        "telemetry.sample_ratio must be between 0.0 and 1.0, got {ratio}"
                    ));
                }
                SamplerSetting::Ratio {
                    ratio,
                    parent_based: true,
                }
            }
            None => sampler_from_env(env("OTEL_TRACES_SAMPLER"), env("OTEL_TRACES_SAMPLER_ARG"))?,
        };
        Ok(Some(ResolvedTelemetry {
            endpoint,
            protocol,
            service_name,
            headers,
            sampler,
            timeout_ms: self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS).max(1),
            batch: ExportBatch::from_env(env),
        }))
    }
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value,key2=value2`, values percent-decoded.
fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                format!("OTEL_EXPORTER_OTLP_HEADERS: `{pair}` is not `key=value`")
            })?;
            let value = url::form_urlencoded::parse(format!("v={}", value.trim()).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            Ok((key.trim().to_owned(), value))
        })
        .collect()
}

fn sampler_from_env(name: Option<String>, arg: Option<String>) -> Result<SamplerSetting, String> {
    let ratio = || -> Result<f64, String> {
        match arg.as_deref() {
            None => Ok(1.0),
            Some(text) => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| {
                    format!("OTEL_TRACES_SAMPLER_ARG: `{text}` is not a ratio between 0 and 1")
                }),
        }
    };
    Ok(match name.as_deref().map(str::trim) {
        None | Some("parentbased_always_on") => SamplerSetting::ParentBasedAlwaysOn,
        Some("always_on") => SamplerSetting::AlwaysOn,
        Some("always_off") => SamplerSetting::AlwaysOff,
        Some("parentbased_always_off") => SamplerSetting::ParentBasedAlwaysOff,
        Some("traceidratio") => SamplerSetting::Ratio {
            ratio: ratio()?,
            parent_based: false,
        },
        Some("parentbased_traceidratio") => SamplerSetting::Ratio {
            ratio: ratio()?,
            parent_based: true,
        },
        Some(other) => {
            return Err(format!(
                "OTEL_TRACES_SAMPLER: `{other}` is not supported (always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio)"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn nothing_configured_means_off() {
        assert_eq!(TelemetryConfig::default().resolve(env(&[])), Ok(None));
    }

    #[test]
    fn env_alone_turns_export_on_with_standard_paths() {
        let resolved = TelemetryConfig::default()
            .resolve(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_SERVICE_NAME", "bot-a"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s%20ecret,x=1"),
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ]))
            .unwrap()
            .unwrap();
        assert_eq!(resolved.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(resolved.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(resolved.service_name, "bot-a");
        assert_eq!(resolved.headers["api-key"], "s ecret");
        assert_eq!(
            resolved.sampler,
            SamplerSetting::Ratio {
                ratio: 0.25,
                parent_based: false
            }
        );
        // The signal-specific variable is used as is.
        let resolved = TelemetryConfig::default()
            .resolve(env(&[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ]))
            .unwrap()
            .unwrap();
        assert_eq!(resolved.endpoint, "http://c:4318/custom");
    }

    #[test]
    fn yaml_wins_over_env_and_disabling_always_wins() {
        let yaml: TelemetryConfig = serde_yaml::from_str(
            "endpoint: http://yaml:4317\nprotocol: grpc\nservice_name: from-yaml\nsample_ratio: 0.5\nheaders: {a: b}",
        )
        .unwrap();
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", "from-env"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=env,c=d"),
        ];
        let resolved = yaml.resolve(env(&vars)).unwrap().unwrap();
        assert_eq!(resolved.endpoint, "http://yaml:4317");
        assert_eq!(resolved.protocol, OtlpProtocol::Grpc);
        assert_eq!(resolved.service_name, "from-yaml");
        assert_eq!(resolved.headers["a"], "b");
        assert_eq!(resolved.headers["c"], "d");
        let mut off = yaml.clone();
        off.enabled = Some(false);
        assert_eq!(off.resolve(env(&vars)), Ok(None));
        assert_eq!(
            yaml.resolve(env(&[("OTEL_SDK_DISABLED", "true")])),
            Ok(None)
        );
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        let bad: TelemetryConfig = serde_yaml::from_str("endpoint: not a url").unwrap();
        assert!(
            bad.resolve(env(&[]))
                .unwrap_err()
                .contains("telemetry.endpoint")
        );
        let ftp: TelemetryConfig = serde_yaml::from_str("endpoint: ftp://x:1").unwrap();
        assert!(ftp.resolve(env(&[])).unwrap_err().contains("http://"));
        let ratio: TelemetryConfig =
            serde_yaml::from_str("endpoint: http://x:1\nsample_ratio: 2").unwrap();
        assert!(
            ratio
                .resolve(env(&[]))
                .unwrap_err()
                .contains("sample_ratio")
        );
        let on: TelemetryConfig = serde_yaml::from_str("enabled: true").unwrap();
        assert!(on.resolve(env(&[])).unwrap_err().contains("no endpoint"));
        assert!(
            TelemetryConfig::default()
                .resolve(env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x:1"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
                ]))
                .unwrap_err()
                .contains("http/json")
        );
        assert!(serde_yaml::from_str::<TelemetryConfig>("endpont: x").is_err());
        assert!(serde_yaml::from_str::<TelemetryConfig>("protocol: http").is_err());
    }

    #[test]
    fn export_batching_follows_the_sdks_variables() {
        use super::ExportBatch;
        let from = |pairs: &'static [(&'static str, &'static str)]| {
            ExportBatch::from_env(move |name| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            })
        };
        assert_eq!(from(&[]), ExportBatch::default());
        let set = from(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "500"),
            ("OTEL_BSP_SCHEDULE_DELAY", "250"),
        ]);
        assert_eq!(set.max_queue, 100);
        assert_eq!(set.max_batch, 100, "a batch is never larger than the queue");
        assert_eq!(set.schedule_delay, std::time::Duration::from_millis(250));
        let bad = from(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "many"),
            ("OTEL_BSP_SCHEDULE_DELAY", "-5"),
        ]);
        assert_eq!(bad, ExportBatch::default());
    }
}
