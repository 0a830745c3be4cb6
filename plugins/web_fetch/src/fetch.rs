//! One HTTP GET through `wasi:http/outgoing-handler`, with a byte cap and timeouts.

use databot_sdk::PluginError;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub truncated: bool,
}

pub fn get(raw_url: &str, max_bytes: u64, timeout_ms: u64) -> Result<Response, PluginError> {
    let url = url::Url::parse(raw_url)
        .map_err(|e| PluginError::InvalidInput(format!("`{raw_url}` is not a URL: {e}")))?;
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => {
            return Err(PluginError::InvalidInput(format!(
                "only http and https URLs can be fetched, not `{other}`"
            )));
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| PluginError::InvalidInput(format!("`{raw_url}` has no host")))?;
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let path_with_query = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };

    let headers = Fields::new();
    for (name, value) in [
        ("user-agent", "databot-web-fetch/0.1"),
        ("accept", "text/html, text/plain;q=0.9, */*;q=0.5"),
    ] {
        headers
            .append(name, value.as_bytes())
            .map_err(|e| PluginError::Failed(format!("header {name}: {e:?}")))?;
    }
    let request = OutgoingRequest::new(headers);
    let set = |ok: Result<(), ()>, what: &str| {
        ok.map_err(|()| PluginError::InvalidInput(format!("invalid {what} in `{raw_url}`")))
    };
    set(request.set_method(&Method::Get), "method")?;
    set(request.set_scheme(Some(&scheme)), "scheme")?;
    set(request.set_authority(Some(&authority)), "host")?;
    set(request.set_path_with_query(Some(&path_with_query)), "path")?;

    let timeout_ns = timeout_ms.saturating_mul(1_000_000);
    let options = RequestOptions::new();
    // A host may refuse to honour a timeout; the host's call deadline still applies.
    let _ = options.set_connect_timeout(Some(timeout_ns));
    let _ = options.set_first_byte_timeout(Some(timeout_ns));
    let _ = options.set_between_bytes_timeout(Some(timeout_ns));

    let body = request
        .body()
        .map_err(|()| PluginError::Failed("request body already taken".into()))?;
    OutgoingBody::finish(body, None).map_err(|e| http_error(raw_url, e))?;
    let pending =
        outgoing_handler::handle(request, Some(options)).map_err(|e| http_error(raw_url, e))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(http_error(raw_url, code)),
        Some(Err(())) | None => {
            return Err(PluginError::Failed(
                "the HTTP response was not available".into(),
            ));
        }
    };

    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let incoming = response
        .consume()
        .map_err(|()| PluginError::Failed("response body already taken".into()))?;
    let (body, truncated) = read_capped(&incoming, max_bytes)?;
    drop(incoming);
    Ok(Response {
        status,
        content_type,
        body,
        truncated,
    })
}

fn read_capped(incoming: &IncomingBody, max_bytes: u64) -> Result<(Vec<u8>, bool), PluginError> {
    let stream = incoming
        .stream()
        .map_err(|()| PluginError::Failed("response body stream already taken".into()))?;
    let mut body = Vec::new();
    loop {
        let remaining = max_bytes.saturating_sub(body.len() as u64);
        if remaining == 0 {
            // Anything left means the cap cut the body short.
            let more = matches!(stream.blocking_read(1), Ok(bytes) if !bytes.is_empty());
            return Ok((body, more));
        }
        match stream.blocking_read(remaining.min(64 * 1024)) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok((body, false)),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(PluginError::Unavailable(format!(
                    "reading the response body failed: {}",
                    e.to_debug_string()
                )));
            }
        }
    }
}

fn http_error(url: &str, code: ErrorCode) -> PluginError {
    match code {
        ErrorCode::HttpRequestDenied => PluginError::Denied(format!(
            "the host does not allow this plugin to connect to `{url}`; the operator can add the host to `plugins.web_fetch.permissions.http.allow`"
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
        other => PluginError::Failed(format!("fetching `{url}` failed: {other:?}")),
    }
}
