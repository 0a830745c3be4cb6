//! A plugin's grants, resolved from config once per load: egress patterns, secrets, preopens.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use http::{HeaderName, HeaderValue};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::config::{Config, EndpointAuth, EndpointConfig, FsMode, HostPattern, Origin};

/// One header the host adds to requests for one origin (scheme, host and port), so a plugin
/// cannot get it sent in clear text by switching the scheme, or to another service on the
/// same host by switching the port.
#[derive(Clone)]
pub struct SecretInjection {
    pub origin: Origin,
    pub header: HeaderName,
    pub value: HeaderValue,
}

/// An access token the host mints and sends as `Authorization: Bearer` to one origin.
#[derive(Clone)]
pub struct TokenInjection {
    pub origin: Origin,
    pub tokens: std::sync::Arc<super::service_account::ServiceAccountTokens>,
}

/// A path prefix the host puts before the path of requests to one origin (a token in the
/// path, like Telegram's `/bot<token>`), which the guest never sees.
#[derive(Clone)]
pub struct PathPrefixInjection {
    pub origin: Origin,
    pub prefix: String,
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
    /// Hosts that may resolve to non-public addresses (the plugin's named endpoints).
    pub private_hosts: Vec<HostPattern>,
    pub secrets: Vec<SecretInjection>,
    pub path_prefixes: Vec<PathPrefixInjection>,
    pub tokens: Vec<TokenInjection>,
    pub preopens: Vec<Preopen>,
    pub connectors: Vec<String>,
    pub state: bool,
    pub sql: Vec<String>,
    pub sql_write: Vec<String>,
    pub kafka: Vec<String>,
    pub kafka_produce: Vec<String>,
    pub shell: Option<crate::config::ShellGrant>,
    pub vectors: Vec<String>,
    pub config: BTreeMap<String, serde_json::Value>,
    /// Keys the `verify` capability checks requests with (never shown to the plugin).
    pub verify: super::VerifyKeys,
}

