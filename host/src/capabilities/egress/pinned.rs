//! Send one HTTP/1.1 request to addresses the egress policy already vetted.
//!
//! The stock wasi:http client resolves the host name again when it connects, so a DNS answer
//! that changes between the policy check and the connection (rebinding) could reach a private
//! address. Connecting to the vetted socket addresses closes that gap; TLS still verifies the
//! certificate against the requested host name.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::net::LowLatency;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

/// Used when the guest sets no timeout; the call's deadline still applies on top.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The most a connection buffers of what the server sends (hyper's minimum is 8 KiB plus
/// one read); part of `host_memory::CONNECTION_BYTES`.
const READ_BUFFER_BYTES: usize = 64 * 1024;

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

pub type ConnectionTask = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

pub(crate) fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|builder| {
                    builder
                        .with_root_certificates(roots.clone())
                        .with_no_client_auth()
                });
            match config {
                Ok(config) => Arc::new(config),
                Err(error) => {
                    tracing::error!("TLS configuration failed ({error}); using defaults");
                    Arc::new(
                        rustls::ClientConfig::builder()
                            .with_root_certificates(roots)
                            .with_no_client_auth(),
                    )
                }
            }
        })
        .clone()
}

async fn connect_any(addresses: &[SocketAddr], timeout: Duration) -> Result<LowLatency, HttpError> {
    let mut last_error = None;
    for address in addresses {
        match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            // The request head and body may go out as separate writes (see `net`).
            Ok(Ok(stream)) => match LowLatency::new(stream) {
                Ok(stream) => return Ok(stream),
                Err(error) => last_error = Some(HttpError::Connect(error)),
            },
            Ok(Err(error)) => last_error = Some(HttpError::Connect(error)),
            Err(_) => last_error = Some(HttpError::ConnectionTimeout),
        }
    }
    Err(last_error.unwrap_or(HttpError::DestinationNotFound))
}

/// Connect to one of `addresses`, speak TLS for `host` when `tls`, send `request`. `hold`
/// keeps the connection counted until it ends.
pub(super) async fn send(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    addresses: &[SocketAddr],
    host: &str,
    tls: bool,
    hold: super::ConnectionHold,
) -> Result<(http::Response<WasiBody>, ConnectionTask), HttpError> {
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    let tcp = connect_any(addresses, connect_timeout).await?;
    let stream: Box<dyn Stream> = if tls {
        let server_name = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(host.to_owned())
                .map_err(|_| HttpError::HttpRequestUriInvalid)?,
        };
        let connector = tokio_rustls::TlsConnector::from(tls_config());
        let tls_stream = tokio::time::timeout(connect_timeout, connector.connect(server_name, tcp))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)?
            .map_err(HttpError::Tls)?;
        Box::new(tls_stream)
    } else {
        Box::new(tcp)
    };
    let (mut sender, connection) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new()
            .max_buf_size(READ_BUFFER_BYTES)
            .handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    let driver = tokio::spawn(async move {
        let result = connection.await;
        drop(hold);
        result
    });

    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;

    let between_bytes_timeout = options
        .and_then(|o| o.between_bytes_timeout)
        .unwrap_or(DEFAULT_TIMEOUT)
        .max(Duration::from_millis(1));
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)??;
    let response = response.map(|incoming| {
        IdleTimeoutBody {
            incoming,
            idle: between_bytes_timeout,
            timer: Box::pin(tokio::time::sleep(between_bytes_timeout)),
        }
        .boxed_unsync()
    });
    // wasi-http keeps this task alive with the response body and drops it with the body (or
    // the call's store): the connection, its descriptor and its hold go with it, so no
    // connection outlives the call that opened it, whatever the peer does.
    let mut driver = AbortOnDrop(driver);
    let task: ConnectionTask = Box::new(async move {
        match (&mut driver.0).await {
            Ok(result) => result.map_err(HttpError::from),
            // The connection task was cancelled with the runtime; nothing to report.
            Err(_) => Ok(()),
        }
    });
    Ok((response, task))
}

/// A spawned connection task, aborted when this is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A response body that fails with `ConnectionReadTimeout` when no bytes arrive for `idle`.
struct IdleTimeoutBody {
    incoming: hyper::body::Incoming,
    idle: Duration,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for IdleTimeoutBody {
    type Data = bytes::Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = tokio::time::Instant::now() + self.idle;
                self.timer.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(HttpError::from(error)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}
