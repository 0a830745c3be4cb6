//! The plugin runtime: loads components, checks them, swaps revisions atomically and calls
//! them under budgets with a fresh store and instance per call.
//!
//! Submodules: `engine` (wasmtime setup, epochs), `manifest` (what a file claims to be),
//! `cache` (precompiled artifacts), `revision` (one loaded version), `invoke` (one call),
//! `breaker` (failure isolation), `hotload` (the folder watcher), `builtin` (plugins compiled
//! into the binary), `loading` (loading, checking and installing revisions), `status` (what
//! `plugin list` shows).

pub mod breaker;
pub mod builtin;
pub mod cache;
mod channel_calls;
pub mod engine;
pub mod error;
mod health;
pub mod hotload;
mod invoke;
mod loading;
pub mod manifest;
pub mod revision;
pub mod status;
pub mod tool_groups;
pub mod tool_names;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::anyhow;
use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Semaphore, broadcast};
use wasmtime::Engine;
use wasmtime::component::Linker;

pub use self::breaker::{BreakerState, CircuitBreaker};
pub use self::channel_calls::{ChannelReceipt, SendFailure};
pub use self::error::{CallError, ErrorKind};
pub use self::health::{ConnectorHealth, HEALTH_TTL, HealthChange};
pub use self::manifest::{Manifest, PluginKind, embed_manifest, read_manifest};
pub use self::revision::{PluginSource, Revision};
pub use self::status::{PluginStatus, ToolInfo};

use self::cache::CompileCache;
use self::engine::EpochTicker;
use self::invoke::Operation;
use crate::capabilities::{
    ConnectorRouter, HostServices, PluginGrants, StateBackend, StateStore, StoreState,
};
use crate::config::{Budgets, Config};

/// What changed in the set of loaded plugins (MCP `list_changed` and the CLI listen to this).
#[derive(Debug, Clone)]
pub enum RuntimeEvent {
    Loaded { plugin: String, digest: String },
    Removed { plugin: String },
    Rejected { source: String, reason: String },
}

/// One plugin name and everything that survives its revisions.
pub struct PluginSlot {
    pub name: String,
    /// `name` as a shared span attribute value (a call span clones a reference).
    span_name: opentelemetry::StringValue,
    current: ArcSwap<Revision>,
    grants: Arc<PluginGrants>,
    budgets: Budgets,
    concurrency: Arc<Semaphore>,
    /// A channel's `receive` calls have slots of their own (as many again): a flood of
    /// webhooks, verified or not, cannot take the slots its replies need, nor the reverse.
    inbound_concurrency: Arc<Semaphore>,
    /// The plugin's log rate over all its calls (`budgets.max_log_bytes_per_minute`).
    log_rate: Arc<crate::capabilities::LogRate>,
    pub breaker: CircuitBreaker,
    last_error: Mutex<Option<String>>,
    revisions: AtomicU64,
    calls: AtomicU64,
    failures: AtomicU64,
}

impl PluginSlot {
    pub fn current(&self) -> Arc<Revision> {
        self.current.load_full()
    }
}

pub(crate) struct RuntimeInner {
    engine: Engine,
    linker: Linker<StoreState>,
    cache: CompileCache,
    config: Arc<Config>,
    services: Arc<HostServices>,
    plugins: RwLock<BTreeMap<String, Arc<PluginSlot>>>,
    /// Tool name -> plugin name.
    tools: RwLock<HashMap<String, String>>,
    /// Files that failed to load and never produced a revision, with the reason.
    rejected_files: Mutex<BTreeMap<PathBuf, String>>,
    events: broadcast::Sender<RuntimeEvent>,
    health: health::HealthCache,
    /// Calls, latencies, budgets hit, tokens (rendered on the gateway's `/metrics`).
    metrics: Arc<crate::telemetry::RuntimeMetrics>,
    /// Groups of tools an operator turns on and off at runtime.
    tool_groups: tool_groups::ToolGroups,
    /// Publisher keys component files are checked against (`runtime.trusted_keys`).
    trusted_keys: crate::signature::TrustedKeys,
    _ticker: EpochTicker,
}

/// The plugin runtime. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

