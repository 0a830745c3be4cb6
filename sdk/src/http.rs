//! Outgoing HTTP for plugins over `wasi:http/outgoing-handler`: one request, a response whose
//! body is read with a byte cap or line by line (for server-sent events), retries with
//! exponential backoff that honour `Retry-After`.
//!
//! The host decides where a plugin may connect and adds credentials for granted hosts; a
//! refused destination comes back as `PluginError::Denied`.

use std::time::Duration;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme,
};
use wasip2::io::streams::{InputStream, StreamError};

use crate::PluginError;

/// One request.
pub struct Request {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Connect, first-byte and between-bytes timeout.
    pub timeout: Duration,
}

impl Request {
    pub fn get(url: impl Into<String>) -> Self {
        Self {
            method: "GET",
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout: Duration::from_secs(30),
        }
    }

    pub fn post_json(url: impl Into<String>, body: &serde_json::Value) -> Self {
        Self {
            method: "POST",
            url: url.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(body.to_string().into_bytes()),
            timeout: Duration::from_secs(60),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A response; the body is read on demand. Fields drop in order: stream, body, response.
pub struct Response {
    pub status: u16,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    stream: InputStream,
    _body: IncomingBody,
    _response: IncomingResponse,
    buffer: Vec<u8>,
}

impl Response {
    /// A failed body read, classified by its HTTP error code when the host gives one.
    fn stream_error(&self, e: &wasip2::io::error::Error) -> PluginError {
        if let Some(code) = wasip2::http::types::http_error_code(e) {
            return error(&self.url, code);
        }
        // Hosts do not always attach a code to body errors; their text still says what it was.
        let detail = e.to_debug_string();
        let message = format!("reading the response from `{}` failed: {detail}", self.url);
        if detail.contains("timeout") || detail.contains("timed out") {
            PluginError::Timeout(message)
        } else {
            PluginError::Unavailable(message)
        }
    }

    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// Read the body up to `max_bytes`; the flag says whether more was left unread.
    pub fn read_capped(mut self, max_bytes: u64) -> Result<(Vec<u8>, bool), PluginError> {
        let mut body = std::mem::take(&mut self.buffer);
        loop {
            let remaining = max_bytes.saturating_sub(body.len() as u64);
            if remaining == 0 {
                let more = matches!(self.stream.blocking_read(1), Ok(bytes) if !bytes.is_empty());
                return Ok((body, more));
            }
            match self.stream.blocking_read(remaining.min(64 * 1024)) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => return Ok((body, false)),
                Err(StreamError::LastOperationFailed(e)) => return Err(self.stream_error(&e)),
            }
        }
    }

    /// The whole body as text, up to `max_bytes` (more is an error).
    pub fn text(self, max_bytes: u64) -> Result<String, PluginError> {
        let (body, truncated) = self.read_capped(max_bytes)?;
        if truncated {
            return Err(PluginError::Failed(format!(
                "the response is larger than {max_bytes} bytes"
            )));
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// The next line of the body (without the line ending), `None` at the end. For SSE.
    pub fn next_line(&mut self) -> Result<Option<String>, PluginError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            match self.stream.blocking_read(16 * 1024) {
                Ok(chunk) => self.buffer.extend_from_slice(&chunk),
                Err(StreamError::Closed) => {
                    if self.buffer.is_empty() {
                        return Ok(None);
                    }
                    let rest = std::mem::take(&mut self.buffer);
                    return Ok(Some(String::from_utf8_lossy(&rest).into_owned()));
                }
                Err(StreamError::LastOperationFailed(e)) => return Err(self.stream_error(&e)),
            }
        }
    }
}

/// Send one request.
pub fn send(request: &Request) -> Result<Response, PluginError> {
    let url = &request.url;
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(PluginError::InvalidInput(format!(
            "only http and https URLs are supported, not `{url}`"
        )));
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let path = path.split('#').next().unwrap_or("/");
    if authority.is_empty() {
        return Err(PluginError::InvalidInput(format!("`{url}` has no host")));
    }
    let headers = Fields::new();
    // A known length, so servers that do not take chunked bodies work too; an empty body is
    // declared empty (except on GET and HEAD, which carry none) rather than sent chunked.
    let length = match &request.body {
        Some(body) => Some(body.len()),
        None if !matches!(request.method, "GET" | "HEAD") => Some(0),
        None => None,
    };
    if let Some(length) = length {
        headers
            .append("content-length", length.to_string().as_bytes())
            .map_err(|e| PluginError::InvalidInput(format!("header `content-length`: {e:?}")))?;
    }
    for (name, value) in &request.headers {
        headers
            .append(name, value.as_bytes())
            .map_err(|e| PluginError::InvalidInput(format!("header `{name}`: {e:?}")))?;
    }
    let outgoing = OutgoingRequest::new(headers);
    let method = match request.method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "HEAD" => Method::Head,
        other => Method::Other(other.to_owned()),
    };
    let invalid = |what: &str| PluginError::InvalidInput(format!("invalid {what} in `{url}`"));
    outgoing
        .set_method(&method)
        .map_err(|()| invalid("method"))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    outgoing
        .set_authority(Some(authority))
        .map_err(|()| invalid("host"))?;
    outgoing
        .set_path_with_query(Some(path))
        .map_err(|()| invalid("path"))?;

    let timeout_ns = u64::try_from(request.timeout.as_nanos()).unwrap_or(u64::MAX);
    let options = RequestOptions::new();
    // A host may refuse to honour a timeout; the host's call deadline still applies.
    let _ = options.set_connect_timeout(Some(timeout_ns));
    let _ = options.set_first_byte_timeout(Some(timeout_ns));
    let _ = options.set_between_bytes_timeout(Some(timeout_ns));

    let body = outgoing
        .body()
        .map_err(|()| PluginError::Failed("request body already taken".into()))?;
    // Send first, then write: the host buffers little of an outgoing body, so writing a large
    // body before the request is on its way would wait for a reader that never comes.
    let pending = outgoing_handler::handle(outgoing, Some(options)).map_err(|e| error(url, e))?;
    if let Some(bytes) = &request.body {
        let stream = body
            .write()
            .map_err(|()| PluginError::Failed("request body stream already taken".into()))?;
        for chunk in bytes.chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(|e| {
                PluginError::Unavailable(format!("writing the request body: {e:?}"))
            })?;
        }
        drop(stream);
    }
    OutgoingBody::finish(body, None).map_err(|e| error(url, e))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(error(url, code)),
        Some(Err(())) | None => {
            return Err(PluginError::Failed(
                "the HTTP response was not available".into(),
            ));
        }
    };
    let status = response.status();
    let headers = response.headers().entries();
    let body = response
        .consume()
        .map_err(|()| PluginError::Failed("response body already taken".into()))?;
    let stream = body
        .stream()
        .map_err(|()| PluginError::Failed("response body stream already taken".into()))?;
    Ok(Response {
        status,
        url: url.clone(),
        headers,
        stream,
        _body: body,
        _response: response,
        buffer: Vec::new(),
    })
}

