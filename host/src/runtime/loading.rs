//! Loading plugins: from the configuration, a file, bytes or a built-in; each revision checked
//! (manifest, name, contract, exports, its own description) before it is installed into its
//! slot in one atomic swap, so calls in flight finish on the revision they started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, anyhow};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::*;
use crate::config::Budgets;
use crate::digest::sha256_hex;

impl Runtime {
    /// Load everything the configuration names: built-in plugins, files named in
    /// `plugins.NAME.path`, then every `.wasm` in the plugins folder, concurrently. Failures are
    /// logged and shown in status; they do not stop the others.
    pub async fn load_configured(&self) -> anyhow::Result<()> {
        self.load_configured_with(None).await
    }

    /// `load_configured`, telling `progress` of each plugin as its load starts (the CLI draws
    /// a bar: a first start compiles every component).
    pub async fn load_configured_with(
        &self,
        progress: Option<std::sync::Arc<dyn crate::progress::Progress>>,
    ) -> anyhow::Result<()> {
        let config = self.inner.config.clone();
        // Sample sources exist before anything can query them.
        crate::capabilities::sql::sample::ensure_samples(&config).await?;
        let builtins: Vec<&builtin::Builtin> = if config.runtime.builtin_plugins {
            builtin::BUILTIN_PLUGINS
                .iter()
                .filter(|b| {
                    (b.on_by_default || config.plugins.contains_key(b.name))
                        && config.plugin(b.name).enabled
                })
                .collect()
        } else {
            Vec::new()
        };
        let instances: Vec<(&String, &str)> = config
            .plugins
            .iter()
            .filter(|(_, section)| section.enabled)
            .filter_map(|(instance, section)| Some((instance, section.builtin.as_deref()?)))
            .collect();
        let mut files: Vec<PathBuf> = config
            .plugins
            .values()
            .filter(|p| p.enabled)
            .filter_map(|p| p.path.as_deref().map(|path| config.resolve_path(path)))
            .collect();
        files.extend(self.plugin_files_in_folder()?);
        let next = |what: &str| {
            if let Some(progress) = &progress {
                progress.next(what);
            }
        };
        if let Some(progress) = &progress {
            progress.found((builtins.len() + instances.len() + files.len()) as u64);
        }
        for builtin in builtins {
            next(builtin.name);
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
        for (instance, component) in instances {
            next(instance);
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
        let loads = files.into_iter().map(|path| {
            let runtime = self.clone();
            let progress = progress.clone();
            tokio::spawn(async move {
                if let Some(progress) = &progress {
                    progress.next(&path.display().to_string());
                }
                runtime.load_file(&path).await
            })
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

    /// The signer of a component file, checked against `runtime.trusted_keys`: its detached
    /// signature (`FILE.sig`) must be valid for these bytes (`digest`). Unsigned is refused
    /// under `runtime.require_signatures`; a signature that does not match is always refused
    /// (the bytes were changed after signing); one by a key not listed, only when required.
    /// Built-in plugins are part of the binary and not checked.
    async fn check_signature(
        &self,
        source: &PluginSource,
        digest: &str,
    ) -> anyhow::Result<Option<crate::signature::Signer>> {
        use crate::signature::Rejection;
        let PluginSource::File(path) = source else {
            return Ok(None);
        };
        let required = self.inner.config.runtime.require_signatures;
        let trusted = &self.inner.trusted_keys;
        if !required && trusted.is_empty() {
            // Nothing to check against: the signature file is not even opened.
            return Ok(None);
        }
        let signature_path = crate::signature::signature_path(path);
        let text = read_signature(&signature_path).await?;
        if !required && text.is_none() {
            return Ok(None);
        }
        match trusted.check(digest, text.as_deref()) {
            Ok(signer) => Ok(Some(signer)),
            Err(Rejection::UnknownKey { key_id, .. }) if !required => {
                tracing::warn!(
                    path = %path.display(),
                    "signed by key id {key_id}, which runtime.trusted_keys does not list; loaded as unsigned"
                );
                Ok(None)
            }
            Err(rejection) => Err(anyhow!("signature check failed: {rejection}")),
        }
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
        if manifest.kind == PluginKind::Channel
            && crate::config::HOST_CHANNELS.contains(&name.as_str())
        {
            anyhow::bail!(
                "a chat channel cannot be named `{name}`: the host's own conversations use that channel name ({}); name it otherwise",
                crate::config::HOST_CHANNELS.join(", ")
            );
        }
        let plugin_config = self.inner.config.plugin(&name);
        if !plugin_config.enabled {
            anyhow::bail!("plugin `{name}` is disabled in config (plugins.{name}.enabled: false)");
        }
        let digest = sha256_hex(&bytes);
        let load_span = tracing::Span::current();
        load_span.record("databot.plugin.name", name.as_str());
        load_span.record("databot.plugin.kind", manifest.kind.as_str());
        load_span.record("databot.plugin.digest", digest.as_str());
        let signer = self.check_signature(&source, &digest).await?;
        let mut replaces_builtin = false;
        if let Some(slot) = self.inner.plugins.read().get(&name) {
            let current = slot.current();
            if current.digest == digest && current.source == source && current.signer == signer {
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
        revision.signer = signer;
        let mut grants = PluginGrants::from_config(&self.inner.config, &name)?;
        if replaces_builtin {
            grants.secrets.clear();
            grants.path_prefixes.clear();
            grants.tokens.clear();
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
                    inbound_concurrency: Arc::new(Semaphore::new(budgets.max_concurrency as usize)),
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
}

/// The text of a detached signature file, `None` when there is none. Only a regular file of
/// at most `MAX_SIGNATURE_BYTES` is read: a FIFO, a device or a huge file in the plugins
/// folder must not stall or exhaust the loader.
async fn read_signature(path: &Path) -> anyhow::Result<Option<String>> {
    use tokio::io::AsyncReadExt as _;
    const MAX_SIGNATURE_BYTES: u64 = 4096;
    let metadata = match tokio::fs::metadata(path).await {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow!("cannot read its signature {}: {e}", path.display())),
    };
    if !metadata.is_file() || metadata.len() > MAX_SIGNATURE_BYTES {
        return Err(anyhow!(
            "its signature {} is not a signature file (a regular file of at most {MAX_SIGNATURE_BYTES} bytes)",
            path.display()
        ));
    }
    let mut text = String::new();
    tokio::fs::File::open(path)
        .await
        .map(|file| file.take(MAX_SIGNATURE_BYTES))
        .map_err(|e| anyhow!("cannot read its signature {}: {e}", path.display()))?
        .read_to_string(&mut text)
        .await
        .map_err(|e| anyhow!("cannot read its signature {}: {e}", path.display()))?;
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::read_signature;

    #[tokio::test]
    async fn only_small_regular_files_are_read_as_signatures() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.wasm.sig");
        assert!(read_signature(&missing).await.unwrap().is_none());
        let regular = dir.path().join("x.wasm.sig");
        std::fs::write(&regular, "{}").unwrap();
        assert_eq!(
            read_signature(&regular).await.unwrap().as_deref(),
            Some("{}")
        );
        let huge = dir.path().join("huge.wasm.sig");
        std::fs::write(&huge, vec![b'x'; 5000]).unwrap();
        assert!(read_signature(&huge).await.is_err());
        let folder = dir.path().join("folder.wasm.sig");
        std::fs::create_dir(&folder).unwrap();
        assert!(read_signature(&folder).await.is_err());
        // A FIFO would block a reader until someone writes: refused without opening it.
        let fifo = dir.path().join("fifo.wasm.sig");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), read_signature(&fifo));
        assert!(read.await.expect("no stall").is_err());
    }
}
