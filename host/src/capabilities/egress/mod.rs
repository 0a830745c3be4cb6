//! Outgoing HTTP policy (`wasi:http` hook): allowlist by host and port, non-public addresses
//! (`addresses`: the IANA special-purpose registries) refused after DNS resolution unless
//! granted, credentials injected only for their origin (scheme, host and port), and the
//! connection made to the vetted addresses only (`pinned`).

mod addresses;
mod pinned;
mod redact;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use parking_lot::Mutex;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::host_memory::{ConnectionRefusal, OpenConnections};
use super::{BudgetBreach, PluginGrants};
use crate::config::Scheme;

pub use addresses::{is_public_ip, special_purpose_block};
pub(crate) use pinned::tls_config;

type SendFuture = Box<
    dyn Future<Output = Result<(http::Response<WasiBody>, pinned::ConnectionTask), HttpError>>
        + Send,
>;

/// The outgoing connections every plugin call together may hold (a file descriptor each):
/// `runtime.max_outgoing_connections`, or a share of the open-file limit.
#[derive(Clone)]
pub struct HostConnections {
    permits: Arc<tokio::sync::Semaphore>,
    limit: usize,
}

impl HostConnections {
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Connections open now, across all calls.
    pub fn open(&self) -> usize {
        self.limit - self.permits.available_permits()
    }
}

/// What keeps one outgoing connection counted: against its call (memory and
/// `max_connections`) and against the host. Held by the connection's task until it ends.
pub(super) struct ConnectionHold {
    _call: super::host_memory::ConnectionCharge,
    _host: tokio::sync::OwnedSemaphorePermit,
}

/// The egress hook of one call.
pub struct EgressPolicy {
    grants: Arc<PluginGrants>,
    denials: Arc<Mutex<Vec<String>>>,
    connections: Arc<OpenConnections>,
    host_connections: HostConnections,
    /// The first connection limit the call ran into.
    breach: Option<BudgetBreach>,
    /// The trace context of the call (parent of the request spans).
    pub(crate) trace: crate::telemetry::CallTrace,
}

impl EgressPolicy {
    pub fn new(
        grants: Arc<PluginGrants>,
        connections: Arc<OpenConnections>,
        host_connections: HostConnections,
    ) -> Self {
        Self {
            grants,
            denials: Arc::default(),
            connections,
            host_connections,
            breach: None,
            trace: crate::telemetry::CallTrace::default(),
        }
    }

    pub fn denials(&self) -> Vec<String> {
        self.denials.lock().clone()
    }

    pub(super) fn breach(&self) -> Option<BudgetBreach> {
        self.breach.clone()
    }

    /// Count one more connection against the call and the host. A refusal is recorded (the
    /// call's breach, or a denial for the host's shared limit) and reaches the guest as
    /// `connection-limit-reached`.
    fn admit_connection(&mut self) -> Result<ConnectionHold, HttpError> {
        let refused = match self.hold_connection() {
            Ok(hold) => return Ok(hold),
            Err(refused) => refused,
        };
        let reason = match &refused {
            Refused::Budget(breach) => breach.reason().to_owned(),
            Refused::HostFull(reason) => reason.clone(),
        };
        tracing::warn!(plugin = %self.grants.plugin, "outgoing connection refused: {reason}");
        match refused {
            Refused::Budget(breach) => {
                self.breach.get_or_insert(breach);
            }
            Refused::HostFull(reason) => {
                let mut denials = self.denials.lock();
                if !denials.contains(&reason) {
                    denials.push(reason);
                }
            }
        }
        Err(HttpError::ConnectionLimitReached)
    }

    /// Count one more connection against the call and the host, or say which limit refused.
    fn hold_connection(&self) -> Result<ConnectionHold, Refused> {
        let plugin = &self.grants.plugin;
        let call = self.connections.open().map_err(|refusal| {
            Refused::Budget(match refusal {
                ConnectionRefusal::PerCall { open } => BudgetBreach::CallConnections(format!(
                    "plugin `{plugin}` had {open} outgoing connections open, its limit (plugins.{plugin}.budgets.max_connections)"
                )),
                ConnectionRefusal::Memory { reserved, open } => {
                    BudgetBreach::ConnectionMemory(format!(
                        "plugin `{plugin}` held {} MiB of memory and {open} open connections; another connection would pass its memory budget (plugins.{plugin}.budgets.memory_mb)",
                        reserved / (1024 * 1024)
                    ))
                }
            })
        })?;
        let host = self
            .host_connections
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                Refused::HostFull(format!(
                    "all {} outgoing connections the host allows are in use (runtime.max_outgoing_connections)",
                    self.host_connections.limit
                ))
            })?;
        Ok(ConnectionHold {
            _call: call,
            _host: host,
        })
    }
}

/// Why a connection was not opened.
enum Refused {
    /// The call's own limit: the call ends with it.
    Budget(BudgetBreach),
    /// The host's shared limit: not this plugin's doing, so the guest decides what it means
    /// (the reason is added to the call's error if it fails).
    HostFull(String),
}

/// What the host buffers of one outgoing body: `OUTGOING_BODY_CHUNKS + 1` writes of at most
/// `OUTGOING_BODY_CHUNK_BYTES` (64 KiB in all, where wasi-http's defaults hold 2 MiB).
pub const OUTGOING_BODY_CHUNKS: usize = 1;
pub const OUTGOING_BODY_CHUNK_BYTES: usize = 32 * 1024;

