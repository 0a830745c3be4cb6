//! Host capabilities: what a plugin can import, each checked against the operator's grants.
//!
//! Owns the per-call store state (`StoreState`), the grants derived from config
//! (`PluginGrants`) and the implementations of every `databot:plugin` import. The runtime
//! creates one `StoreState` per call; nothing here outlives a call except `HostServices`.

mod connectors;
mod egress;
mod grants;
pub mod host_http;
pub mod host_memory;
mod http_bounds;
pub mod kafka;
mod limits;
mod logging;
mod open_files;
mod plugin_config;
pub mod provider_stream;
pub mod service_account;
mod shared_state;
mod shell;
pub mod sql;
mod state;
mod vectors;
pub mod verify;

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub use egress::{EgressPolicy, HostConnections, is_public_ip};
pub use grants::PluginGrants;
pub use http_bounds::bound_request_setters;
pub use logging::{LogBudget, LogRate};
pub use open_files::bound_open_files;
pub use shared_state::SharedStateStore;
pub use state::{StateBackend, StateStore};
pub use verify::{InboundCheck, JwksCache, VerifyKeys};

use crate::contract::GuestError;

/// Check the parts of a configuration the capabilities own and `config` cannot (it sits
/// below them): the SQL policy's function additions and every shell allowlist. The runtime
/// runs this at start, `databot config check` with the rest; the error names the key.
pub fn validate_config(config: &crate::config::Config) -> Result<(), String> {
    sql::SqlPolicy::from_config(&config.data.sql_policy)?;
    for (name, plugin) in &config.plugins {
        if let Some(shell) = &plugin.permissions.shell {
            for entry in &shell.allow {
                if let Some(problem) = shell::entry_problem(entry) {
                    return Err(format!("plugins.{name}.permissions.shell.allow: {problem}"));
                }
            }
        }
    }
    Ok(())
}

/// Most random bytes one `get-random-bytes` call returns (wasi's default is 64 MiB, allocated
/// in the host whatever the call's budget).
const MAX_RANDOM_BYTES: u64 = 1024 * 1024;
/// Bytes of guest stderr kept per call (panic messages end up here).
const STDERR_CAPTURE_BYTES: usize = 16 * 1024;
/// Largest header map a plugin may build, as wasi-http counts it (names, values and about 70
/// bytes an entry). In memory a map of tiny entries takes up to about 3.5 times that, still
/// within `host_memory::HOST_OBJECT_BYTES`, as does an outgoing body
/// (`egress::OUTGOING_BODY_CHUNKS`) and a request (`http_bounds`).
pub const MAX_HEADER_BYTES: usize = 12 * 1024;

/// Host-wide services shared by every call.
pub struct HostServices {
    pub state: StateBackend,
    /// SQL sources of `data.sql`.
    pub sql: sql::SqlSources,
    /// Kafka clusters of `data.kafka`.
    pub kafka: kafka::KafkaClusters,
    /// The host's data folder (default working folder of the `shell` capability).
    pub data_dir: std::path::PathBuf,
    /// The plugins' open `vectors` collections (closed with the runtime).
    pub vectors: crate::vectors::plugin::PluginCollections,
    /// Lets `connectors.execute` call back into the runtime without a reference cycle.
    pub connector_router: parking_lot::RwLock<Option<Arc<dyn ConnectorRouter>>>,
    /// Outgoing connections all plugin calls may hold at once (`runtime.max_outgoing_connections`).
    pub outgoing: egress::HostConnections,
    /// Key sets channels verify JWTs with (`verify.jwt`), fetched once and shared.
    pub jwks: Arc<JwksCache>,
}

/// Runs a connector operation on behalf of a plugin (implemented by the runtime).
#[async_trait::async_trait]
pub trait ConnectorRouter: Send + Sync {
    async fn execute(
        &self,
        connector: &str,
        operation: &str,
        params: &str,
        depth: u8,
        trace: &opentelemetry::Context,
    ) -> Result<String, GuestError>;
}

