//! A plugin's grants, resolved from config once per load: egress patterns, secrets, preopens.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use http::{HeaderName, HeaderValue};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::config::{Config, FsMode, HostPattern};

/// One header the host adds to requests for matching hosts.
#[derive(Clone)]
pub struct SecretInjection {
    pub host: HostPattern,
    pub header: HeaderName,
    pub value: HeaderValue,
}

/// One folder made visible to the plugin.
#[derive(Debug, Clone)]
pub struct Preopen {
    pub host: PathBuf,
    pub guest: String,
    pub mode: FsMode,
}

/// What one plugin may do, resolved from `plugins.NAME` of the config.
#[derive(Clone, Default)]
pub struct PluginGrants {
    pub plugin: String,
    pub http_allow: Vec<HostPattern>,
    pub allow_private: bool,
    pub secrets: Vec<SecretInjection>,
    pub preopens: Vec<Preopen>,
    pub connectors: Vec<String>,
    pub state: bool,
    pub sql: Vec<String>,
    pub kafka: Vec<String>,
    pub vectors: Vec<String>,
    pub config: BTreeMap<String, serde_json::Value>,
}

impl PluginGrants {
    /// Resolve the grants of `plugin` (no section in config: nothing granted).
    pub fn from_config(config: &Config, plugin: &str) -> anyhow::Result<Self> {
        let section = config.plugin(plugin);
        let permissions = &section.permissions;
        let http_allow = permissions
            .http
            .allow
            .iter()
            .map(|p| HostPattern::parse(p).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| format!("plugins.{plugin}.permissions.http.allow"))?;
        let secrets = permissions
            .http
            .secrets
            .iter()
            .map(|secret| {
                Ok(SecretInjection {
                    host: HostPattern::parse(&secret.host).map_err(anyhow::Error::msg)?,
                    header: HeaderName::from_bytes(secret.header.as_bytes())
                        .with_context(|| format!("header name `{}`", secret.header))?,
                    value: {
                        let mut value = HeaderValue::from_str(secret.value.expose())
                            .context("secret header value is not a valid HTTP header value")?;
                        value.set_sensitive(true);
                        value
                    },
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| format!("plugins.{plugin}.permissions.http.secrets"))?;
        let preopens = permissions
            .filesystem
            .iter()
            .map(|grant| Preopen {
                host: config.resolve_path(&grant.host),
                guest: grant.guest.clone(),
                mode: grant.mode,
            })
            .collect();
        Ok(Self {
            plugin: plugin.to_owned(),
            http_allow,
            allow_private: permissions.http.allow_private,
            secrets,
            preopens,
            connectors: permissions.connectors.clone(),
            state: permissions.state,
            sql: permissions.sql.clone(),
            kafka: permissions.kafka.clone(),
            vectors: permissions.vectors.clone(),
            config: section.config.clone(),
        })
    }

    /// Add the granted folders to a WASI context. Paths outside them do not exist for the
    /// guest; `..` cannot climb out of a preopen (WASI resolves paths beneath it).
    pub fn preopen(&self, builder: &mut WasiCtxBuilder) -> anyhow::Result<()> {
        for preopen in &self.preopens {
            let perms = match preopen.mode {
                FsMode::Ro => FsPerms::ReadOnly,
                FsMode::Rw => FsPerms::ReadWrite,
            };
            builder
                .preopened_dir(&preopen.host, &preopen.guest, perms)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "plugins.{}.permissions.filesystem: cannot open `{}`: {e}",
                        self.plugin,
                        preopen.host.display()
                    )
                })?;
        }
        Ok(())
    }
}
