//! The operator console at `/ui`: its HTTP contract (assets, security headers, sign-in, the
//! session cookie, the console header a signed-in request that changes something must carry)
//! and, in a real headless Chromium, sign-in, a streamed chat with its tool call, a plugin
//! dropped into the watched folder appearing without a reload, XSS probes that never run,
//! and no console errors. Screenshots go to `DATABOT_CONSOLE_SCREENSHOTS` when it is set.

use std::time::Duration;

use databot_e2e::browser::Browser;
use databot_e2e::{TestHost, fixture, http_call, with_manifest};
use serde_json::json;

const KEY: &str = "console-test-key-0123456789";
const JSON: (&str, &str) = ("content-type", "application/json");
/// Markup that would run if the console ever parsed a value as HTML.
const PROBE: &str = r#"<script>window.__xss=1</script><img src=x onerror="window.__xss=2">"><a href="javascript:window.__xss=3">x</a>"#;

/// Keys of two principals that are not operators.
const USER_A: &str = "console-user-a-0123456789";
const USER_B: &str = "console-user-b-0123456789";

/// Recent traces kept in memory by this test process's global subscriber, as `serve` keeps
/// them (`telemetry.recent_traces`); installed once. Room for every trace of the tests that
/// run at once (plugin loads and embedding calls are traces too), so none pushes out the
/// turn a test looks for.
fn keep_recent_traces() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let (subscriber, guard) =
            databot::telemetry::subscriber_keeping(None, 2000, "warn").expect("subscriber");
        tracing::subscriber::set_global_default(subscriber).expect("the first global subscriber");
        // Lives as long as the process: its pipelines feed the recent traces.
        std::mem::forget(guard);
    });
}