impl WasiHttpHooks for EgressPolicy {
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        OUTGOING_BODY_CHUNKS
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        OUTGOING_BODY_CHUNK_BYTES
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let grants = self.grants.clone();
        let denials = self.denials.clone();
        let uri = request.uri().clone();
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        // The scheme credentials are matched against: only http and https ever match.
        let scheme = uri.scheme_str().and_then(Scheme::from_name);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let deny = {
            let host = host.clone();
            move |reason: String| {
                tracing::warn!(plugin = %grants.plugin, %host, port, "egress denied: {reason}");
                denials.lock().push(reason);
                HttpError::HttpRequestDenied
            }
        };
        // The allowlist first, then the connection limits: a request the policy refuses never
        // takes one of the call's connections.
        let admitted = if self
            .grants
            .http_allow
            .iter()
            .any(|p| p.matches(&host, port))
        {
            self.admit_connection()
        } else {
            let plugin = &self.grants.plugin;
            Err(deny(format!(
                "egress to `{host}:{port}` is not allowed; add `\"{host}\"` to `plugins.{plugin}.permissions.http.allow`"
            )))
        };
        let grants = self.grants.clone();
        let span = crate::telemetry::child_span(
            egress_span(&grants.plugin, request.method().as_str(), request.uri()),
            &self.trace,
        );
        let traced = span.clone();
        let work = async move {
            let hold = admitted?;
            let plugin = &grants.plugin;
            let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => match tokio::net::lookup_host((host.as_str(), port)).await {
                    Ok(found) => found.collect(),
                    Err(_) => {
                        return Err(HttpError::DnsError {
                            rcode: Some("lookup failed".into()),
                            info_code: None,
                        });
                    }
                },
            };
            if !grants.may_reach_private(&host, port)
                && let Some(inside) = addresses.iter().find(|a| !is_public_ip(a.ip()))
            {
                let block = special_purpose_block(inside.ip())
                    .map(|name| format!(" ({name})"))
                    .unwrap_or_default();
                return Err(deny(format!(
                    "egress to `{host}:{port}` resolves to the non-public address {}{block}; set `plugins.{plugin}.permissions.http.allow_private: true` to allow it",
                    inside.ip()
                )));
            }
            // What the host injects, masked out of the response again (`redact`).
            let mut injected = redact::Secrets::default();
            for secret in grants
                .secrets
                .iter()
                .filter(|s| s.origin.matches(scheme, &host, port))
            {
                injected.add(secret.value.as_bytes());
                request
                    .headers_mut()
                    .insert(secret.header.clone(), secret.value.clone());
            }
            if let Some(injection) = grants
                .tokens
                .iter()
                .find(|t| t.origin.matches(scheme, &host, port))
            {
                match injection.tokens.authorization().await {
                    Ok(value) => {
                        injected.add(value.as_bytes());
                        request
                            .headers_mut()
                            .insert(http::header::AUTHORIZATION, value);
                    }
                    Err(error) => {
                        return Err(deny(format!(
                            "the host could not get an access token for `{host}`: {error:#}"
                        )));
                    }
                }
            }
            if let Some(injection) = grants
                .path_prefixes
                .iter()
                .find(|p| p.origin.matches(scheme, &host, port))
            {
                injected.add(injection.prefix.as_bytes());
                *request.uri_mut() = with_path_prefix(request.uri(), &injection.prefix)?;
            }
            injected.prepare(request.headers_mut());
            let (response, task) =
                pinned::send(request, options, &addresses, &host, https, hold).await?;
            injected.check_plain(&response).map_err(&deny)?;
            Ok((injected.redact(response), task))
        };
        Box::new(async move {
            let result = tracing::Instrument::instrument(work, traced.clone()).await;
            match &result {
                Ok((response, _)) => {
                    traced.record(
                        "http.response.status_code",
                        i64::from(response.status().as_u16()),
                    );
                    if response.status().is_server_error() {
                        traced.record("otel.status_code", "ERROR");
                    }
                }
                Err(error) => {
                    let debug = format!("{error:?}");
                    let kind = debug.split(['(', ' ', '{']).next().unwrap_or_default();
                    crate::telemetry::spans::record_error(&traced, kind);
                }
            }
            result
        })
    }
}

/// `uri` with `prefix` put before its path (the query is kept). The prefix was checked at
/// load (`config::check_path_prefix`), so the result is a valid URI unless the guest's own
/// path is not; the error never shows the prefix (it is a credential).
fn with_path_prefix(uri: &http::Uri, prefix: &str) -> Result<http::Uri, HttpError> {
    let rest = uri.path_and_query().map_or("/", |p| p.as_str());
    let rest = if rest.starts_with('/') {
        rest.to_owned()
    } else {
        format!("/{rest}")
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        format!("{prefix}{rest}")
            .parse()
            .map_err(|_| HttpError::HttpRequestUriInvalid)?,
    );
    http::Uri::from_parts(parts).map_err(|_| HttpError::HttpRequestUriInvalid)
}

/// The client span of one outgoing HTTP request (OpenTelemetry HTTP conventions; the URL's
/// path and query are left out, they may carry secrets).
fn egress_span(plugin: &str, method: &str, uri: &http::Uri) -> tracing::Span {
    use tracing::field::Empty;
    let host = uri.host().unwrap_or_default();
    tracing::info_span!(
        "http.client",
        otel.name = method,
        otel.kind = "client",
        http.request.method = method,
        server.address = host,
        server.port = uri.port_u16().map(i64::from),
        url.scheme = uri.scheme_str(),
        databot.plugin.name = plugin,
        http.response.status_code = Empty,
        otel.status_code = Empty,
        error.type = Empty,
    )
}
