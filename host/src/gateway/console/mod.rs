//! The operator console at `/ui`: its assets (embedded in the binary at build time, see
//! `assets`), sign-in with an API key exchanged for a session cookie (`session`), and the live
//! activity stream its pages follow (`live`).
//!
//! Everything under `/ui` passes the same `Host` and `Origin` checks as the API and carries a
//! strict Content-Security-Policy: scripts only from the console's own files, no inline script
//! or style, no HTML built from strings (Trusted Types), nothing framed, nothing fetched from
//! elsewhere. The pages put every value into the document as text.

mod assets;
pub mod live;
mod session;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

pub use self::session::{CSRF_HEADER, ConsoleSession, ConsoleSessions, carries_console_header};
use super::auth::Principal;
use super::{ApiError, GatewayState};

/// The policy of every console response.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

/// The console's routes (public: the pages hold no data; the API they call is guarded).
pub fn routes(state: Arc<GatewayState>) -> Router<Arc<GatewayState>> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(assets::index))
        .route("/ui/assets/{*file}", get(assets::asset))
        .route(
            "/ui/session",
            get(session_status).post(sign_in).delete(sign_out),
        )
        .layer(middleware::from_fn_with_state(state, console_guard))
}

/// Whether a request carries a console session cookie, valid or not (or several).
pub fn has_session_cookie(headers: &http::HeaderMap) -> bool {
    session::sends_cookie(headers, session::COOKIE)
}

impl GatewayState {
    /// The console session a request's cookie proves, if any.
    pub(super) fn console_session(&self, headers: &http::HeaderMap) -> Option<ConsoleSession> {
        if self.keys.is_empty() {
            return None;
        }
        session::cookie(headers, session::COOKIE)
            .and_then(|token| self.console.verify(token, &self.keys))
    }
}

/// `Host` and `Origin` as for the API, then the console's security headers on every answer.
async fn console_guard(
    State(state): State<Arc<GatewayState>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = match super::guard::host_or_origin_refusal(&state, &request) {
        None => next.run(request).await,
        Some(refused) => refused,
    };
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Who the console is signed in as: `{open}` for a gateway without keys (no sign-in), else
/// `{signed_in, principal, admin}`.
async fn session_status(State(state): State<Arc<GatewayState>>, request: Request) -> Response {
    if state.keys.is_empty() {
        return no_store(Json(
            json!({ "open": true, "signed_in": true, "admin": true }),
        ));
    }
    match state.console_session(request.headers()) {
        Some(session) => no_store(Json(signed_in(&session.principal))),
        None => no_store(Json(json!({ "open": false, "signed_in": false }))),
    }
}

fn signed_in(principal: &Principal) -> serde_json::Value {
    json!({
        "open": false,
        "signed_in": true,
        "principal": principal.as_str(),
        "admin": principal.is_admin(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    key: String,
}

/// Exchange an API key for a session cookie. As on the API, a valid key is always accepted
/// (a stranger sharing the address cannot lock its holder out), and a wrong one counts
/// toward the address's lockout (429 once it is locked out).
async fn sign_in(State(state): State<Arc<GatewayState>>, request: Request) -> Response {
    if let Err(refused) = super::guard::require_json(&request) {
        return refused.into_response();
    }
    let address = state.client_address(&request);
    let secure = state.reached_over_https(&request);
    if state.keys.is_empty() {
        return ApiError::invalid_request(
            "this gateway has no API keys: the console is open to loopback without signing in",
        )
        .into_response();
    }
    let body = match axum::body::to_bytes(request.into_body(), 4096).await {
        Ok(body) => body,
        Err(_) => {
            return ApiError::invalid_request("send `{\"key\": \"...\"}` of at most 4 KiB")
                .into_response();
        }
    };
    let Some(principal) = parse_sign_in(&body).and_then(|key| state.keys.identify(&key)) else {
        return super::guard::refuse_key(&state, address);
    };
    let token = match state.console.issue(&principal) {
        Ok(token) => token,
        Err(error) => {
            tracing::error!("the operating system's random source failed: {error}");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "no session could be made; try again",
            )
            .into_response();
        }
    };
    with_cookie(
        no_store(Json(signed_in(&principal))),
        &session::set_cookie(Some(&token), secure),
    )
}

fn parse_sign_in(body: &Bytes) -> Option<String> {
    serde_json::from_slice::<SignIn>(body)
        .ok()
        .map(|sign_in| sign_in.key.trim().to_owned())
}

/// Sign the session's principal out (on this replica: every session of that key issued until
/// now) and delete the cookie. Needs the console's header, like every other request of a
/// session that changes something.
async fn sign_out(State(state): State<Arc<GatewayState>>, request: Request) -> Response {
    let secure = state.reached_over_https(&request);
    let headers = request.headers();
    if !carries_console_header(headers) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "console_header_missing",
            format!("signing out needs `{CSRF_HEADER}: 1`"),
        )
        .into_response();
    }
    if let Some(session) = state.console_session(headers) {
        state.console.sign_out(&session);
    }
    with_cookie(
        no_store(Json(json!({ "signed_in": false }))),
        &session::set_cookie(None, secure),
    )
}

fn no_store(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    match HeaderValue::from_str(cookie) {
        Ok(value) => {
            response.headers_mut().insert(header::SET_COOKIE, value);
            response
        }
        // The value is built from hex, digits and a principal label: always a valid header.
        Err(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the session cookie could not be written",
        )
        .into_response(),
    }
}
