//! The operator's configuration: YAML with `${VAR}` substitution inside scalars (`substitute`,
//! over libyaml's event stream in `yaml_events`), strict keys, typed sections.
//!
//! Owns parsing, validation and the defaults embedded in the binary. Every error names the
//! file, line and column. Secrets stay in memory only: nothing here ever writes config back.

mod bus;
mod channel;
mod data;
mod gateway;
mod mcp;
mod rag;
mod schedules;
mod substitute;
mod telemetry;
mod types;
mod yaml_events;

use std::path::{Path, PathBuf};

pub use bus::*;
pub use channel::*;
pub use data::*;
pub use gateway::*;
pub use mcp::*;
pub use rag::*;
pub use schedules::*;
pub use substitute::{Substituted, substitute_env};
pub use telemetry::*;
pub use types::*;

/// The configuration the binary runs with when no file is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../../config/databot.yaml");

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}:{line}:{column}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{origin}: {message}")]
    Semantic { origin: String, message: String },
}

impl Config {
    /// Load a file, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            None => Self::parse(EMBEDDED_DEFAULT, "<embedded default>", |name| {
                std::env::var(name).ok()
            }),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                let mut config = Self::parse(&text, &path.display().to_string(), |name| {
                    std::env::var(name).ok()
                })?;
                config.base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
                Ok(config)
            }
        }
    }

    /// Parse YAML text; `lookup` resolves `${VAR}` placeholders.
    pub fn parse(
        text: &str,
        origin: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let substituted = substitute_env(text, origin, lookup)?;
        let config: Config = if substituted.text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml::from_str(&substituted.text)
                .map_err(|error| substituted.yaml_error(&error, origin))?
        };
        config
            .validate(origin)
            .map_err(|error| substituted.scrub_error(error))?;
        Ok(config)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let semantic = |message: String| ConfigError::Semantic {
            origin: origin.to_owned(),
            message,
        };
        self.runtime
            .budgets
            .validate()
            .map_err(|e| semantic(format!("runtime.budgets: {e}")))?;
        let trusted = crate::signature::TrustedKeys::parse(&self.runtime.trusted_keys)
            .map_err(|(name, e)| semantic(format!("runtime.trusted_keys.{name}: {e}")))?;
        if self.runtime.require_signatures && trusted.is_empty() {
            return Err(semantic(
                "runtime.require_signatures is on but runtime.trusted_keys lists no key: no component file could load; list the publishers' keys (`databot plugin keygen` makes one)".to_owned(),
            ));
        }
        self.rag.validate().map_err(semantic)?;
        self.gateway.validate().map_err(semantic)?;
        self.schedules.validate().map_err(semantic)?;
        self.bus.validate(&self.sessions_url()).map_err(semantic)?;
        if self.bus.kind == BusKind::Kafka
            && self.rag.enabled
            && self.rag.store == RagStoreKind::Embedded
        {
            return Err(semantic(
                "bus.kind kafka with rag.store embedded: each replica would keep a knowledge base of its own; \
                 use rag.store: qdrant (shared) or rag.enabled: false"
                    .into(),
            ));
        }
        if self.gateway.rate_limit.shared == Some(true)
            && self.sessions_url().starts_with("sqlite:")
        {
            return Err(semantic(
                "gateway.rate_limit.shared needs agent.sessions_url on PostgreSQL (the replicas count requests there)".into(),
            ));
        }
        // The YAML alone (the `OTEL_*` variables are checked again at start-up).
        self.telemetry.resolve(|_| None).map_err(semantic)?;
        if self.agent.max_iterations == 0 {
            return Err(semantic("agent.max_iterations must be at least 1".into()));
        }
        if self.mcp.session_idle_seconds == 0 {
            return Err(semantic(
                "mcp.session_idle_seconds must be at least 1".into(),
            ));
        }
        for (name, plugin) in &self.plugins {
            check_plugin_name(name).map_err(|e| semantic(format!("plugins: {e}")))?;
            if let Some(budgets) = &plugin.budgets {
                budgets
                    .validate()
                    .map_err(|e| semantic(format!("plugins.{name}.budgets: {e}")))?;
            }
            for pattern in &plugin.permissions.http.allow {
                HostPattern::parse(pattern)
                    .map_err(|e| semantic(format!("plugins.{name}.permissions.http.allow: {e}")))?;
            }
            for (index, secret) in plugin.permissions.http.secrets.iter().enumerate() {
                Origin::parse(&secret.host).map_err(|e| {
                    semantic(format!(
                        "plugins.{name}.permissions.http.secrets[{index}].host: {e}"
                    ))
                })?;
                secret.validate().map_err(|e| {
                    semantic(format!(
                        "plugins.{name}.permissions.http.secrets[{index}]: {e}"
                    ))
                })?;
            }
            validate_verify_keys(name, &plugin.permissions.verify).map_err(semantic)?;
            if let Some(channel) = &plugin.channel {
                channel
                    .validate()
                    .map_err(|e| semantic(format!("plugins.{name}.channel: {e}")))?;
            }
        }
        Ok(())
    }

    /// Resolve a path from the config relative to the config file's folder.
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }

    /// The session store URL: configured, or a SQLite file in the data dir.
    pub fn sessions_url(&self) -> String {
        match &self.agent.sessions_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}",
                self.resolve_path(&self.runtime.data_dir)
                    .join("sessions.db")
                    .display()
            ),
        }
    }

    /// The plugin section for `name`, or the deny-everything default.
    pub fn plugin(&self, name: &str) -> PluginConfig {
        self.plugins.get(name).cloned().unwrap_or_default()
    }

    /// The effective budgets of a plugin: its own settings over the runtime defaults.
    pub fn budgets_for(&self, name: &str) -> Budgets {
        let defaults = &self.runtime.budgets;
        match self.plugins.get(name).and_then(|p| p.budgets.as_ref()) {
            None => defaults.clone(),
            Some(own) => own.over(defaults),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.yaml", |name| {
            (name == "TOKEN").then(|| "s3cret".to_owned())
        })
    }

    #[test]
    fn embedded_default_parses() {
        let config = Config::load(None).expect("embedded default");
        assert!(config.runtime.watch);
    }

    #[test]
    fn the_full_example_parses() {
        let config = Config::parse(
            include_str!("../../../config/full.yaml"),
            "full.yaml",
            |_| None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let secrets = &config.plugins["openai"].permissions.http.secrets;
        assert_eq!(secrets[0].host, "https://api.openai.com");
    }

    #[test]
    fn unknown_key_is_an_error_with_line_and_column() {
        let error = parse("runtime:\n  watch: true\n  wach: false\n").unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("test.yaml:3:"), "{text}");
        assert!(text.contains("unknown field `wach`"), "{text}");
    }

    #[test]
    fn wrong_type_is_an_error_with_line() {
        let error = parse("runtime:\n  budgets:\n    timeout_ms: soon\n").unwrap_err();
        assert!(error.to_string().starts_with("test.yaml:3:"), "{error}");
    }

    #[test]
    fn variables_are_substituted_and_secrets_redacted_in_debug() {
        let config = parse(
            "plugins:\n  api:\n    permissions:\n      http:\n        allow: [api.example.com]\n        secrets:\n          - host: api.example.com\n            header: authorization\n            value: \"Bearer ${TOKEN}\"\n",
        )
        .unwrap();
        let secret = &config.plugins["api"].permissions.http.secrets[0];
        assert_eq!(secret.value.as_ref().unwrap().expose(), "Bearer s3cret");
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn budgets_are_validated() {
        let error = parse("runtime:\n  budgets:\n    memory_mb: 0\n").unwrap_err();
        assert!(error.to_string().contains("memory_mb"), "{error}");
    }

    #[test]
    fn plugin_budgets_override_defaults_field_by_field() {
        let config = parse("runtime:\n  budgets:\n    timeout_ms: 100\nplugins:\n  a:\n    budgets:\n      memory_mb: 8\n").unwrap();
        let budgets = config.budgets_for("a");
        assert_eq!(budgets.timeout_ms, 100);
        assert_eq!(budgets.memory_mb, 8);
    }

    #[test]
    fn an_empty_api_key_from_a_set_but_empty_variable_is_refused() {
        let error = Config::parse(
            "gateway:\n  api_keys: [\"${DATABOT_API_KEY}\"]\n",
            "test.yaml",
            |name| (name == "DATABOT_API_KEY").then(String::new),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("test.yaml: gateway.api_keys[0]: the key is empty"),
            "{error}"
        );
    }

    #[test]
    fn a_substituted_value_is_never_printed_in_a_type_error() {
        let error = Config::parse(
            "data:\n  sql:\n    x:\n      url: \"sqlite://x.db\"\n      timeout_ms: ${PG_TIMEOUT}\n",
            "test.yaml",
            |name| (name == "PG_TIMEOUT").then(|| "p@ss: w0rd\"}".to_owned()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("test.yaml:5:19: data.sql.x.timeout_ms: expected "),
            "{error}"
        );
        assert!(error.ends_with("got the value of ${PG_TIMEOUT}"), "{error}");
        assert!(!error.contains("w0rd"), "{error}");
    }

    #[test]
    fn a_substituted_value_cannot_add_keys() {
        let config = parse("agent:\n  model: ${TOKEN}\n  system_prompt: \"${TOKEN}\"\n").unwrap();
        assert_eq!(config.agent.model.as_deref(), Some("s3cret"));
        let config = Config::parse("agent:\n  model: ${M}\n", "test.yaml", |name| {
            (name == "M").then(|| "x\n  max_iterations: 0\nruntime: {watch: false}".to_owned())
        })
        .unwrap();
        assert_eq!(
            config.agent.model.as_deref(),
            Some("x\n  max_iterations: 0\nruntime: {watch: false}")
        );
        assert_eq!(config.agent.max_iterations, 10);
        assert!(config.runtime.watch);
    }

    #[test]
    fn plugin_section_names_are_checked() {
        let error = parse("plugins:\n  Bad-Name: {}\n").unwrap_err().to_string();
        assert!(
            error.contains("plugins: plugin name \"Bad-Name\""),
            "{error}"
        );
        assert!(parse("plugins:\n  good_name_2: {}\n").is_ok());
    }

    #[test]
    fn a_bad_secret_origin_names_its_key() {
        let error = parse(
            "plugins:\n  a:\n    permissions:\n      http:\n        secrets:\n          - {host: \"ok.example.com\", header: a, value: b}\n          - {host: \"https://x/path\", header: a, value: b}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("plugins.a.permissions.http.secrets[1].host"),
            "{error}"
        );
    }

    #[test]
    fn bad_host_pattern_is_refused() {
        let error = parse(
            "plugins:\n  a:\n    permissions:\n      http:\n        allow: [\"exa mple.com\"]\n",
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("plugins.a.permissions.http.allow"),
            "{error}"
        );
    }
}
