//! Typed configuration sections. Every section rejects unknown keys.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub agent: AgentConfig,
    /// The HTTP gateway of `databot serve`.
    #[serde(default)]
    pub gateway: super::GatewayConfig,
    /// SQL sources and Kafka clusters the host connects to on the plugins' behalf.
    #[serde(default)]
    pub data: super::DataConfig,
    /// Per-plugin settings, keyed by plugin name. A plugin without a section gets no grants.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
    /// Retrieval-augmented generation: knowledge base, embeddings, ingestion.
    #[serde(default)]
    pub rag: super::RagConfig,
    /// The MCP server: stdio (`databot mcp`) and `/mcp` on the gateway.
    #[serde(default)]
    pub mcp: super::McpConfig,
    /// OpenTelemetry trace export; off unless an endpoint is configured (here or `OTEL_*`).
    #[serde(default)]
    pub telemetry: super::TelemetryConfig,
    /// Scheduled jobs: the scheduler's settings, declared jobs, the agent's limits.
    #[serde(default)]
    pub schedules: super::SchedulesConfig,
    /// How messages reach the agent: in-process (default) or Kafka for several replicas.
    #[serde(default)]
    pub bus: super::BusConfig,
    /// Folder of the config file; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Folder the host loads `.wasm` plugins from (and watches, when `watch` is on).
    #[serde(default = "default_plugins_dir")]
    pub plugins_dir: PathBuf,
    /// Load first-party plugins built into the binary (`web_fetch`).
    #[serde(default = "yes")]
    pub builtin_plugins: bool,
    /// Watch `plugins_dir` and hot-swap changed components.
    #[serde(default = "yes")]
    pub watch: bool,
    /// With `watch`, also look over `plugins_dir` every this many seconds (0: never): file
    /// events do not cross machines, so a folder shared by replicas on several nodes (a
    /// network volume, a Kubernetes ConfigMap's symlink swap) is seen changed this way.
    #[serde(default)]
    pub rescan_seconds: u64,
    /// Where compiled artifacts and plugin state live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Default budgets for every plugin call.
    #[serde(default)]
    pub budgets: Budgets,
    #[serde(default)]
    pub circuit_breaker: BreakerConfig,
    /// Outgoing connections all plugin calls together may hold (a file descriptor each).
    /// Unset: a quarter of the open-file limit (see `process_limits`), at most 16,384.
    #[serde(default)]
    pub max_outgoing_connections: Option<usize>,
    /// Publisher keys whose signatures the host checks, by name: `acme: "ed25519:BASE64"`
    /// (`databot plugin keygen` prints one). A component file's signature is `FILE.sig`.
    #[serde(default)]
    pub trusted_keys: std::collections::BTreeMap<String, String>,
    /// Refuse every component file without a valid signature by a trusted key (built-in
    /// plugins, part of the binary, are not checked). Off: a signature present is still
    /// checked, and a failing one refused.
    #[serde(default)]
    pub require_signatures: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            plugins_dir: default_plugins_dir(),
            builtin_plugins: true,
            watch: true,
            rescan_seconds: 0,
            data_dir: default_data_dir(),
            budgets: Budgets::default(),
            circuit_breaker: BreakerConfig::default(),
            max_outgoing_connections: None,
            trusted_keys: Default::default(),
            require_signatures: false,
        }
    }
}

fn default_plugins_dir() -> PathBuf {
    PathBuf::from("plugins")
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(".databot")
}

fn yes() -> bool {
    true
}

