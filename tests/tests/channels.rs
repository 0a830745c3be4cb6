//! Channels end to end: the real `slack` component behind the gateway, a fake Slack Web API
//! and a fake OpenAI-compatible provider on loopback. Checks the handshake, verification
//! (bad signature, stale timestamp, wrong secret: 401 and nothing reaches the agent), the
//! exact request Slack gets back (path, bot token, channel, thread, text), dedupe of retries
//! (also after a restart), the allowlist, 429 with `Retry-After`, long answers split, and
//! streamed edits at the throttled rate ending with the exact text.

use std::time::{Duration, Instant};

use databot_e2e::chat_platforms::{fake_slack, slack_headers, slack_mention, unix_now};
use databot_e2e::{ScriptedResponse, SeenRequest, TestHost, http_call, serve_scripted};
use serde_json::json;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// A provider that answers `text` streamed in `pieces`, `pause` apart.
async fn fake_provider(text: &'static str, pieces: usize, pause: Duration) -> u16 {
    let (port, _) = serve_scripted(move |_, _| {
        let size = text.len().div_ceil(pieces.max(1));
        let mut chunks: Vec<serde_json::Value> = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let mut cut = size.min(rest.len());
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            let (piece, tail) = rest.split_at(cut);
            chunks.push(json!({"choices": [{"index": 0, "delta": {"content": piece}}]}));
            rest = tail;
        }
        chunks.push(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}));
        let mut response = ScriptedResponse::sse(&chunks);
        response.pause = pause;
        response
    })
    .await;
    port
}

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
    let (slack_port, slack) = fake_slack(script).await;
    let config = format!(
        r#"plugins:
  openai:
    permissions:
      http:
        allow: ["127.0.0.1:{provider_port}"]
        allow_private: true
    config:
      base_url: "http://127.0.0.1:{provider_port}/v1"
      model: gpt-test
  slack:
    permissions:
      http:
        allow: ["127.0.0.1:{slack_port}"]
        allow_private: true
        secrets:
          - {{ host: "http://127.0.0.1:{slack_port}", header: authorization, value: "Bearer xoxb-test-token" }}
      verify:
        signing_secret: {{ secret: "{SECRET}" }}
    config:
      api: "http://127.0.0.1:{slack_port}/api"
    channel:
      allow_users: [U1]
{channel_extra}
"#
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

fn posts(slack: &databot_e2e::recorded::Requests) -> Vec<SeenRequest> {
    slack
        .all()
        .into_iter()
        .filter(|r| r.path.ends_with("/chat.postMessage"))
        .collect()
}

fn updates(slack: &databot_e2e::recorded::Requests) -> Vec<SeenRequest> {
    slack
        .all()
        .into_iter()
        .filter(|r| r.path.ends_with("/chat.update"))
        .collect()
}

/// Wait until `check` holds, up to `limit`.
async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_mention_is_answered_in_its_thread_once_and_forgeries_are_refused() {
    let provider = fake_provider("The answer is **42**.", 1, Duration::ZERO).await;
    let s = setup(provider, "      stream: false", |_, _| None).await;

    // The URL handshake, signed, echoes the challenge.
    let challenge =
        json!({"type": "url_verification", "challenge": "c-123", "token": "x"}).to_string();
    let (status, body) = deliver(
        s.gateway,
        &challenge,
        slack_headers(SECRET, unix_now(), &challenge),
    )
    .await;
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
    let (status, _) = deliver(
        s.gateway,
        &mention,
        slack_headers(SECRET, unix_now(), &mention),
    )
    .await;
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
    let (status, _) = deliver(
        s.gateway,
        &stranger,
        slack_headers(SECRET, unix_now(), &stranger),
    )
    .await;
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
    let (status, _) = deliver(
        s.gateway,
        &mention,
        slack_headers(SECRET, unix_now(), &mention),
    )
    .await;
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
    let (status, _) = deliver(
        s.gateway,
        &mention,
        slack_headers(SECRET, unix_now(), &mention),
    )
    .await;
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
    let (granted, granted_seen) =
        serve_scripted(|_, _| ScriptedResponse::json(200, json!({"ok": true}))).await;
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
    assert!(
        !body.contains("SUPER-SECRET-BOT") && !body.contains("SIGNING-SECRET-VALUE"),
        "{body}"
    );
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
    // The granted service got the credential the plugin never saw.
    assert_eq!(
        granted_seen.all()[0].header("authorization"),
        Some("Bearer SUPER-SECRET-BOT")
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