/// Everything one call into a plugin can reach.
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    egress: EgressPolicy,
    /// The call's memory budget: linear memory and what the host holds for it.
    pub(crate) memory: host_memory::CallMemory,
    pub(crate) grants: Arc<PluginGrants>,
    pub(crate) services: Arc<HostServices>,
    stderr: MemoryOutputPipe,
    /// Nesting of plugin-to-plugin calls (tool -> connector), bounded.
    pub(crate) depth: u8,
    /// Events a provider streams; `None` when nobody listens.
    pub(crate) sink: Option<crate::events::EventSink>,
    /// A host-side limit the call broke in a host function (it then trapped): the error the
    /// call ends with.
    pub(crate) output_breach: Option<String>,
    /// What this call may still write to the host's log.
    pub(crate) log: logging::LogBudget,
    /// Files the call may hold open besides its preopened folders.
    max_open_files: usize,
    /// The OS files the call opened (`open_files`): alive while anything holds them.
    opened_files: Vec<std::sync::Weak<std::fs::File>>,
    /// The first limit a capability other than egress refused the call (egress keeps its own).
    breach: Option<BudgetBreach>,
    /// The request a channel's `receive` is verifying (`verify`).
    inbound: Option<InboundCheck>,
    /// Who the call acts for (`caller`).
    caller: Option<Arc<Caller>>,
}

/// Who a call acts for: the `caller` capability's identity.
pub type Caller = crate::contract::databot::plugin::caller::Identity;

impl crate::contract::databot::plugin::caller::Host for StoreState {
    async fn current(&mut self) -> wasmtime::Result<Option<Caller>> {
        Ok(self.caller.as_deref().cloned())
    }
}

/// The limits of one call, from its plugin's budgets.
pub struct CallLimits {
    pub memory_bytes: usize,
    pub max_connections: usize,
    pub max_open_files: usize,
    pub log: logging::LogBudget,
}

/// A host-side limit a call broke while the guest went on (it was told through an error
/// code): the call ends with it whatever the guest returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetBreach {
    /// The call had `plugins.NAME.budgets.max_connections` connections open.
    CallConnections(String),
    /// Another connection would have passed the call's memory budget.
    ConnectionMemory(String),
    /// The call had `plugins.NAME.budgets.max_open_files` files open.
    OpenFiles(String),
}

impl BudgetBreach {
    /// What happened, naming the limit and its config key.
    pub fn reason(&self) -> &str {
        match self {
            Self::CallConnections(reason)
            | Self::ConnectionMemory(reason)
            | Self::OpenFiles(reason) => reason,
        }
    }
}

impl StoreState {
    pub fn new(
        grants: Arc<PluginGrants>,
        services: Arc<HostServices>,
        limits: CallLimits,
        depth: u8,
    ) -> anyhow::Result<Self> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE_BYTES);
        let mut builder = wasmtime_wasi::WasiCtxBuilder::new();
        // No environment, no arguments, no sockets: egress goes through wasi:http only.
        builder
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .max_random_size(MAX_RANDOM_BYTES);
        grants.preopen(&mut builder)?;
        let mut table = ResourceTable::new();
        let connections =
            host_memory::OpenConnections::new(limits.memory_bytes, limits.max_connections);
        // Listing the preopened folders creates one object each in a single host call.
        let memory = host_memory::CallMemory::new(
            limits.memory_bytes,
            grants.preopens.len(),
            connections.clone(),
            &mut table,
        );
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(MAX_HEADER_BYTES);
        let egress = EgressPolicy::new(grants.clone(), connections, services.outgoing.clone());
        Ok(Self {
            wasi: builder.build(),
            table,
            http,
            egress,
            memory,
            grants,
            services,
            stderr,
            depth,
            sink: None,
            output_breach: None,
            log: limits.log,
            max_open_files: limits.max_open_files,
            opened_files: Vec::new(),
            breach: None,
            inbound: None,
            caller: None,
        })
    }

    /// The call acts for `caller` (a tool call of a turn).
    pub fn set_caller(&mut self, caller: Arc<Caller>) {
        self.caller = Some(caller);
    }

    /// The first host-side limit the call broke while the guest went on, if any.
    pub fn budget_breach(&self) -> Option<BudgetBreach> {
        self.egress.breach().or_else(|| self.breach.clone())
    }

    /// Keep the first limit the call broke.
    fn record_breach(&mut self, breach: BudgetBreach) {
        self.breach.get_or_insert(breach);
    }

    /// End every outgoing body the call left open (neither finished nor dropped) as failed,
    /// before the store goes: dropped with the store, the body would look finished and the
    /// server would get a complete request the plugin never completed.
    pub fn abort_unfinished_bodies(&mut self) {
        use wasmtime_wasi_http::p2::body::{HostOutgoingBody, StreamContext};
        for entry in self.table.iter_mut() {
            if let Some(body) = entry.downcast_mut::<HostOutgoingBody>() {
                let (placeholder, _) = HostOutgoingBody::new(StreamContext::Request, None, 1, 1);
                std::mem::replace(body, placeholder).abort();
            }
        }
    }

    /// What the guest wrote to stderr (a panic message, usually), trimmed.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents())
            .trim()
            .to_owned()
    }

    /// Egress refusals during this call, with the config line that would allow each.
    pub fn egress_denials(&self) -> Vec<String> {
        self.egress.denials()
    }

    /// Stream the call's events into `sink`; what its queue may hold is charged to the call's
    /// memory budget from the start.
    pub fn set_sink(&mut self, sink: crate::events::EventSink) {
        self.memory.hold(provider_stream::HELD_BYTES);
        self.sink = Some(sink);
    }

    /// The trace context of the call this store serves (see `telemetry::CallSpan`). It lives
    /// in the egress policy, which wasi:http hands only itself; the other capabilities read it
    /// through `trace`.
    pub fn set_trace_context(&mut self, trace: crate::telemetry::CallTrace) {
        self.egress.trace = trace;
    }

    /// The trace context of the call this store serves (empty with export off): the parent of
    /// the spans the host makes on the plugin's behalf and of nested calls.
    pub(crate) fn trace(&self) -> &crate::telemetry::CallTrace {
        &self.egress.trace
    }
}