/// The agent loop: which provider plugin answers, and the limits of one turn.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Name of the provider plugin (`offline` needs no key and no network).
    pub provider: String,
    /// Model name passed to the provider; `None` lets the provider choose.
    pub model: Option<String>,
    /// Replaces the built-in system prompt.
    pub system_prompt: Option<String>,
    /// Rounds of tool calls in one turn before the agent gives up.
    pub max_iterations: u32,
    /// Longest tool output given back to the model; longer ones are cut with a notice.
    pub max_tool_output_bytes: usize,
    /// Token budget of the context (system prompt, memory, history, message).
    pub context_tokens: usize,
    /// Memories shown in the system prompt, newest first.
    pub memory_items: usize,
    /// Whose memories the `memory` tool reads and writes: the conversation's user (`user`, per
    /// channel: an API key, the CLI's local user), only this `conversation`, or everyone's
    /// (`global`).
    pub memory_scope: MemoryScope,
    /// Session store: `sqlite://PATH` or `postgres://...`; default `sqlite://DATA_DIR/sessions.db`.
    pub sessions_url: Option<String>,
    pub router: RouterConfig,
    /// Named sets of tools an operator turns on and off at runtime (`databot tool enable`,
    /// `/api/v1/tool-groups`): the built-in groups, changed or added to here.
    pub tool_groups: BTreeMap<String, ToolGroupConfig>,
}

/// One tool group: the tools it names (tool names, plugin names, `memory`, `cron`) and whether
/// it is on until an operator says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolGroupConfig {
    #[serde(default)]
    pub description: String,
    pub tools: Vec<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// Who shares the agent's persistent memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryScope {
    /// One conversation: another chat, even of the same user, never sees it.
    Conversation,
    /// Every conversation of one user (per channel: the API key, the CLI's local user).
    #[default]
    User,
    /// Every conversation of every user.
    Global,
}

/// Routing each message to a specialist (a system prompt and a tool subset).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Off: one agent with every tool and `agent.system_prompt`.
    pub enabled: bool,
    /// Overrides of the six built-in specialists by name, or new ones.
    pub specialists: Vec<SpecialistConfig>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            specialists: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecialistConfig {
    pub name: String,
    pub description: Option<String>,
    pub system_prompt: Option<String>,
    /// Tool names; an empty list means every tool.
    pub tools: Option<Vec<String>>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            provider: "offline".to_owned(),
            model: None,
            system_prompt: None,
            max_iterations: 10,
            max_tool_output_bytes: 16 * 1024,
            context_tokens: 16_000,
            memory_items: 50,
            memory_scope: MemoryScope::default(),
            sessions_url: None,
            router: RouterConfig::default(),
            tool_groups: BTreeMap::new(),
        }
    }
}

/// Limits applied to every call into a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Budgets {
    /// Wall-clock deadline of one call, in milliseconds.
    pub timeout_ms: u64,
    /// Linear memory cap of one instance, in MiB.
    pub memory_mb: u64,
    /// Calls of one plugin running at the same time; more wait for a slot up to the deadline.
    pub max_concurrency: u32,
    /// Largest result a call may return, in bytes.
    pub max_output_bytes: u64,
    /// Log bytes one call may write through the `logging` capability; lines past it are
    /// dropped and counted, and the count is logged once when the call ends.
    pub max_log_bytes: u64,
    /// Log bytes a plugin may write per minute over all its calls (a bucket that refills
    /// continuously); lines past it are dropped and reported at most once a minute.
    pub max_log_bytes_per_minute: u64,
    /// Outgoing connections one call may hold open at once (each is also charged to
    /// `memory_mb`).
    pub max_connections: u32,
    /// Files one call may hold open in its granted folders (the folders themselves aside).
    pub max_open_files: u32,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            timeout_ms: 10_000,
            memory_mb: 64,
            max_concurrency: 16,
            max_output_bytes: 1024 * 1024,
            max_log_bytes: 256 * 1024,
            max_log_bytes_per_minute: 8 * 1024 * 1024,
            max_connections: 16,
            max_open_files: 64,
        }
    }
}

/// Hard ceilings: the pooling allocator reserves memory slots of `MAX_MEMORY_MB`.
pub const MAX_MEMORY_MB: u64 = 1024;
pub const MAX_TIMEOUT_MS: u64 = 600_000;
pub const MAX_CONNECTIONS_PER_CALL: u32 = 1024;
pub const MAX_OPEN_FILES_PER_CALL: u32 = 1024;

