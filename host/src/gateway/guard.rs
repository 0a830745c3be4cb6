//! The gate in front of every protected route (`/api/v1/*`, `/metrics`, `/mcp`), in order:
//! `Host` and `Origin` (403), the API key (401, or 429 once the client's address has failed too
//! often: see `auth_failures`), the body's media type (415: a request with a body must be
//! `application/json`, which a cross-site form or `text/plain` POST cannot be without a
//! preflight), and the request rate of the principal (429). A request that passes carries its
//! `Principal` in its extensions.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};

use super::auth::{ApiKeys, Principal};
use super::{ApiError, GatewayState};

pub async fn guard(
    State(state): State<Arc<GatewayState>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(refused) = host_or_origin_refusal(&state, &request) {
        return refused;
    }
    let address = state.client_address(&request);
    let principal = match authenticate(&state, &request, address) {
        Ok(principal) => principal,
        Err(refused) => return refused.into_response(),
    };
    if let Err(refused) = require_json(&request) {
        return refused.into_response();
    }
    let Some(limiter) = &state.limiter else {
        request.extensions_mut().insert(principal);
        return next.run(request).await;
    };
    let bucket = if state.keys.is_empty() {
        // An IPv6 client counts by its /64, as for failed authentications.
        format!("address:{:?}", super::auth_failures::Client::of(address))
    } else {
        principal.as_str().to_owned()
    };
    let decision = limiter.check(&bucket).await;
    let mut response = if decision.allowed {
        request.extensions_mut().insert(principal);
        next.run(request).await
    } else {
        too_many(
            "rate_limited",
            format!(
                "more than {} requests in the window; retry later",
                decision.limit
            ),
            decision.retry_after,
        )
    };
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(decision.remaining),
    );
    response
}

/// Why authentication refused a request.
enum AuthRefusal {
    /// The address is locked out for this long.
    LockedOut(Duration),
    Missing,
    Invalid,
    /// A console session's request that changes something, without the console's header.
    CrossSite,
}

impl IntoResponse for AuthRefusal {
    fn into_response(self) -> Response {
        match self {
            Self::LockedOut(retry_after) => too_many(
                "too_many_auth_failures",
                "too many failed authentications from this address; retry later".to_owned(),
                retry_after,
            ),
            Self::Missing => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_api_key",
                "send `Authorization: Bearer KEY` or `X-API-Key: KEY`",
            )
            .into_response(),
            Self::Invalid => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "the API key is not valid",
            )
            .into_response(),
            Self::CrossSite => ApiError::new(
                StatusCode::FORBIDDEN,
                "console_header_missing",
                format!(
                    "a signed-in console request that changes something must send `{}: 1`",
                    super::console::CSRF_HEADER
                ),
            )
            .into_response(),
        }
    }
}

/// The principal of the request, or why it is refused.
fn authenticate(
    state: &GatewayState,
    request: &Request,
    address: IpAddr,
) -> Result<Principal, AuthRefusal> {
    if state.keys.is_empty() {
        return Ok(Principal::local());
    }
    let headers = request.headers();
    let presented = ApiKeys::presented(headers);
    if let Some(principal) = presented
        .as_deref()
        .and_then(|key| state.keys.identify(key))
    {
        return Ok(principal);
    }
    // A console session (its cookie) stands for a key on the API, never on `/mcp`.
    if presented.is_none() && request.uri().path() != "/mcp" {
        if let Some(session) = state.console_session(headers) {
            let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
            return if changes && !super::console::carries_console_header(headers) {
                Err(AuthRefusal::CrossSite)
            } else {
                Ok(session.principal)
            };
        }
        // An expired or signed-out session guesses no key: it does not count as a failure
        // (a console left open would otherwise lock its own address out).
        if super::console::has_session_cookie(headers) {
            return Err(AuthRefusal::Missing);
        }
    }
    Err(failed_authentication(state, address, presented.is_some()))
}

/// Count a failed authentication from `address` and say why it is refused (429 while the
/// address is locked out: attempts during a lockout count too, so a client that keeps
/// failing stays locked out).
fn failed_authentication(state: &GatewayState, address: IpAddr, presented: bool) -> AuthRefusal {
    let locked_out = state.auth_failures.locked_out(address);
    state.auth_failures.failed(address);
    match (locked_out, presented) {
        (Some(retry_after), _) => AuthRefusal::LockedOut(retry_after),
        (None, false) => AuthRefusal::Missing,
        (None, true) => AuthRefusal::Invalid,
    }
}

/// A key presented outside the headers (the console's sign-in) that matched none: counted
/// and refused as on the API.
pub(super) fn refuse_key(state: &GatewayState, address: IpAddr) -> Response {
    failed_authentication(state, address, true).into_response()
}

/// The refusal of the `Host` and `Origin` checks (403 with its code), if they refuse.
pub(super) fn host_or_origin_refusal(state: &GatewayState, request: &Request) -> Option<Response> {
    let refusal = state
        .same_origin
        .check(request.headers(), request.uri())
        .err()?;
    tracing::debug!(code = refusal.code(), "{}", refusal.message());
    Some(ApiError::new(StatusCode::FORBIDDEN, refusal.code(), refusal.message()).into_response())
}

/// A request with a body (any POST, PUT or PATCH, or any request declaring a length or a
/// transfer encoding) must say `Content-Type: application/json`.
pub(super) fn require_json(request: &Request) -> Result<(), ApiError> {
    let headers = request.headers();
    let declares_body = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    ) || headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    if !declares_body {
        return Ok(());
    }
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    let json = match (types.next(), types.next()) {
        (Some(value), None) => value.to_str().is_ok_and(|value| {
            value
                .split(';')
                .next()
                .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
        }),
        _ => false,
    };
    if json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        ))
    }
}

/// A 429 with `Retry-After` in whole seconds (at least 1).
pub(super) fn too_many(code: &'static str, message: String, retry_after: Duration) -> Response {
    let mut refused = ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message).into_response();
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    refused
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, headers: &[(&str, &str)]) -> Request {
        let mut builder = http::Request::builder()
            .method(method)
            .uri("/api/v1/message");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn bodies_must_be_json() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            assert!(
                require_json(&request("POST", &[("content-type", ok)])).is_ok(),
                "{ok}"
            );
        }
        for refused in [
            &[("content-type", "text/plain")][..],
            &[("content-type", "application/x-www-form-urlencoded")],
            &[("content-type", "multipart/form-data; boundary=x")],
            &[("content-type", "application/jsonp")],
            &[("content-type", "text/plain; application/json")],
            &[],
            &[
                ("content-type", "application/json"),
                ("content-type", "text/plain"),
            ],
        ] {
            let error = require_json(&request("POST", refused)).unwrap_err();
            assert_eq!(
                error.status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{refused:?}"
            );
        }
        // Without a body nothing is required; a GET or DELETE declaring one needs JSON too.
        assert!(require_json(&request("GET", &[])).is_ok());
        assert!(require_json(&request("DELETE", &[("content-length", "0")])).is_ok());
        assert!(require_json(&request("GET", &[("content-length", "5")])).is_err());
        assert!(require_json(&request("DELETE", &[("transfer-encoding", "chunked")])).is_err());
        assert!(require_json(&request("PUT", &[("content-type", "text/plain")])).is_err());
    }
}
