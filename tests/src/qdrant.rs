//! A Qdrant to test the Qdrant vector store against: a real server when one is configured
//! (`DATABOT_TEST_QDRANT_URL`) or listening on 127.0.0.1:6334, otherwise
//! `tests/qdrant/edge_server.py` (Qdrant's gRPC protocol in front of Qdrant's own engine,
//! `qdrant-edge-py`) started for the test.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the test's Qdrant is, and the server process when the test started it.
pub struct TestQdrant {
    pub url: String,
    /// What the URL is, for the test's output: `a Qdrant server` or `the Qdrant edge server`.
    pub kind: &'static str,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl TestQdrant {
    pub async fn start() -> Self {
        if let Ok(url) = std::env::var("DATABOT_TEST_QDRANT_URL") {
            return Self::server(url);
        }
        let reachable = tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect("127.0.0.1:6334"),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if reachable {
            return Self::server("http://127.0.0.1:6334".to_owned());
        }
        tokio::task::spawn_blocking(Self::edge_server)
            .await
            .expect("the edge server starts")
    }

    fn server(url: String) -> Self {
        Self {
            url,
            kind: "a Qdrant server",
            child: None,
            _dir: None,
        }
    }

    fn edge_server() -> Self {
        crate::python::ensure_packages();
        let dir = tempfile::tempdir().expect("temp dir");
        let port_file = dir.path().join("port");
        let child = Command::new("python3")
            .arg(crate::python::repo_path("tests/qdrant/edge_server.py"))
            .arg(&port_file)
            .arg(dir.path().join("data"))
            // The server runs until this pipe closes: it cannot outlive the test process.
            .stdin(Stdio::piped())
            .spawn()
            .expect("python3 runs tests/qdrant/edge_server.py");
        let mut server = Self {
            url: String::new(),
            kind: "the Qdrant edge server (Qdrant's gRPC protocol over qdrant-edge)",
            child: Some(child),
            _dir: None,
        };
        let started = Instant::now();
        let port = loop {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                break port;
            }
            if let Some(Ok(Some(status))) = server.child.as_mut().map(Child::try_wait) {
                panic!("tests/qdrant/edge_server.py exited at start: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tests/qdrant/edge_server.py did not start within 30 s"
            );
            std::thread::sleep(Duration::from_millis(25));
        };
        server.url = format!("http://127.0.0.1:{}", port.trim());
        server._dir = Some(dir);
        server
    }
}

impl Drop for TestQdrant {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
