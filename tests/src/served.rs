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
    pub port: u16,
    pub pid: u32,
    _dir: tempfile::TempDir,
}

impl ServedDatabot {
    /// Start `binary` (a test or bench passes `env!("CARGO_BIN_EXE_databot_cli")`) with the
    /// `echo` plugin, the provider at `127.0.0.1:provider_port`, and `extra_yaml` appended to
    /// the configuration; returns once `/ready` answers 200.
    pub async fn start(binary: &str, provider_port: u16, extra_yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).expect("plugins folder");
        std::fs::copy(crate::fixture("echo"), plugins.join("echo.wasm")).expect("copy echo");
        let port = free_port();
        let config = dir.path().join("databot.yaml");
        let yaml = format!(
            "{}{extra_yaml}",
            config_yaml(dir.path(), port, provider_port)
        );
        std::fs::write(&config, yaml).expect("config");
        let child = tokio::process::Command::new(binary)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("DATABOT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("databot serve starts");
        let pid = child.id().expect("child pid");
        let served = Self {
            child,
            port,
            pid,
            _dir: dir,
        };
        served.wait_ready().await;
        served
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

fn config_yaml(dir: &Path, port: u16, provider_port: u16) -> String {
    format!(
        "runtime:
  plugins_dir: {plugins}
  data_dir: {data}
  builtin_plugins: true
  watch: false
agent:
  provider: openai
  router:
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