impl Budgets {
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return Err(format!("timeout_ms must be between 1 and {MAX_TIMEOUT_MS}"));
        }
        if self.memory_mb == 0 || self.memory_mb > MAX_MEMORY_MB {
            return Err(format!("memory_mb must be between 1 and {MAX_MEMORY_MB}"));
        }
        if self.max_concurrency == 0 {
            return Err("max_concurrency must be at least 1".into());
        }
        if self.max_output_bytes == 0 {
            return Err("max_output_bytes must be at least 1".into());
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS_PER_CALL {
            return Err(format!(
                "max_connections must be between 1 and {MAX_CONNECTIONS_PER_CALL}"
            ));
        }
        if self.max_open_files == 0 || self.max_open_files > MAX_OPEN_FILES_PER_CALL {
            return Err(format!(
                "max_open_files must be between 1 and {MAX_OPEN_FILES_PER_CALL}"
            ));
        }
        Ok(())
    }
}

/// A plugin's own budget settings; unset fields take the runtime defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetOverrides {
    pub timeout_ms: Option<u64>,
    pub memory_mb: Option<u64>,
    pub max_concurrency: Option<u32>,
    pub max_output_bytes: Option<u64>,
    pub max_log_bytes: Option<u64>,
    pub max_log_bytes_per_minute: Option<u64>,
    pub max_connections: Option<u32>,
    pub max_open_files: Option<u32>,
}

impl BudgetOverrides {
    pub fn over(&self, defaults: &Budgets) -> Budgets {
        Budgets {
            timeout_ms: self.timeout_ms.unwrap_or(defaults.timeout_ms),
            memory_mb: self.memory_mb.unwrap_or(defaults.memory_mb),
            max_concurrency: self.max_concurrency.unwrap_or(defaults.max_concurrency),
            max_output_bytes: self.max_output_bytes.unwrap_or(defaults.max_output_bytes),
            max_log_bytes: self.max_log_bytes.unwrap_or(defaults.max_log_bytes),
            max_log_bytes_per_minute: self
                .max_log_bytes_per_minute
                .unwrap_or(defaults.max_log_bytes_per_minute),
            max_connections: self.max_connections.unwrap_or(defaults.max_connections),
            max_open_files: self.max_open_files.unwrap_or(defaults.max_open_files),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        self.over(&Budgets::default()).validate()
    }
}

/// When repeated failures stop calls to a plugin for a while.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failed calls (traps, timeouts, budget breaches) that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before letting one through to probe.
    pub open_seconds: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_seconds: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Load this component file in addition to the plugins folder.
    pub path: Option<PathBuf>,
    /// Run built-in plugin NAME under this section's name: another instance of it, with its
    /// own config, endpoints and grants (a second Spark cluster, a second SQL connector).
    #[serde(default)]
    pub builtin: Option<String>,
    /// Set to false to keep a plugin from loading.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Let a component file (this section's `path`, or one in the plugins folder) with the
    /// name of a built-in plugin replace it. The replacement runs with this section's
    /// permissions but never with its secret headers or endpoint credentials.
    #[serde(default)]
    pub replace_builtin: bool,
    pub budgets: Option<BudgetOverrides>,
    #[serde(default)]
    pub permissions: Permissions,
    /// Values the plugin reads through the `config` capability.
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
    /// HTTP services this plugin talks to, by name (`api`, `schema_registry`, ...). Each one is
    /// granted as egress, and its credentials are added by the host to every request to it.
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointConfig>,
    /// For channel plugins: who they answer and with which agent.
    #[serde(default)]
    pub channel: Option<super::ChannelSettings>,
}

impl Default for PluginConfig {
    fn default() -> Self {
        Self {
            path: None,
            builtin: None,
            enabled: true,
            replace_builtin: false,
            budgets: None,
            permissions: Permissions::default(),
            config: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            channel: None,
        }
    }
}