/// How to retry: attempts after the first, and the first backoff (doubled each time).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub retries: u32,
    pub base: Duration,
    /// Longest wait between attempts, whatever `Retry-After` says.
    pub max_wait: Duration,
    /// Retry POST and PATCH like GET: only for requests without side effects the server could
    /// already have applied (an LLM completion, a search, a read API over POST).
    pub retry_posts: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 3,
            base: Duration::from_millis(500),
            max_wait: Duration::from_secs(30),
            retry_posts: false,
        }
    }
}

impl RetryPolicy {
    /// This policy, also retrying POST and PATCH (see `retry_posts`).
    pub fn for_side_effect_free_posts(mut self) -> Self {
        self.retry_posts = true;
        self
    }
}

/// Is this status worth retrying (rate limited, overloaded, server error)?
pub fn is_retryable(status: u16) -> bool {
    // 529: Anthropic's "overloaded".
    status == 429 || status == 408 || (500..=599).contains(&status)
}

/// The wait a response asks for: `retry-after-ms`, or `Retry-After` in seconds. Nonsense
/// (negative, infinite, absurdly large) is ignored rather than trusted.
pub fn retry_after(response: &Response) -> Option<Duration> {
    let seconds = |value: f64| Duration::try_from_secs_f64(value.max(0.0)).ok();
    if let Some(ms) = response
        .header("retry-after-ms")
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        return seconds(ms / 1000.0);
    }
    response
        .header("retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(seconds)
}

