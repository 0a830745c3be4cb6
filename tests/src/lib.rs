//! Helpers shared by the end-to-end tests: fixture components, throwaway hosts, a tiny HTTP
//! server on loopback.

pub mod browser;
pub mod chat_platforms;
pub mod contained;
pub mod http1;
pub mod mock_openai;
pub mod otlp;
pub mod python;
pub mod qdrant;
pub mod replicas;
pub mod schedules;
pub mod served;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use databot::config::Config;
use databot::runtime::Runtime;

/// A guest component built from `tests/fixtures` (or `web_fetch` from `plugins/`).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("DATABOT_FIXTURES")).join(format!("{name}.wasm"))
}

/// A folder for a `databot` child process: `plugins/` holding the named fixtures, and
/// `databot.yaml` over it (built-in plugins off, `watch` as given, `extra_yaml` appended).
/// Returns the config file's path.
pub fn process_folder(dir: &Path, fixtures: &[&str], watch: bool, extra_yaml: &str) -> PathBuf {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins folder");
    for name in fixtures {
        std::fs::copy(fixture(name), plugins.join(format!("{name}.wasm"))).expect("copy fixture");
    }
    let config = dir.join("databot.yaml");
    std::fs::write(
        &config,
        format!(
            "runtime:\n  plugins_dir: {}\n  data_dir: {}\n  builtin_plugins: false\n  watch: {watch}\n{extra_yaml}",
            plugins.display(),
            dir.join("data").display()
        ),
    )
    .expect("config");
    config
}

/// A host in a temporary folder with `plugins` copied into its plugins folder.
pub struct TestHost {
    pub runtime: Runtime,
    pub dir: tempfile::TempDir,
}

impl TestHost {
    /// `config_yaml` may use `{dir}` for the temporary folder.
    pub async fn start(config_yaml: &str, plugins: &[&str]) -> anyhow::Result<Self> {
        Self::start_with(config_yaml, plugins, |_| Ok(())).await
    }

