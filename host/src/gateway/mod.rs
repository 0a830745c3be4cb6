//! The HTTP gateway: messages in (plain or streamed as server-sent events), health,
//! readiness, Prometheus metrics, plugin and connector status.
//!
//! Secure by default: binds loopback, refuses a non-loopback bind without API keys, compares
//! keys in constant time, rate-limits per client with the standard headers, caps request
//! bodies, sends no CORS headers unless origins are configured, and answers every error as
//! `{"error": {"code": "...", "message": "..."}}`.

mod auth;
mod metrics;
mod rate_limit;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use self::auth::ApiKeys;
use self::metrics::Metrics;
use self::rate_limit::RateLimiter;
use crate::agent::sessions::SessionStore;
use crate::bus::{Bus, BusError, InboundMessage, StreamEventKind};
use crate::config::GatewayConfig;
use crate::runtime::{PluginKind, Runtime};

/// What the handlers share.
pub struct GatewayState {
    pub runtime: Runtime,
    pub bus: Arc<dyn Bus>,
    pub sessions: Arc<SessionStore>,
    pub provider: String,
    keys: ApiKeys,
    limiter: RateLimiter,
    metrics: Metrics,
    reply_timeout: Duration,
    /// Ends the MCP sessions on `/mcp` when the gateway shuts down.
    mcp_shutdown: tokio_util::sync::CancellationToken,
}

impl GatewayState {
    pub fn new(
        config: &GatewayConfig,
        runtime: Runtime,
        bus: Arc<dyn Bus>,
        sessions: Arc<SessionStore>,
        provider: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            runtime,
            bus,
            sessions,
            provider,
            keys: ApiKeys::new(config.api_keys.iter().map(|k| k.expose())),
            limiter: RateLimiter::new(
                config.rate_limit.requests.max(1),
                Duration::from_secs(config.rate_limit.window_seconds.max(1)),
            ),
            metrics: Metrics::default(),
            reply_timeout: Duration::from_secs(config.reply_timeout_seconds.max(1)),
            mcp_shutdown: tokio_util::sync::CancellationToken::new(),
        })
    }
}

/// An error answer with a stable shape.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

/// Check the bind address against the keys: off loopback, keys are required.
pub fn check_bind(config: &GatewayConfig) -> anyhow::Result<SocketAddr> {
    let address: SocketAddr = config.bind.parse().with_context(|| {
        format!(
            "gateway.bind `{}` is not an address like 127.0.0.1:8080",
            config.bind
        )
    })?;
    if !address.ip().is_loopback() && config.api_keys.is_empty() {
        bail!(
            "refusing to listen on {address} without API keys: set gateway.api_keys, or bind 127.0.0.1"
        );
    }
    Ok(address)
}

/// The routes, with auth, rate limits, body limit, metrics and (if configured) CORS.
pub fn router(state: Arc<GatewayState>, config: &GatewayConfig) -> anyhow::Result<Router> {
    let protected = Router::new()
        .route("/api/v1/message", post(message))
        .route("/api/v1/stream", post(stream))
        .route("/api/v1/plugins", get(plugins))
        .route("/api/v1/connectors", get(connectors))
        .route("/metrics", get(metrics_text));
    // MCP over Streamable HTTP, behind the same keys and limits (Host/Origin checked too).
    let protected = if state.runtime.config().mcp.http {
        protected.route_service(
            "/mcp",
            crate::mcp::http::service(&state.runtime, config, state.mcp_shutdown.clone()),
        )
    } else {
        protected
    };
    let protected = protected.layer(middleware::from_fn_with_state(state.clone(), guard));
    let mut app = Router::new()
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/ready", get(ready))
        .merge(protected)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state);
    if !config.cors_origins.is_empty() {
        let origins = config
            .cors_origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o).with_context(|| format!("gateway.cors_origins: `{o}`"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        app = app.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([http::Method::GET, http::Method::POST, http::Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    "x-api-key".parse()?,
                    "mcp-session-id".parse()?,
                    "mcp-protocol-version".parse()?,
                    "last-event-id".parse()?,
                ])
                .expose_headers(["mcp-session-id".parse::<http::HeaderName>()?]),
        );
    }
    Ok(app)
}

/// Listen and serve until `shutdown` resolves.
pub async fn serve(
    state: Arc<GatewayState>,
    config: &GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = check_bind(config)?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {address}"))?;
    let bound = listener.local_addr().unwrap_or(address);
    tracing::info!(address = %bound, "gateway listening");
    serve_on(listener, state, config, shutdown).await
}

/// Serve on a listener that is already bound (tests bind port 0).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Arc<GatewayState>,
    config: &GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mcp_shutdown = state.mcp_shutdown.clone();
    let app = router(state, config)?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        // Open MCP streams would otherwise hold the graceful shutdown forever.
        mcp_shutdown.cancel();
    })
    .await
    .context("serving the gateway")
}

/// Counts requests by route and status.
async fn count(State(state): State<Arc<GatewayState>>, request: Request, next: Next) -> Response {
    let route = request.uri().path().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .record(&route, response.status().as_u16(), started.elapsed());
    response
}

/// Auth and rate limiting for the protected routes.
async fn guard(State(state): State<Arc<GatewayState>>, request: Request, next: Next) -> Response {
    let presented = ApiKeys::presented(request.headers());
    let client = if state.keys.is_empty() {
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "local".to_owned(), |c| c.0.ip().to_string())
    } else {
        match presented.as_deref() {
            None => {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing_api_key",
                    "send `Authorization: Bearer KEY` or `X-API-Key: KEY`",
                )
                .into_response();
            }
            Some(key) if !state.keys.accepts(key) => {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_api_key",
                    "the API key is not valid",
                )
                .into_response();
            }
            // Limits are per key; the bucket is named by a hash, not the key.
            Some(key) => format!("key:{:x}", key_label(key)),
        }
    };
    let decision = state.limiter.check(&client);
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        let mut refused = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "more than {} requests in the window; retry later",
                decision.limit
            ),
        )
        .into_response();
        let seconds = decision.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        refused
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        refused
    };
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(decision.remaining),
    );
    response
}