/// One HTTP service a plugin uses: where it is and how to authenticate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Base URL, e.g. `http://airflow.internal:8080`. The plugin sees it; credentials it never does.
    pub url: String,
    #[serde(default)]
    pub auth: Option<EndpointAuth>,
    /// An endpoint the operator names may be on a private network (the usual case for
    /// Airflow, Livy or a schema registry). Set false to require public addresses.
    #[serde(default = "yes")]
    pub allow_private: bool,
}

/// Credentials the host adds to requests to an endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EndpointAuth {
    /// `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: Secret },
    /// `Authorization: Bearer TOKEN`.
    Bearer { token: Secret },
    /// A key in a header of the service's choosing (default `X-API-Key`).
    ApiKey {
        #[serde(default = "default_api_key_header")]
        header: String,
        key: Secret,
    },
    /// A token in the URL path: the host puts `prefix` before the path of every request to
    /// the endpoint (Telegram's `/bot${TOKEN}`), so the plugin calls `URL/sendMessage`.
    PathPrefix { prefix: Secret },
    /// A Google service account: the host signs a JWT with the key of `key_file` (the JSON
    /// key Google issues), exchanges it at the key's `token_uri` for an access token with
    /// `scopes`, sends `Authorization: Bearer` and renews it before it expires.
    GoogleServiceAccount {
        key_file: PathBuf,
        scopes: Vec<String>,
        /// The token endpoint may be on a private address (tests, a proxy).
        #[serde(default)]
        token_allow_private: bool,
    },
}

fn default_api_key_header() -> String {
    "X-API-Key".to_owned()
}

/// What the operator grants one plugin. Everything is denied unless listed here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    #[serde(default)]
    pub http: HttpPermissions,
    #[serde(default)]
    pub filesystem: Vec<FsGrant>,
    /// Connector instances this plugin may call through `connectors.execute`.
    #[serde(default)]
    pub connectors: Vec<String>,
    /// Per-plugin key-value state.
    #[serde(default)]
    pub state: bool,
    /// SQL sources (`data.sql`) this plugin may read.
    #[serde(default)]
    pub sql: Vec<String>,
    /// SQL sources this plugin may also write (the source must be `writable` too).
    #[serde(default)]
    pub sql_write: Vec<String>,
    /// Kafka clusters (`data.kafka`) this plugin may inspect and peek.
    #[serde(default)]
    pub kafka: Vec<String>,
    /// Kafka clusters this plugin may produce to.
    #[serde(default)]
    pub kafka_produce: Vec<String>,
    /// Programs this plugin may run through the `shell` capability (argv, never a shell).
    #[serde(default)]
    pub shell: Option<ShellGrant>,
    /// Vector collections (the RAG capability).
    #[serde(default)]
    pub vectors: Vec<String>,
    /// Keys a channel verifies inbound requests with, by name (`verify` capability); the
    /// plugin names them, it never reads them.
    #[serde(default)]
    pub verify: BTreeMap<String, super::VerifyKeyConfig>,
}

/// The `shell` capability: off unless this names programs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellGrant {
    /// Program names or absolute paths that may run, e.g. `["git", "/usr/bin/dbt"]`. A name is
    /// looked up in `PATH` by the host; nothing else can run. Shells, interpreters and other
    /// program runners are refused at load (`capabilities::validate_config`).
    pub allow: Vec<String>,
    /// Working folder of every run (default: `data_dir/shell/PLUGIN`); path arguments must
    /// stay inside it.
    #[serde(default)]
    pub working_dir: Option<PathBuf>,
    /// Kill the program after this long.
    #[serde(default = "default_shell_timeout_ms")]
    pub timeout_ms: u64,
    /// Most bytes kept of stdout and of stderr each.
    #[serde(default = "default_shell_output_bytes")]
    pub max_output_bytes: usize,
}

