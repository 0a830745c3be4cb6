//! The plugin runtime: loads components, checks them, swaps revisions atomically and calls
//! them under budgets with a fresh store and instance per call.
//!
//! Submodules: `engine` (wasmtime setup, epochs), `manifest` (what a file claims to be),
//! `cache` (precompiled artifacts), `revision` (one loaded version), `invoke` (one call),
//! `breaker` (failure isolation), `hotload` (the folder watcher), `builtin` (plugins compiled
//! into the binary), `status` (what `plugin list` shows).

pub mod bindings;
pub mod breaker;
pub mod builtin;
pub mod cache;
pub mod engine;
pub mod error;
mod health;
pub mod hotload;
mod invoke;
pub mod manifest;
pub mod revision;
pub mod status;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, anyhow};
use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Semaphore, broadcast};
use wasmtime::Engine;
use wasmtime::component::Linker;

pub use self::breaker::{BreakerState, CircuitBreaker};
pub use self::error::{CallError, ErrorKind};
pub use self::health::{ConnectorHealth, HEALTH_TTL};
pub use self::manifest::{Manifest, PluginKind, read_manifest};
pub use self::revision::{PluginSource, Revision};
pub use self::status::{PluginStatus, ToolInfo};

use self::cache::{CompileCache, sha256_hex};
use self::engine::EpochTicker;
use self::invoke::Operation;
use crate::capabilities::{ConnectorRouter, HostServices, PluginGrants, StateStore, StoreState};
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
        bindings::Host_::add_to_linker::<StoreState, wasmtime::component::HasSelf<StoreState>>(
            &mut linker,
            |state| state,
        )
        .map_err(|e| anyhow!("linking databot capabilities: {e:#}"))?;
        crate::capabilities::validate_config(&config).map_err(anyhow::Error::msg)?;
        let data_dir = config.resolve_path(&config.runtime.data_dir);
        let cache = CompileCache::new(&engine, Some(data_dir.join("cache")));
        let services = Arc::new(HostServices {
            state: StateStore::new(Some(data_dir.join("state"))),
            sql: crate::capabilities::sql::SqlSources::from_config(&config)?,
            kafka: crate::capabilities::kafka::KafkaClusters::from_config(&config),
            data_dir: data_dir.clone(),
            vectors: Default::default(),
            connector_router: RwLock::new(None),
            outgoing: crate::capabilities::HostConnections::new(outgoing_connection_limit(&config)),
        });
        let (events, _) = broadcast::channel(256);
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

    /// Load everything the configuration names: built-in plugins, files named in
    /// `plugins.NAME.path`, then every `.wasm` in the plugins folder, concurrently. Failures are
    /// logged and shown in status; they do not stop the others.
    pub async fn load_configured(&self) -> anyhow::Result<()> {
        let config = self.inner.config.clone();
        if config.runtime.builtin_plugins {
            for builtin in builtin::BUILTIN_PLUGINS {
                let configured = config.plugins.contains_key(builtin.name);
                if !(builtin.on_by_default || configured) || !config.plugin(builtin.name).enabled {
                    continue;
                }
                if let Err(error) = self
                    .load_instance(builtin.bytes.to_vec(), PluginSource::Builtin, None)
                    .await
                {
                    tracing::error!(
                        plugin = builtin.name,
                        "built-in plugin failed to load: {error:#}"
                    );
                }
            }
        }
        for (instance, section) in &config.plugins {
            let Some(component) = section.builtin.as_deref().filter(|_| section.enabled) else {
                continue;
            };
            let Some(bytes) = builtin::builtin_bytes(component) else {
                tracing::error!(
                    plugin = %instance,
                    "plugins.{instance}.builtin: there is no built-in plugin `{component}`"
                );
                continue;
            };
            if let Err(error) = self
                .load_instance(bytes.to_vec(), PluginSource::Builtin, Some(instance))
                .await
            {
                tracing::error!(plugin = %instance, "instance of built-in `{component}` failed to load: {error:#}");
            }
        }
        let mut files: Vec<PathBuf> = config
            .plugins
            .values()
            .filter(|p| p.enabled)
            .filter_map(|p| p.path.as_deref().map(|path| config.resolve_path(path)))
            .collect();
        files.extend(self.plugin_files_in_folder()?);
        let loads = files.into_iter().map(|path| {
            let runtime = self.clone();
            tokio::spawn(async move { runtime.load_file(&path).await })
        });
        for load in loads.collect::<Vec<_>>() {
            // Errors were recorded by `load_file`; a panicked task is a bug worth surfacing.
            if let Err(join_error) = load.await {
                tracing::error!("plugin load task failed: {join_error}");
            }
        }
        Ok(())
    }

    /// The watched plugins folder.
    pub fn plugins_dir(&self) -> PathBuf {
        self.inner
            .config
            .resolve_path(&self.inner.config.runtime.plugins_dir)
    }

    fn plugin_files_in_folder(&self) -> anyhow::Result<Vec<PathBuf>> {
        let folder = self.plugins_dir();
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", folder.display())),
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| is_plugin_file(p))
            .collect();
        files.sort();
        Ok(files)
    }

    /// Load (or reload) a component file. On failure the previous revision keeps serving and
    /// the reason is kept for `plugin list`.
    pub async fn load_file(&self, path: &Path) -> anyhow::Result<Arc<Revision>> {
        let result = match tokio::fs::read(path).await {
            Ok(bytes) => {
                self.load_bytes(bytes, PluginSource::File(path.to_owned()))
                    .await
            }
            Err(e) => Err(anyhow!("cannot read: {e}")),
        };
        match &result {
            Ok(_) => {
                self.inner.rejected_files.lock().remove(path);
            }
            Err(error) => {
                let reason = format!("{error:#}");
                tracing::error!(path = %path.display(), "plugin refused: {reason}");
                let owner = self.plugin_of_file(path);
                match owner {
                    Some(slot) => *slot.last_error.lock() = Some(reason.clone()),
                    None => {
                        self.inner
                            .rejected_files
                            .lock()
                            .insert(path.to_owned(), reason.clone());
                    }
                }
                let _ = self.inner.events.send(RuntimeEvent::Rejected {
                    source: path.display().to_string(),
                    reason,
                });
            }
        }
        result
    }

    fn plugin_of_file(&self, path: &Path) -> Option<Arc<PluginSlot>> {
        self.inner
            .plugins
            .read()
            .values()
            .find(|slot| slot.current().source == PluginSource::File(path.to_owned()))
            .cloned()
    }

    /// A file disappeared from the plugins folder: unload the plugin it provided.
    pub fn unload_file(&self, path: &Path) {
        self.inner.rejected_files.lock().remove(path);
        if let Some(slot) = self.plugin_of_file(path) {
            self.unload(&slot.name);
        }
    }

    /// Unload a plugin by name. Calls in flight finish on the revision they hold.
    pub fn unload(&self, name: &str) -> bool {
        let removed = self.inner.plugins.write().remove(name);
        if removed.is_some() {
            self.inner.tools.write().retain(|_, plugin| plugin != name);
            tracing::info!(plugin = name, "plugin unloaded");
            let _ = self.inner.events.send(RuntimeEvent::Removed {
                plugin: name.to_owned(),
            });
        }
        removed.is_some()
    }

    /// Check, compile, link and describe a component, then swap it in.
    pub async fn load_bytes(
        &self,
        bytes: Vec<u8>,
        source: PluginSource,
    ) -> anyhow::Result<Arc<Revision>> {
        self.load_instance(bytes, source, None).await
    }

    /// As `load_bytes`, under the name `instance` instead of the manifest's when given.
    pub async fn load_instance(
        &self,
        bytes: Vec<u8>,
        source: PluginSource,
        instance: Option<&str>,
    ) -> anyhow::Result<Arc<Revision>> {
        use tracing::field::Empty;
        let span = tracing::info_span!(
            "plugin.load",
            databot.plugin.source = %source,
            databot.plugin.name = Empty,
            databot.plugin.kind = Empty,
            databot.plugin.digest = Empty,
            otel.status_code = Empty,
            error.type = Empty,
        );
        let result = tracing::Instrument::instrument(
            self.load_instance_untraced(bytes, source, instance),
            span.clone(),
        )
        .await;
        if result.is_err() {
            crate::telemetry::spans::record_error(&span, "refused");
        }
        result
    }

    async fn load_instance_untraced(
        &self,
        bytes: Vec<u8>,
        source: PluginSource,
        instance: Option<&str>,
    ) -> anyhow::Result<Arc<Revision>> {
        let mut manifest = read_manifest(&bytes)?;
        if let Some(instance) = instance {
            crate::config::check_plugin_name(instance).map_err(anyhow::Error::msg)?;
            manifest.name = instance.to_owned();
        }
        let name = manifest.name.clone();
        let plugin_config = self.inner.config.plugin(&name);
        if !plugin_config.enabled {
            anyhow::bail!("plugin `{name}` is disabled in config (plugins.{name}.enabled: false)");
        }
        let digest = sha256_hex(&bytes);
        let load_span = tracing::Span::current();
        load_span.record("databot.plugin.name", name.as_str());
        load_span.record("databot.plugin.kind", manifest.kind.as_str());
        load_span.record("databot.plugin.digest", digest.as_str());
        let mut replaces_builtin = false;
        if let Some(slot) = self.inner.plugins.read().get(&name) {
            let current = slot.current();
            if current.digest == digest && current.source == source {
                return Ok(current);
            }
            match (&current.source, &source) {
                (PluginSource::File(old), PluginSource::File(new)) if old != new => {
                    anyhow::bail!(
                        "plugin `{name}` is already loaded from {}; remove one of the two files",
                        old.display()
                    );
                }
                (PluginSource::Builtin, PluginSource::File(new)) => {
                    if !plugin_config.replace_builtin {
                        anyhow::bail!(
                            "{} is named `{name}`, the name of a built-in plugin; give it another name, or set `plugins.{name}.replace_builtin: true` to replace the built-in (the replacement runs without the section's secret headers and endpoint credentials)",
                            new.display()
                        );
                    }
                    replaces_builtin = true;
                }
                _ => {}
            }
        }
        let inner = self.inner.clone();
        let compile_digest = digest.clone();
        let compile_span = tracing::info_span!(
            "plugin.compile",
            databot.plugin.name = %name,
            databot.plugin.digest = %digest,
            databot.compile.cache = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let compiled = tracing::Instrument::instrument(
            async {
                let (component, compiled_from) = tokio::task::spawn_blocking(move || {
                    inner.cache.load(&inner.engine, &compile_digest, &bytes)
                })
                .await
                .context("compile task failed")?
                .context("the component does not compile")?;
                let pre = self.inner.linker.instantiate_pre(&component).map_err(|e| {
                    anyhow!("the component needs imports this host does not provide: {e:#}")
                })?;
                anyhow::Ok((pre, compiled_from))
            },
            compile_span.clone(),
        )
        .await;
        let (pre, compiled_from) = match compiled {
            Ok(compiled) => compiled,
            Err(error) => {
                crate::telemetry::spans::record_error(&compile_span, "compile");
                return Err(error);
            }
        };
        compile_span.record(
            "databot.compile.cache",
            if compiled_from == cache::CompileSource::Cache {
                "hit"
            } else {
                "miss"
            },
        );
        let mut revision = Revision::new(manifest, digest, source, compiled_from, pre)?;
        let mut grants = PluginGrants::from_config(&self.inner.config, &name)?;
        if replaces_builtin {
            grants.secrets.clear();
            tracing::warn!(
                plugin = %name,
                "a component file replaces the built-in plugin of this name (plugins.{name}.replace_builtin); it runs without the section's secret headers and endpoint credentials"
            );
        }
        let grants = Arc::new(grants);
        let budgets = self.inner.config.budgets_for(&name);
        let operations = match revision.manifest.kind {
            PluginKind::Tool | PluginKind::Connector => tracing::Instrument::instrument(
                invoke::describe(&self.inner, &revision, &grants, &budgets),
                tracing::info_span!(
                    "plugin.instantiate",
                    databot.plugin.name = %name,
                    databot.plugin.digest = %revision.digest,
                    databot.plugin.operation = "describe",
                ),
            )
            .await
            .map_err(|e| anyhow!("describing its operations failed: {e}"))?,
            PluginKind::Provider | PluginKind::Channel => Vec::new(),
        };
        revision.set_operations(operations)?;
        self.install(revision, grants, budgets, replaces_builtin)
    }

    /// Make `revision` the plugin's current one. A plugin's slot (its grants, budgets,
    /// breaker) is kept across revisions, except when a file replaces a built-in: the slot is
    /// then made anew with the replacement's own grants.
    fn install(
        &self,
        revision: Revision,
        grants: Arc<PluginGrants>,
        budgets: Budgets,
        new_slot: bool,
    ) -> anyhow::Result<Arc<Revision>> {
        let name = revision.manifest.name.clone();
        let revision = Arc::new(revision);
        let mut plugins = self.inner.plugins.write();
        let mut tools = self.inner.tools.write();
        if revision.manifest.kind == PluginKind::Tool {
            for operation in &revision.operations {
                if let Some(owner) = tools.get(&operation.name)
                    && *owner != name
                {
                    anyhow::bail!(
                        "tool `{}` is already provided by plugin `{owner}`",
                        operation.name
                    );
                }
            }
        }
        tools.retain(|_, owner| *owner != name);
        if revision.manifest.kind == PluginKind::Tool {
            for operation in &revision.operations {
                tools.insert(operation.name.clone(), name.clone());
            }
        }
        match plugins.get(&name).filter(|_| !new_slot) {
            Some(slot) => {
                let _swap = tracing::info_span!(
                    "plugin.swap",
                    databot.plugin.name = %name,
                    databot.plugin.digest.old = %slot.current().digest,
                    databot.plugin.digest = %revision.digest,
                )
                .entered();
                slot.current.store(revision.clone());
                *slot.last_error.lock() = None;
                slot.revisions.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                let slot = PluginSlot {
                    name: name.clone(),
                    span_name: Arc::<str>::from(name.as_str()).into(),
                    current: ArcSwap::new(revision.clone()),
                    concurrency: Arc::new(Semaphore::new(budgets.max_concurrency as usize)),
                    log_rate: crate::capabilities::LogRate::new(budgets.max_log_bytes_per_minute),
                    grants,
                    budgets,
                    breaker: CircuitBreaker::new(&self.inner.config.runtime.circuit_breaker),
                    last_error: Mutex::new(None),
                    revisions: AtomicU64::new(1),
                    calls: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                };
                plugins.insert(name.clone(), Arc::new(slot));
            }
        }
        drop(tools);
        drop(plugins);
        tracing::info!(
            plugin = %name,
            version = %revision.manifest.version,
            digest = %&revision.digest[..12],
            source = %revision.source,
            from_cache = revision.compiled_from == cache::CompileSource::Cache,
            "plugin loaded"
        );
        let _ = self.inner.events.send(RuntimeEvent::Loaded {
            plugin: name,
            digest: revision.digest.clone(),
        });
        Ok(revision)
    }

    pub fn plugin(&self, name: &str) -> Option<Arc<PluginSlot>> {
        self.inner.plugins.read().get(name).cloned()
    }

    /// The plugin that provides `tool`, if one does.
    pub fn tool_plugin(&self, tool: &str) -> Option<String> {
        self.inner.tools.read().get(tool).cloned()
    }

    /// The plugin providing `tool` and whether the operator configured it (a built-in, or a
    /// plugin with a `plugins.NAME` section), as opposed to a file that named itself.
    pub fn tool_owner(&self, tool: &str) -> Option<(String, bool)> {
        let plugin = self.tool_plugin(tool)?;
        let plugins = self.inner.plugins.read();
        let slot = plugins.get(&plugin)?;
        let configured = self.is_configured(slot, &slot.current());
        Some((plugin, configured))
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
                revision
                    .operations
                    .iter()
                    .map(|op| ToolInfo {
                        name: op.name.clone(),
                        plugin: slot.name.clone(),
                        configured: self.is_configured(slot, &revision),
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
        let plugin = self.inner.tools.read().get(tool).cloned().ok_or_else(|| {
            CallError::new(
                ErrorKind::NotFound,
                format!("no loaded plugin provides a tool named `{tool}`"),
            )
        })?;
        let slot = self.plugin(&plugin).ok_or_else(|| {
            CallError::new(
                ErrorKind::NotFound,
                format!("plugin `{plugin}` was unloaded"),
            )
        })?;
        let revision = slot.current();
        let parsed = parse_arguments(tool, arguments)?;
        revision
            .validate_arguments(tool, &parsed)
            .map_err(|m| CallError::new(ErrorKind::InvalidInput, m))?;
        // The text that was validated is what the guest gets (no re-serialisation).
        let arguments = arguments.to_owned();
        invoke::call(
            &self.inner,
            &slot,
            revision,
            Operation::ToolCall {
                tool,
                arguments: &arguments,
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
        sink: Option<crate::capabilities::provider_stream::StreamSender>,
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
    pub async fn connector_health(&self, connector: &str) -> Result<bindings::Health, CallError> {
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
            .map(|slot| PluginStatus::of_slot(slot))
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
    ) -> Result<String, bindings::GuestError> {
        let inner = self.0.upgrade().ok_or_else(|| {
            bindings::GuestError::Unavailable("the runtime is shutting down".into())
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
