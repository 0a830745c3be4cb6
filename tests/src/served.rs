//! `databot serve` as a child process (the real binary path: gateway, bus, agent, provider
//! component, SQLite sessions) answering through the `openai` provider to an OpenAI-compatible
//! server on loopback, with router and RAG off and the rate limiter off; for end-to-end
//! benchmarks that measure the process from outside (latency, CPU time, resident memory).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A running `databot serve`; killed when dropped.
pub struct ServedDatabot {
    child: tokio::process::Child,
    binary: String,
    config: std::path::PathBuf,
    pub port: u16,
    pub pid: u32,
    _dir: tempfile::TempDir,
}

impl ServedDatabot {
    /// Start `binary` (a test or bench passes `env!("CARGO_BIN_EXE_databot_cli")`) with the
    /// `echo` plugin, the provider at `127.0.0.1:provider_port`, and `extra_yaml` appended to
    /// the configuration; returns once `/ready` answers 200.
    pub async fn start(binary: &str, provider_port: u16, extra_yaml: &str) -> Self {
        Self::start_with(binary, provider_port, "", extra_yaml).await
    }

    /// `start` with `agent_yaml` (lines indented two spaces) added to the `agent` section.
    pub async fn start_with(
        binary: &str,
        provider_port: u16,
        agent_yaml: &str,
        extra_yaml: &str,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).expect("plugins folder");
        std::fs::copy(crate::fixture("echo"), plugins.join("echo.wasm")).expect("copy echo");
        let port = free_port();
        let config = dir.path().join("databot.yaml");
        let yaml = format!(
            "{}{extra_yaml}",
            config_yaml(dir.path(), port, provider_port, agent_yaml)
        );
        std::fs::write(&config, yaml).expect("config");
        let child = spawn(binary, &config);
        let pid = child.id().expect("child pid");
        let served = Self {
            child,
            binary: binary.to_owned(),
            config,
            port,
            pid,
            _dir: dir,
        };
        served.wait_ready().await;
        served
    }

    /// Kill it at once (`SIGKILL`): nothing of it is tidied up.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Ask it to stop (`SIGTERM`) and wait for it to exit, up to `limit`; how long it took,
    /// `None` when it was still running at the limit (it is then killed).
    pub async fn terminate(&mut self, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        // SAFETY: kill(2) with a pid this process spawned and still owns.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGTERM);
        }
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(_) => Some(started.elapsed()),
            Err(_) => {
                self.kill().await;
                None
            }
        }
    }

    /// Start it again, with the same configuration and data, after `kill` or `terminate`.
    pub async fn restart(&mut self) {
        self.child = spawn(&self.binary, &self.config);
        self.pid = self.child.id().expect("child pid");
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let listening = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok();
            if listening
                && crate::http_call(self.port, "GET", "/ready", &[], "")
                    .await
                    .0
                    == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "databot serve did not get ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// CPU time (user + system) the process has used so far.
    pub fn cpu(&self) -> Duration {
        crate::process_cpu_time(self.pid)
    }

    /// Its resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        crate::process_rss_kib(self.pid)
    }
}

impl Drop for ServedDatabot {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn spawn(binary: &str, config: &Path) -> tokio::process::Child {
    tokio::process::Command::new(binary)
        .arg("--config")
        .arg(config)
        .arg("serve")
        // `DATABOT_TEST_LOG` (e.g. `info,databot::bus=debug`) shows more when a test needs it.
        .env(
            "DATABOT_LOG",
            std::env::var("DATABOT_TEST_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("databot serve starts")
}

fn config_yaml(dir: &Path, port: u16, provider_port: u16, agent_yaml: &str) -> String {
    format!(
        "runtime:
  plugins_dir: {plugins}
  data_dir: {data}
  builtin_plugins: true
  watch: false
agent:
  provider: openai
{agent_yaml}  router:
    enabled: false
rag:
  enabled: false
gateway:
  bind: 127.0.0.1:{port}
  rate_limit:
    requests: 0
plugins:
  openai:
    permissions:
      http:
        allow: [\"127.0.0.1:{provider_port}\"]
        allow_private: true
    config:
      base_url: \"http://127.0.0.1:{provider_port}/v1\"
",
        plugins = dir.join("plugins").display(),
        data = dir.join("data").display(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