impl Runtime {
    /// Build the engine and linker. Loads nothing yet: see `load_configured`.
    pub fn new(config: Arc<Config>) -> anyhow::Result<Self> {
        let engine = engine::build_engine()?;
        let mut linker = Linker::<StoreState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| crate::capabilities::bound_open_files(&mut linker))
            .map_err(|e| anyhow!("linking WASI: {e:#}"))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .and_then(|()| crate::capabilities::bound_request_setters(&mut linker))
            .map_err(|e| anyhow!("linking wasi:http: {e:#}"))?;
        crate::contract::Host_::add_to_linker::<StoreState, wasmtime::component::HasSelf<StoreState>>(
            &mut linker,
            |state| state,
        )
        .map_err(|e| anyhow!("linking databot capabilities: {e:#}"))?;
        crate::capabilities::validate_config(&config).map_err(anyhow::Error::msg)?;
        let data_dir = config.resolve_path(&config.runtime.data_dir);
        let cache = CompileCache::new(&engine, Some(data_dir.join("cache")));
        let services = Arc::new(HostServices {
            state: plugin_state(&config, &data_dir)?,
            sql: crate::capabilities::sql::SqlSources::from_config(&config)?,
            kafka: crate::capabilities::kafka::KafkaClusters::from_config(&config),
            data_dir: data_dir.clone(),
            vectors: Default::default(),
            connector_router: RwLock::new(None),
            outgoing: crate::capabilities::HostConnections::new(outgoing_connection_limit(&config)),
            jwks: Default::default(),
        });
        let (events, _) = broadcast::channel(256);
        let tool_groups = tool_groups::ToolGroups::new(
            &config.agent.tool_groups,
            Some(data_dir.join("tool_groups.json")),
        );
        let trusted_keys = crate::signature::TrustedKeys::parse(&config.runtime.trusted_keys)
            .map_err(|(name, e)| anyhow!("runtime.trusted_keys.{name}: {e}"))?;
        let ticker = EpochTicker::start(&engine);
        let inner = Arc::new(RuntimeInner {
            engine,
            linker,
            cache,
            config,
            services,
            plugins: RwLock::default(),
            tools: RwLock::default(),
            rejected_files: Mutex::default(),
            events,
            health: health::HealthCache::default(),
            metrics: Arc::default(),
            tool_groups,
            trusted_keys,
            _ticker: ticker,
        });
        let router: Arc<dyn ConnectorRouter> = Arc::new(RouterHandle(Arc::downgrade(&inner)));
        // The handle holds the runtime weakly, so services -> router -> runtime is no cycle.
        *inner.services.connector_router.write() = Some(router);
        Ok(Self { inner })
    }

    /// Outgoing connections all plugin calls together may hold.
    pub fn outgoing_connection_limit(&self) -> usize {
        self.inner.services.outgoing.limit()
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The runtime's metrics registry (plugin calls, latencies, budgets hit, tokens).
    pub fn metrics(&self) -> &Arc<crate::telemetry::RuntimeMetrics> {
        &self.inner.metrics
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.inner.events.subscribe()
    }

    pub fn plugin(&self, name: &str) -> Option<Arc<PluginSlot>> {
        self.inner.plugins.read().get(name).cloned()
    }

    /// The tool groups and their state.
    pub fn tool_groups(&self) -> &tool_groups::ToolGroups {
        &self.inner.tool_groups
    }

    /// The error for a tool that cannot be called: turned off by a tool group, or not there.
    pub fn unavailable_tool(&self, tool: &str) -> CallError {
        let owner = self.tool_plugin(tool).and_then(|plugin| {
            let slot = self.plugin(&plugin)?;
            let configured = self.is_configured(&slot, &slot.current());
            Some((plugin, configured))
        });
        let group = match &owner {
            Some((plugin, configured)) => self.inner.tool_groups.disabling_group(
                tool,
                tool_names::ToolOwner::Plugin {
                    name: plugin,
                    configured: *configured,
                },
            ),
            None => self
                .inner
                .tool_groups
                .disabling_group(tool, tool_names::ToolOwner::Host),
        };
        match group {
            Some(group) => CallError::new(
                ErrorKind::Denied,
                format!(
                    "tool `{tool}` is turned off: its tool group `{group}` is disabled (`databot tool enable {group}`)"
                ),
            ),
            None => no_such_tool(tool),
        }
    }

    /// Is `name` a loaded channel plugin built against the current contract?
    pub fn is_channel(&self, name: &str) -> bool {
        self.plugin(name)
            .is_some_and(|slot| matches!(slot.current().exports, revision::KindExports::Channel(_)))
    }

    /// The plugin that provides `tool`, if one does.
    pub fn tool_plugin(&self, tool: &str) -> Option<String> {
        self.inner.tools.read().get(tool).cloned()
    }

    /// `tool` resolved to the plugin slot that serves it, once: the caller can check who owns
    /// it (`plugin`, `configured`) and then call it (`call_resolved`) without a second lookup.
    pub fn resolve_tool(&self, tool: &str) -> Option<ResolvedTool> {
        let plugin = self.tool_plugin(tool)?;
        let slot = self.plugin(&plugin)?;
        let configured = self.is_configured(&slot, &slot.current());
        let owner = tool_names::ToolOwner::Plugin {
            name: &slot.name,
            configured,
        };
        if !self.inner.tool_groups.allows(tool, owner) {
            return None;
        }
        Some(ResolvedTool { slot, configured })
    }

    fn is_configured(&self, slot: &PluginSlot, revision: &Revision) -> bool {
        revision.source == PluginSource::Builtin
            || self.inner.config.plugins.contains_key(&slot.name)
    }

    /// Every tool currently callable, with its plugin and schema.
    pub fn tools(&self) -> Vec<ToolInfo> {
        let plugins = self.inner.plugins.read();
        let mut tools: Vec<ToolInfo> = plugins
            .values()
            .flat_map(|slot| {
                let revision = slot.current();
                if revision.manifest.kind != PluginKind::Tool {
                    return Vec::new();
                }
                let configured = self.is_configured(slot, &revision);
                let groups = &self.inner.tool_groups;
                revision
                    .operations
                    .iter()
                    .filter(|op| {
                        groups.allows(
                            &op.name,
                            tool_names::ToolOwner::Plugin {
                                name: &slot.name,
                                configured,
                            },
                        )
                    })
                    .map(|op| ToolInfo {
                        name: op.name.clone(),
                        plugin: slot.name.clone(),
                        configured,
                        description: op.description.clone(),
                        input_schema: serde_json::from_str(&op.input_schema).unwrap_or_default(),
                    })
                    .collect()
            })
            .collect();
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        tools
    }

    /// Call a tool by name with JSON arguments (validated against its schema first).
    pub async fn call_tool(&self, tool: &str, arguments: &str) -> Result<String, CallError> {
        let resolved = self
            .resolve_tool(tool)
            .ok_or_else(|| self.unavailable_tool(tool))?;
        let parsed = parse_arguments(tool, arguments)?;
        // The text that was validated is what the guest gets (no re-serialisation).
        self.call_checked(&resolved, tool, &parsed, arguments, None)
            .await
    }

    /// Call a resolved tool with arguments already parsed (the agent's and MCP's case): they
    /// are checked as they are and serialised once for the guest.
    pub async fn call_resolved(
        &self,
        resolved: &ResolvedTool,
        tool: &str,
        arguments: &serde_json::Value,
    ) -> Result<String, CallError> {
        self.call_resolved_as(resolved, tool, arguments, None).await
    }

    /// `call_resolved` on behalf of `caller`, whom the tool can ask about (`caller.current`).
    pub async fn call_resolved_as(
        &self,
        resolved: &ResolvedTool,
        tool: &str,
        arguments: &serde_json::Value,
        caller: Option<Arc<crate::capabilities::Caller>>,
    ) -> Result<String, CallError> {
        if !arguments.is_object() {
            return Err(CallError::new(
                ErrorKind::InvalidInput,
                format!("arguments of `{tool}` must be a JSON object, got {arguments}"),
            ));
        }
        let text = arguments.to_string();
        self.call_checked(resolved, tool, arguments, &text, caller)
            .await
    }

    /// Validate `parsed` against the tool's schema, then send `text` (its JSON) to the guest.
    async fn call_checked(
        &self,
        resolved: &ResolvedTool,
        tool: &str,
        parsed: &serde_json::Value,
        text: &str,
        caller: Option<Arc<crate::capabilities::Caller>>,
    ) -> Result<String, CallError> {
        let revision = resolved.slot.current();
        revision
            .validate_arguments(tool, parsed)
            .map_err(|m| CallError::new(ErrorKind::InvalidInput, m))?;
        let arguments = text.to_owned();
        invoke::call(
            &self.inner,
            &resolved.slot,
            revision,
            Operation::ToolCall {
                tool,
                arguments: &arguments,
                caller,
            },
            0,
            None,
        )
        .await
    }

    /// Run a connector operation (the CLI, the agent and `connectors.execute` use this).
    pub async fn execute_connector(
        &self,
        connector: &str,
        operation: &str,
        params: &str,
    ) -> Result<String, CallError> {
        execute_connector(&self.inner, connector, operation, params, 0, None).await
    }

    /// One chat completion from a provider plugin (`request` in the host's chat format). With
    /// `sink`, streamed events arrive there while the call runs.
    pub async fn provider_chat(
        &self,
        provider: &str,
        request: &str,
        sink: Option<crate::events::EventSink>,
    ) -> Result<String, CallError> {
        let (slot, revision) = self.provider_slot(provider)?;
        let request = request.to_owned();
        invoke::call(
            &self.inner,
            &slot,
            revision,
            Operation::ProviderChat {
                request: &request,
                sink,
            },
            0,
            None,
        )
        .await
    }

    /// The loaded provider plugin named `provider` and its current revision.
    fn provider_slot(&self, provider: &str) -> Result<(Arc<PluginSlot>, Arc<Revision>), CallError> {
        let slot = self.plugin(provider).ok_or_else(|| {
            CallError::new(
                ErrorKind::NotFound,
                format!("no provider named `{provider}` is loaded"),
            )
        })?;
        let revision = slot.current();
        if revision.manifest.kind != PluginKind::Provider {
            return Err(CallError::new(
                ErrorKind::InvalidInput,
                format!("plugin `{provider}` is not a provider"),
            ));
        }
        Ok((slot, revision))
    }

    /// Embeddings from a provider plugin: `request` is `{"model"?, "input": [texts]}`, the
    /// answer `{"model", "embeddings": [[f32]], "usage"?}`.
    pub async fn provider_embed(&self, provider: &str, request: &str) -> Result<String, CallError> {
        let (slot, revision) = self.provider_slot(provider)?;
        let request = request.to_owned();
        invoke::call(
            &self.inner,
            &slot,
            revision,
            Operation::ProviderEmbed { request: &request },
            0,
            None,
        )
        .await
    }

    /// Health of a connector plugin.
    pub async fn connector_health(
        &self,
        connector: &str,
    ) -> Result<crate::contract::Health, CallError> {
        let slot = connector_slot(&self.inner, connector)?;
        let revision = slot.current();
        invoke::health(&self.inner, &slot, revision).await
    }

    /// Status of every plugin and of every file that failed to load.
    pub fn status(&self) -> Vec<PluginStatus> {
        let mut out: Vec<PluginStatus> = self
            .inner
            .plugins
            .read()
            .values()
            .map(|slot| {
                let mut status = PluginStatus::of_slot(slot);
                status.mean_latency_ms = self.inner.metrics.mean_latency_ms(&slot.name);
                status
            })
            .collect();
        out.extend(
            self.inner
                .rejected_files
                .lock()
                .iter()
                .map(|(path, reason)| PluginStatus::rejected(path, reason)),
        );
        out
    }
}

