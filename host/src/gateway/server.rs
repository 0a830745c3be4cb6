//! Listening and serving HTTP/1.1: the bind rule, the accept loop, one task per connection.
//!
//! A flood of silent or slow connections cannot starve real clients: connections are capped
//! and a waiting one is closed at its deadline or to make room (`connections`), every request
//! body has `gateway.body_read_timeout_seconds` to arrive, a connection's read buffer (and so
//! its request head) is bounded, and the open-file limit is raised at start with a reserve
//! kept for everything else, so accepting goes on at the cap. Accept errors never end the loop.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::process_limits::DescriptorPlan;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::GatewayState;
use super::connections::{Connection, Connections, InFlight};
use crate::config::GatewayConfig;

/// Largest read buffer of a connection, which bounds a request head too (431 past it).
const MAX_READ_BUFFER: usize = 64 * 1024;

/// Check the settings and the bind address against the keys: off loopback, keys are required.
pub fn check_bind(config: &GatewayConfig) -> anyhow::Result<SocketAddr> {
    config.validate().map_err(anyhow::Error::msg)?;
    let address = config.bind_address().map_err(anyhow::Error::msg)?;
    refuse_public_without_keys(address, config)?;
    Ok(address)
}

fn refuse_public_without_keys(address: SocketAddr, config: &GatewayConfig) -> anyhow::Result<()> {
    if !address.ip().is_loopback() && config.api_keys.is_empty() && config.admin_keys.is_empty() {
        bail!(
            "refusing to listen on {address} without API keys: set gateway.api_keys, or bind 127.0.0.1"
        );
    }
    Ok(())
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

/// Serve on a listener that is already bound (tests bind port 0), until `shutdown` resolves and
/// every connection has finished.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Arc<GatewayState>,
    config: &GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg)?;
    let local = listener
        .local_addr()
        .context("reading the listener's address")?;
    refuse_public_without_keys(local, config)?;
    let plan = crate::process_limits::descriptor_plan();
    let limit = connection_limit(config.max_connections, plan);
    if limit < config.max_connections {
        tracing::warn!(
            limit,
            open_files = plan.open_files,
            "gateway.max_connections lowered to what the open-file limit allows"
        );
    }
    let connections = Connections::new(
        limit,
        Duration::from_secs(config.header_read_timeout_seconds),
        Duration::from_secs(config.idle_timeout_seconds),
    );
    tracing::debug!(max_connections = connections.limit(), "gateway serving");
    let body_timeout = Duration::from_secs(config.body_read_timeout_seconds);
    let long_streams = state.shutdown.clone();
    // The connections channels hold to their platforms live as long as the gateway serves.
    let channel_connections = CancellationToken::new();
    crate::channels::connections::start(&state.channels, &channel_connections);
    let router = super::router(state, config)?;
    let stop = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                // Out of file descriptors, most likely: wait for some to be closed.
                tracing::warn!(%error, "accepting a connection failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let connection = tokio::select! {
            connection = connections.admit() => connection,
            () = &mut shutdown => break,
        };
        tokio::spawn(run_connection(
            stream,
            peer,
            connection,
            router.clone(),
            body_timeout,
            stop.clone(),
        ));
    }
    drop(listener);
    stop.cancel();
    // Open MCP and activity streams would otherwise hold the shutdown forever.
    long_streams.cancel();
    channel_connections.cancel();
    connections.all_closed().await;
    Ok(())
}

fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Serve one connection until it ends, is closed while waiting, or the gateway shuts down (a
/// request in flight is answered first).
async fn run_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    connection: Arc<Connection>,
    router: Router,
    body_timeout: Duration,
    stop: CancellationToken,
) {
    let stream = match crate::net::LowLatency::new(stream) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::debug!(%peer, %error, "not a usable TCP connection");
            return;
        }
    };
    let service = {
        let connection = connection.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let in_flight = connection.begin();
            let router = router.clone();
            async move {
                let Some(in_flight) = in_flight else {
                    return Ok::<_, Infallible>(closing());
                };
                Ok(handle(router, request, peer, body_timeout, in_flight).await)
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // `Connection` keeps the head and idle deadlines (hyper's own would count from the end of
    // a response, not from the connection's wait).
    builder
        .header_read_timeout(None)
        .max_buf_size(MAX_READ_BUFFER);
    let http = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(http);
    let mut draining = false;
    loop {
        let deadline = connection.deadline();
        let sleep = tokio::time::sleep_until(
            deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600)),
        );
        tokio::select! {
            result = http.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                break;
            }
            () = connection.changed() => {
                if connection.is_closing() || (draining && connection.close_if_waiting()) {
                    break;
                }
            }
            () = sleep, if deadline.is_some() => {
                if connection.close_if_expired() {
                    tracing::debug!(%peer, "closed a connection that sent no complete request in time");
                    break;
                }
            }
            () = stop.cancelled(), if !draining => {
                draining = true;
                if connection.close_if_waiting() {
                    break;
                }
                http.as_mut().graceful_shutdown();
            }
        }
    }
}

/// One request through the router: the client's address attached, the body under its deadline,
/// and the connection marked busy until the response body has been sent.
async fn handle(
    router: Router,
    request: Request<Incoming>,
    peer: SocketAddr,
    body_timeout: Duration,
    in_flight: InFlight,
) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(ConnectInfo(peer));
    let body = if body.is_end_stream() {
        Body::new(body)
    } else {
        Body::new(DeadlineBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(body_timeout)),
            limit: body_timeout,
        })
    };
    let response = match router.oneshot(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    response.map(|inner| {
        Body::new(Tracked {
            inner,
            _in_flight: in_flight,
        })
    })
}

/// The answer to a request that arrives as its connection is being closed.
fn closing() -> Response<Body> {
    let mut response = Response::new(Body::from(
        r#"{"error":{"code":"closing","message":"the connection is closing; retry on a new one"}}"#,
    ));
    *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}

/// The request body did not arrive within `gateway.body_read_timeout_seconds`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {}s (gateway.body_read_timeout_seconds)", .0.as_secs())]
pub struct BodyTimeout(Duration);

/// A request body that fails with `BodyTimeout` once its deadline passes.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyTimeout(self.limit).into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request in flight until it is dropped (sent or abandoned).
struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The configured connection cap, lowered to the gateway's share of the open files
/// (`process_limits`).
fn connection_limit(configured: usize, plan: DescriptorPlan) -> usize {
    configured.min(plan.gateway).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_keeps_to_the_gateway_share_of_open_files() {
        let plan = DescriptorPlan::for_open_files;
        assert_eq!(connection_limit(4096, plan(None)), 4096);
        assert_eq!(connection_limit(4096, plan(Some(1_048_576))), 4096);
        assert_eq!(connection_limit(4096, plan(Some(1024))), 640);
        assert_eq!(connection_limit(4096, plan(Some(20_000))), 4096);
        assert_eq!(connection_limit(50_000, plan(Some(20_000))), 13_976);
        assert_eq!(connection_limit(4096, plan(Some(10))), 1);
    }

    #[test]
    fn a_public_listener_needs_keys() {
        let config = GatewayConfig::default();
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(refuse_public_without_keys(public, &config).is_err());
        assert!(refuse_public_without_keys("127.0.0.1:1".parse().unwrap(), &config).is_ok());
        assert!(refuse_public_without_keys("[::1]:1".parse().unwrap(), &config).is_ok());
    }
}