fn default_shell_timeout_ms() -> u64 {
    30_000
}
fn default_shell_output_bytes() -> usize {
    64 * 1024
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPermissions {
    /// Hosts the plugin may reach: `example.com`, `*.example.com`, `example.com:8443`,
    /// `127.0.0.1:8080`. Empty means no egress.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Allow destinations that resolve to loopback, private, link-local or other
    /// non-public addresses. Off by default, so a public name pointing inside is refused.
    #[serde(default)]
    pub allow_private: bool,
    /// Headers the host adds to requests for a host (credentials the guest never sees).
    #[serde(default)]
    pub secrets: Vec<SecretHeader>,
}

/// A credential the host adds to requests for one origin: a header (`header` and `value`),
/// or a path prefix (`path_prefix`, for APIs with the token in the path, like Telegram's
/// `/bot${TOKEN}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretHeader {
    /// The origin the credential is sent to (`Origin`): `https://api.example.com`,
    /// `http://127.0.0.1:8080`, `https://*.example.com`. A bare host means https on port 443:
    /// it never goes over another scheme or to another port.
    pub host: String,
    /// Header name, e.g. `authorization`.
    #[serde(default)]
    pub header: Option<String>,
    /// Header value, usually `"Bearer ${TOKEN}"`.
    #[serde(default)]
    pub value: Option<Secret>,
    /// Put before the path of every request to the origin: `/bot${TELEGRAM_TOKEN}`.
    #[serde(default)]
    pub path_prefix: Option<Secret>,
}

impl SecretHeader {
    /// Either a header and its value, or a path prefix: `/` then path characters.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.header, &self.value, &self.path_prefix) {
            (Some(_), Some(_), None) => Ok(()),
            (None, None, Some(prefix)) => check_path_prefix(prefix.expose()),
            _ => Err("give either `header` and `value`, or `path_prefix`".into()),
        }
    }
}

/// A path prefix starts with `/`, does not end with one, and holds only characters a path
/// segment may carry unescaped (no `?`, `#`, `%`, spaces or controls).
pub fn check_path_prefix(prefix: &str) -> Result<(), String> {
    let valid = prefix.len() > 1
        && prefix.starts_with('/')
        && !prefix.ends_with('/')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b));
    if valid {
        Ok(())
    } else {
        Err("path_prefix must start with `/`, not end with `/`, and hold only letters, digits and `/-._~!$&'()*+,;=:@` (is its ${VARIABLE} set?)".into())
    }
}

/// Longest plugin or tool name, in bytes.
pub const MAX_PLUGIN_NAME: usize = 64;

/// The host's own memory tool.
pub const HOST_MEMORY_TOOL: &str = "memory";

/// Names of the host's own tools: no plugin and no plugin's tool may take one (a plugin
/// named `memory` would pass every specialist's filter, and the model would be offered two
/// tools of that name).
pub const RESERVED_NAMES: &[&str] = &[HOST_MEMORY_TOOL, HOST_CRON_TOOL];

/// The channels of the host's own conversations (the HTTP API, the CLI, scheduled runs): no
/// chat channel plugin may take one of these names, or it would share their conversations
/// and owners.
pub const HOST_CHANNELS: &[&str] = &["api", "cli", "schedule"];

/// The host's own scheduling tool (`schedules::cron_tool`).
pub const HOST_CRON_TOOL: &str = "cron";

/// A plugin name (a manifest's `name`, a `plugins.NAME` section) is `[a-z][a-z0-9_]*` and at
/// most `MAX_PLUGIN_NAME` bytes: it becomes a config key, a metric label, a log field, a span
/// attribute and part of file names. The host's own tool names are reserved.
pub fn check_plugin_name(name: &str) -> Result<(), String> {
    check_name("plugin", name)
}

