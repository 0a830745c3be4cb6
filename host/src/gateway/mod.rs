//! The HTTP gateway: messages in (plain or streamed as server-sent events), health,
//! readiness, Prometheus metrics, plugin and connector status, and MCP at `/mcp`.
//!
//! Secure by default: binds loopback, refuses a non-loopback bind without API keys (of 16
//! characters or more), judges `Host` and `Origin` against DNS rebinding and cross-site
//! requests, takes only JSON bodies, compares keys in constant time, locks out addresses that
//! keep failing to authenticate, rate-limits per client with the standard headers, caps request
//! bodies and connections with deadlines for slow clients, sends no CORS headers unless origins
//! are configured, binds every conversation to the key that opened it, and answers every error
//! as `{"error": {"code": "...", "message": "..."}}`.
//!
//! Submodules: `guard` (the checks in front of the protected routes), `rebinding` (`Host` and
//! `Origin`), `auth` (keys and principals), `auth_failures` (the lockout), `client_address`
//! (who the client is behind trusted proxies), `rate_limit`, `messages` (the message and
//! stream endpoints, conversation ownership), `channels` (platform webhooks and channel
//! status), `schedules` (the scheduled-job endpoints), `tool_groups` (listing and switching
//! tool groups), `conversations` (browsing saved conversations turn by turn), `traces` (the
//! recent traces kept in memory), `knowledge` (the knowledge base and what a search gets),
//! `server` (listening, connections, body deadlines), `connections` (the cap and
//! the waiting connections' deadlines), `metrics`, `console` (the operator console at `/ui`,
//! its sign-in and the live activity stream `/api/v1/events`).

mod auth;
mod auth_failures;
mod channels;
mod client_address;
mod connections;
mod console;
mod conversations;
mod guard;
mod knowledge;
mod messages;
mod metrics;
mod rate_limit;
mod rebinding;
mod schedules;
mod server;
mod tool_groups;
mod traces;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::json;

use self::auth::ApiKeys;
pub use self::auth::Principal;
use self::auth_failures::AuthFailures;
pub use self::messages::CHANNEL;
use self::metrics::Metrics;
use self::rate_limit::{Limiter, RateLimiter, SharedLimiter};
use self::rebinding::SameOrigin;
pub use self::server::{check_bind, serve, serve_on};
use crate::agent::sessions::SessionStore;
use crate::bus::Bus;
use crate::config::GatewayConfig;
use crate::runtime::{PluginKind, Runtime};

/// How often the console's charts get a point, and how many they keep (an hour).
const HISTORY_EVERY: Duration = Duration::from_secs(10);
const HISTORY_KEEP: usize = 360;

/// What the handlers share.
pub struct GatewayState {
    pub runtime: Runtime,
    pub bus: Arc<dyn Bus>,
    pub sessions: Arc<SessionStore>,
    pub provider: String,
    /// Channel plugins' ingress, replies and status.
    pub channels: Arc<crate::channels::Channels>,
    /// Scheduled jobs (the `/api/v1/schedules` endpoints and their metrics), when opened.
    pub schedules: Option<crate::schedules::Schedules>,
    /// The knowledge base the agent searches (`/api/v1/knowledge`), when `rag` is on; set
    /// once by whoever built the agent (`set_knowledge`).
    knowledge: std::sync::OnceLock<Arc<crate::rag::Rag>>,
    keys: ApiKeys,
    /// Console sign-in sessions (signed under a secret derived from `keys`).
    console: console::ConsoleSessions,
    same_origin: SameOrigin,
    auth_failures: AuthFailures,
    /// Channel webhooks that failed verification, per channel and address (the same limits).
    channel_failures: Mutex<HashMap<String, Arc<AuthFailures>>>,
    failure_limits: (u32, Duration),
    /// Whose `X-Forwarded-For` names the client (`gateway.trusted_proxies`).
    trusted_proxies: client_address::TrustedProxies,
    /// None when `gateway.rate_limit.requests` is 0 (off).
    limiter: Option<Limiter>,
    metrics: Metrics,
    reply_timeout: Duration,
    /// Cancelled when the gateway shuts down: ends the long-lived streams (MCP sessions on
    /// `/mcp`, the activity stream `/api/v1/events`) that would otherwise hold it open.
    shutdown: tokio_util::sync::CancellationToken,
    /// The runtime's metrics over the last hour, for the console's charts.
    history: Arc<crate::telemetry::history::MetricsHistory>,
    /// Activity streams open, and when connector health was last looked at for them.
    activity: Arc<console::live::ActivityStreams>,
}

