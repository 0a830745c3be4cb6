//! MCP over Streamable HTTP for the gateway's `/mcp` route: the service (one MCP session per
//! client, all sharing the runtime). `/mcp` is a protected route of the gateway, so its `Host`
//! and `Origin` checks, keys, lockout, media type and rate limits are the gateway guard's
//! (`gateway::guard`); rmcp's own copies of those checks are off rather than kept in step.
//!
//! A `tools/call` POST on an open session is answered directly (`direct`) with one
//! `application/json` body, which the transport allows for any request; everything else,
//! and every request this service does not fully understand, goes to rmcp's service.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use rmcp::model::ProtocolVersion;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::{SessionId, SessionManager};
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::DatabotMcp;
use super::direct::DirectCall;
use super::notify::{PeerRegistry, forward_runtime_events};
use crate::config::GatewayConfig;
use crate::runtime::Runtime;

type LibraryService = StreamableHttpService<DatabotMcp, LocalSessionManager>;
type McpResponse = Response<BoxBody<Bytes, Infallible>>;

/// The `/mcp` service: direct `tools/call` answers in front of rmcp's service.
#[derive(Clone)]
pub struct McpHttpService {
    library: LibraryService,
    sessions: Arc<LocalSessionManager>,
    mcp: DatabotMcp,
    max_body_bytes: usize,
    /// When each session last restarted rmcp's idle timer (`keep_session_alive`).
    touched: Arc<parking_lot::Mutex<HashMap<SessionId, Instant>>>,
    /// A quarter of the session idle time (`mcp.session_idle_seconds`).
    touch_every: Duration,
}

/// The Streamable HTTP service over `runtime`. Every session is told when plugins are loaded
/// or removed. Cancelling `shutdown` ends all sessions.
pub fn service(
    runtime: &Runtime,
    gateway: &GatewayConfig,
    shutdown: CancellationToken,
) -> McpHttpService {
    let peers = Arc::new(PeerRegistry::default());
    forward_runtime_events(runtime, &peers);
    // Host and Origin are judged by the gateway guard before a request gets here.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_max_request_body_bytes(gateway.max_body_bytes)
        .with_cancellation_token(shutdown);
    let mcp = DatabotMcp::new(runtime.clone(), peers);
    let idle = Duration::from_secs(runtime.config().mcp.session_idle_seconds.max(1));
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(idle);
    let sessions = Arc::new(sessions);
    let handler = mcp.clone();
    McpHttpService {
        library: StreamableHttpService::new(move || Ok(handler.clone()), sessions.clone(), config),
        sessions,
        mcp,
        max_body_bytes: gateway.max_body_bytes,
        touched: Arc::default(),
        touch_every: idle / 4,
    }
}

impl tower::Service<Request<Body>> for McpHttpService {
    type Response = McpResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<McpResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move { Ok(service.handle(request).await) })
    }
}

impl McpHttpService {
    async fn handle(mut self, request: Request<Body>) -> McpResponse {
        use tower::Service;
        let Some(session) = direct_candidate(request.method(), request.headers()) else {
            return self
                .library
                .call(request)
                .await
                .unwrap_or_else(|e| match e {});
        };
        let (parts, body) = request.into_parts();
        let bytes = match http_body_util::Limited::new(body, self.max_body_bytes)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                return plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "Payload Too Large: request body exceeds {} bytes",
                        self.max_body_bytes
                    ),
                );
            }
            Err(error) => {
                return plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Failed to read request body: {error}"),
                );
            }
        };
        let session: SessionId = session.into();
        let open = self.sessions.has_session(&session).await.unwrap_or(false);
        let call = if open {
            DirectCall::parse(&bytes)
        } else {
            None
        };
        let Some(call) = call else {
            let request = Request::from_parts(parts, Body::from(bytes));
            return self
                .library
                .call(request)
                .await
                .unwrap_or_else(|e| match e {});
        };
        self.keep_session_alive(session).await;
        let headers = parts.headers;
        let mcp = self.mcp.clone();
        // In its own task: a client that hangs up does not cut a plugin call short (the
        // library path never does either).
        let call = tokio::spawn(async move {
            call.answer(&mcp, |key| {
                headers
                    .get(key)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned)
            })
            .await
        });
        let answer = match call.await {
            Ok(answer) => answer,
            Err(error) => {
                tracing::error!("an MCP tool call task failed: {error}");
                return plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal Server Error: the tool call failed".to_owned(),
                );
            }
        };
        let mut response = Response::new(Full::new(Bytes::from(answer)).boxed());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response
    }
}

