//! The host's own outgoing HTTP requests (not a plugin's): fetching a JWT key set, and later
//! the connections the host holds for channels. The same address rules as plugin egress
//! (non-public addresses refused unless allowed, the connection made to the vetted address),
//! TLS verified against the web PKI, a deadline on the whole exchange and a bound on the body.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

use super::egress::{is_public_ip, tls_config};
use crate::net::LowLatency;

/// One request the host makes.
pub struct HostRequest<'a> {
    pub method: http::Method,
    pub url: &'a str,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub body: Bytes,
    /// Whether the destination may resolve to loopback or a private network.
    pub allow_private: bool,
    /// For the whole exchange: connect, send, read the body.
    pub timeout: Duration,
    /// Most bytes of response body read.
    pub max_body_bytes: usize,
}

pub struct HostResponse {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Send `request` and read the whole answer, within its deadline.
/// Errors name the host, never the URL's path or query (they may carry a token).
pub async fn send(request: HostRequest<'_>) -> anyhow::Result<HostResponse> {
    let timeout = request.timeout;
    tokio::time::timeout(timeout, exchange(request))
        .await
        .map_err(|_| anyhow!("no answer within {} ms", timeout.as_millis()))?
}

/// A connection to the host of a URL: its vetted address, TLS for https and wss.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A connection to an `https`, `http`, `wss` or `ws` URL's host and port, made to an address
/// the rules allow (never a non-public one unless `allow_private`).
pub struct Connected {
    stream: Box<dyn Stream>,
    /// `host[:port]` as the `Host` header gives it.
    authority: String,
    /// Path and query.
    target: String,
}

async fn connect(url: &str, allow_private: bool) -> anyhow::Result<Connected> {
    let url = url::Url::parse(url).map_err(|e| anyhow!("not a URL: {e}"))?;
    let tls = match url.scheme() {
        "https" | "wss" => true,
        "http" | "ws" => false,
        other => bail!("scheme `{other}` is not supported"),
    };
    let host = url
        .host_str()
        .ok_or_else(|| anyhow!("the URL has no host"))?
        .trim_matches(['[', ']'])
        .to_owned();
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("resolving `{host}`"))?
            .collect(),
    };
    if !allow_private && let Some(inside) = addresses.iter().find(|a| !is_public_ip(a.ip())) {
        bail!(
            "`{host}` resolves to the non-public address {}, which this request may not reach",
            inside.ip()
        );
    }
    let address = addresses
        .first()
        .ok_or_else(|| anyhow!("`{host}` has no address"))?;
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to {address}"))?;
    let tcp = LowLatency::new(tcp).context("setting TCP_NODELAY")?;
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    let stream: Box<dyn Stream> = if tls {
        let server_name = match host.parse::<IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| anyhow!("`{host}` is not a valid TLS server name"))?,
        };
        Box::new(
            tokio_rustls::TlsConnector::from(tls_config())
                .connect(server_name, tcp)
                .await
                .with_context(|| format!("TLS with `{host}`"))?,
        )
    } else {
        Box::new(tcp)
    };
    Ok(Connected {
        stream,
        authority,
        target,
    })
}

async fn exchange(request: HostRequest<'_>) -> anyhow::Result<HostResponse> {
    let connected = connect(request.url, request.allow_private).await?;
    let mut builder = http::Request::builder()
        .method(request.method)
        .uri(connected.target.as_str())
        .header(http::header::HOST, connected.authority.as_str());
    for (name, value) in request.headers {
        builder = builder.header(name, value);
    }
    let outgoing = builder
        .body(Full::new(request.body))
        .context("building the request")?;
    let authority = connected.authority.clone();
    let response = round_trip(TokioIo::new(connected.stream), outgoing).await?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, request.max_body_bytes)
        .collect()
        .await
        .map_err(|e| anyhow!("reading the answer of `{authority}`: {e}"))?
        .to_bytes();
    Ok(HostResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// The largest message (and frame) a host-held WebSocket accepts; platform events are far
/// smaller, and a larger one ends the connection instead of filling memory.
pub const MAX_WEBSOCKET_MESSAGE: usize = 1024 * 1024;

/// A WebSocket the host holds (Slack Socket Mode, the Discord Gateway), opened within
/// `timeout` under the same address rules as requests.
pub type HostWebSocket = tokio_tungstenite::WebSocketStream<Box<dyn Stream>>;

pub async fn websocket(
    url: &str,
    allow_private: bool,
    timeout: Duration,
) -> anyhow::Result<HostWebSocket> {
    let opening = async {
        let connected = connect(url, allow_private).await?;
        let limits = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_WEBSOCKET_MESSAGE))
            .max_frame_size(Some(MAX_WEBSOCKET_MESSAGE));
        let (socket, _) =
            tokio_tungstenite::client_async_with_config(url, connected.stream, Some(limits))
                .await
                .context("the WebSocket handshake failed")?;
        anyhow::Ok(socket)
    };
    tokio::time::timeout(timeout, opening).await.map_err(|_| {
        anyhow!(
            "the WebSocket did not open within {} ms",
            timeout.as_millis()
        )
    })?
}

async fn round_trip<S>(
    io: TokioIo<S>,
    request: http::Request<Full<Bytes>>,
) -> anyhow::Result<http::Response<hyper::body::Incoming>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .context("HTTP handshake")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .context("sending the request")
}