impl GatewayState {
    /// Show `rag` (the agent's knowledge base) at `/api/v1/knowledge`; only the first call
    /// counts.
    pub fn set_knowledge(&self, rag: Arc<crate::rag::Rag>) {
        let _ = self.knowledge.set(rag);
    }

    /// The unverified-webhook tally of channel `name`.
    fn channel_failures(&self, name: &str) -> Arc<AuthFailures> {
        let (max_failures, window) = self.failure_limits;
        self.channel_failures
            .lock()
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(AuthFailures::new(max_failures, window).without_overflow_lockout())
            })
            .clone()
    }

    /// The client a request came from (see `client_address`).
    fn client_address(&self, request: &Request) -> std::net::IpAddr {
        let peer = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| {
                c.0.ip()
            });
        self.trusted_proxies.client(peer, request.headers())
    }

    /// Whether the client reached the gateway over HTTPS: its page's `Origin` is `https://`,
    /// or a trusted proxy says so. The console's cookie is then `Secure`.
    fn reached_over_https(&self, request: &Request) -> bool {
        let https_page = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|origin| origin.to_str().ok())
            .is_some_and(|origin| origin.starts_with("https://"));
        https_page
            || request
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .is_some_and(|c| {
                    self.trusted_proxies
                        .forwarded_https(c.0.ip(), request.headers())
                })
    }

    pub fn new(
        config: &GatewayConfig,
        runtime: Runtime,
        bus: Arc<dyn Bus>,
        sessions: Arc<SessionStore>,
        provider: String,
        schedules: Option<crate::schedules::Schedules>,
    ) -> Arc<Self> {
        let channels =
            crate::channels::Channels::new(runtime.clone(), bus.clone(), sessions.clone());
        let limiter = config.rate_limit.enabled().then(|| {
            let window = Duration::from_secs(config.rate_limit.window_seconds.max(1));
            if config.rate_limit.shared == Some(true) && !sessions.is_sqlite() {
                Limiter::Shared(SharedLimiter::new(
                    sessions.pool().clone(),
                    config.rate_limit.requests,
                    window,
                ))
            } else {
                Limiter::Local(RateLimiter::new(config.rate_limit.requests, window))
            }
        });
        let keys = ApiKeys::with_admins(
            config.api_keys.iter().map(|k| k.expose()),
            config.admin_keys.iter().map(|k| k.expose()),
        );
        let history = crate::telemetry::history::MetricsHistory::start(
            runtime.metrics().clone(),
            HISTORY_EVERY,
            HISTORY_KEEP,
        );
        Arc::new(Self {
            runtime,
            bus,
            sessions,
            provider,
            channels,
            schedules,
            knowledge: std::sync::OnceLock::new(),
            history,
            console: console::ConsoleSessions::new(&keys),
            keys,
            same_origin: SameOrigin::new(config),
            auth_failures: AuthFailures::new(
                config.auth_failures.max_failures,
                Duration::from_secs(config.auth_failures.window_seconds.max(1)),
            ),
            channel_failures: Mutex::default(),
            failure_limits: (
                config.auth_failures.max_failures,
                Duration::from_secs(config.auth_failures.window_seconds.max(1)),
            ),
            // Checked when the config was loaded (`GatewayConfig::validate`).
            trusted_proxies: client_address::TrustedProxies::new(
                config.trusted_proxy_networks().unwrap_or_default(),
            ),
            limiter,
            metrics: Metrics::default(),
            reply_timeout: Duration::from_secs(config.reply_timeout_seconds.max(1)),
            shutdown: tokio_util::sync::CancellationToken::new(),
            activity: Arc::default(),
        })
    }
}

/// An error answer with a stable shape.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    /// 400 `invalid_request`: the request itself is wrong, and `message` says how.
    fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 403 `forbidden` unless `principal` is an operator (`gateway.admin_keys`, or the local
    /// principal); `what` says what only operators may do or see.
    fn unless_operator(principal: &Principal, what: &str) -> Result<(), Self> {
        if principal.is_admin() {
            return Ok(());
        }
        Err(Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{what} (a key in gateway.admin_keys)"),
        ))
    }

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

