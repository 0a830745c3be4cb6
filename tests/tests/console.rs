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

async fn console_host() -> (TestHost, u16) {
    let host = TestHost::start("", &["echo"]).await.expect("host");
    host.load_builtin("offline").await;
    let yaml = format!("gateway:\n  api_keys: [\"{KEY}\"]\n");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_sign_in_chat_live_plugins_and_no_markup_from_data() {
    let (host, port) = console_host().await;
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
    let (status, _, _) = http_call(
        port,
        "DELETE",
        "/ui/session",
        &[("cookie", &cookie), ("x-databot-console", "1")],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, body) =
        http_call(port, "GET", "/api/v1/plugins", &[("cookie", &cookie)], "").await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activity_stream_says_hello_and_ends_with_its_session() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_host, port) = console_host().await;
    let cookie = sign_in(port).await;
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
            .expect("the stream starts")
            .expect("read");
        assert!(read > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buffer[..read]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    let (status, _, _) = http_call(
        port,
        "DELETE",
        "/ui/session",
        &[("cookie", &cookie), ("x-databot-console", "1")],
        "",
    )
    .await;
    assert_eq!(status, 200);
    // The stream notices within its session check (10 s) and ends: the last chunk of the
    // body (the connection itself may stay open for another request).
    let ended = tokio::time::timeout(Duration::from_secs(25), async {
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
    .await;
    assert!(ended.is_ok(), "the stream outlived its session");
}
