//! The built-in `web_fetch` tool through the real sandbox: text extraction, byte cap, allowlist.

use databot::runtime::ErrorKind;
use databot_e2e::{TestHost, serve_http};

const PAGE: &str = "<html><head><title>T &amp; x</title><script>bad()</script></head><body><h1>Hello</h1><p>World &lt;3</p></body></html>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_fetch_extracts_text_caps_bytes_and_respects_the_allowlist() {
    let port = serve_http(PAGE, "text/html").await;
    let config = format!(
        "plugins:\n  web_fetch:\n    permissions:\n      http:\n        allow: [\"127.0.0.1:{port}\"]\n        allow_private: true\n"
    );
    let host = TestHost::start(&config, &[]).await.unwrap();
    host.load_builtin("web_fetch").await;

    let url = format!("http://127.0.0.1:{port}/page");
    let output = host
        .runtime
        .call_tool("web_fetch", &format!(r#"{{"url": "{url}"}}"#))
        .await
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&output).unwrap();
    assert_eq!(value["status"], 200);
    assert_eq!(value["title"], "T & x");
    assert_eq!(value["text"], "Hello\nWorld <3");
    assert_eq!(value["truncated"], false);

    let output = host
        .runtime
        .call_tool(
            "web_fetch",
            &format!(r#"{{"url": "{url}", "max_bytes": 10}}"#),
        )
        .await
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&output).unwrap();
    assert_eq!(value["bytes_read"], 10);
    assert_eq!(value["truncated"], true);

    let other = serve_http("nope", "text/plain").await;
    let error = host
        .runtime
        .call_tool(
            "web_fetch",
            &format!(r#"{{"url": "http://127.0.0.1:{other}/"}}"#),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    assert!(
        error
            .message
            .contains("plugins.web_fetch.permissions.http.allow"),
        "{error}"
    );

    let error = host
        .runtime
        .call_tool("web_fetch", r#"{"url": "ftp://x/"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_injected_by_the_host_only_for_their_host() {
    let echo_headers = || databot_e2e::serve_http_with(|head| ("text/plain", head.to_owned()));
    let (granted, other) = (echo_headers().await, echo_headers().await);
    let config = format!(
        "plugins:\n  web_fetch:\n    permissions:\n      http:\n        allow: [\"127.0.0.1\"]\n        allow_private: true\n        secrets:\n          - host: \"http://127.0.0.1:{granted}\"\n            header: authorization\n            value: \"Bearer s3cret-token\"\n"
    );
    let host = TestHost::start(&config, &[]).await.unwrap();
    host.load_builtin("web_fetch").await;

    let fetch = |port: u16| {
        let runtime = host.runtime.clone();
        async move {
            let output = runtime
                .call_tool(
                    "web_fetch",
                    &format!(r#"{{"url": "http://127.0.0.1:{port}/x", "raw": true}}"#),
                )
                .await
                .unwrap();
            let value: serde_json::Value = serde_json::from_str(&output).unwrap();
            value["text"].as_str().unwrap().to_ascii_lowercase()
        }
    };
    // The granted host got the header (it echoes it), and the plugin reads the echo with the
    // credential masked: the token never reaches the plugin, not even echoed back.
    let seen = fetch(granted).await;
    assert!(
        seen.contains("authorization: bearer ************"),
        "{seen}"
    );
    assert!(!seen.contains("s3cret-token"), "{seen}");
    let seen = fetch(other).await;
    assert!(!seen.contains("authorization"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_go_only_to_the_scheme_host_and_port_of_their_grant() {
    let echo_headers = || databot_e2e::serve_http_with(|head| ("text/plain", head.to_owned()));
    let (a, b, c, d) = (
        echo_headers().await,
        echo_headers().await,
        echo_headers().await,
        echo_headers().await,
    );
    // Granted for https (explicitly, or by a bare host) but asked over http on the same port;
    // granted for http on one port and asked on another; granted for one name (`localhost`)
    // and asked by another (`127.0.0.1`). Every server is on loopback.
    let config = format!(
        r#"plugins:
  web_fetch:
    permissions:
      http:
        allow: ["127.0.0.1", "localhost"]
        allow_private: true
        secrets:
          - {{host: "https://127.0.0.1:{a}", header: x-https-only, value: "s1"}}
          - {{host: "127.0.0.1:{b}", header: x-bare-host, value: "s2"}}
          - {{host: "127.0.0.1", header: x-bare-default, value: "s3"}}
          - {{host: "http://127.0.0.1:{c}", header: x-http-c, value: "s4"}}
          - {{host: "http://localhost:{d}", header: x-localhost-d, value: "s5"}}
"#
    );
    let host = TestHost::start(&config, &[]).await.unwrap();
    host.load_builtin("web_fetch").await;
    let fetch = |url: String| {
        let runtime = host.runtime.clone();
        async move {
            let output = runtime
                .call_tool("web_fetch", &format!(r#"{{"url": "{url}", "raw": true}}"#))
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            let value: serde_json::Value = serde_json::from_str(&output).unwrap();
            value["text"].as_str().unwrap().to_ascii_lowercase()
        }
    };
    let leaked = |seen: &str| -> Vec<&'static str> {
        [
            "x-https-only",
            "x-bare-host",
            "x-bare-default",
            "x-http-c",
            "x-localhost-d",
        ]
        .into_iter()
        .filter(|header| seen.contains(header))
        .collect()
    };
    for port in [a, b, d] {
        let seen = fetch(format!("http://127.0.0.1:{port}/x")).await;
        assert!(leaked(&seen).is_empty(), "port {port}: {seen}");
    }
    let seen = fetch(format!("http://127.0.0.1:{c}/x")).await;
    assert_eq!(leaked(&seen), ["x-http-c"], "{seen}");
    assert!(seen.contains("x-http-c: s4"), "{seen}");
    let seen = fetch(format!("http://localhost:{c}/x")).await;
    assert!(leaked(&seen).is_empty(), "{seen}");
    let seen = fetch(format!("http://localhost:{d}/x")).await;
    assert_eq!(leaked(&seen), ["x-localhost-d"], "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_a_timeout() {
    // Accepts connections and never writes a byte.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let config = format!(
        "plugins:\n  web_fetch:\n    permissions:\n      http:\n        allow: [\"127.0.0.1:{port}\"]\n        allow_private: true\n"
    );
    let host = TestHost::start(&config, &[]).await.unwrap();
    host.load_builtin("web_fetch").await;
    let error = host
        .runtime
        .call_tool(
            "web_fetch",
            &format!(r#"{{"url": "http://127.0.0.1:{port}/", "timeout_ms": 300}}"#),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
}