impl PluginGrants {
    /// What was granted, in words fit to show an operator: hosts, origins, connector,
    /// database and topic names, folders, config keys; never a secret's or a token's value.
    pub fn summary(&self) -> Vec<String> {
        let join = |items: &[String]| items.join(", ");
        let shown = |items: Vec<String>| items.join(", ");
        let mut out = Vec::new();
        if !self.http_allow.is_empty() {
            let hosts = shown(self.http_allow.iter().map(ToString::to_string).collect());
            let private = if self.allow_private {
                " (private addresses allowed)"
            } else {
                ""
            };
            out.push(format!("http: {hosts}{private}"));
        }
        if !self.secrets.is_empty() || !self.tokens.is_empty() || !self.path_prefixes.is_empty() {
            let mut origins: Vec<String> = self
                .secrets
                .iter()
                .map(|s| s.origin.to_string())
                .chain(self.tokens.iter().map(|t| t.origin.to_string()))
                .chain(self.path_prefixes.iter().map(|p| p.origin.to_string()))
                .collect();
            origins.sort();
            origins.dedup();
            out.push(format!(
                "credentials injected by the host for: {}",
                join(&origins)
            ));
        }
        for (label, names) in [
            ("connectors", &self.connectors),
            ("sql", &self.sql),
            ("sql writes", &self.sql_write),
            ("kafka", &self.kafka),
            ("kafka produce", &self.kafka_produce),
            ("vectors", &self.vectors),
        ] {
            if !names.is_empty() {
                out.push(format!("{label}: {}", join(names)));
            }
        }
        if !self.preopens.is_empty() {
            let folders = shown(
                self.preopens
                    .iter()
                    .map(|p| {
                        let mode = match p.mode {
                            FsMode::Ro => "read",
                            FsMode::Rw => "read-write",
                        };
                        format!("{} ({mode})", p.guest)
                    })
                    .collect(),
            );
            out.push(format!("files: {folders}"));
        }
        if self.state {
            out.push("state".to_owned());
        }
        if self.shell.is_some() {
            out.push("shell".to_owned());
        }
        if !self.verify.is_empty() {
            out.push("signature verification (keys kept by the host)".to_owned());
        }
        if !self.config.is_empty() {
            let keys: Vec<String> = self.config.keys().cloned().collect();
            out.push(format!("config: {}", join(&keys)));
        }
        out
    }

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
        let mut secrets = Vec::new();
        let mut path_prefixes = Vec::new();
        for (index, secret) in permissions.http.secrets.iter().enumerate() {
            let key = format!("plugins.{plugin}.permissions.http.secrets[{index}]");
            let origin = Origin::parse(&secret.host)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("{key}.host"))?;
            secret
                .validate()
                .map_err(anyhow::Error::msg)
                .with_context(|| key.clone())?;
            match (&secret.header, &secret.value, &secret.path_prefix) {
                (Some(header), Some(value), None) => secrets.push(SecretInjection {
                    origin,
                    header: HeaderName::from_bytes(header.as_bytes())
                        .with_context(|| format!("{key}.header: `{header}`"))?,
                    value: {
                        let mut value =
                            HeaderValue::from_str(value.expose()).with_context(|| {
                                format!("{key}.value: not a valid HTTP header value")
                            })?;
                        value.set_sensitive(true);
                        value
                    },
                }),
                (None, None, Some(prefix)) => path_prefixes.push(PathPrefixInjection {
                    origin,
                    prefix: prefix.expose().to_owned(),
                }),
                _ => anyhow::bail!("{key}: give either `header` and `value`, or `path_prefix`"),
            }
        }
        let mut http_allow = http_allow;
        let mut tokens = Vec::new();
        let mut private_hosts = Vec::new();
        let mut config_values = section.config.clone();
        let mut endpoint_urls = serde_json::Map::new();
        for (name, endpoint) in &section.endpoints {
            let resolved = resolve_endpoint(endpoint, config)
                .with_context(|| format!("plugins.{plugin}.endpoints.{name}"))?;
            if endpoint.allow_private {
                private_hosts.push(resolved.origin.host.clone());
            }
            http_allow.push(resolved.origin.host.clone());
            match resolved.auth {
                Some(ResolvedAuth::Header(header, value)) => secrets.push(SecretInjection {
                    origin: resolved.origin,
                    header,
                    value,
                }),
                Some(ResolvedAuth::PathPrefix(prefix)) => path_prefixes.push(PathPrefixInjection {
                    origin: resolved.origin,
                    prefix,
                }),
                Some(ResolvedAuth::Tokens(source)) => tokens.push(TokenInjection {
                    origin: resolved.origin,
                    tokens: source,
                }),
                None => {}
            }
            endpoint_urls.insert(name.clone(), serde_json::Value::String(resolved.url));
        }
        // Tools pick their connector from `config.connectors`; by default, the granted ones.
        if !permissions.connectors.is_empty() && !config_values.contains_key("connectors") {
            config_values.insert(
                "connectors".into(),
                serde_json::json!(permissions.connectors),
            );
        }
        if !endpoint_urls.is_empty() {
            config_values.insert("endpoints".into(), serde_json::Value::Object(endpoint_urls));
        }
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
            private_hosts,
            secrets,
            path_prefixes,
            tokens,
            preopens,
            connectors: permissions.connectors.clone(),
            state: permissions.state,
            sql: permissions.sql.clone(),
            sql_write: permissions.sql_write.clone(),
            kafka: permissions.kafka.clone(),
            kafka_produce: permissions.kafka_produce.clone(),
            shell: permissions.shell.clone().map(|mut shell| {
                shell.working_dir = shell.working_dir.map(|dir| config.resolve_path(&dir));
                shell
            }),
            vectors: permissions.vectors.clone(),
            config: config_values,
            verify: super::VerifyKeys::from_config(&permissions.verify)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("plugins.{plugin}.permissions.verify"))?,
        })
    }

    /// May `host:port` resolve to a non-public address?
    pub fn may_reach_private(&self, host: &str, port: u16) -> bool {
        self.allow_private || self.private_hosts.iter().any(|p| p.matches(host, port))
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

/// An endpoint turned into what egress needs: the exact origin to allow (its host and port)
/// and to send the credential header to (its scheme too).
struct ResolvedEndpoint {
    url: String,
    origin: Origin,
    auth: Option<ResolvedAuth>,
}

enum ResolvedAuth {
    Header(HeaderName, HeaderValue),
    PathPrefix(String),
    Tokens(std::sync::Arc<super::service_account::ServiceAccountTokens>),
}

fn resolve_endpoint(
    endpoint: &EndpointConfig,
    config: &Config,
) -> anyhow::Result<ResolvedEndpoint> {
    let url = url::Url::parse(&endpoint.url)
        .with_context(|| format!("`{}` is not a URL", endpoint.url))?;
    if !matches!(url.scheme(), "http" | "https") {
        anyhow::bail!(
            "`{}`: only http and https endpoints are supported",
            endpoint.url
        );
    }
    if !url.username().is_empty() || url.password().is_some() {
        anyhow::bail!(
            "`{}`: put credentials under `auth`, not in the URL (the plugin sees the URL)",
            endpoint.url
        );
    }
    let origin = Origin::of_url(&url).map_err(anyhow::Error::msg)?;
    let auth = endpoint
        .auth
        .as_ref()
        .map(|auth| auth_header(auth, config))
        .transpose()?;
    Ok(ResolvedEndpoint {
        url: endpoint.url.trim_end_matches('/').to_owned(),
        origin,
        auth,
    })
}

fn auth_header(auth: &EndpointAuth, config: &Config) -> anyhow::Result<ResolvedAuth> {
    use base64::Engine as _;
    let (name, value) = match auth {
        EndpointAuth::GoogleServiceAccount {
            key_file,
            scopes,
            token_allow_private,
        } => {
            let tokens = super::service_account::ServiceAccountTokens::from_key_file(
                &config.resolve_path(key_file),
                scopes,
                *token_allow_private,
            )?;
            return Ok(ResolvedAuth::Tokens(std::sync::Arc::new(tokens)));
        }
        EndpointAuth::PathPrefix { prefix } => {
            crate::config::check_path_prefix(prefix.expose()).map_err(anyhow::Error::msg)?;
            return Ok(ResolvedAuth::PathPrefix(prefix.expose().to_owned()));
        }
        EndpointAuth::Basic { username, password } => {
            let pair = format!("{username}:{}", password.expose());
            (
                http::header::AUTHORIZATION,
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ),
            )
        }
        EndpointAuth::Bearer { token } => (
            http::header::AUTHORIZATION,
            format!("Bearer {}", token.expose()),
        ),
        EndpointAuth::ApiKey { header, key } => (
            HeaderName::from_bytes(header.as_bytes())
                .with_context(|| format!("header name `{header}`"))?,
            key.expose().to_owned(),
        ),
    };
    let mut value =
        HeaderValue::from_str(&value).context("the credential is not a valid HTTP header value")?;
    value.set_sensitive(true);
    Ok(ResolvedAuth::Header(name, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Scheme;

    fn grants_for(yaml: &str) -> anyhow::Result<PluginGrants> {
        let config = Config::parse(yaml, "test", |_| None)?;
        PluginGrants::from_config(&config, "airflow")
    }

    #[test]
    fn an_endpoint_grants_its_host_its_credentials_and_shows_only_its_url() -> anyhow::Result<()> {
        let grants = grants_for(
            r#"
plugins:
  airflow:
    endpoints:
      api:
        url: http://airflow.internal:8080/
        auth: {type: basic, username: admin, password: s3cret}
"#,
        )?;
        assert!(
            grants
                .http_allow
                .iter()
                .any(|p| p.matches("airflow.internal", 8080))
        );
        assert!(
            !grants
                .http_allow
                .iter()
                .any(|p| p.matches("airflow.internal", 8081))
        );
        assert!(grants.may_reach_private("airflow.internal", 8080));
        assert!(!grants.may_reach_private("other.internal", 8080));
        let secret = &grants.secrets[0];
        assert_eq!(secret.header, http::header::AUTHORIZATION);
        assert_eq!(secret.value.to_str()?, "Basic YWRtaW46czNjcmV0");
        assert_eq!(
            grants.config["endpoints"],
            serde_json::json!({"api": "http://airflow.internal:8080"})
        );
        assert!(
            !grants
                .config
                .values()
                .any(|v| v.to_string().contains("s3cret"))
        );
        Ok(())
    }

    #[test]
    fn api_key_and_bearer_credentials_use_their_headers() -> anyhow::Result<()> {
        let grants = grants_for(
            r#"
plugins:
  airflow:
    endpoints:
      a: {url: "https://a.example.com", auth: {type: bearer, token: t0k}}
      b: {url: "https://b.example.com:9443", auth: {type: api_key, key: k3y}, allow_private: false}
"#,
        )?;
        assert_eq!(grants.secrets[0].value.to_str()?, "Bearer t0k");
        assert_eq!(grants.secrets[0].origin.scheme, Scheme::Https);
        assert_eq!(grants.secrets[1].header.as_str(), "x-api-key");
        let b = &grants.secrets[1].origin;
        assert!(b.matches(Some(Scheme::Https), "b.example.com", 9443));
        assert!(!b.matches(Some(Scheme::Http), "b.example.com", 9443));
        assert!(!b.matches(Some(Scheme::Https), "b.example.com", 443));
        assert!(!grants.may_reach_private("b.example.com", 9443));
        // What an operator is shown names the origins, never the credentials.
        let shown = grants.summary().join("\n");
        assert!(shown.contains("https://a.example.com"), "{shown}");
        assert!(shown.contains("https://b.example.com:9443"), "{shown}");
        assert!(!shown.contains("t0k") && !shown.contains("k3y"), "{shown}");
        Ok(())
    }

    #[test]
    fn http_secrets_are_bound_to_the_origin_of_their_grant() -> anyhow::Result<()> {
        let grants = grants_for(
            r#"
plugins:
  airflow:
    permissions:
      http:
        allow: ["*"]
        secrets:
          - {host: api.x.com, header: authorization, value: "Bearer a"}
          - {host: "http://127.0.0.1:8080", header: x-key, value: b}
          - {host: "https://*.y.com:8443", header: x-key, value: c}
"#,
        )?;
        let sent = |scheme: Scheme, host: &str, port: u16| -> Vec<String> {
            grants
                .secrets
                .iter()
                .filter(|s| s.origin.matches(Some(scheme), host, port))
                .filter_map(|s| s.value.to_str().ok().map(str::to_owned))
                .collect()
        };
        assert_eq!(sent(Scheme::Https, "api.x.com", 443), ["Bearer a"]);
        assert!(sent(Scheme::Http, "api.x.com", 443).is_empty());
        assert!(sent(Scheme::Http, "api.x.com", 80).is_empty());
        assert!(sent(Scheme::Https, "api.x.com", 8080).is_empty());
        assert_eq!(sent(Scheme::Http, "127.0.0.1", 8080), ["b"]);
        assert!(sent(Scheme::Https, "127.0.0.1", 8080).is_empty());
        assert!(sent(Scheme::Http, "127.0.0.1", 8081).is_empty());
        assert_eq!(sent(Scheme::Https, "a.y.com", 8443), ["c"]);
        assert!(sent(Scheme::Https, "a.y.com", 443).is_empty());
        assert!(sent(Scheme::Http, "a.y.com", 8443).is_empty());
        Ok(())
    }

    #[test]
    fn a_bad_secret_origin_names_its_key() {
        let error = grants_for(
            "plugins:\n  airflow:\n    permissions:\n      http:\n        secrets:\n          - {host: \"ftp://x\", header: a, value: b}\n",
        )
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
        assert!(
            error.contains("plugins.airflow.permissions.http.secrets[0].host"),
            "{error}"
        );
    }

    #[test]
    fn a_bad_endpoint_names_its_config_line() {
        let error =
            grants_for("plugins:\n  airflow:\n    endpoints:\n      api: {url: \"ftp://x\"}\n")
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
        assert!(error.contains("plugins.airflow.endpoints.api"), "{error}");
        assert!(error.contains("only http and https"), "{error}");
        let error = grants_for(
            "plugins:\n  airflow:\n    endpoints:\n      api: {url: \"http://u:p@x:8080\"}\n",
        )
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
        assert!(error.contains("not in the URL"), "{error}");
    }
}
