//! The `discord` channel end to end: Ed25519 signatures checked by the host (a forged or
//! altered request is 401), PING answered with PONG, a slash command deferred in the same
//! exchange and its answer replacing the deferred response through the interaction webhook,
//! without pinging anyone; a retried interaction is answered once.

use std::time::Duration;

use databot_e2e::chat_platforms::{
    channel_host, deliver, discord_headers, discord_public_key, eventually, fake_provider,
    provider_config, requests_to,
};
use databot_e2e::{ScriptedResponse, serve_scripted};
use serde_json::json;

const SEED: [u8; 32] = [7; 32];
const OTHER_SEED: [u8; 32] = [9; 32];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactions_are_verified_deferred_and_answered_through_the_webhook() {
    let provider = fake_provider("Ping @everyone: **done**", 1, Duration::ZERO).await;
    let (api, seen) = serve_scripted(|request, _| {
        if request.method == "GET" {
            // The deferred response, still loading.
            return ScriptedResponse::json(200, json!({"id": "m1", "flags": 128, "content": ""}));
        }
        ScriptedResponse::json(200, json!({"id": "m1"}))
    })
    .await;
    let config = format!(
        r#"{}  discord:
    permissions:
      http:
        allow: ["127.0.0.1:{api}"]
        allow_private: true
        secrets:
          - {{ host: "http://127.0.0.1:{api}", header: authorization, value: "Bot discord-bot-token" }}
      verify:
        public_key: {{ ed25519_public_key: "{}" }}
    config:
      api: "http://127.0.0.1:{api}/api/v10"
    channel:
      allow_users: ["U7"]
      stream: false
"#,
        provider_config(provider),
        discord_public_key(&SEED)
    );
    let (_host, gateway) = channel_host("discord", &config).await;

    let ping = json!({"id": "i0", "type": 1, "application_id": "A1", "token": "tok0"}).to_string();
    let (status, body) = deliver(
        gateway,
        "POST",
        "/channels/discord",
        &discord_headers(&SEED, "1700000000", &ping),
        &ping,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        json!({"type": 1})
    );

    // Signed with another key, or altered after signing: refused.
    let (status, _) = deliver(
        gateway,
        "POST",
        "/channels/discord",
        &discord_headers(&OTHER_SEED, "1700000000", &ping),
        &ping,
    )
    .await;
    assert_eq!(status, 401);
    let altered = ping.replace("tok0", "tok9");
    let (status, _) = deliver(
        gateway,
        "POST",
        "/channels/discord",
        &discord_headers(&SEED, "1700000000", &ping),
        &altered,
    )
    .await;
    assert_eq!(status, 401);

    let command = json!({
        "id": "i1", "type": 2, "application_id": "A1", "token": "tok1",
        "guild_id": "G1", "channel_id": "C5",
        "member": {"user": {"id": "U7", "username": "ada"}},
        "data": {"name": "ask", "options": [{"name": "question", "type": 3, "value": "how many orders?"}]},
    })
    .to_string();
    let headers = discord_headers(&SEED, "1700000001", &command);
    let (status, body) = deliver(gateway, "POST", "/channels/discord", &headers, &command).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        json!({"type": 5})
    );
    assert!(
        eventually(Duration::from_secs(10), || !requests_to(
            &seen,
            "/messages/@original"
        )
        .iter()
        .filter(|r| r.method == "PATCH")
        .collect::<Vec<_>>()
        .is_empty())
        .await
    );
    let edit = requests_to(&seen, "/messages/@original")
        .into_iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(edit.path, "/api/v10/webhooks/A1/tok1/messages/@original");
    let body = edit.json();
    assert_eq!(body["content"], "Ping \u{ff20}everyone: **done**");
    assert_eq!(body["allowed_mentions"], json!({"parse": []}));

    // Discord does not retry interactions, but a replay of the same one is answered once.
    let (status, _) = deliver(gateway, "POST", "/channels/discord", &headers, &command).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let patches = seen
        .all()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .count();
    assert_eq!(patches, 1);
}