    /// Like `start`, with `setup` run on the temporary folder before the host starts.
    pub async fn start_with(
        config_yaml: &str,
        plugins: &[&str],
        setup: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        setup(dir.path())?;
        let plugins_dir = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins_dir)?;
        for plugin in plugins {
            std::fs::copy(fixture(plugin), plugins_dir.join(format!("{plugin}.wasm")))?;
        }
        let yaml = format!(
            "runtime:\n  plugins_dir: {plugins}\n  data_dir: {data}\n  builtin_plugins: false\n{rest}",
            plugins = plugins_dir.display(),
            data = dir.path().join("data").display(),
            rest = config_yaml.replace("{dir}", &dir.path().display().to_string()),
        );
        let config = Config::parse(&yaml, "test.yaml", |_| None)?;
        let runtime = Runtime::new(Arc::new(config))?;
        runtime.load_configured().await?;
        Ok(Self { runtime, dir })
    }

    /// Run a connector operation with JSON params: the decoded result, or the call's error.
    pub async fn connector(
        &self,
        connector: &str,
        operation: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, databot::runtime::CallError> {
        let text = self
            .runtime
            .execute_connector(connector, operation, &params.to_string())
            .await?;
        Ok(serde_json::from_str(&text).expect("connector results are JSON"))
    }

    /// Call a tool with JSON arguments: the decoded result, or the call's error.
    pub async fn tool(
        &self,
        tool: &str,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, databot::runtime::CallError> {
        let text = self.runtime.call_tool(tool, &args.to_string()).await?;
        Ok(serde_json::from_str(&text).expect("tool results are JSON"))
    }

    /// A tool call that must succeed: its decoded result (panics with the error).
    pub async fn tool_ok(&self, tool: &str, args: serde_json::Value) -> serde_json::Value {
        self.tool(tool, args)
            .await
            .unwrap_or_else(|e| panic!("tool `{tool}` failed: {e}"))
    }

    /// A tool call that must fail: its error (panics with the result).
    pub async fn tool_err(
        &self,
        tool: &str,
        args: serde_json::Value,
    ) -> databot::runtime::CallError {
        match self.tool(tool, args).await {
            Ok(value) => panic!("tool `{tool}` should have failed, returned {value}"),
            Err(error) => error,
        }
    }

    /// A connector operation that must succeed: its decoded result.
    pub async fn connector_ok(
        &self,
        connector: &str,
        operation: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
        self.connector(connector, operation, params)
            .await
            .unwrap_or_else(|e| panic!("`{connector}.{operation}` failed: {e}"))
    }

    /// A connector operation that must fail: its error.
    pub async fn connector_err(
        &self,
        connector: &str,
        operation: &str,
        params: serde_json::Value,
    ) -> databot::runtime::CallError {
        match self.connector(connector, operation, params).await {
            Ok(value) => panic!("`{connector}.{operation}` should have failed, returned {value}"),
            Err(error) => error,
        }
    }

    /// Load a plugin built into the binary (e.g. `web_fetch`).
    pub async fn load_builtin(&self, name: &str) {
        let bytes = databot::runtime::builtin::builtin_bytes(name).expect("a built-in plugin");
        self.runtime
            .load_bytes(bytes.to_vec(), databot::runtime::PluginSource::Builtin)
            .await
            .expect("the built-in plugin loads");
    }

    /// A session store in this host's folder (`name` picks the file).
    pub async fn sessions(&self, name: &str) -> Arc<databot::agent::sessions::SessionStore> {
        let url = format!(
            "sqlite://{}",
            self.dir.path().join(format!("{name}.db")).display()
        );
        Arc::new(
            databot::agent::sessions::SessionStore::connect(&url)
                .await
                .expect("the session store opens"),
        )
    }

    /// An agent on this host's runtime talking to `provider`, with or without the router.
    pub async fn agent(&self, provider: &str, router: bool) -> databot::agent::Agent {
        let settings = databot::config::AgentConfig {
            provider: provider.to_owned(),
            router: databot::config::RouterConfig {
                enabled: router,
                specialists: Vec::new(),
            },
            ..databot::config::AgentConfig::default()
        };
        databot::agent::Agent::new(
            self.runtime.clone(),
            self.sessions("sessions").await,
            settings,
        )
    }

    /// The HTTP gateway over this host (agent on `provider`, router off, gateway and other
    /// agent settings from `yaml`) on a loopback port with room for many simultaneous connects.
    /// Its sessions are `agent.sessions_url` when `yaml` sets it, else
    /// `self.sessions("sessions")`, with the schedule endpoints over them (no scheduler runs
    /// the jobs).
    pub async fn start_gateway(&self, provider: &str, yaml: &str) -> u16 {
        self.start_gateway_with(provider, yaml, None).await
    }

    /// `start_gateway`, showing `knowledge` at `/api/v1/knowledge` (as `serve` shows the
    /// knowledge base its agent searches).
    pub async fn start_gateway_with(
        &self,
        provider: &str,
        yaml: &str,
        knowledge: Option<Arc<databot::rag::Rag>>,
    ) -> u16 {
        self.start_gateway_until(provider, yaml, knowledge, std::future::pending())
            .await
            .0
    }

    /// `start_gateway_with`, shutting down when `shutdown` completes; the port and the task
    /// that ends when the gateway has shut down (every connection closed).
    pub async fn start_gateway_until(
        &self,
        provider: &str,
        yaml: &str,
        knowledge: Option<Arc<databot::rag::Rag>>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> (u16, tokio::task::JoinHandle<anyhow::Result<()>>) {
        let config = Config::parse(yaml, "gateway.yaml", |_| None).expect("gateway config");
        let settings = databot::config::AgentConfig {
            provider: provider.to_owned(),
            router: databot::config::RouterConfig {
                enabled: false,
                specialists: Vec::new(),
            },
            ..config.agent.clone()
        };
        let sessions = match &config.agent.sessions_url {
            Some(url) => Arc::new(
                databot::agent::sessions::SessionStore::connect(url)
                    .await
                    .expect("the session store opens"),
            ),
            None => self.sessions("sessions").await,
        };
        let schedules = databot::schedules::Schedules::open(&config, sessions.clone())
            .await
            .expect("the schedule tables open");
        let agent = Arc::new(databot::agent::Agent::new(
            self.runtime.clone(),
            sessions.clone(),
            settings,
        ));
        let bus = Arc::new(databot::bus::MemoryBus::new(
            agent,
            databot::bus::BusLimits::default(),
        ));
        let state = databot::gateway::GatewayState::new(
            &config.gateway,
            self.runtime.clone(),
            bus,
            sessions,
            provider.to_owned(),
            Some(schedules),
        );
        if let Some(knowledge) = knowledge {
            state.set_knowledge(knowledge);
        }
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind");
        let listener = socket.listen(4096).expect("listen");
        let port = listener.local_addr().expect("address").port();
        let gateway = config.gateway.clone();
        let served = tokio::spawn(async move {
            databot::gateway::serve_on(listener, state, &gateway, shutdown).await
        });
        (port, served)
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }
}

/// Serve `body` with `content_type` to every request on a loopback port; returns the port.
pub async fn serve_http(body: &'static str, content_type: &'static str) -> u16 {
    serve_http_with(move |_| (content_type, body.to_owned())).await
}

/// Serve the answer of `respond(request head)` to every request; returns the port.
pub async fn serve_http_with(
    respond: impl Fn(&str) -> (&'static str, String) + Send + Sync + 'static,
) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let respond = std::sync::Arc::new(respond);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let respond = respond.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 8192];
                let read = socket.read(&mut buffer).await.unwrap_or(0);
                let (content_type, body) = respond(&String::from_utf8_lossy(&buffer[..read]));
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

/// Append a custom section to a component: same behaviour, different bytes (a new revision).
pub fn with_marker(bytes: &[u8], marker: &str) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.extend_from_slice(&custom_section("databot-test-marker", marker.as_bytes()));
    out
}

/// A WebAssembly custom section (id 0, its size, its name, `payload`).
fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    leb128(&mut body, name.len());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut section = vec![0];
    leb128(&mut section, body.len());
    section.extend_from_slice(&body);
    section
}

