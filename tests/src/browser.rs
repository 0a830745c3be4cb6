//! A real Chromium for the console tests, driven over the W3C WebDriver protocol: Debian's
//! `chromedriver` on a loopback port, headless Chromium with a fresh profile. Installed by
//! `.ci/browser-deps.sh` when missing, once per process.
//!
//! The browser reaches loopback only: every other host goes to a proxy on a closed loopback
//! port and names do not resolve, and the features that phone home are off.

use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Install Chromium and chromedriver if missing (`.ci/browser-deps.sh`), once per process.
pub fn ensure_browser() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let present = || {
            std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists()
        };
        if present() {
            return;
        }
        let status = Command::new("bash")
            .arg(crate::python::repo_path(".ci/browser-deps.sh"))
            .status()
            .expect("bash runs .ci/browser-deps.sh");
        assert!(
            status.success() && present(),
            "the console tests need Chromium: `bash .ci/browser-deps.sh` failed"
        );
    });
}

/// One browser session. Dropping it ends the session and stops the driver.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

/// An element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Browser {
    /// A headless Chromium with a window of `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Self {
        ensure_browser();
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok();
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("a profile folder");
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-default-apps".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--metrics-recording-only".to_owned(),
            // Anything not on loopback goes to a closed loopback port, and no name resolves.
            "--proxy-server=http://127.0.0.1:9".to_owned(),
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
                    "goog:loggingPrefs": { "browser": "ALL" },
                }
            }
        });
        let mut browser = Self {
            driver,
            port,
            session: String::new(),
            _profile: profile,
        };
        let created = browser.command("POST", "/session", capabilities).await;
        browser.session = created["sessionId"]
            .as_str()
            .expect("a WebDriver session id")
            .to_owned();
        browser
    }

    /// A WebDriver command; its `value`. Panics with the driver's message on an error.
    async fn command(&self, method: &str, path: &str, body: Value) -> Value {
        match self.try_command(method, path, body).await {
            Ok(value) => value,
            Err(error) => panic!("WebDriver {method} {path}: {error}"),
        }
    }

    async fn try_command(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let path = if path == "/session" {
            path.to_owned()
        } else {
            format!("/session/{}{path}", self.session)
        };
        let text = if method == "GET" || method == "DELETE" {
            String::new()
        } else {
            body.to_string()
        };
        let (status, answer) = exchange(self.port, method, &path, &text).await?;
        let answer: Value =
            serde_json::from_str(&answer).map_err(|e| format!("{status} {answer}: {e}"))?;
        if status == 200 {
            Ok(answer.get("value").cloned().unwrap_or(answer))
        } else {
            Err(format!("{status} {}", answer["value"]))
        }
    }

    pub async fn goto(&self, url: &str) {
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "the browser visits loopback only: {url}"
        );
        self.command("POST", "/url", json!({ "url": url })).await;
    }

    /// The first element matching `css`, waiting up to 10 s for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .try_command(
                    "POST",
                    "/element",
                    json!({ "using": "css selector", "value": css }),
                )
                .await;
            if let Ok(found) = found
                && let Some(id) = found[ELEMENT].as_str()
            {
                return Element(id.to_owned());
            }
            assert!(Instant::now() < deadline, "no element matches `{css}`");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every element matching `css` now.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self
            .command(
                "POST",
                "/elements",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_owned())))
            .collect()
    }

    pub async fn click(&self, element: &Element) {
        self.command("POST", &format!("/element/{}/click", element.0), json!({}))
            .await;
    }

    pub async fn type_into(&self, element: &Element, text: &str) {
        self.command(
            "POST",
            &format!("/element/{}/value", element.0),
            json!({ "text": text }),
        )
        .await;
    }

    pub async fn clear(&self, element: &Element) {
        self.command("POST", &format!("/element/{}/clear", element.0), json!({}))
            .await;
    }

    /// The element's rendered text.
    pub async fn text(&self, element: &Element) -> String {
        self.command("GET", &format!("/element/{}/text", element.0), json!({}))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Wait up to `timeout` until the text of the first element matching `css` satisfies
    /// `done`; that text (panics with the last text seen otherwise).
    pub async fn wait_for_text(
        &self,
        css: &str,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            if let Some(element) = self.find_all(css).await.first() {
                // The element may be replaced between finding and reading it.
                if let Ok(text) = self
                    .try_command("GET", &format!("/element/{}/text", element.0), json!({}))
                    .await
                {
                    last = text.as_str().unwrap_or_default().to_owned();
                    if done(&last) {
                        return last;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "`{css}` never showed what was expected; last text: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Run `script` (a function body) in the page with `args`; what it returns.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
        .await
    }

    /// The page's cookies as WebDriver reports them (`httpOnly`, `sameSite`, ...).
    pub async fn cookies(&self) -> Vec<Value> {
        self.command("GET", "/cookie", json!({}))
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Messages the page logged at error level (console errors, uncaught exceptions, CSP
    /// violations, failed loads) since the last call.
    pub async fn console_errors(&self) -> Vec<String> {
        self.command("POST", "/se/log", json!({ "type": "browser" }))
            .await
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// A PNG of the window, written to `path`.
    pub async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine;
        let encoded = self.command("GET", "/screenshot", json!({})).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .expect("a base64 PNG");
        std::fs::write(path, png).expect("writing the screenshot");
    }
}

/// One request to the driver on its own connection; the status and body. The driver keeps
/// the connection open after its answer, so the body is read by its `Content-Length`.
async fn exchange(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connecting to chromedriver: {e}"))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("writing to chromedriver: {e}"))?;
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16384];
    let read = async {
        loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let (status, headers) = crate::parse_head(&raw[..end]);
                let length = headers
                    .iter()
                    .find(|(name, _)| name == "content-length")
                    .and_then(|(_, value)| value.trim().parse::<usize>().ok());
                if let Some(length) = length
                    && raw.len() >= end + 4 + length
                {
                    let body = String::from_utf8_lossy(&raw[end + 4..end + 4 + length]);
                    return Ok((status, body.into_owned()));
                }
            }
            let count = socket
                .read(&mut buffer)
                .await
                .map_err(|e| format!("reading from chromedriver: {e}"))?;
            if count == 0 {
                return Err(format!(
                    "chromedriver closed the connection: {}",
                    String::from_utf8_lossy(&raw)
                ));
            }
            raw.extend_from_slice(&buffer[..count]);
        }
    };
    tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .map_err(|_| format!("chromedriver did not answer {method} {path} in 120 s"))?
}

impl Drop for Browser {
    fn drop(&mut self) {
        // End the session (the driver closes Chromium), then stop the driver.
        use std::io::{Read, Write};
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                self.session
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                // The driver answers once the browser is closed (and keeps the connection).
                let mut answer = [0u8; 1024];
                let _ = stream.read(&mut answer);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