/// May this request be sent again after a failure? Idempotent methods may; POST and PATCH
/// only when the server said it did not act (429 Too Many Requests, 503 Unavailable, 529
/// Overloaded), never after a transport error, which may have come after the server acted.
fn may_retry(method: &str, policy: RetryPolicy, outcome: &Result<Response, PluginError>) -> bool {
    let idempotent =
        policy.retry_posts || matches!(method, "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS");
    match outcome {
        Ok(response) if is_retryable(response.status) => {
            idempotent || matches!(response.status, 429 | 503 | 529)
        }
        Err(PluginError::Unavailable(_)) | Err(PluginError::Timeout(_)) => idempotent,
        _ => false,
    }
}

/// Send with retries on retryable statuses and connection failures (see `may_retry` for
/// which requests are retried). Returns the last response (which may still be an error
/// status) or the last transport error.
pub fn send_with_retries(request: &Request, policy: RetryPolicy) -> Result<Response, PluginError> {
    let mut attempt = 0;
    loop {
        let result = send(request);
        if !may_retry(request.method, policy, &result) || attempt >= policy.retries {
            return result;
        }
        let backoff = policy.base * 2u32.saturating_pow(attempt);
        let wait = match &result {
            Ok(response) => retry_after(response).unwrap_or(backoff),
            Err(_) => backoff,
        };
        attempt += 1;
        crate::log::warn(&format!(
            "{} {} failed (attempt {attempt}); retrying in {} ms",
            request.method,
            request.url,
            wait.min(policy.max_wait).as_millis()
        ));
        drop(result);
        sleep(wait.min(policy.max_wait));
    }
}

/// An error status of a JSON API as the right error kind, with the API's own message
/// (`{"error": {"message": ...}}`, the shape OpenAI- and Anthropic-style APIs use).
pub fn status_error(status: u16, body: &str) -> PluginError {
    let detail = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(500).collect());
    let message = format!("the API answered {status}: {detail}");
    match status {
        400 | 404 | 422 => PluginError::InvalidInput(message),
        401 | 403 => PluginError::Denied(format!(
            "{message} (is the API key configured as a secret header for this host?)"
        )),
        408 => PluginError::Timeout(message),
        429 | 500..=599 => PluginError::Unavailable(message),
        _ => PluginError::Failed(message),
    }
}

/// Health from a probe call (e.g. listing models): healthy when it worked, not configured when
/// the host denied the connection or the API refused the key, unreachable otherwise.
pub fn health_from<T>(probe: Result<T, PluginError>, healthy: &str) -> crate::Health {
    use crate::{Health, HealthStatus};
    match probe {
        Ok(_) => Health {
            status: HealthStatus::Healthy,
            message: healthy.to_owned(),
        },
        Err(PluginError::Denied(message)) => Health {
            status: HealthStatus::NotConfigured,
            message,
        },
        Err(error) => Health {
            status: HealthStatus::Unreachable,
            message: format!("{error:?}"),
        },
    }
}

/// Block the plugin for `duration` (counts against its call deadline).
pub fn sleep(duration: Duration) {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    wasip2::clocks::monotonic_clock::subscribe_duration(nanos).block();
}

fn error(url: &str, code: ErrorCode) -> PluginError {
    match code {
        ErrorCode::HttpRequestDenied => PluginError::Denied(format!(
            "the host does not allow this plugin to connect to `{url}`; the operator can grant it under `permissions.http.allow` of this plugin"
        )),
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::HttpResponseTimeout => {
            PluginError::Timeout(format!("`{url}` did not answer in time ({code:?})"))
        }
        ErrorCode::DnsTimeout
        | ErrorCode::DnsError(_)
        | ErrorCode::ConnectionRefused
        | ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::ConnectionTerminated
        | ErrorCode::TlsProtocolError
        | ErrorCode::TlsCertificateError => {
            PluginError::Unavailable(format!("cannot reach `{url}`: {code:?}"))
        }
        other => PluginError::Failed(format!("`{url}` failed: {other:?}")),
    }
}