/// A request seen by `serve_scripted`.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// When the whole request had arrived.
    pub received_at: std::time::Instant,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("the request body is JSON")
    }
}

/// What `serve_scripted` answers: status, headers, and a body sent in chunks with a pause
/// between them (for server-sent events and slow servers).
#[derive(Debug, Clone)]
pub struct ScriptedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub chunks: Vec<String>,
    pub pause: std::time::Duration,
}

impl ScriptedResponse {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            chunks: vec![body.to_string()],
            pause: std::time::Duration::ZERO,
        }
    }

    pub fn sse(events: &[serde_json::Value]) -> Self {
        let mut chunks: Vec<String> = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        chunks.push("data: [DONE]\n\n".into());
        Self {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            chunks,
            pause: std::time::Duration::from_millis(2),
        }
    }
}

/// An HTTP/1.1 server on loopback that records every request and answers with `respond`
/// (called with the request and how many requests came before it).
pub async fn serve_scripted(
    respond: impl Fn(&SeenRequest, usize) -> ScriptedResponse + Send + Sync + 'static,
) -> (u16, std::sync::Arc<recorded::Requests>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = std::sync::Arc::new(recorded::Requests::default());
    let respond = std::sync::Arc::new(respond);
    let recorder = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let respond = respond.clone();
            let recorder = recorder.clone();
            tokio::spawn(async move {
                let mut raw = Vec::new();
                let mut buffer = [0u8; 8192];
                let head_end = loop {
                    let Ok(read) = socket.read(&mut buffer).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    raw.extend_from_slice(&buffer[..read]);
                    if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end + 4;
                    }
                };
                let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
                let mut lines = head.split("\r\n");
                let request_line = lines.next().unwrap_or_default().to_owned();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                while raw.len() < head_end + length {
                    let Ok(read) = socket.read(&mut buffer).await else {
                        return;
                    };
                    if read == 0 {
                        break;
                    }
                    raw.extend_from_slice(&buffer[..read]);
                }
                let mut parts = request_line.split(' ');
                let request = SeenRequest {
                    method: parts.next().unwrap_or_default().to_owned(),
                    path: parts.next().unwrap_or_default().to_owned(),
                    headers,
                    body: String::from_utf8_lossy(&raw[head_end..]).into_owned(),
                    received_at: std::time::Instant::now(),
                };
                let index = recorder.push(request.clone());
                let response = respond(&request, index);
                let mut head = format!("HTTP/1.1 {} X\r\nconnection: close\r\n", response.status);
                for (name, value) in &response.headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for chunk in &response.chunks {
                    tokio::time::sleep(response.pause).await;
                    if socket.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                    let _ = socket.flush().await;
                }
            });
        }
    });
    (port, seen)
}