/// The routes, with auth, rate limits, body limit, metrics and (if configured) CORS.
pub fn router(state: Arc<GatewayState>, config: &GatewayConfig) -> anyhow::Result<Router> {
    let protected = Router::new()
        .route("/api/v1/message", post(messages::message))
        .route("/api/v1/stream", post(messages::stream))
        .route("/api/v1/plugins", get(plugins))
        .route("/api/v1/connectors", get(connectors))
        .route("/api/v1/channels", get(channels::list))
        .route("/api/v1/channels/{name}/send", post(channels::send))
        .route(
            "/api/v1/schedules",
            get(schedules::list).post(schedules::create),
        )
        .route(
            "/api/v1/schedules/{name}",
            get(schedules::show).delete(schedules::remove),
        )
        .route("/api/v1/schedules/{name}/pause", post(schedules::pause))
        .route("/api/v1/schedules/{name}/resume", post(schedules::resume))
        .route("/api/v1/schedules/{name}/run", post(schedules::trigger))
        .route("/api/v1/schedules/{name}/runs", get(schedules::history))
        .route("/api/v1/tool-groups", get(tool_groups::list))
        .route(
            "/api/v1/tool-groups/{name}/enable",
            post(tool_groups::enable),
        )
        .route(
            "/api/v1/tool-groups/{name}/disable",
            post(tool_groups::disable),
        )
        .route("/api/v1/conversations", get(conversations::list))
        .route("/api/v1/conversations/{key}", get(conversations::show))
        .route("/api/v1/traces", get(traces::list))
        .route("/api/v1/traces/{id}", get(traces::show))
        .route("/api/v1/knowledge", get(knowledge::overview))
        .route("/api/v1/knowledge/search", get(knowledge::search))
        .route("/api/v1/activity", get(activity))
        .route("/api/v1/events", get(console::live::events))
        .route("/metrics", get(metrics_text));
    // MCP over Streamable HTTP, behind the same guard as the API.
    let protected = if state.runtime.config().mcp.http {
        protected.route_service(
            "/mcp",
            crate::mcp::http::service(&state.runtime, config, state.shutdown.clone()),
        )
    } else {
        protected
    };
    let protected = protected.layer(middleware::from_fn_with_state(state.clone(), guard::guard));
    let mut app = Router::new()
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/ready", get(ready))
        // Webhooks: outside the key check (platforms cannot send keys), verified by the
        // channel, the body capped per channel.
        .route("/channels/{name}", any(channels::webhook_root))
        .route("/channels/{name}/{*rest}", any(channels::webhook_path))
        .merge(console::routes(state.clone()))
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

/// Plugin status and tools; what each plugin was granted and its budgets for operators only
/// (they name internal hosts, databases, topics and folders).
async fn plugins(
    State(state): State<Arc<GatewayState>>,
    axum::extract::Extension(principal): axum::extract::Extension<Principal>,
) -> Response {
    let mut status = state.runtime.status();
    if !principal.is_admin() {
        for plugin in &mut status {
            plugin.capabilities.clear();
            plugin.budgets = None;
        }
    }
    Json(json!({ "plugins": status, "tools": state.runtime.tools() })).into_response()
}

async fn connectors(State(state): State<Arc<GatewayState>>) -> Response {
    let connectors = state
        .runtime
        .connectors_health(crate::runtime::HEALTH_TTL)
        .await;
    Json(json!({ "connectors": connectors })).into_response()
}

/// The runtime's activity over the last hour, one point per `HISTORY_EVERY`, and for an
/// operator the turns saved in the last 24 hours (every replica's, from the session store).
async fn activity(
    State(state): State<Arc<GatewayState>>,
    axum::extract::Extension(principal): axum::extract::Extension<Principal>,
) -> Response {
    // Every principal's turns: an operator's view.
    let saved = if principal.is_admin() {
        let day_ago = crate::timing::now_ms() - 24 * 3600 * 1000;
        match state.sessions.turn_totals(day_ago).await {
            Ok(totals) => Some(totals),
            Err(error) => {
                tracing::debug!("the session store could not count turns: {error:#}");
                None
            }
        }
    } else {
        None
    };
    Json(json!({
        "every_seconds": state.history.every().as_secs(),
        "samples": state.history.samples(),
        "last_24h": saved,
    }))
    .into_response()
}

async fn metrics_text(State(state): State<Arc<GatewayState>>) -> Response {
    let mut text = state
        .metrics
        .render(&state.runtime.status(), state.runtime.metrics());
    if let Some(schedules) = &state.schedules {
        schedules.metrics.render(&mut text);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
