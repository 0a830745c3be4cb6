//! A real OTLP trace receiver for the tests: the collector's `TraceService` over gRPC (tonic)
//! and `POST /v1/traces` with a protobuf `ExportTraceServiceRequest` over HTTP, both on a
//! loopback port. It decodes what arrives and keeps every span with its ids, name, attributes
//! and the resource's `service.name`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;

/// One span as the receiver decoded it. Ids are lower-case hex; `parent_span_id` is empty for
/// a root span.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    /// `1` = internal, `3` = client (OTLP `SpanKind`).
    pub kind: i32,
    /// OTLP status code: 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    pub attributes: BTreeMap<String, serde_json::Value>,
    pub service_name: String,
    pub service_version: String,
    /// Start and end, nanoseconds since the Unix epoch.
    pub start_ns: u64,
    pub end_ns: u64,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&serde_json::Value> {
        self.attributes.get(key)
    }

    pub fn str_attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(|v| v.as_str())
    }

    pub fn int_attr(&self, key: &str) -> Option<i64> {
        self.attributes.get(key).and_then(|v| v.as_i64())
    }
}

/// What arrived: the spans (unless only counting), export requests, spans counted.
#[derive(Default)]
struct Collected {
    spans: Vec<ReceivedSpan>,
    requests: usize,
    counted: usize,
    /// Count spans without keeping them (benchmarks: the collector's work stays small).
    count_only: bool,
    /// HTTP: read each export's bytes and answer, decoding nothing (a collector elsewhere).
    discard: bool,
    /// Bytes of export bodies received (discarding or not).
    bytes: usize,
}

type Store = Arc<Mutex<Collected>>;

/// A running receiver; it stops when the test's runtime ends.
pub struct OtlpReceiver {
    /// The endpoint to configure: `http://127.0.0.1:PORT` (gRPC) or
    /// `http://127.0.0.1:PORT/v1/traces` (HTTP).
    pub endpoint: String,
    store: Store,
}

fn value(any: Option<&AnyValue>) -> serde_json::Value {
    match any {
        Some(AnyValue::StringValue(s)) => serde_json::Value::from(s.clone()),
        Some(AnyValue::BoolValue(b)) => serde_json::Value::from(*b),
        Some(AnyValue::IntValue(i)) => serde_json::Value::from(*i),
        Some(AnyValue::DoubleValue(d)) => serde_json::Value::from(*d),
        Some(AnyValue::ArrayValue(array)) => serde_json::Value::Array(
            array
                .values
                .iter()
                .map(|v| value(v.value.as_ref()))
                .collect(),
        ),
        Some(other) => serde_json::Value::from(format!("{other:?}")),
        None => serde_json::Value::Null,
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, serde_json::Value> {
    list.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                value(kv.value.as_ref().and_then(|v| v.value.as_ref())),
            )
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn record(store: &Store, request: ExportTraceServiceRequest) {
    if store
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .count_only
    {
        let counted: usize = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        let mut guard = store.lock().unwrap_or_else(PoisonError::into_inner);
        guard.counted += counted;
        guard.requests += 1;
        return;
    }
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service_name = resource
            .get("service.name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let service_version = resource
            .get("service.version")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(ReceivedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    status_code: span.status.map(|s| s.code).unwrap_or(0),
                    start_ns: span.start_time_unix_nano,
                    end_ns: span.end_time_unix_nano,
                    attributes: attributes(&span.attributes),
                    service_name: service_name.clone(),
                    service_version: service_version.clone(),
                });
            }
        }
    }
    let mut guard = store.lock().unwrap_or_else(PoisonError::into_inner);
    guard.counted += spans.len();
    guard.spans.extend(spans);
    guard.requests += 1;
}

struct Grpc(Store);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        record(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl OtlpReceiver {
    /// The gRPC `TraceService` on a loopback port.
    pub async fn grpc() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let store: Store = Arc::default();
        let service = TraceServiceServer::new(Grpc(store.clone()));
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            store,
        }
    }

    /// `POST /v1/traces` (protobuf) on a loopback port.
    pub async fn http() -> Self {
        use axum::body::Bytes;
        use axum::http::{StatusCode, header};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let store: Store = Arc::default();
        let state = store.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
                let store = state.clone();
                async move {
                    let protobuf = headers
                        .get(header::CONTENT_TYPE)
                        .is_some_and(|v| v.as_bytes() == b"application/x-protobuf");
                    if !protobuf {
                        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
                    }
                    {
                        let mut guard = store.lock().unwrap_or_else(PoisonError::into_inner);
                        guard.bytes += body.len();
                        if guard.discard {
                            guard.requests += 1;
                            let answer = ExportTraceServiceResponse {
                                partial_success: None,
                            };
                            return (StatusCode::OK, answer.encode_to_vec());
                        }
                    }
                    match ExportTraceServiceRequest::decode(body) {
                        Ok(request) => {
                            record(&store, request);
                            let answer = ExportTraceServiceResponse {
                                partial_success: None,
                            };
                            (StatusCode::OK, answer.encode_to_vec())
                        }
                        Err(_) => (StatusCode::BAD_REQUEST, Vec::new()),
                    }
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint: format!("http://127.0.0.1:{port}/v1/traces"),
            store,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .spans
            .clone()
    }

    /// How many export requests arrived.
    pub fn requests(&self) -> usize {
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .requests
    }

    /// How many spans arrived (kept or only counted).
    pub fn span_count(&self) -> usize {
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .counted
    }

    /// From now on, count spans without keeping them: a collector whose own work stays
    /// small, so a benchmark on this machine measures the host's cost of exporting.
    pub fn count_only(self) -> Self {
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .count_only = true;
        self
    }

    /// HTTP only: from now on, take each export's bytes and answer without decoding them, the
    /// least a collector can do; what a benchmark then measures is the host's own cost of
    /// building, encoding and sending spans (a real collector runs on another machine).
    pub fn discard(self) -> Self {
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .discard = true;
        self
    }

    /// Bytes of export request bodies received over HTTP.
    pub fn bytes(&self) -> usize {
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }

    /// Wait until `done(spans)` holds (or `timeout` passes) and return the spans.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) || tokio::time::Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Make `subscriber` this thread's default until the guard drops, with every span the test
/// reaches reported to it even when sibling tests of the binary run without a subscriber.
///
/// `tracing` caches each callsite's interest process-wide when the callsite is first reached.
/// While a single dispatcher is registered, that interest is asked of the *reaching thread's*
/// subscriber, so a sibling test thread with none would cache "never" for a span this test
/// waits for. A process-wide default that wants nothing is installed once first: with two
/// dispatchers registered, interest is the union over both, and the thread's own subscriber
/// decides.
pub fn set_thread_subscriber(
    subscriber: impl tracing::Subscriber + Send + Sync + 'static,
) -> tracing::subscriber::DefaultGuard {
    static GLOBAL_DEFAULT: std::sync::Once = std::sync::Once::new();
    GLOBAL_DEFAULT.call_once(|| {
        // Another global default set earlier serves the same purpose.
        let _ =
            tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
    });
    tracing::subscriber::set_default(subscriber)
}
