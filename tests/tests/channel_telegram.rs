//! The `telegram` channel end to end: the secret-token header checked by the host, updates
//! deduplicated on `update_id` (also after a restart), private chats answered and groups only
//! when the bot is mentioned, the bot token added by the host in the URL path, 429 with
//! `retry_after` honoured, streamed answers as `editMessageText` at the throttled rate.

use std::time::{Duration, Instant};

use databot_e2e::chat_platforms::{
    channel_host, deliver, eventually, fake_provider, provider_config, requests_to,
};
use databot_e2e::{ScriptedResponse, serve_scripted};
use serde_json::json;

const TOKEN: &str = "123456:ABC-telegram-bot-token";
const SECRET_TOKEN: &str = "s3cret_Token-1";

fn telegram_config(api_port: u16, extra: &str) -> String {
    format!(
        r#"  telegram:
    permissions:
      http:
        allow: ["127.0.0.1:{api_port}"]
        allow_private: true
        secrets:
          - {{ host: "http://127.0.0.1:{api_port}", path_prefix: "/bot{TOKEN}" }}
      verify:
        secret_token: {{ secret: "{SECRET_TOKEN}" }}
    config:
      api: "http://127.0.0.1:{api_port}"
      bot_username: databot_bot
    channel:
      allow_users: ["42"]
{extra}
"#
    )
}

fn update(update_id: u64, chat: serde_json::Value, text: &str, key: &str) -> String {
    json!({
        "update_id": update_id,
        key: {
            "message_id": 7,
            "from": {"id": 42, "is_bot": false, "first_name": "Ada", "last_name": "L"},
            "chat": chat,
            "date": 1_700_000_000,
            "text": text,
        }
    })
    .to_string()
}

fn headers(token: Option<&str>) -> Vec<(String, String)> {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(token) = token {
        headers.push(("x-telegram-bot-api-secret-token".into(), token.into()));
    }
    headers
}

async fn fake_telegram(
    script: impl Fn(usize) -> Option<ScriptedResponse> + Send + Sync + 'static,
) -> (u16, std::sync::Arc<databot_e2e::recorded::Requests>) {
    serve_scripted(move |_, index| {
        script(index).unwrap_or_else(|| {
            ScriptedResponse::json(
                200,
                json!({"ok": true, "result": {"message_id": 100 + index}}),
            )
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_verified_deduplicated_and_answered_with_the_token_in_the_path_only() {
    let provider = fake_provider("Hello **Ada** <3", 1, Duration::ZERO).await;
    let (api, seen) = fake_telegram(|_| None).await;
    let (host, gateway) = channel_host(
        "telegram",
        &format!(
            "{}{}",
            provider_config(provider),
            telegram_config(api, "      stream: false")
        ),
    )
    .await;
    let private = update(1001, json!({"id": 42, "type": "private"}), "hi", "message");
    for token in [None, Some("wrong")] {
        let (status, _) = deliver(
            gateway,
            "POST",
            "/channels/telegram",
            &headers(token),
            &private,
        )
        .await;
        assert_eq!(status, 401, "{token:?}");
    }
    let (status, _) = deliver(
        gateway,
        "POST",
        "/channels/telegram",
        &headers(Some(SECRET_TOKEN)),
        &private,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        eventually(Duration::from_secs(10), || requests_to(
            &seen,
            "/sendMessage"
        )
        .len()
            == 1)
        .await
    );
    let sent = &requests_to(&seen, "/sendMessage")[0];
    assert_eq!(sent.path, format!("/bot{TOKEN}/sendMessage"));
    let body = sent.json();
    assert_eq!(body["chat_id"], "42");
    assert_eq!(body["parse_mode"], "HTML");
    assert_eq!(body["text"], "Hello <b>Ada</b> &lt;3");
    assert_eq!(body["reply_parameters"]["message_id"], 7);

    // The same update again, also after a restart: dropped.
    let (status, _) = deliver(
        gateway,
        "POST",
        "/channels/telegram",
        &headers(Some(SECRET_TOKEN)),
        &private,
    )
    .await;
    assert_eq!(status, 200);
    let restarted = host.start_gateway("openai", "gateway: {}\n").await;
    let (status, _) = deliver(
        restarted,
        "POST",
        "/channels/telegram",
        &headers(Some(SECRET_TOKEN)),
        &private,
    )
    .await;
    assert_eq!(status, 200);

    // Edits and group chatter are not answered; a mention in a group is.
    let group = json!({"id": -100, "type": "supergroup"});
    for body in [
        update(
            1002,
            json!({"id": 42, "type": "private"}),
            "hi again",
            "edited_message",
        ),
        update(1003, group.clone(), "just chatting", "message"),
    ] {
        let (status, _) = deliver(
            gateway,
            "POST",
            "/channels/telegram",
            &headers(Some(SECRET_TOKEN)),
            &body,
        )
        .await;
        assert_eq!(status, 200);
    }
    let mention = update(1004, group, "@databot_bot how many rows?", "message");
    let (status, _) = deliver(
        gateway,
        "POST",
        "/channels/telegram",
        &headers(Some(SECRET_TOKEN)),
        &mention,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        eventually(Duration::from_secs(10), || requests_to(
            &seen,
            "/sendMessage"
        )
        .len()
            == 2)
        .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = requests_to(&seen, "/sendMessage");
    assert_eq!(
        sent.len(),
        2,
        "a duplicate, an edit or group chatter was answered"
    );
    assert_eq!(sent[1].json()["chat_id"], "-100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_waited_out_and_a_streamed_answer_is_edited_in_place() {
    let answer = "alpha beta gamma delta epsilon zeta eta theta iota kappa";
    let provider = fake_provider(answer, 10, Duration::from_millis(250)).await;
    let (api, seen) = fake_telegram(|index| {
        (index == 0).then(|| {
            ScriptedResponse::json(
                429,
                json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}}),
            )
        })
    })
    .await;
    let (_host, gateway) = channel_host(
        "telegram",
        &format!("{}{}", provider_config(provider), telegram_config(api, "")),
    )
    .await;
    let started = Instant::now();
    let private = update(
        2001,
        json!({"id": 42, "type": "private"}),
        "count",
        "message",
    );
    let (status, _) = deliver(
        gateway,
        "POST",
        "/channels/telegram",
        &headers(Some(SECRET_TOKEN)),
        &private,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        eventually(Duration::from_secs(15), || requests_to(
            &seen,
            "/editMessageText"
        )
        .last()
        .is_some_and(|e| e.json()["text"] == answer))
        .await
    );
    let sends = requests_to(&seen, "/sendMessage");
    assert_eq!(sends.len(), 2, "the refused send and its retry");
    assert!(sends[1].received_at - sends[0].received_at >= Duration::from_millis(950));
    assert!(started.elapsed() >= Duration::from_secs(1));
    for edit in requests_to(&seen, "/editMessageText") {
        let body = edit.json();
        assert_eq!(body["chat_id"], "42");
        assert_eq!(body["message_id"], 101);
        assert_eq!(edit.path, format!("/bot{TOKEN}/editMessageText"));
    }
}
