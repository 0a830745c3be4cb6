//! Channels end to end: the real `slack` component behind the gateway, a fake Slack Web API
//! and a fake OpenAI-compatible provider on loopback. Checks the handshake, verification
//! (bad signature, stale timestamp, wrong secret: 401 and nothing reaches the agent), the
//! exact request Slack gets back (path, bot token, channel, thread, text), dedupe of retries
//! (also after a restart), the allowlist, 429 with `Retry-After`, long answers split, and
//! streamed edits at the throttled rate ending with the exact text.

use std::time::{Duration, Instant};

use databot_e2e::chat_platforms::{
    SlackExtra, eventually, fake_provider, fake_slack, provider_config, requests_to, slack_config,
    slack_headers, slack_mention, unix_now,
};
use databot_e2e::{
    ScriptedResponse, SeenRequest, TestHost, http_call, http_call_from, serve_scripted,
};
use serde_json::json;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

struct Setup {
    host: TestHost,
    gateway: u16,
    slack: std::sync::Arc<databot_e2e::recorded::Requests>,
}

async fn setup(
    provider_port: u16,
    channel_extra: &str,
    script: impl Fn(&SeenRequest, usize) -> Option<ScriptedResponse> + Send + Sync + 'static,
) -> Setup {
    let extra = SlackExtra {
        channel: channel_extra,
        ..SlackExtra::default()
    };
    setup_with(provider_port, extra, script).await
}

async fn setup_with(
    provider_port: u16,
    extra: SlackExtra<'_>,
    script: impl Fn(&SeenRequest, usize) -> Option<ScriptedResponse> + Send + Sync + 'static,
) -> Setup {
    let (slack_port, slack) = fake_slack(script).await;
    let config = format!(
        "plugins:\n{}{}",
        provider_config(provider_port),
        slack_config(slack_port, SECRET, extra)
    );
    let host = TestHost::start(&config, &[]).await.unwrap();
    host.load_builtin("openai").await;
    host.load_builtin("slack").await;
    let gateway = host.start_gateway("openai", "gateway: {}\n").await;
    Setup {
        host,
        gateway,
        slack,
    }
}

async fn deliver(port: u16, body: &str, headers: Vec<(String, String)>) -> (u16, String) {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let (status, _, body) = http_call(port, "POST", "/channels/slack", &headers, body).await;
    (status, body)
}

/// Deliver `body` to the Slack webhook, signed now under `SECRET`.
async fn deliver_signed(port: u16, body: &str) -> (u16, String) {
    deliver(port, body, slack_headers(SECRET, unix_now(), body)).await
}

fn posts(slack: &databot_e2e::recorded::Requests) -> Vec<SeenRequest> {
    requests_to(slack, "/chat.postMessage")
}

