//! W3C trace context (`traceparent`, `tracestate`) in and out: HTTP headers, MCP `_meta`, and
//! the bus between the gateway and the agent.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The carrier keys of W3C trace context.
pub const TRACE_KEYS: [&str; 2] = ["traceparent", "tracestate"];

struct MapExtractor(Vec<(&'static str, String)>);

impl Extractor for MapExtractor {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| *k).collect()
    }
}

/// Make `span` a child of the remote trace context that `get` finds under `traceparent` /
/// `tracestate` (HTTP headers, MCP `_meta`, a bus message). Without a valid `traceparent`, or
/// with tracing export off, the span keeps its local parent.
pub fn set_remote_parent(span: &tracing::Span, get: impl Fn(&str) -> Option<String>) {
    let carrier = MapExtractor(
        TRACE_KEYS
            .iter()
            .filter_map(|key| get(key).map(|value| (*key, value)))
            .collect(),
    );
    if carrier.0.is_empty() {
        return;
    }
    let context = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(context);
}

/// The W3C trace context of `span`, as `(key, value)` pairs to carry across a boundary (empty
/// when tracing export is off).
pub fn current_context(span: &tracing::Span) -> Vec<(String, String)> {
    struct Pairs(Vec<(String, String)>);
    impl Injector for Pairs {
        fn set(&mut self, key: &str, value: String) {
            self.0.push((key.to_owned(), value));
        }
    }
    let mut pairs = Pairs(Vec::new());
    TraceContextPropagator::new().inject_context(&span.context(), &mut pairs);
    pairs.0
}

/// The trace id of `span` in hex, when it is recorded and sampled (spans are built: export
/// or the console's recent traces on); `None` otherwise.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    use opentelemetry::trace::TraceContextExt as _;
    let context = span.context();
    let span_context = context.span().span_context().clone();
    (span_context.is_valid() && span_context.is_sampled())
        .then(|| span_context.trace_id().to_string())
}

/// The W3C trace-context entries that `get` finds (HTTP headers, MCP `_meta`), as pairs to
/// carry across the bus and hand to `set_remote_parent` later. Values are kept only when they
/// are short printable ASCII; whether a `traceparent` is valid is decided on use.
pub fn carrier(get: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    TRACE_KEYS
        .iter()
        .filter_map(|key| {
            get(key)
                .filter(|v| v.len() <= 512 && v.bytes().all(|b| (0x20..0x7f).contains(&b)))
                .map(|value| ((*key).to_owned(), value))
        })
        .collect()
}

/// Look `key` up in pairs made by `carrier` or `current_context`.
pub fn lookup(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carrier_keeps_trace_keys_only_and_drops_junk() {
        let headers = [
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("tracestate", "bad\nvalue"),
            ("authorization", "secret"),
        ];
        let get = |key: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        };
        let pairs = carrier(get);
        assert_eq!(pairs.len(), 1);
        assert_eq!(
            lookup(&pairs, "TraceParent").as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        // Without an OpenTelemetry layer there is nothing to propagate and nothing breaks.
        let span = tracing::info_span!("x");
        set_remote_parent(&span, |k| lookup(&pairs, k));
        assert!(current_context(&span).is_empty());
    }
}