/// Requests recorded by `serve_scripted`.
pub mod recorded {
    #[derive(Default)]
    pub struct Requests(std::sync::Mutex<Vec<super::SeenRequest>>);

    impl Requests {
        pub(crate) fn push(&self, request: super::SeenRequest) -> usize {
            let mut all = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            all.push(request);
            all.len() - 1
        }

        pub fn all(&self) -> Vec<super::SeenRequest> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        }
    }
}

/// A plain HTTP/1.1 exchange with `Connection: close` from 127.0.0.1: (status, lower-case
/// headers, body). `Host` is `127.0.0.1` unless `headers` has one.
pub async fn http_call(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let source = std::net::Ipv4Addr::LOCALHOST.into();
    http_call_from(source, port, method, path, headers, body).await
}

/// `http_call` from another loopback address (`127.0.0.2`, ...), as a different client.
pub async fn http_call_from(
    source: std::net::IpAddr,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    assert!(source.is_loopback(), "tests talk over loopback only");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(std::net::SocketAddr::new(source, 0))
        .expect("bind a loopback source address");
    let mut socket = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect");
    let host = if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        String::new()
    } else {
        "host: 127.0.0.1\r\n".to_owned()
    };
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\n{host}connection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    socket.write_all(request.as_bytes()).await.expect("write");
    socket.write_all(body.as_bytes()).await.expect("write body");
    let mut raw = Vec::new();
    socket.read_to_end(&mut raw).await.expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let (status, headers) = parse_head(&raw[..split]);
    let body = raw.get(split + 4..).unwrap_or_default();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// An HTTP/1.1 response head: its status (0 when unreadable) and its headers, names in lower
/// case.
pub fn parse_head(head: &[u8]) -> (u16, Vec<(String, String)>) {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

pub fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let rest = &body[line_end + 2..];
        let Some(size) = size.filter(|size| *size > 0 && rest.len() >= *size) else {
            break;
        };
        out.extend_from_slice(&rest[..size]);
        body = rest[size..].strip_prefix(b"\r\n").unwrap_or(&rest[size..]);
    }
    out
}

/// Create the SQLite database at `path` (if needed) and run the set-up script `sql` in it. For
/// synchronous set-up code such as `TestHost::start_with`'s closure: it runs on a thread of
/// its own with its own runtime.
pub fn sqlite_setup(path: &Path, sql: &str) -> std::io::Result<()> {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let sql = sql.to_owned();
    std::thread::spawn(move || -> std::io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let mut connection = sqlx::SqliteConnection::connect(&url)
                .await
                .map_err(std::io::Error::other)?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut connection)
                .await
                .map_err(std::io::Error::other)?;
            Ok(())
        })
    })
    .join()
    .map_err(|_| std::io::Error::other("the SQLite set-up thread panicked"))?
}