/// A tool and the slot of the plugin serving it (`Runtime::resolve_tool`).
pub struct ResolvedTool {
    slot: Arc<PluginSlot>,
    /// A built-in or a plugin with a `plugins.NAME` section.
    pub configured: bool,
}

impl ResolvedTool {
    pub fn plugin(&self) -> &str {
        &self.slot.name
    }
}

/// The error of a call to a tool no loaded plugin provides.
pub(crate) fn no_such_tool(tool: &str) -> CallError {
    CallError::new(
        ErrorKind::NotFound,
        format!("no loaded plugin provides a tool named `{tool}`"),
    )
}

fn parse_arguments(tool: &str, arguments: &str) -> Result<serde_json::Value, CallError> {
    let value: serde_json::Value = serde_json::from_str(arguments).map_err(|e| {
        CallError::new(
            ErrorKind::InvalidInput,
            format!("arguments of `{tool}` are not valid JSON: {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(CallError::new(
            ErrorKind::InvalidInput,
            format!("arguments of `{tool}` must be a JSON object, got {value}"),
        ));
    }
    Ok(value)
}

fn connector_slot(inner: &RuntimeInner, connector: &str) -> Result<Arc<PluginSlot>, CallError> {
    let slot = inner
        .plugins
        .read()
        .get(connector)
        .cloned()
        .ok_or_else(|| {
            CallError::new(
                ErrorKind::NotFound,
                format!("no connector named `{connector}` is loaded"),
            )
        })?;
    if slot.current().manifest.kind != PluginKind::Connector {
        return Err(CallError::new(
            ErrorKind::InvalidInput,
            format!("plugin `{connector}` is not a connector"),
        ));
    }
    Ok(slot)
}

async fn execute_connector(
    inner: &Arc<RuntimeInner>,
    connector: &str,
    operation: &str,
    params: &str,
    depth: u8,
    parent: Option<&opentelemetry::Context>,
) -> Result<String, CallError> {
    let slot = connector_slot(inner, connector)?;
    let revision = slot.current();
    if revision.operation(operation).is_none() {
        return Err(CallError::new(
            ErrorKind::NotFound,
            format!(
                "connector `{connector}` has no operation `{operation}`; it offers: {}",
                revision
                    .operations
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let value = parse_arguments(operation, params)?;
    revision
        .validate_arguments(operation, &value)
        .map_err(|m| CallError::new(ErrorKind::InvalidInput, m))?;
    let params = params.to_owned();
    invoke::call(
        inner,
        &slot,
        revision,
        Operation::ConnectorExecute {
            operation,
            params: &params,
        },
        depth,
        parent,
    )
    .await
}

/// `connectors.execute` from inside a plugin.
struct RouterHandle(std::sync::Weak<RuntimeInner>);

#[async_trait::async_trait]
impl ConnectorRouter for RouterHandle {
    async fn execute(
        &self,
        connector: &str,
        operation: &str,
        params: &str,
        depth: u8,
        trace: &opentelemetry::Context,
    ) -> Result<String, crate::contract::GuestError> {
        let inner = self.0.upgrade().ok_or_else(|| {
            crate::contract::GuestError::Unavailable("the runtime is shutting down".into())
        })?;
        execute_connector(&inner, connector, operation, params, depth, Some(trace))
            .await
            .map_err(Into::into)
    }
}

/// Does this path look like a plugin component?
pub fn is_plugin_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "wasm") && path.is_file()
}

/// Plugins' state: files in the data dir; in the shared PostgreSQL session store when several
/// replicas run (the Kafka bus), so every replica's instance of a plugin sees the same state.
fn plugin_state(config: &Config, data_dir: &std::path::Path) -> anyhow::Result<StateBackend> {
    if config.bus.kind == crate::config::BusKind::Kafka {
        let store = crate::capabilities::SharedStateStore::connect_lazy(&config.sessions_url())
            .map_err(|e| anyhow!("the shared plugin state store: {e}"))?;
        return Ok(StateBackend::Shared(store));
    }
    Ok(StateBackend::Files(StateStore::new(Some(
        data_dir.join("state"),
    ))))
}

/// Outgoing connections all calls may hold: the configured number, lowered to the share of
/// open files the process plan gives them.
fn outgoing_connection_limit(config: &Config) -> usize {
    let plan = crate::process_limits::descriptor_plan();
    match config.runtime.max_outgoing_connections {
        None => plan.outgoing,
        Some(configured) if configured > plan.outgoing => {
            tracing::warn!(
                configured,
                limit = plan.outgoing,
                open_files = plan.open_files,
                "runtime.max_outgoing_connections lowered to what the open-file limit allows"
            );
            plan.outgoing
        }
        Some(configured) => configured.max(1),
    }
}