/// A tool's name (an operation a tool plugin describes) follows the plugin name rules: it is
/// shown to the model, listed over MCP and written to logs and spans.
pub fn check_tool_name(name: &str) -> Result<(), String> {
    check_name("tool", name)
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if RESERVED_NAMES.contains(&name) {
        return Err(format!(
            "{what} name `{name}` is reserved for the host's own tool; choose another name"
        ));
    }
    let valid = name.len() <= MAX_PLUGIN_NAME
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        return Ok(());
    }
    // Shown escaped and shortened: the name may come from a hostile component.
    let shown: String = name.chars().take(MAX_PLUGIN_NAME + 1).collect();
    let more = if shown.len() < name.len() { "..." } else { "" };
    Err(format!(
        "{what} name {shown:?}{more} is not valid: a lower-case letter, then lower-case letters, digits or `_`, at most {MAX_PLUGIN_NAME} characters"
    ))
}

/// A secret value: never printed, never written back.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsGrant {
    /// Folder on the host.
    pub host: PathBuf,
    /// Where the plugin sees it, e.g. `/data`.
    pub guest: String,
    #[serde(default)]
    pub mode: FsMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsMode {
    #[default]
    Ro,
    Rw,
}

/// One egress allowlist entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// `Some("example.com")` for `*.example.com`.
    pub wildcard_suffix: Option<String>,
    /// Lower case; an IPv6 address without brackets, in its canonical form.
    pub host: String,
    pub port: Option<u16>,
}

impl HostPattern {
    /// `host`, `*.domain`, `*`, each with an optional `:port`; an IPv6 address in brackets
    /// (`[::1]`, `[::1]:8080`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().to_ascii_lowercase();
        let parse_port = |port: &str| {
            port.parse::<u16>()
                .map_err(|_| format!("`{text}`: port `{port}` is not a number"))
        };
        if let Some(bracketed) = text.strip_prefix('[') {
            let (address, rest) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("`{text}`: `[` without `]`"))?;
            let address: std::net::Ipv6Addr = address
                .parse()
                .map_err(|_| format!("`{text}`: `{address}` is not an IPv6 address"))?;
            let port = match rest {
                "" => None,
                _ => Some(parse_port(rest.strip_prefix(':').ok_or_else(|| {
                    format!("`{text}`: expected `:port` after `]`")
                })?)?),
            };
            return Ok(Self {
                wildcard_suffix: None,
                host: address.to_string(),
                port,
            });
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host.to_owned(), Some(parse_port(port)?)),
            _ => (text.clone(), None),
        };
        let valid = |h: &str| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        };
        if let Some(suffix) = host.strip_prefix("*.") {
            if !valid(suffix) {
                return Err(format!("`{text}` is not a host pattern"));
            }
            return Ok(Self {
                wildcard_suffix: Some(suffix.to_owned()),
                host,
                port,
            });
        }
        if host == "*" {
            return Ok(Self {
                wildcard_suffix: Some(String::new()),
                host,
                port,
            });
        }
        if !valid(&host) {
            return Err(format!(
                "`{text}` is not a host pattern (expected `host`, `*.domain` or `host:port`)"
            ));
        }
        Ok(Self {
            wildcard_suffix: None,
            host,
            port,
        })
    }

    /// Does `host:port` match? Without a port in the pattern, any port matches. `host` may be
    /// an IPv6 address with or without brackets.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        match &self.wildcard_suffix {
            Some(suffix) if suffix.is_empty() => true,
            Some(suffix) => host.len() > suffix.len() && host.ends_with(&format!(".{suffix}")),
            None => match (
                host.parse::<std::net::IpAddr>(),
                self.host.parse::<std::net::IpAddr>(),
            ) {
                (Ok(asked), Ok(granted)) => asked == granted,
                _ => host == self.host,
            },
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// The scheme of an `Origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// `http` or `https`; anything else is no scheme a credential may travel over.
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("https") {
            Some(Self::Https)
        } else if name.eq_ignore_ascii_case("http") {
            Some(Self::Http)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

/// Where a credential may be sent: scheme, host (or `*.domain`) and port, all three. Parsed
/// from `https://api.example.com`, `http://127.0.0.1:8080`, `https://*.example.com:8443` or
/// `https://[::1]:8443`; without a port, the scheme's default; a bare `api.example.com` (or
/// `api.example.com:8443`) means https. A request matches only with the same scheme, a
/// matching host and the same port, so a header granted for `https://api.example.com` never
/// goes to `http://api.example.com` or to `api.example.com:8080`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: Scheme,
    /// Always with a port.
    pub host: HostPattern,
}