/// The live PostgreSQL of every machine of this project (trust auth, database `test`).
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A name no other test run uses at the same time: `PREFIX_PID_NANOS_N` (a valid SQL
/// identifier when `prefix` is one). `N` counts the calls of this process, so two tests that
/// ask within one tick of a coarse clock still get different names.
pub fn unique_name(prefix: &str) -> String {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos}_{call}", std::process::id())
}

/// Run set-up statements on the live PostgreSQL, in order; a failing one panics naming it.
pub async fn postgres_exec(statements: &[String]) {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(POSTGRES_URL)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432");
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

/// A host with `plugins` (fixtures) and the built-in `sql` tool over a SQLite `sql_connector`
/// instance named `lite`, whose table `items` holds 3 rows (`(1,'a'), (2,'b'), (3,'c')`).
pub async fn sqlite_items_host(plugins: &[&str]) -> TestHost {
    let yaml = r#"data:
  sql:
    lite: {url: "sqlite://{dir}/data.db"}
plugins:
  lite:
    builtin: sql_connector
    config: {source: lite}
    permissions: {sql: [lite]}
  sql:
    config: {connectors: [lite]}
    permissions: {connectors: [lite]}
"#;
    let host = TestHost::start_with(yaml, plugins, |dir| {
        sqlite_setup(
            &dir.join("data.db"),
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c');",
        )
    })
    .await
    .expect("host starts");
    host.load_builtin("sql").await;
    host
}

/// Processes whose command line contains `marker` (a zombie's command line is empty, so a
/// process that has exited but is not reaped yet is not listed).
pub fn processes_with(marker: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(marker)
                .then_some(pid)
        })
        .collect()
}

/// CPU time (user + system, every thread) process `pid` has used, from `/proc/PID/stat`, in
/// clock ticks (10 ms), so measure over seconds; zero if unreadable.
pub fn process_cpu_time(pid: u32) -> std::time::Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return std::time::Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) start at ")"; utime and stime are
    // the 14th and 15th fields, the 12th and 13th after it.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf reads a constant of the system; no memory is touched.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).unwrap_or(100).max(1);
    std::time::Duration::from_nanos(ticks.saturating_mul(1_000_000_000 / per_second))
}

/// The resident memory (VmRSS) of process `pid` in KiB; 0 if unreadable.
pub fn process_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// This process's memory as `/proc/self/status` reports it, for the memory benchmarks.
pub mod memory {
    /// A `kB` field of `/proc/self/status` (`VmRSS:`, `VmHWM:`), in KiB; 0 if unreadable.
    pub fn status_kib(field: &str) -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(field))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Reset the peak-RSS mark (`VmHWM`; Linux: writing 5 to clear_refs).
    pub fn reset_peak() {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }
}

/// `component` with its plugin manifest renamed to `name`: a new `databot-manifest` custom
/// section right after the header, which the host reads before the original one.
pub fn with_manifest_name(component: &[u8], name: &str) -> Vec<u8> {
    with_manifest(component, |manifest| manifest.name = name.to_owned())
}

/// `component` with its plugin manifest changed by `change` (as `with_manifest_name`).
pub fn with_manifest(
    component: &[u8],
    change: impl FnOnce(&mut databot::runtime::manifest::Manifest),
) -> Vec<u8> {
    let mut manifest =
        databot::runtime::manifest::read_manifest(component).expect("a plugin component");
    change(&mut manifest);
    let payload = serde_json::to_vec(&manifest).expect("the manifest encodes");
    let mut out = component[..8].to_vec();
    out.extend_from_slice(&custom_section(
        databot::runtime::manifest::MANIFEST_SECTION,
        &payload,
    ));
    out.extend_from_slice(&component[8..]);
    out
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
