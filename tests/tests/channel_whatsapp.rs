//! The `whatsapp` channel end to end: the verify-token handshake (GET, challenge echoed), the
//! `X-Hub-Signature-256` check, text messages answered through `/PHONE_ID/messages` with the
//! access token added by the host, statuses ignored, a redelivered `wamid` answered once.

use std::time::Duration;

use databot_e2e::chat_platforms::{
    channel_host, deliver, eventually, fake_provider, provider_config, requests_to,
    whatsapp_signature,
};
use databot_e2e::{ScriptedResponse, serve_scripted};
use serde_json::json;

const APP_SECRET: &str = "whatsapp-app-secret";
const VERIFY_TOKEN: &str = "verify-me";

fn delivery(wamid: &str, text: &str) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "PN1"},
            "contacts": [{"profile": {"name": "Ada"}, "wa_id": "4915112345"}],
            "messages": [{"from": "4915112345", "id": wamid, "timestamp": "1700000000", "type": "text", "text": {"body": text}}],
        }}]}],
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_signatures_and_replies_follow_the_cloud_api() {
    let provider = fake_provider("Total: **3** ~~orders~~", 1, Duration::ZERO).await;
    let (api, seen) = serve_scripted(|_, index| {
        ScriptedResponse::json(200, json!({"messaging_product": "whatsapp", "messages": [{"id": format!("wamid.OUT{index}")}]}))
    })
    .await;
    let config = format!(
        r#"{}  whatsapp:
    permissions:
      http:
        allow: ["127.0.0.1:{api}"]
        allow_private: true
        secrets:
          - {{ host: "http://127.0.0.1:{api}", header: authorization, value: "Bearer wa-access-token" }}
      verify:
        app_secret: {{ secret: "{APP_SECRET}" }}
        verify_token: {{ secret: "{VERIFY_TOKEN}" }}
    config:
      api: "http://127.0.0.1:{api}/v21.0"
    channel:
      allow_users: ["4915112345"]
"#,
        provider_config(provider)
    );
    let (_host, gateway) = channel_host("whatsapp", &config).await;

    let (status, body) = deliver(
        gateway,
        "GET",
        &format!("/channels/whatsapp?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"),
        &[],
        "",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "1158201444"));
    let (status, _) = deliver(
        gateway,
        "GET",
        "/channels/whatsapp?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
        &[],
        "",
    )
    .await;
    assert_eq!(status, 401);

    let body = delivery("wamid.IN1", "orders today?");
    let signed = |body: &str, secret: &str| {
        vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            (
                "x-hub-signature-256".to_owned(),
                whatsapp_signature(secret, body),
            ),
        ]
    };
    let (status, _) = deliver(
        gateway,
        "POST",
        "/channels/whatsapp",
        &signed(&body, "other"),
        &body,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = deliver(
        gateway,
        "POST",
        "/channels/whatsapp",
        &signed(&body, APP_SECRET),
        &body,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        eventually(Duration::from_secs(10), || requests_to(&seen, "/messages")
            .len()
            == 1)
        .await
    );
    let sent = &requests_to(&seen, "/messages")[0];
    assert_eq!(sent.path, "/v21.0/PN1/messages");
    assert_eq!(sent.header("authorization"), Some("Bearer wa-access-token"));
    let json = sent.json();
    assert_eq!(json["to"], "4915112345");
    assert_eq!(json["messaging_product"], "whatsapp");
    assert_eq!(json["text"]["body"], "Total: *3* ~orders~");

    // A redelivery and a status update: nothing more is sent.
    let (status, _) = deliver(
        gateway,
        "POST",
        "/channels/whatsapp",
        &signed(&body, APP_SECRET),
        &body,
    )
    .await;
    assert_eq!(status, 200);
    let statuses = json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"phone_number_id": "PN1"},
        "statuses": [{"id": "wamid.OUT0", "status": "delivered", "recipient_id": "4915112345"}]}}]}]})
    .to_string();
    let (status, _) = deliver(
        gateway,
        "POST",
        "/channels/whatsapp",
        &signed(&statuses, APP_SECRET),
        &statuses,
    )
    .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(requests_to(&seen, "/messages").len(), 1);
}