impl Origin {
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let (scheme, authority) = match trimmed.split_once("://") {
            Some((scheme, rest)) => (
                Scheme::from_name(scheme).ok_or_else(|| {
                    format!("`{trimmed}`: only http:// and https:// origins are supported")
                })?,
                rest,
            ),
            None => (Scheme::Https, trimmed),
        };
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.is_empty() {
            return Err(format!("`{trimmed}` has no host"));
        }
        if authority.contains(['/', '?', '#', '@', '\\']) {
            return Err(format!(
                "`{trimmed}` is not an origin (scheme, host and port only: no path, query or user)"
            ));
        }
        let mut host = HostPattern::parse(authority)?;
        if host.port == Some(0) {
            return Err(format!("`{trimmed}`: port 0"));
        }
        host.port = Some(host.port.unwrap_or(scheme.default_port()));
        Ok(Self { scheme, host })
    }

    /// The origin of an `http`/`https` URL (its host exactly, its port or the default).
    pub fn of_url(url: &url::Url) -> Result<Self, String> {
        let scheme = Scheme::from_name(url.scheme())
            .ok_or_else(|| format!("`{url}`: only http and https endpoints are supported"))?;
        let host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(format!("`{url}` has no host")),
        };
        Ok(Self {
            scheme,
            host: HostPattern {
                wildcard_suffix: None,
                host,
                port: Some(url.port().unwrap_or(scheme.default_port())),
            },
        })
    }

    /// Does a request to `scheme://host:port` go to this origin? `scheme` is the request's
    /// (`None`: neither http nor https, which no origin matches).
    pub fn matches(&self, scheme: Option<Scheme>, host: &str, port: u16) -> bool {
        scheme == Some(self.scheme) && self.host.matches(host, port)
    }

    pub fn port(&self) -> u16 {
        self.host.port.unwrap_or(self.scheme.default_port())
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_match_as_documented() {
        let exact = HostPattern::parse("example.com").unwrap();
        assert!(exact.matches("example.com", 443));
        assert!(exact.matches("EXAMPLE.com", 80));
        assert!(!exact.matches("api.example.com", 443));
        let wildcard = HostPattern::parse("*.example.com").unwrap();
        assert!(wildcard.matches("api.example.com", 443));
        assert!(!wildcard.matches("example.com", 443));
        assert!(!wildcard.matches("badexample.com", 443));
        let with_port = HostPattern::parse("127.0.0.1:8080").unwrap();
        assert!(with_port.matches("127.0.0.1", 8080));
        assert!(!with_port.matches("127.0.0.1", 8081));
        assert!(HostPattern::parse("exa mple.com").is_err());
        assert!(HostPattern::parse("host:99999").is_err());
        let v6 = HostPattern::parse("[0:0::1]:8080").unwrap();
        assert!(v6.matches("::1", 8080));
        assert!(v6.matches("[::1]", 8080));
        assert!(!v6.matches("::1", 8081));
        assert!(HostPattern::parse("[::1").is_err());
        assert!(HostPattern::parse("[nope]:1").is_err());
        assert!(HostPattern::parse("[::1]8080").is_err());
    }

    #[test]
    fn tool_names_follow_the_plugin_rules_and_host_tool_names_are_reserved() {
        assert!(check_tool_name("sql_query").is_ok());
        for bad in [
            "",
            "memory",
            "a\nb",
            "\u{1b}[31mred",
            "../../etc/passwd",
            "Tool",
            &"t".repeat(300),
        ] {
            let error = check_tool_name(bad).unwrap_err();
            assert!(error.starts_with("tool name"), "{error}");
            assert!(
                !error.contains('\n') && !error.contains('\u{1b}'),
                "{error}"
            );
        }
        assert!(
            check_plugin_name("memory")
                .unwrap_err()
                .contains("reserved")
        );
    }

    #[test]
    fn plugin_names_are_lower_case_identifiers_of_bounded_length() {
        for good in [
            "a",
            "web_fetch",
            "sql_connector",
            "x9",
            "a_1_b",
            &"a".repeat(64),
        ] {
            assert!(check_plugin_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "_a",
            "9a",
            "Web",
            "web-fetch",
            "web.fetch",
            "a b",
            "a\nb",
            "a\"b",
            "caf\u{e9}",
            "a/b",
            "a\\b",
            "a{b}",
            &"a".repeat(65),
        ] {
            let error = check_plugin_name(bad).unwrap_err();
            assert!(!error.contains('\n'), "{error}");
        }
        let long = check_plugin_name(&"x".repeat(5000)).unwrap_err();
        assert!(long.len() < 300, "{long}");
    }

    #[test]
    fn origins_bind_scheme_host_and_port() {
        use Scheme::{Http, Https};
        let cases = [
            ("https://api.x.com", Https, "api.x.com", 443),
            ("HTTPS://API.X.COM/", Https, "api.x.com", 443),
            ("api.x.com", Https, "api.x.com", 443),
            ("api.x.com:8443", Https, "api.x.com", 8443),
            ("http://api.x.com", Http, "api.x.com", 80),
            ("http://127.0.0.1:8080", Http, "127.0.0.1", 8080),
            ("https://[::1]:9443", Https, "::1", 9443),
            ("https://*.x.com", Https, "a.x.com", 443),
        ];
        for (text, scheme, host, port) in cases {
            let origin = Origin::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(origin.matches(Some(scheme), host, port), "{text}");
            let other = if scheme == Https { Http } else { Https };
            assert!(
                !origin.matches(Some(other), host, port),
                "{text} over {other:?}"
            );
            assert!(
                !origin.matches(None, host, port),
                "{text} over another scheme"
            );
            for wrong_port in [80, 443, 8080, 8443, 9443] {
                if wrong_port != port {
                    assert!(
                        !origin.matches(Some(scheme), host, wrong_port),
                        "{text} :{wrong_port}"
                    );
                }
            }
            assert!(!origin.matches(Some(scheme), "evil.com", port), "{text}");
        }
        let exact = Origin::parse("https://api.x.com").unwrap();
        assert!(!exact.matches(Some(Https), "api.x.com.evil.com", 443));
        assert!(!exact.matches(Some(Https), "x.com", 443));
        assert_eq!(exact.to_string(), "https://api.x.com:443");
        assert_eq!(
            Origin::parse("http://[::1]:8080").unwrap().to_string(),
            "http://[::1]:8080"
        );
        for bad in [
            "ftp://api.x.com",
            "https://",
            "https://api.x.com/path",
            "https://user@api.x.com",
            "https://api.x.com?q",
            "https://api.x.com#f",
            "https://api.x.com:0",
            "https://api.x.com:99999",
            "https://exa mple.com",
            "",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn origins_of_urls_take_the_scheme_default_port() {
        let of = |text: &str| Origin::of_url(&url::Url::parse(text).unwrap());
        assert_eq!(of("https://a.example.com/x").unwrap().port(), 443);
        assert_eq!(of("http://a.example.com/x").unwrap().port(), 80);
        assert_eq!(of("http://a.example.com:8080").unwrap().port(), 8080);
        let v6 = of("https://[::1]:9443/").unwrap();
        assert!(v6.matches(Some(Scheme::Https), "[::1]", 9443));
        assert!(of("ftp://a.example.com").is_err());
    }
}
