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
pub async fn send(request: HostRequest<'_>) -> anyhow::Result<HostResponse> {
    let timeout = request.timeout;
    let url = request.url.to_owned();
    tokio::time::timeout(timeout, exchange(request))
        .await
        .map_err(|_| anyhow!("{url}: no answer within {} ms", timeout.as_millis()))?
}

async fn exchange(request: HostRequest<'_>) -> anyhow::Result<HostResponse> {
    let url =
        url::Url::parse(request.url).with_context(|| format!("`{}` is not a URL", request.url))?;
    let https = match url.scheme() {
        "https" => true,
        "http" => false,
        other => bail!("{}: scheme `{other}` is not supported", request.url),
    };
    let host = url
        .host_str()
        .ok_or_else(|| anyhow!("{}: no host", request.url))?
        .trim_matches(['[', ']'])
        .to_owned();
    let port = url
        .port_or_known_default()
        .unwrap_or(if https { 443 } else { 80 });
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("resolving `{host}`"))?
            .collect(),
    };
    if !request.allow_private
        && let Some(inside) = addresses.iter().find(|a| !is_public_ip(a.ip()))
    {
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
    let path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    let mut builder = http::Request::builder()
        .method(request.method)
        .uri(path)
        .header(http::header::HOST, authority);
    for (name, value) in request.headers {
        builder = builder.header(name, value);
    }
    let outgoing = builder
        .body(Full::new(request.body))
        .context("building the request")?;
    let response = if https {
        let server_name = match host.parse::<IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| anyhow!("`{host}` is not a valid TLS server name"))?,
        };
        let tls = tokio_rustls::TlsConnector::from(tls_config())
            .connect(server_name, tcp)
            .await
            .with_context(|| format!("TLS with `{host}`"))?;
        round_trip(TokioIo::new(tls), outgoing).await?
    } else {
        round_trip(TokioIo::new(tcp), outgoing).await?
    };
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, request.max_body_bytes)
        .collect()
        .await
        .map_err(|e| anyhow!("reading the answer of `{host}`: {e}"))?
        .to_bytes();
    Ok(HostResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
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