/// A short label for a key (rate-limit bucket name), so the key is not kept in the map.
fn key_label(key: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageRequest {
    content: String,
    /// The conversation; a new one is started when absent (and returned).
    chat_id: Option<String>,
    sender_id: Option<String>,
    #[serde(default)]
    channel: Option<String>,
}

type BodyResult = Result<Bytes, axum::extract::rejection::BytesRejection>;

fn parse_message(body: BodyResult, stream: bool) -> Result<InboundMessage, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is over gateway.max_body_bytes",
            )
        } else {
            ApiError::new(rejection.status(), "invalid_request", rejection.body_text())
        }
    })?;
    let request: MessageRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "the body must be JSON like {{\"content\": \"...\", \"chat_id\": \"...\"}}: {e}"
            ),
        )
    })?;
    if request.content.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "`content` is empty",
        ));
    }
    let chat_id = match request.chat_id {
        Some(id) if id.is_empty() || id.len() > 200 || id.contains(':') => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "`chat_id` must be 1 to 200 characters without `:`",
            ));
        }
        Some(id) => id,
        None => new_chat_id(),
    };
    Ok(InboundMessage {
        channel: request.channel.unwrap_or_else(|| "api".to_owned()),
        sender_id: request.sender_id.unwrap_or_else(|| "api".to_owned()),
        chat_id,
        content: request.content,
        stream,
        thread_id: None,
        trace_context: Vec::new(),
    })
}

fn new_chat_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("c{nanos:x}{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn bus_error(error: BusError) -> ApiError {
    match error {
        BusError::Busy { .. } | BusError::ConversationBusy { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", error.to_string())
        }
        BusError::Closed => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            error.to_string(),
        ),
    }
}

/// The caller's W3C trace context (`traceparent`, `tracestate` headers), for the turn's span.
fn trace_context(headers: &http::HeaderMap) -> Vec<(String, String)> {
    crate::telemetry::propagation::carrier(|key| {
        headers
            .get(key)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    })
}

async fn message(
    State(state): State<Arc<GatewayState>>,
    headers: http::HeaderMap,
    body: BodyResult,
) -> Result<Response, ApiError> {
    let mut inbound = parse_message(body, false)?;
    inbound.trace_context = trace_context(&headers);
    let chat_id = inbound.chat_id.clone();
    let delivery = state.bus.submit(inbound).await.map_err(bus_error)?;
    let reply = tokio::time::timeout(state.reply_timeout, delivery.reply)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "no reply in time; the turn goes on and is saved",
            )
        })?
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the turn ended without a reply",
            )
        })?;
    state.metrics.turn(reply.failed);
    let status = if reply.failed {
        StatusCode::BAD_GATEWAY
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "chat_id": chat_id, "content": reply.content, "failed": reply.failed })),
    )
        .into_response())
}

async fn stream(
    State(state): State<Arc<GatewayState>>,
    headers: http::HeaderMap,
    body: BodyResult,
) -> Result<Response, ApiError> {
    let mut inbound = parse_message(body, true)?;
    inbound.trace_context = trace_context(&headers);
    let chat_id = inbound.chat_id.clone();
    let delivery = state.bus.submit(inbound).await.map_err(bus_error)?;
    let metrics_state = state.clone();
    let events = futures::stream::unfold(
        (delivery.events, false, metrics_state),
        |(mut events, finished, state)| async move {
            if finished {
                return None;
            }
            let event = events.recv().await?;
            let last = matches!(event.kind, StreamEventKind::Done | StreamEventKind::Error);
            if last {
                state.metrics.turn(event.kind == StreamEventKind::Error);
            }
            let name = match event.kind {
                StreamEventKind::Delta => "delta",
                StreamEventKind::ToolStart => "tool_start",
                StreamEventKind::ToolResult => "tool_result",
                StreamEventKind::Done => "done",
                StreamEventKind::Error => "error",
            };
            let data = json!({ "data": event.data, "tool_name": event.tool_name });
            let sse = Event::default().event(name).data(data.to_string());
            Some((Ok::<_, Infallible>(sse), (events, last, state)))
        },
    );
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&chat_id) {
        response.headers_mut().insert("x-chat-id", value);
    }
    Ok(response)
}

async fn ready(State(state): State<Arc<GatewayState>>) -> Response {
    let provider_loaded = state
        .runtime
        .plugin(&state.provider)
        .is_some_and(|slot| slot.current().manifest.kind == PluginKind::Provider);
    let sessions_ok = state.sessions.ping().await.is_ok();
    let ready = provider_loaded && sessions_ok;
    let body = json!({
        "ready": ready,
        "provider": { "name": state.provider, "loaded": provider_loaded },
        "sessions": sessions_ok,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn plugins(State(state): State<Arc<GatewayState>>) -> Response {
    Json(json!({ "plugins": state.runtime.status(), "tools": state.runtime.tools() }))
        .into_response()
}

async fn connectors(State(state): State<Arc<GatewayState>>) -> Response {
    let connectors = state
        .runtime
        .connectors_health(crate::runtime::HEALTH_TTL)
        .await;
    Json(json!({ "connectors": connectors })).into_response()
}

async fn metrics_text(State(state): State<Arc<GatewayState>>) -> Response {
    let text = state
        .metrics
        .render(&state.runtime.status(), state.runtime.metrics());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