fn updates(slack: &databot_e2e::recorded::Requests) -> Vec<SeenRequest> {
    requests_to(slack, "/chat.update")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_mention_is_answered_in_its_thread_once_and_forgeries_are_refused() {
    let provider = fake_provider("The answer is **42**.", 1, Duration::ZERO).await;
    let s = setup(provider, "      stream: false", |_, _| None).await;

    // The URL handshake, signed, echoes the challenge.
    let challenge =
        json!({"type": "url_verification", "challenge": "c-123", "token": "x"}).to_string();
    let (status, body) = deliver_signed(s.gateway, &challenge).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["challenge"],
        "c-123"
    );

    // Forgeries: unsigned, a wrong secret, a stale timestamp, a body changed after signing.
    let mention = slack_mention("Ev1", "U1", "C1", "1700000001.000100", "how many?");
    let mut unsigned = slack_headers(SECRET, unix_now(), &mention);
    unsigned.retain(|(n, _)| n != "x-slack-signature");
    let tampered_body = mention.replace("how many?", "drop everything");
    for (headers, body, what) in [
        (unsigned, mention.as_str(), "unsigned"),
        (
            slack_headers("wrong-secret", unix_now(), &mention),
            mention.as_str(),
            "wrong secret",
        ),
        (
            slack_headers(SECRET, unix_now() - 301, &mention),
            mention.as_str(),
            "stale",
        ),
        (
            slack_headers(SECRET, unix_now(), &mention),
            tampered_body.as_str(),
            "tampered",
        ),
    ] {
        let (status, _) = deliver(s.gateway, body, headers).await;
        assert_eq!(status, 401, "{what}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        posts(&s.slack).is_empty(),
        "a forged request reached the agent"
    );

    // The real delivery: acknowledged at once, answered in the mention's thread.
    let (status, _) = deliver_signed(s.gateway, &mention).await;
    assert_eq!(status, 200);
    assert!(eventually(Duration::from_secs(10), || posts(&s.slack).len() == 1).await);
    let post = &posts(&s.slack)[0];
    assert_eq!(post.method, "POST");
    assert_eq!(post.path, "/api/chat.postMessage");
    assert_eq!(post.header("authorization"), Some("Bearer xoxb-test-token"));
    let sent = post.json();
    assert_eq!(sent["channel"], "C1");
    assert_eq!(sent["thread_ts"], "1700000001.000100");
    assert_eq!(sent["text"], "The answer is *42*.");

    // Slack's retry of the same event (X-Slack-Retry-Num) is acknowledged and dropped.
    let mut retry = slack_headers(SECRET, unix_now(), &mention);
    retry.push(("x-slack-retry-num".into(), "1".into()));
    retry.push(("x-slack-retry-reason".into(), "http_timeout".into()));
    let (status, _) = deliver(s.gateway, &mention, retry).await;
    assert_eq!(status, 200);
    // After a restart (a new gateway on the same session store), still dropped.
    let restarted = s.host.start_gateway("openai", "gateway: {}\n").await;
    let (status, _) = deliver(
        restarted,
        &mention,
        slack_headers(SECRET, unix_now(), &mention),
    )
    .await;
    assert_eq!(status, 200);

    // A stranger is not answered.
    let stranger = slack_mention("Ev2", "U9", "C1", "1700000002.000100", "hello?");
    let (status, _) = deliver_signed(s.gateway, &stranger).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        posts(&s.slack).len(),
        1,
        "a retry, a replay or a stranger was answered"
    );

    // The status shows what happened.
    let (status, _, body) = http_call(s.gateway, "GET", "/api/v1/channels", &[], "").await;
    assert_eq!(status, 200, "{body}");
    let channels: serde_json::Value = serde_json::from_str(&body).unwrap();
    let slack = &channels["channels"][0];
    assert_eq!(slack["name"], "slack");
    assert_eq!(slack["verification_failures"], 4);
    assert_eq!(slack["duplicates"], 1);
    assert_eq!(slack["refused"], 1);
    assert_eq!(slack["accepted"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_reply_waits_for_retry_after_and_a_long_answer_is_split() {
    const LONG: &str = concat!(
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. ",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. ",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. ",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. ",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. ",
    );
    let long: &'static str = Box::leak(LONG.repeat(10).into_boxed_str());
    let provider = fake_provider(long, 1, Duration::ZERO).await;
    let s = setup(provider, "      stream: false", |request, index| {
        (index == 0 && request.path.ends_with("/chat.postMessage")).then(|| {
            let mut limited =
                ScriptedResponse::json(429, json!({"ok": false, "error": "ratelimited"}));
            limited.headers.push(("retry-after".into(), "1".into()));
            limited
        })
    })
    .await;
    let mention = slack_mention("Ev10", "U1", "C1", "1700000010.000100", "write a lot");
    let started = Instant::now();
    let (status, _) = deliver_signed(s.gateway, &mention).await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the acknowledgement waited for the reply"
    );
    assert!(eventually(Duration::from_secs(15), || posts(&s.slack).len() >= 3).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = posts(&s.slack);
    // The first post was refused with 429; the retry came after Retry-After.
    assert!(started.elapsed() >= Duration::from_secs(1));
    let texts: Vec<String> = all[1..]
        .iter()
        .map(|p| p.json()["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(texts.len() >= 2, "{} parts", texts.len());
    for text in &texts {
        assert!(
            text.chars().count() <= 3500,
            "a part of {} characters",
            text.len()
        );
    }
    assert_eq!(
        texts.join(" ").split_whitespace().collect::<Vec<_>>(),
        long.split_whitespace().collect::<Vec<_>>()
    );
    assert!(
        all[1..]
            .iter()
            .all(|p| p.json()["thread_ts"] == "1700000010.000100")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_is_posted_early_then_edited_at_most_once_a_second_ending_exact() {
    let answer = "one two three four five six seven eight nine ten eleven twelve";
    let provider = fake_provider(answer, 12, Duration::from_millis(250)).await;
    let s = setup(provider, "      stream: true", |_, _| None).await;
    let mention = slack_mention("Ev20", "U1", "C1", "1700000020.000100", "count");
    let (status, _) = deliver_signed(s.gateway, &mention).await;
    assert_eq!(status, 200);
    assert!(
        eventually(Duration::from_secs(15), || updates(&s.slack)
            .last()
            .is_some_and(|u| u.json()["text"] == answer))
        .await,
        "the final edit never carried the whole answer"
    );
    let posted = posts(&s.slack);
    assert_eq!(posted.len(), 1, "a streamed answer is one message, edited");
    let first = posted[0].json()["text"].as_str().unwrap().to_owned();
    assert!(
        answer.starts_with(first.trim_end()),
        "first post: {first:?}"
    );
    assert!(
        first.len() < answer.len(),
        "the first post waited for the whole answer"
    );
    let edits = updates(&s.slack);
    assert!(edits.len() >= 2, "{} edits", edits.len());
    // Throttled: the edits while the answer streams are at least the interval apart (the
    // last one, with the final text, goes out as soon as the turn ends).
    let mut times = vec![posted[0].received_at];
    times.extend(edits.iter().map(|e| e.received_at));
    for pair in times[..times.len() - 1].windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(900), "edits {gap:?} apart");
    }
    // Edits arrive in order: each text extends the one before.
    let mut previous = first.trim_end().to_owned();
    for edit in &edits {
        let body = edit.json();
        assert_eq!(body["ts"], "1700000000.000000");
        assert_eq!(body["channel"], "C1");
        let text = body["text"].as_str().unwrap().trim_end().to_owned();
        assert!(text.starts_with(&previous), "{text:?} after {previous:?}");
        previous = text;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_channel_cannot_pass_a_request_or_read_a_secret_or_reach_ungranted_hosts() {
    let (provider, provider_seen) =
        serve_scripted(|_, _| ScriptedResponse::json(500, json!({"error": "unexpected"}))).await;
    // The granted service echoes what it got (path and headers) in its body and in a
    // redirect-style `Location`, split over chunks: the host masks what it injected.
    let (granted, granted_seen) = serve_scripted(|request, _| {
        let echo = json!({"path": request.path, "headers": request.headers}).to_string();
        let middle = echo.len() / 2;
        let mut response = ScriptedResponse::json(200, json!({}));
        response.chunks = vec![echo[..middle].to_owned(), echo[middle..].to_owned()];
        response.headers.push((
            "location".into(),
            format!("http://elsewhere{}", request.path),
        ));
        response
    })
    .await;
    let (other, other_seen) =
        serve_scripted(|_, _| ScriptedResponse::json(200, json!({"leak": true}))).await;
    let config = format!(
        r#"{}  hostile_channel:
    permissions:
      http:
        allow: ["127.0.0.1:{granted}"]
        allow_private: true
        secrets:
          - {{ host: "http://127.0.0.1:{granted}", header: authorization, value: "Bearer SUPER-SECRET-BOT" }}
          - {{ host: "http://127.0.0.1:{granted}", path_prefix: "/botPATH-SECRET-TOKEN" }}
      verify:
        signing_secret: {{ secret: "SIGNING-SECRET-VALUE" }}
    config:
      note: harmless
    channel:
      allow_users: ["*"]
"#,
        databot_e2e::chat_platforms::provider_config(provider)
    );
    let host = TestHost::start(&format!("plugins:\n{config}"), &["hostile_channel"])
        .await
        .unwrap();
    host.load_builtin("openai").await;
    let gateway = host.start_gateway("openai", "gateway: {}\n").await;

    // Messages without a passing check never reach the agent, whatever the plugin answers.
    let (status, _, body) =
        http_call(gateway, "POST", "/channels/hostile_channel", &[], "{}").await;
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("accepted"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        provider_seen.all().is_empty(),
        "an unverified message reached the agent"
    );

    // What the plugin can see from inside a call.
    let request = json!({"chat": format!("127.0.0.1:{granted}"), "text": format!("http://127.0.0.1:{other}/")});
    let (status, _, body) = http_call(
        gateway,
        "POST",
        "/api/v1/channels/hostile_channel/send",
        &[("content-type", "application/json")],
        &request.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for secret in [
        "SUPER-SECRET-BOT",
        "SIGNING-SECRET-VALUE",
        "PATH-SECRET-TOKEN",
    ] {
        assert!(!body.contains(secret), "{secret} leaked: {body}");
    }
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let findings: serde_json::Value =
        serde_json::from_str(answer["messages"][0].as_str().unwrap()).unwrap();
    assert_eq!(findings["env"], json!([]));
    assert!(findings["root"]["Err"].is_string(), "{findings}");
    assert!(
        findings["not_granted_key"]
            .as_str()
            .unwrap()
            .contains("Denied"),
        "{findings}"
    );
    assert!(
        findings["granted"].as_str().unwrap().starts_with("200"),
        "{findings}"
    );
    assert!(
        findings["other_port"]
            .as_str()
            .unwrap()
            .starts_with("error"),
        "{findings}"
    );
    assert!(other_seen.all().is_empty(), "an ungranted host was reached");
    // The granted service got the credentials the plugin never saw, and the plugin read
    // its echo with them masked.
    let seen = &granted_seen.all()[0];
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer SUPER-SECRET-BOT")
    );
    assert_eq!(seen.path, "/botPATH-SECRET-TOKEN/echo");
    let granted_answer = findings["granted"].as_str().unwrap();
    assert!(granted_answer.contains("/echo"), "{granted_answer}");
    assert!(
        granted_answer.starts_with("200 http://elsewhere/****"),
        "{granted_answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_one_event_arriving_together_are_answered_once() {
    let provider = fake_provider("once", 1, Duration::ZERO).await;
    let s = setup(provider, "      stream: false", |_, _| None).await;
    let mention = slack_mention("EvTwin", "U1", "C1", "1700000030.000100", "hello");
    let copies = (0..12).map(|_| {
        let headers = slack_headers(SECRET, unix_now(), &mention);
        let mention = mention.clone();
        let port = s.gateway;
        async move { deliver(port, &mention, headers).await.0 }
    });
    let statuses = futures::future::join_all(copies).await;
    // Each copy is acknowledged, or told to come back while the first is handed on.
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200));
    assert!(eventually(Duration::from_secs(10), || posts(&s.slack).len() == 1).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(posts(&s.slack).len(), 1, "one event was answered twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_keeps_failing_verification_is_refused_unless_it_passed_lately() {
    let provider = fake_provider("ok", 1, Duration::ZERO).await;
    let s = setup(provider, "      stream: false", |_, _| None).await;
    let strict = "gateway: {auth_failures: {max_failures: 3, window_seconds: 60}}\n";
    let unsigned = |event: &str| {
        let body = slack_mention(event, "U1", "C9", "1700000009.000100", "hi");
        let mut headers = slack_headers(SECRET, unix_now(), &body);
        headers.retain(|(n, _)| n != "x-slack-signature");
        (body, headers)
    };
    let signed = |event: &str| {
        let body = slack_mention(event, "U1", "C9", "1700000009.000200", "hi");
        let headers = slack_headers(SECRET, unix_now(), &body);
        (body, headers)
    };

    let gateway = s.host.start_gateway("openai", strict).await;
    let from = |source: &str, (body, headers): (String, Vec<(String, String)>)| {
        let source: std::net::IpAddr = source.parse().unwrap();
        async move {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let (status, response_headers, _) =
                http_call_from(source, gateway, "POST", "/channels/slack", &headers, &body).await;
            (status, response_headers)
        }
    };

    // The platform (127.0.0.1) delivers a verified request.
    assert_eq!(from("127.0.0.1", signed("EvFirst")).await.0, 200);
    // A stranger (127.0.0.2): three failures, then 429 with Retry-After before the channel
    // runs, for signed requests too.
    for _ in 0..3 {
        assert_eq!(from("127.0.0.2", unsigned("EvX")).await.0, 401);
    }
    let (status, headers) = from("127.0.0.2", signed("EvLocked")).await;
    assert_eq!(status, 429);
    assert!(
        headers
            .iter()
            .any(|(n, v)| n == "retry-after" && v.parse::<u64>().is_ok_and(|s| s >= 1)),
        "{headers:?}"
    );
    // Failures from the platform's address (a flood behind the same proxy) never lock it
    // out: it passed lately.
    for _ in 0..6 {
        assert_eq!(from("127.0.0.1", unsigned("EvY")).await.0, 401);
    }
    assert_eq!(from("127.0.0.1", signed("EvSecond")).await.0, 200);
    assert!(
        eventually(Duration::from_secs(10), || posts(&s.slack).len() == 2).await,
        "both verified messages were answered, the locked-out one was not"
    );

    // Behind a trusted proxy (here loopback) clients are told apart by `X-Forwarded-For`:
    // the stranger's failures lock out only the stranger.
    let proxied = s
        .host
        .start_gateway(
            "openai",
            "gateway: {auth_failures: {max_failures: 3, window_seconds: 60}, trusted_proxies: [127.0.0.1]}\n",
        )
        .await;
    let via_proxy = |client: &str, (body, mut headers): (String, Vec<(String, String)>)| {
        headers.push(("x-forwarded-for".into(), client.to_owned()));
        async move { deliver(proxied, &body, headers).await.0 }
    };
    for _ in 0..3 {
        assert_eq!(via_proxy("203.0.113.9", unsigned("EvZ")).await, 401);
    }
    assert_eq!(via_proxy("203.0.113.9", signed("EvStranger")).await, 429);
    assert_eq!(via_proxy("198.51.100.7", signed("EvPlatform")).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_state_granted_a_thread_reply_streams_natively_and_the_pieces_add_up_exactly() {
    let answer = "one **two** three four five six seven eight nine ten eleven twelve";
    let provider = fake_provider(answer, 12, Duration::from_millis(250)).await;
    let extra = SlackExtra {
        permissions: "      state: true",
        channel: "      stream: true",
        ..SlackExtra::default()
    };
    let s = setup_with(provider, extra, |_, _| None).await;
    let mention = slack_mention("Ev30", "U1", "C1", "1700000030.000100", "count");
    let (status, _) = deliver_signed(s.gateway, &mention).await;
    assert_eq!(status, 200);
    let of = |suffix: &str| requests_to(&s.slack, suffix);
    assert!(
        eventually(Duration::from_secs(15), || !of("/chat.stopStream")
            .is_empty())
        .await,
        "the stream was stopped"
    );
    let start = &of("/chat.startStream")[0];
    let started = start.json();
    assert_eq!(
        start.header("authorization"),
        Some("Bearer xoxb-test-token")
    );
    assert_eq!(started["channel"], "C1");
    assert_eq!(started["thread_ts"], "1700000030.000100");
    assert_eq!(started["recipient_user_id"], "U1");
    assert_eq!(started["recipient_team_id"], "T1");
    let appends = of("/chat.appendStream");
    assert!(!appends.is_empty(), "no appends");
    for pair in appends.windows(2) {
        let gap = pair[1].received_at.duration_since(pair[0].received_at);
        assert!(gap >= Duration::from_millis(900), "appends {gap:?} apart");
    }
    let stop = of("/chat.stopStream")[0].json();
    let ts = "1700000000.000000";
    assert!(appends.iter().all(|a| a.json()["ts"] == ts));
    assert_eq!(stop["ts"], ts);
    // Markdown as the model wrote it, appended piece by piece: together exactly the answer.
    let mut shown = started["markdown_text"].as_str().unwrap().to_owned();
    for append in &appends {
        shown.push_str(append.json()["markdown_text"].as_str().unwrap());
    }
    shown.push_str(stop["markdown_text"].as_str().unwrap_or_default());
    assert_eq!(shown, answer);
    assert!(of("/chat.postMessage").is_empty() && of("/chat.update").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slash_command_is_answered_once_through_its_response_url_in_a_conversation_of_its_own() {
    let (provider, provider_seen) = serve_scripted(|request, _| {
        let asked = if request.body.contains("how many orders") {
            "orders: 12"
        } else {
            "tables: 3"
        };
        ScriptedResponse::sse(&[
            json!({"choices": [{"index": 0, "delta": {"content": asked}}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        ])
    })
    .await;
    // Slack's response URLs are on another host than its Web API (hooks.slack.com).
    let (hooks_port, hooks) = serve_scripted(|_, _| ScriptedResponse::json(200, json!({}))).await;
    let prefix = format!("      response_url_prefix: \"http://127.0.0.1:{hooks_port}/commands/\"");
    let extra = SlackExtra {
        config: &prefix,
        channel: "      stream: true",
        ..SlackExtra::default()
    };
    let s = setup_with(provider, extra, |_, _| None).await;
    let command = |user: &str, trigger: &str, text: &str, url: &str| {
        format!(
            "command=%2Fdatabot&text={}&trigger_id={trigger}&user_id={user}&user_name=ada&channel_id=C5&team_id=T1&response_url={}",
            text.replace(' ', "+"),
            url.replace(':', "%3A").replace('/', "%2F"),
        )
    };
    let base = format!("http://127.0.0.1:{hooks_port}");
    for (user, trigger, text, path) in [
        ("U1", "111.222", "how many orders", "/commands/T1/1/aaa"),
        ("U1", "333.444", "which tables", "/commands/T1/2/bbb"),
    ] {
        let body = command(user, trigger, text, &format!("{base}{path}"));
        let mut headers = slack_headers(SECRET, unix_now(), &body);
        headers[0].1 = "application/x-www-form-urlencoded".into();
        let (status, answer) = deliver(s.gateway, &body, headers).await;
        assert_eq!(status, 200, "{answer}");
        assert!(
            eventually(Duration::from_secs(10), || hooks
                .all()
                .iter()
                .any(|r| r.path == path))
            .await,
            "answered at {path}"
        );
    }
    // A response URL outside the configured prefix is not posted to, signed or not.
    let body = command(
        "U1",
        "555.666",
        "which tables",
        &format!("{base}/elsewhere/x"),
    );
    let mut headers = slack_headers(SECRET, unix_now(), &body);
    headers[0].1 = "application/x-www-form-urlencoded".into();
    assert_eq!(deliver(s.gateway, &body, headers).await.0, 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!hooks.all().iter().any(|r| r.path.starts_with("/elsewhere")));
    let responses = hooks.all();
    assert_eq!(responses.len(), 2, "each command answered once");
    let first = responses.iter().find(|r| r.path.ends_with("/aaa")).unwrap();
    assert_eq!(
        first.json(),
        json!({"response_type": "in_channel", "text": "orders: 12", "mrkdwn": true})
    );
    assert_eq!(
        first.header("authorization"),
        None,
        "no bot token to the response URL"
    );
    assert!(s.slack.all().is_empty(), "nothing went through the Web API");
    // The second invocation, by the same user in the same channel, did not carry the first
    // one's conversation.
    let asks = provider_seen.all();
    assert_eq!(asks.len(), 3);
    let second = asks
        .iter()
        .find(|r| r.body.contains("which tables"))
        .unwrap();
    assert!(!second.body.contains("how many orders"), "{}", second.body);
}