impl McpHttpService {
    /// Restart the session's idle timer (rmcp closes a session after
    /// `mcp.session_idle_seconds` without an event, and direct calls send none): at most once
    /// per quarter of that time per session, by an event that changes nothing (closing a
    /// request channel id rmcp never hands out).
    async fn keep_session_alive(&self, session: SessionId) {
        let now = Instant::now();
        {
            let mut touched = self.touched.lock();
            if touched
                .get(&session)
                .is_some_and(|last| now.duration_since(*last) < self.touch_every)
            {
                return;
            }
            if touched.len() >= MAX_TOUCHED {
                touched.retain(|_, last| now.duration_since(*last) < self.touch_every);
            }
            touched.insert(session.clone(), now);
        }
        let handle = self.sessions.sessions.read().await.get(&session).cloned();
        if let Some(handle) = handle {
            let _ = handle.close_request_wise_channel(u64::MAX).await;
        }
    }
}

/// Sessions remembered as touched before old entries are dropped.
const MAX_TOUCHED: usize = 4096;

/// The session of a POST that may be a direct `tools/call`: it names a session, accepts
/// both answer types and sends JSON (as the transport requires; rmcp answers the rest),
/// names a protocol version that has the `initialize` handshake (or none, which means
/// 2025-03-26), and carries none of the standard headers rmcp checks against the body.
fn direct_candidate(method: &Method, headers: &HeaderMap) -> Option<String> {
    if method != Method::POST
        || headers.contains_key("mcp-method")
        || headers.contains_key("mcp-name")
    {
        return None;
    }
    let session = headers.get("mcp-session-id")?.to_str().ok()?;
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(accepted_media_type)
        .collect::<Vec<_>>();
    if !accept.iter().any(|a| a == "application/json")
        || !accept.iter().any(|a| a == "text/event-stream")
    {
        return None;
    }
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    if !json_body {
        return None;
    }
    if let Some(version) = headers.get("mcp-protocol-version") {
        let version = version.to_str().ok()?;
        let known = ProtocolVersion::KNOWN_VERSIONS
            .iter()
            .find(|known| known.as_str() == version)?;
        if !known.has_initialize() {
            return None;
        }
    }
    Some(session.to_owned())
}

/// The media type of one `Accept` item, unless its quality is zero (refused). Quoted commas
/// in parameters are not expected from MCP clients; such an item at worst fails to match and
/// the request goes to rmcp.
fn accepted_media_type(item: &str) -> Option<String> {
    let mut parts = item.split(';');
    let media = parts.next()?.trim().to_ascii_lowercase();
    let refused = parts.any(|parameter| {
        parameter
            .trim()
            .strip_prefix("q=")
            .and_then(|q| q.trim().parse::<f32>().ok())
            .is_some_and(|q| q <= 0.0)
    });
    (!refused && !media.is_empty()).then_some(media)
}

fn plain(status: StatusCode, text: String) -> McpResponse {
    let mut response = Response::new(Full::new(Bytes::from(text)).boxed());
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, http::HeaderValue::from_static(value));
        }
        map
    }

    const BASE: [(&str, &str); 3] = [
        ("mcp-session-id", "s-1"),
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json; charset=utf-8"),
    ];

    #[test]
    fn only_plain_session_posts_are_direct_candidates() {
        assert_eq!(
            direct_candidate(&Method::POST, &headers(&BASE)).as_deref(),
            Some("s-1")
        );
        let mut versioned = BASE.to_vec();
        versioned.push(("mcp-protocol-version", "2025-06-18"));
        assert!(direct_candidate(&Method::POST, &headers(&versioned)).is_some());

        assert!(direct_candidate(&Method::GET, &headers(&BASE)).is_none());
        for (drop, extra) in [
            (Some("mcp-session-id"), None),
            (Some("accept"), Some(("accept", "application/json"))),
            (
                Some("accept"),
                Some(("accept", "application/json;q=0, text/event-stream")),
            ),
            (Some("content-type"), Some(("content-type", "text/plain"))),
            (None, Some(("mcp-method", "tools/call"))),
            (None, Some(("mcp-protocol-version", "2026-07-28"))),
            (None, Some(("mcp-protocol-version", "1999-01-01"))),
        ] {
            let mut pairs: Vec<_> = BASE
                .iter()
                .filter(|(n, _)| Some(*n) != drop)
                .copied()
                .collect();
            pairs.extend(extra);
            assert!(
                direct_candidate(&Method::POST, &headers(&pairs)).is_none(),
                "{pairs:?}"
            );
        }
    }
}