async fn console_host() -> (TestHost, u16) {
    keep_recent_traces();
    let host = TestHost::start("", &["echo"]).await.expect("host");
    host.load_builtin("offline").await;
    let yaml =
        format!("gateway:\n  api_keys: [\"{USER_A}\", \"{USER_B}\"]\n  admin_keys: [\"{KEY}\"]\n");
    let port = host.start_gateway("offline", &yaml).await;
    (host, port)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Sign in over HTTP; the cookie pair (`databot_session=...`).
async fn sign_in(port: u16) -> String {
    let (status, headers, body) = http_call(
        port,
        "POST",
        "/ui/session",
        &[JSON],
        &json!({ "key": KEY }).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let cookie = header(&headers, "set-cookie").expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    cookie.split(';').next().expect("a pair").to_owned()
}

/// Sign the session of `cookie` out, as the console does; the status.
async fn sign_out(port: u16, cookie: &str) -> u16 {
    let headers = [("cookie", cookie), ("x-databot-console", "1")];
    http_call(port, "DELETE", "/ui/session", &headers, "")
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_headers_sign_in_and_the_console_header() {
    let (_host, port) = console_host().await;

    // The page and its files: embedded, typed, strict policy, gzip when asked, 304 on a match.
    let (status, headers, page) = http_call(port, "GET", "/ui/", &[], "").await;
    assert_eq!(status, 200);
    assert!(page.contains("assets/app.js"), "{page}");
    let policy = header(&headers, "content-security-policy").expect("a CSP");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"));
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&headers, "x-frame-options"), Some("DENY"));
    let (status, headers, _) = http_call(
        port,
        "GET",
        "/ui/assets/app.js",
        &[("accept-encoding", "gzip")],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    assert!(
        header(&headers, "content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    let etag = header(&headers, "etag").expect("an ETag").to_owned();
    let (status, _, body) = http_call(
        port,
        "GET",
        "/ui/assets/app.js",
        &[("accept-encoding", "gzip"), ("if-none-match", &etag)],
        "",
    )
    .await;
    assert_eq!((status, body.as_str()), (304, ""));
    // The plain copy is another representation, with its own tag.
    let (status, headers, _) = http_call(
        port,
        "GET",
        "/ui/assets/app.js",
        &[("if-none-match", &etag)],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_ne!(header(&headers, "etag"), Some(etag.as_str()));
    let (status, _, _) = http_call(port, "GET", "/ui/assets/../../Cargo.toml", &[], "").await;
    assert_eq!(status, 404);
    let (status, _, _) = http_call(port, "GET", "/ui/assets/missing.js", &[], "").await;
    assert_eq!(status, 404);
    // The same Host check as the API: a rebinding name is refused.
    let (status, _, _) = http_call(port, "GET", "/ui/", &[("host", "evil.example")], "").await;
    assert_eq!(status, 403);

    // Sign-in: a wrong key is refused (and counted), the right one gets the cookie.
    let (status, _, body) = http_call(
        port,
        "POST",
        "/ui/session",
        &[JSON],
        &json!({ "key": "wrong-key-0123456789" }).to_string(),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid_api_key"), "{body}");
    let (status, _, _) = http_call(
        port,
        "POST",
        "/ui/session",
        &[("content-type", "text/plain")],
        KEY,
    )
    .await;
    assert_eq!(status, 415);
    let cookie = sign_in(port).await;
    let with_cookie = ("cookie", cookie.as_str());
    let (status, _, body) = http_call(port, "GET", "/ui/session", &[with_cookie], "").await;
    assert_eq!(status, 200);
    let session: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(session["signed_in"], true, "{body}");
    assert!(!body.contains(KEY));

    // The cookie stands for the key on the API: reads pass; a change needs the console header.
    let (status, _, _) = http_call(port, "GET", "/api/v1/plugins", &[with_cookie], "").await;
    assert_eq!(status, 200);
    let enable = "/api/v1/schedules/none/pause";
    let (status, _, body) = http_call(port, "POST", enable, &[with_cookie, JSON], "{}").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("console_header_missing"), "{body}");
    let (status, _, body) = http_call(
        port,
        "POST",
        enable,
        &[with_cookie, JSON, ("x-databot-console", "1")],
        "{}",
    )
    .await;
    assert_eq!(status, 404, "past the guard, to the job lookup: {body}");
    // A cross-site page is refused by Origin before anything else.
    let (status, _, _) = http_call(
        port,
        "POST",
        enable,
        &[
            with_cookie,
            JSON,
            ("x-databot-console", "1"),
            ("origin", "https://evil.example"),
        ],
        "{}",
    )
    .await;
    assert_eq!(status, 403);
    // Never on MCP.
    let (status, _, _) = http_call(
        port,
        "POST",
        "/mcp",
        &[with_cookie, JSON, ("x-databot-console", "1")],
        "{}",
    )
    .await;
    assert_eq!(status, 401);
    // A forged or altered cookie is no session.
    let forged = format!("{}0", cookie);
    let (status, _, _) =
        http_call(port, "GET", "/api/v1/plugins", &[("cookie", &forged)], "").await;
    assert_eq!(status, 401);

    // Signing out needs the header, ends the session and deletes the cookie.
    let (status, _, _) = http_call(port, "DELETE", "/ui/session", &[with_cookie], "").await;
    assert_eq!(status, 403);
    let (status, headers, _) = http_call(
        port,
        "DELETE",
        "/ui/session",
        &[with_cookie, ("x-databot-console", "1")],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        header(&headers, "set-cookie")
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, _, _) = http_call(port, "GET", "/api/v1/plugins", &[with_cookie], "").await;
    assert_eq!(status, 401);
}

/// A screenshot of the window as `NAME.png` in `DATABOT_CONSOLE_SCREENSHOTS`, when it is set.
async fn shoot(browser: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("DATABOT_CONSOLE_SCREENSHOTS") {
        let path = std::path::Path::new(&dir).join(format!("{name}.png"));
        browser.screenshot(&path).await;
    }
}

/// Open console page `page` from the navigation bar.
async fn open(browser: &Browser, page: &str) {
    let link = browser.find(&format!("nav a[data-page={page}]")).await;
    browser.click(&link).await;
}

/// The browser test's steps make a future deeper than a test thread's stack holds in a debug
/// build: it runs on a thread of its own with room for it.
#[test]
fn in_chromium_sign_in_chat_live_plugins_and_no_markup_from_data() {
    std::thread::Builder::new()
        .name("in-chromium".to_owned())
        .stack_size(32 * 1024 * 1024)
        .spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(in_chromium())
        })
        .expect("a thread")
        .join()
        .expect("the browser test passes");
}

/// A host (echo, the offline provider) with a knowledge base holding one document,
/// `freshness.md`, about the `orders` table.
async fn host_with_knowledge() -> (TestHost, std::sync::Arc<databot::rag::Rag>) {
    let host = TestHost::start("rag: {provider: offline}", &["echo"])
        .await
        .expect("host");
    host.load_builtin("offline").await;
    let rag = std::sync::Arc::new(databot::rag::Rag::open(&host.runtime).expect("rag"));
    let doc = host.plugins_dir().with_file_name("freshness.md");
    std::fs::write(
        &doc,
        "# Freshness\n\nThe orders table is refreshed every hour by the orders_hourly DAG.\n",
    )
    .expect("doc");
    rag.ingest_paths(&[doc]).await.expect("ingest");
    (host, rag)
}

async fn in_chromium() {
    keep_recent_traces();
    // A knowledge base with one document, for the knowledge page.
    let (host, rag) = host_with_knowledge().await;
    let yaml =
        format!("gateway:\n  api_keys: [\"{USER_A}\", \"{USER_B}\"]\n  admin_keys: [\"{KEY}\"]\n");
    let port = host.start_gateway_with("offline", &yaml, Some(rag)).await;
    let _watcher = host.runtime.watch().expect("the plugins folder is watched");
    let browser = Browser::start(1280, 860).await;
    let base = format!("http://127.0.0.1:{port}/ui/");
    browser.goto(&base).await;

    // A wrong key is refused, and no cookie is set.
    let key_input = browser.find("input[name=key]").await;
    browser.type_into(&key_input, "wrong-key-0123456789").await;
    browser
        .click(&browser.find("button[type=submit]").await)
        .await;
    browser
        .wait_for_text("[data-test=signin-error]", Duration::from_secs(10), |t| {
            t.contains("not valid")
        })
        .await;
    assert!(browser.cookies().await.is_empty());
    shoot(&browser, "sign-in").await;
    browser.clear(&key_input).await;
    browser.type_into(&key_input, KEY).await;
    browser
        .click(&browser.find("button[type=submit]").await)
        .await;
    browser.find("nav a[data-page=chat]").await;
    // The 401 of the wrong key is the only error so far; start counting from here.
    browser.console_errors().await;
    let cookies = browser.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c["name"] == "databot_session")
        .expect("the session cookie");
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");
    let script_sees = browser.execute("return document.cookie;", json!([])).await;
    assert!(
        !script_sees
            .as_str()
            .unwrap_or_default()
            .contains("databot_session")
    );
    browser
        .wait_for_text("[data-test=problems]", Duration::from_secs(10), |t| {
            !t.is_empty()
        })
        .await;
    shoot(&browser, "overview").await;

    // A chat streams, shows the tool call with its arguments and result, all as text.
    open(&browser, "chat").await;
    let message = browser.find("textarea[name=message]").await;
    let command = format!("/echo {}", json!({ "text": PROBE }));
    browser.type_into(&message, &command).await;
    browser
        .click(&browser.find("form button[type=submit]").await)
        .await;
    let tool = browser
        .wait_for_text("[data-test=tool-call]", Duration::from_secs(20), |t| {
            t.contains("echo")
                && t.contains("<script>window.__xss=1</script>")
                && !t.contains("running…")
        })
        .await;
    // The tool's output is JSON: the probe's quotes arrive escaped, the rest as typed.
    assert!(tool.contains(r#"onerror=\"window.__xss=2\""#), "{tool}");
    browser
        .wait_for_text("[data-test=chat-status]", Duration::from_secs(20), |t| {
            t.ends_with("ms")
        })
        .await;
    let user = browser
        .text(&browser.find("[data-test=user-message]").await)
        .await;
    assert_eq!(user, command);
    shoot(&browser, "chat").await;
    browser
        .wait_for_text("[data-test=turn-summary]", Duration::from_secs(10), |t| {
            t.contains("tokens") && t.contains("1 tool call") && t.contains("trace")
        })
        .await;

    // A plugin dropped into the watched folder appears without a reload; its description
    // (the author's words) is text.
    open(&browser, "plugins").await;
    browser
        .wait_for_text("[data-test=plugins]", Duration::from_secs(10), |t| {
            t.contains("echo")
        })
        .await;
    browser
        .execute("window.__same_page = true; return null;", json!([]))
        .await;
    let component = std::fs::read(fixture("echo_connector")).expect("fixture");
    let probe_plugin = with_manifest(&component, |manifest| {
        manifest.name = "probe_connector".to_owned();
        manifest.description = PROBE.to_owned();
    });
    std::fs::write(
        host.plugins_dir().join("probe_connector.wasm"),
        probe_plugin,
    )
    .expect("write");
    let listed = browser
        .wait_for_text("[data-test=plugins]", Duration::from_secs(30), |t| {
            t.contains("probe_connector")
        })
        .await;
    assert!(
        listed.contains("<script>window.__xss=1</script>"),
        "{listed}"
    );
    let same_page = browser
        .execute("return window.__same_page === true;", json!([]))
        .await;
    assert_eq!(same_page, true, "the page was not reloaded");
    shoot(&browser, "plugins").await;
    open(&browser, "connectors").await;
    browser
        .wait_for_text("[data-test=connectors]", Duration::from_secs(20), |t| {
            t.contains("probe_connector")
        })
        .await;
    shoot(&browser, "connectors").await;
    open(&browser, "schedules").await;
    browser
        .wait_for_text("[data-test=schedules]", Duration::from_secs(10), |t| {
            !t.is_empty()
        })
        .await;
    shoot(&browser, "schedules").await;

    conversations_and_traces_in_chromium(&host, &browser).await;

    // None of the probes ran; no element came from data; no console errors on any page.
    let ran = browser
        .execute(
            "return [window.__xss === undefined, document.querySelectorAll('main script, main img, main a[href^=\"javascript\"]').length];",
            json!([]),
        )
        .await;
    assert_eq!(ran, json!([true, 0]));
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    // Signing out ends the session for the page's own requests too.
    browser.click(&browser.find("#who button").await).await;
    browser.find("input[name=key]").await;
    let after = browser
        .execute(
            "return fetch('/api/v1/plugins').then((r) => r.status);",
            json!([]),
        )
        .await;
    assert_eq!(after, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_keeps_the_lockout_and_a_valid_key_always_passes() {
    let host = TestHost::start("", &["echo"]).await.expect("host");
    host.load_builtin("offline").await;
    let yaml = format!(
        "gateway:\n  api_keys: [\"{KEY}\"]\n  auth_failures:\n    max_failures: 3\n    window_seconds: 300\n"
    );
    let port = host.start_gateway("offline", &yaml).await;
    let wrong = json!({ "key": "wrong-key-0123456789" }).to_string();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (status, _, _) = http_call(port, "POST", "/ui/session", &[JSON], &wrong).await;
        statuses.push(status);
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 429, 429],
        "wrong keys lock the address out"
    );
    // The right key still signs in, and a sign-in lifts nothing: wrong keys stay refused.
    let cookie = sign_in(port).await;
    let (status, _, _) = http_call(port, "POST", "/ui/session", &[JSON], &wrong).await;
    assert_eq!(status, 429);
    let (status, _, _) = http_call(
        port,
        "GET",
        "/api/v1/plugins",
        &[("authorization", "Bearer wrong-key-0123456789")],
        "",
    )
    .await;
    assert_eq!(
        status, 429,
        "the API's lockout holds after a console sign-in"
    );
    // An ended session is not a failed authentication: it is told to sign in, not locked out.
    assert_eq!(sign_out(port, &cookie).await, 200);
    let (status, _, body) =
        http_call(port, "GET", "/api/v1/plugins", &[("cookie", &cookie)], "").await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activity_stream_says_hello_and_ends_with_its_session() {
    let (_host, port) = console_host().await;
    let cookie = sign_in(port).await;
    let (mut stream, mut seen) = activity_stream(port, &cookie)
        .await
        .expect("the stream opens");
    assert_eq!(sign_out(port, &cookie).await, 200);
    // The stream notices within its session check (10 s) and ends.
    assert!(
        stream_ends(&mut stream, &mut seen, Duration::from_secs(25)).await,
        "the stream outlived its session"
    );
}

/// `GET /api/v1/events` with the session `cookie` on a connection of its own, read up to its
/// `hello`: the connection and what was read, or the head of a refusal.
async fn activity_stream(
    port: u16,
    cookie: &str,
) -> Result<(tokio::net::TcpStream, Vec<u8>), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let request =
        format!("GET /api/v1/events HTTP/1.1\r\nhost: 127.0.0.1\r\ncookie: {cookie}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: hello") {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("an answer")
            .expect("read");
        seen.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&seen);
        if read == 0 || (text.contains("\r\n\r\n") && !text.starts_with("HTTP/1.1 200")) {
            return Err(text.into_owned());
        }
    }
    Ok((stream, seen))
}

/// Whether the stream's body ends (its last chunk, or the connection closing) within `limit`.
async fn stream_ends(
    stream: &mut tokio::net::TcpStream,
    seen: &mut Vec<u8>,
    limit: Duration,
) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => {
                    seen.extend_from_slice(&buffer[..read]);
                    if seen.ends_with(b"\r\n0\r\n\r\n") {
                        return;
                    }
                }
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_streams_are_capped_per_key_and_end_when_the_gateway_shuts_down() {
    keep_recent_traces();
    let host = TestHost::start("", &["echo"]).await.expect("host");
    host.load_builtin("offline").await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let yaml = format!("gateway:\n  api_keys: [\"{USER_A}\"]\n  admin_keys: [\"{KEY}\"]\n");
    let (port, served) = host
        .start_gateway_until("offline", &yaml, None, async move {
            let _ = stopped.await;
        })
        .await;
    let cookie = sign_in(port).await;
    // Sixteen streams per key; the seventeenth is refused, and says why.
    let mut streams = Vec::new();
    for _ in 0..16 {
        streams.push(activity_stream(port, &cookie).await.expect("room for it"));
    }
    let refused = activity_stream(port, &cookie)
        .await
        .expect_err("past the key's cap");
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.contains("activity streams per key"), "{refused}");

    // Shutting down ends every open stream, and the gateway's task returns.
    stop.send(()).expect("the gateway listens for it");
    let finished = tokio::time::timeout(Duration::from_secs(15), served)
        .await
        .expect("the gateway shut down with streams open")
        .expect("its task");
    assert!(finished.is_ok(), "{finished:?}");
    for (mut stream, mut seen) in streams {
        assert!(stream_ends(&mut stream, &mut seen, Duration::from_secs(2)).await);
    }
}

/// `GET path` as the holder of `key`: status and JSON body.
async fn get_as(port: u16, key: &str, path: &str) -> (u16, serde_json::Value) {
    let bearer = format!("Bearer {key}");
    let (status, _, body) = http_call(port, "GET", path, &[("authorization", &bearer)], "").await;
    let json = serde_json::from_str(&body).unwrap_or_else(|_| json!({ "raw": body }));
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_turn_by_turn_and_traces_for_operators() {
    let (host, port) = console_host().await;
    // A streamed turn with a tool call: its last event says what the turn took.
    let bearer = format!("Bearer {USER_A}");
    let (status, _, stream) = http_call(
        port,
        "POST",
        "/api/v1/stream",
        &[JSON, ("authorization", &bearer)],
        &json!({ "content": "/echo {\"text\": \"findable words\"}", "chat_id": "a-conv" })
            .to_string(),
    )
    .await;
    assert_eq!(status, 200, "{stream}");
    let done = stream
        .split("\n\n")
        .find(|block| block.contains("event: done"))
        .and_then(|block| block.lines().find_map(|l| l.strip_prefix("data: ")))
        .expect("a done event");
    let done: serde_json::Value = serde_json::from_str(done).expect("JSON");
    let summary = &done["summary"];
    assert_eq!(summary["tool_calls"], 1, "{done}");
    assert!(summary["prompt_tokens"].as_u64().unwrap() > 0, "{done}");
    let trace_id = summary["trace_id"].as_str().expect("a trace id").to_owned();
    assert_eq!(trace_id.len(), 32);
    // A channel's conversation whose key carries markup (platform ids are not the API's).
    let channel_key = format!("slack:{PROBE}");
    host.agent("offline", false)
        .await
        .turn(&channel_key, "hello from a channel", None)
        .await
        .expect("a turn");

    // Each principal lists its own; the operator lists all, channels' included.
    let keys = |listing: &serde_json::Value| -> Vec<String> {
        listing["conversations"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|c| c["session_key"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, mine) = get_as(port, USER_A, "/api/v1/conversations").await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(keys(&mine), ["api:a-conv"]);
    assert_eq!(mine["conversations"][0]["turns"], 1);
    assert_eq!(mine["conversations"][0]["tool_calls"], 1);
    let (_, theirs) = get_as(port, USER_B, "/api/v1/conversations").await;
    assert!(keys(&theirs).is_empty(), "{theirs}");
    let (_, all) = get_as(port, KEY, "/api/v1/conversations").await;
    assert_eq!(keys(&all), [channel_key.clone(), "api:a-conv".to_owned()]);
    let (_, found) = get_as(port, KEY, "/api/v1/conversations?search=FINDABLE").await;
    assert_eq!(keys(&found), ["api:a-conv"]);
    // An owner's search finds its own; another key's finds nothing of it.
    let (_, found) = get_as(port, USER_A, "/api/v1/conversations?search=findable").await;
    assert_eq!(keys(&found), ["api:a-conv"]);
    let (_, found) = get_as(port, USER_B, "/api/v1/conversations?search=findable").await;
    assert!(keys(&found).is_empty(), "{found}");
    let (_, paged) = get_as(port, KEY, "/api/v1/conversations?limit=1").await;
    let after = paged["next"].as_str().expect("a next page");
    let (_, next) = get_as(
        port,
        KEY,
        &format!("/api/v1/conversations?limit=1&after={}", encode(after)),
    )
    .await;
    assert_eq!(keys(&next), ["api:a-conv"]);
    let long = "x".repeat(201);
    for bad in [
        format!("/api/v1/conversations?search={long}"),
        "/api/v1/conversations?sort=new".to_owned(),
        "/api/v1/conversations?limit=many".to_owned(),
        "/api/v1/conversations?after=yesterday".to_owned(),
    ] {
        let (status, body) = get_as(port, KEY, &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request");
    }

    // One conversation turn by turn: messages, the tool call and its result, the trace.
    let (status, shown) = get_as(port, USER_A, "/api/v1/conversations/api:a-conv").await;
    assert_eq!(status, 200, "{shown}");
    let turn = &shown["turns"][0];
    assert_eq!(turn["turn"]["trace_id"], trace_id.as_str());
    assert_eq!(turn["turn"]["tool_calls"], 1);
    assert!(turn["turn"]["duration_ms"].as_i64().unwrap() >= 0);
    let roles: Vec<&str> = turn["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
    assert_eq!(turn["messages"][1]["tool_calls"][0]["name"], "echo");
    assert!(
        turn["messages"][2]["content"]
            .as_str()
            .unwrap()
            .contains("findable words")
    );
    // Another key's conversation, or a channel's, is not there for a non-operator.
    for (key, path) in [
        (USER_B, "/api/v1/conversations/api:a-conv".to_owned()),
        (
            USER_A,
            format!("/api/v1/conversations/{}", encode(&channel_key)),
        ),
        (KEY, "/api/v1/conversations/api:nothing-here".to_owned()),
    ] {
        let (status, body) = get_as(port, key, &path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "conversation_not_found");
    }
    let (status, channel) = get_as(
        port,
        KEY,
        &format!("/api/v1/conversations/{}", encode(&channel_key)),
    )
    .await;
    assert_eq!(status, 200, "{channel}");
    assert_eq!(channel["session_key"], channel_key.as_str());
    assert!(channel["owner"].is_null());

    // Plugins show their budgets, what they were granted and their mean call time.
    let (_, plugins) = get_as(port, KEY, "/api/v1/plugins").await;
    let echo = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "echo")
        .expect("echo");
    assert!(
        echo["budgets"]["timeout_ms"].as_u64().unwrap() > 0,
        "{echo}"
    );
    assert!(echo["capabilities"].is_array(), "{echo}");
    assert!(echo["mean_latency_ms"].as_f64().unwrap() > 0.0, "{echo}");
    let (_, plugins) = get_as(port, USER_A, "/api/v1/plugins").await;
    for plugin in plugins["plugins"].as_array().unwrap() {
        assert!(plugin["budgets"].is_null(), "{plugin}");
        assert_eq!(plugin["capabilities"], json!([]), "{plugin}");
    }

    // The overview's activity: points every 10 s, and the turns saved in the last day.
    let (status, activity) = get_as(port, USER_A, "/api/v1/activity").await;
    assert_eq!(status, 200, "{activity}");
    assert!(
        activity["last_24h"].is_null(),
        "every key's turns are the operator's view"
    );
    let (status, activity) = get_as(port, KEY, "/api/v1/activity").await;
    assert_eq!(status, 200, "{activity}");
    assert_eq!(activity["every_seconds"], 10);
    assert!(activity["samples"].is_array());
    assert_eq!(activity["last_24h"]["turns"], 2, "{activity}");
    assert_eq!(activity["last_24h"]["tool_calls"], 1, "{activity}");

    // Traces: operators only; the turn's trace has the turn, the model call and the tool.
    let (status, refused) = get_as(port, USER_A, "/api/v1/traces").await;
    assert_eq!(status, 403, "{refused}");
    let mut names = Vec::new();
    for _ in 0..50 {
        let (status, trace) = get_as(port, KEY, &format!("/api/v1/traces/{trace_id}")).await;
        if status == 200 {
            names = trace["spans"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap().to_owned())
                .collect();
            if names.iter().any(|n| n == "execute_tool echo") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for expected in ["agent.turn", "execute_tool echo"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    assert!(names.iter().any(|n| n.starts_with("chat")), "{names:?}");
    let (status, listed) = get_as(port, KEY, "/api/v1/traces?turns=true").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["recording"], true);
    let turn_trace = listed["traces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["trace_id"] == trace_id.as_str())
        .expect("the turn's trace is listed");
    assert_eq!(turn_trace["root"], "agent.turn");
    assert_eq!(turn_trace["session"], "api:a-conv");
    let (status, _) = get_as(port, KEY, "/api/v1/traces/not-a-trace").await;
    assert_eq!(status, 404);
}

/// A path segment with every byte outside A-Z a-z 0-9 `-._~` percent-encoded.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The link of the listed conversation whose key `wanted` accepts.
async fn conversation_link(
    browser: &Browser,
    wanted: impl Fn(&str) -> bool,
) -> databot_e2e::browser::Element {
    for link in browser.find_all("[data-test=conversations] a").await {
        if wanted(&browser.text(&link).await) {
            return link;
        }
    }
    panic!("no such conversation is listed");
}

/// The conversations and traces pages after the chat of `in_chromium_...`.
async fn conversations_and_traces_in_chromium(host: &TestHost, browser: &Browser) {
    // Conversations: a channel's conversation whose key is markup is listed as text; the
    // chat's conversation shows its turn with the tool call, and links to the trace.
    let channel_key = format!("slack:{PROBE}");
    host.agent("offline", false)
        .await
        .turn(&channel_key, "hello from a channel", None)
        .await
        .expect("a turn");
    open(browser, "conversations").await;
    browser
        .wait_for_text("[data-test=conversations]", Duration::from_secs(10), |t| {
            t.contains(&channel_key) && t.contains("api:console-")
        })
        .await;
    shoot(browser, "conversations").await;
    browser
        .click(&conversation_link(browser, |t| t == channel_key).await)
        .await;
    browser
        .wait_for_text("[data-test=conversation]", Duration::from_secs(10), |t| {
            t.contains("hello from a channel")
        })
        .await;
    let heading = browser.text(&browser.find("main h1").await).await;
    assert_eq!(heading, channel_key);
    open(browser, "conversations").await;
    browser
        .wait_for_text("[data-test=conversations]", Duration::from_secs(10), |t| {
            t.contains("api:console-")
        })
        .await;
    browser
        .click(&conversation_link(browser, |t| t.starts_with("api:console-")).await)
        .await;
    browser
        .wait_for_text("[data-test=conversation]", Duration::from_secs(10), |t| {
            t.contains("echo")
                && t.contains("tokens")
                && t.contains("<script>window.__xss=1</script>")
        })
        .await;
    shoot(browser, "conversation").await;

    // The turn's trace as a waterfall: the turn, the model call, the tool call.
    browser
        .click(&browser.find("[data-test=turn] a").await)
        .await;
    browser
        .wait_for_text("[data-test=waterfall]", Duration::from_secs(10), |t| {
            t.contains("agent.turn") && t.contains("execute_tool echo")
        })
        .await;
    browser.click(&browser.find("[data-test=span]").await).await;
    browser
        .wait_for_text("[data-test=span-detail]", Duration::from_secs(10), |t| {
            t.contains("agent.turn") && t.contains("databot.session")
        })
        .await;
    shoot(browser, "trace").await;
    open(browser, "traces").await;
    browser
        .wait_for_text("[data-test=traces]", Duration::from_secs(10), |t| {
            t.contains("agent.turn") && t.contains(&channel_key)
        })
        .await;
    shoot(browser, "traces").await;

    // The knowledge base: its document as a source, and what a question would bring.
    open(browser, "knowledge").await;
    browser
        .wait_for_text("[data-test=knowledge]", Duration::from_secs(10), |t| {
            t.contains("freshness.md")
        })
        .await;
    let query = browser.find("input[name=query]").await;
    browser
        .type_into(&query, "how often is the orders table refreshed?")
        .await;
    browser
        .click(&browser.find("main form button[type=submit]").await)
        .await;
    browser
        .wait_for_text(
            "[data-test=knowledge-matches]",
            Duration::from_secs(10),
            |t| t.contains("orders_hourly") && t.contains("score"),
        )
        .await;
    shoot(browser, "knowledge").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_knowledge_base_lists_its_sources_and_what_a_search_gets() {
    let (host, rag) = host_with_knowledge().await;
    rag.remember_turn(
        "api:private",
        "what is the launch code",
        "the launch code is 0000",
    )
    .await
    .expect("remember");
    let yaml = format!("gateway:\n  api_keys: [\"{USER_A}\"]\n  admin_keys: [\"{KEY}\"]\n");
    let port = host.start_gateway_with("offline", &yaml, Some(rag)).await;

    // The operator's: another key is refused.
    for path in ["/api/v1/knowledge", "/api/v1/knowledge/search?query=orders"] {
        let (status, body) = get_as(port, USER_A, path).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    let (status, kb) = get_as(port, KEY, "/api/v1/knowledge").await;
    assert_eq!(status, 200, "{kb}");
    assert_eq!(kb["enabled"], true);
    assert!(kb["stats"]["chunks"].as_u64().unwrap() >= 2, "{kb}");
    let sources: Vec<&str> = kb["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert!(sources.iter().any(|s| s.contains("freshness.md")), "{kb}");
    assert!(
        !sources.iter().any(|s| s.starts_with("conversation:")),
        "remembered conversations are not sources: {kb}"
    );

    // The matches the agent would get: the document, never another conversation's turn.
    let (status, found) = get_as(
        port,
        KEY,
        "/api/v1/knowledge/search?query=how%20often%20is%20the%20orders%20table%20refreshed",
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert!(
        found["matches"][0]["source"]
            .as_str()
            .unwrap_or_default()
            .contains("freshness.md"),
        "{found}"
    );
    let (_, private) = get_as(
        port,
        KEY,
        "/api/v1/knowledge/search?query=what%20is%20the%20launch%20code",
    )
    .await;
    assert!(
        !private.to_string().contains("0000"),
        "a conversation's turn is not shown: {private}"
    );
    for bad in [
        "/api/v1/knowledge/search",
        "/api/v1/knowledge/search?query=",
        "/api/v1/knowledge/search?query=x&k=3",
    ] {
        let (status, body) = get_as(port, KEY, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // A host without a knowledge base says so.
    let (_bare, bare_port) = console_host().await;
    let (status, bare) = get_as(bare_port, KEY, "/api/v1/knowledge").await;
    assert_eq!((status, bare["enabled"].clone()), (200, json!(false)));
    let (status, _) = get_as(bare_port, KEY, "/api/v1/knowledge/search?query=x").await;
    assert_eq!(status, 404);
}