// Every WASI and wasi:http host call gets its context through these two: the point where the
// call's table is given the slots it may need next (`host_memory`).
impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.memory.before_host_call(&mut self.table);
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        self.memory.before_host_call(&mut self.table);
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.egress,
        }
    }
}

impl crate::contract::databot::plugin::types::Host for StoreState {}

impl StoreState {
    /// `Ok` when `name` is among the `granted` names of `capability` (`sql`, `kafka`,
    /// `connectors`, `vectors`), else the denial naming the config line that grants it.
    pub(crate) fn check_named_grant(
        &self,
        granted: &[String],
        capability: &str,
        name: &str,
    ) -> Result<(), GuestError> {
        if granted.iter().any(|g| g == name) {
            return Ok(());
        }
        let plugin = &self.grants.plugin;
        Err(denied(
            plugin,
            &format!("use {capability} `{name}`"),
            &format!("plugins.{plugin}.permissions.{capability}: [\"{name}\"]"),
        ))
    }
}

/// The error a plugin gets for a capability it was not granted.
pub(crate) fn denied(plugin: &str, what: &str, grant: &str) -> GuestError {
    GuestError::Denied(format!(
        "plugin `{plugin}` may not {what}; the operator can grant it with `{grant}` in the databot config"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn validated(yaml: &str) -> Result<(), String> {
        let config = Config::parse(yaml, "test.yaml", |_| None).map_err(|e| e.to_string())?;
        validate_config(&config)
    }

    #[test]
    fn program_runners_in_the_shell_allowlist_are_refused_with_the_key() {
        for program in ["bash", "env", "python3", "xargs"] {
            let error = validated(&format!(
                "plugins:\n  a:\n    permissions:\n      shell: {{allow: [git, {program}]}}\n"
            ))
            .unwrap_err();
            assert!(
                error.contains("plugins.a.permissions.shell.allow") && error.contains(program),
                "{error}"
            );
        }
        assert!(
            validated("plugins:\n  a:\n    permissions:\n      shell: {allow: [git, ls]}\n")
                .is_ok()
        );
    }

    #[test]
    fn sql_function_additions_are_checked_with_their_key() {
        let error = validated(
            "data:\n  sql_policy:\n    allow_functions:\n      postgres: [similarity, pg_read_file]\n",
        )
        .unwrap_err();
        assert!(
            error.contains("data.sql_policy.allow_functions.postgres[1]"),
            "{error}"
        );
        assert!(
            validated("data:\n  sql_policy:\n    allow_functions:\n      postgres: [similarity]\n")
                .is_ok()
        );
    }
}
