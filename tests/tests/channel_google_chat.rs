//! The `google_chat` channel end to end: events carry a Google-signed JWT that the host checks
//! against a key set it fetches (wrong audience, another signer, expired: 401); the answer
//! goes to the message's thread through the Chat API with an access token the host minted for
//! the service account (a signed JWT exchanged at the token endpoint), never seen by the plugin.

use std::time::Duration;

use databot_e2e::chat_platforms::{
    channel_host, deliver, eventually, fake_provider, jwks, jwt_claims, jwt_rs256, jwt_signed_by,
    provider_config, requests_to, rsa_key, unix_now,
};
use databot_e2e::{ScriptedResponse, serve_scripted};
use serde_json::json;

const ISSUER: &str = "chat@system.gserviceaccount.com";
const PROJECT: &str = "1234567890";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_signed_events_are_answered_in_their_thread_with_a_minted_token() {
    let (google_key, _) = rsa_key();
    let (other_key, _) = rsa_key();
    let (account_key, account_pem) = rsa_key();
    let key_set = jwks(&google_key, "g1");
    let (keys_port, keys_seen) =
        serve_scripted(move |_, _| ScriptedResponse::json(200, key_set.clone())).await;
    let (token_port, token_seen) = serve_scripted(|_, _| {
        ScriptedResponse::json(200, json!({"access_token": "ya29.minted-token", "expires_in": 3600, "token_type": "Bearer"}))
    })
    .await;
    let (chat_port, chat_seen) = serve_scripted(|request, index| {
        if request.method == "POST" {
            return ScriptedResponse::json(
                200,
                json!({"name": format!("spaces/AAA/messages/out{index}")}),
            );
        }
        ScriptedResponse::json(200, json!({}))
    })
    .await;
    let provider = fake_provider("Found **3** tables", 1, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("service-account.json");
    std::fs::write(
        &key_file,
        json!({
            "type": "service_account", "client_email": "databot@project.iam.gserviceaccount.com",
            "private_key_id": "sa1", "private_key": account_pem,
            "token_uri": format!("http://127.0.0.1:{token_port}/token"),
        })
        .to_string(),
    )
    .unwrap();
    let config = format!(
        r#"{}  google_chat:
    endpoints:
      api:
        url: "http://127.0.0.1:{chat_port}"
        auth: {{ type: google_service_account, key_file: "{}", scopes: ["https://www.googleapis.com/auth/chat.bot"], token_allow_private: true }}
    permissions:
      verify:
        google: {{ jwks: {{ url: "http://127.0.0.1:{keys_port}/keys", issuers: ["{ISSUER}"], audiences: ["{PROJECT}"], allow_private: true }} }}
    config:
      api: "http://127.0.0.1:{chat_port}"
    channel:
      allow_users: ["users/111"]
"#,
        provider_config(provider),
        key_file.display()
    );
    let (_host, gateway) = channel_host("google_chat", &config).await;
    let event = json!({
        "type": "MESSAGE",
        "eventTime": "2026-12-06T10:00:00Z",
        "space": {"name": "spaces/AAA", "type": "ROOM", "spaceType": "SPACE"},
        "message": {
            "name": "spaces/AAA/messages/in1",
            "sender": {"name": "users/111", "displayName": "Ada", "type": "HUMAN"},
            "text": "@databot which tables?", "argumentText": " which tables?",
            "thread": {"name": "spaces/AAA/threads/T1"},
            "space": {"name": "spaces/AAA"},
        },
    })
    .to_string();
    let now = unix_now();
    let claims = |aud: &str, exp: i64| json!({"iss": ISSUER, "aud": aud, "iat": now, "exp": exp});
    let bearer = |token: String| {
        vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("authorization".to_owned(), format!("Bearer {token}")),
        ]
    };
    // All at once, on a cold cache: the key set is fetched once (single flight).
    let refused = [
        (
            jwt_rs256(&google_key, "g1", &claims("999", now + 600)),
            "wrong audience",
        ),
        (
            jwt_rs256(&other_key, "g1", &claims(PROJECT, now + 600)),
            "another signer",
        ),
        (
            jwt_rs256(&google_key, "g1", &claims(PROJECT, now - 120)),
            "expired",
        ),
    ];
    let statuses = futures::future::join_all(refused.iter().map(|(token, what)| {
        let headers = bearer(token.clone());
        let event = &event;
        async move {
            let (status, _) =
                deliver(gateway, "POST", "/channels/google_chat", &headers, event).await;
            (status, *what)
        }
    }))
    .await;
    for (status, what) in statuses {
        assert_eq!(status, 401, "{what}");
    }
    assert_eq!(keys_seen.all().len(), 1, "one fetch of the key set");
    let good = jwt_rs256(&google_key, "g1", &claims(PROJECT, now + 600));
    let (status, body) = deliver(
        gateway,
        "POST",
        "/channels/google_chat",
        &bearer(good),
        &event,
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "{}"));
    assert!(
        eventually(Duration::from_secs(15), || !requests_to(
            &chat_seen,
            "NEW_THREAD"
        )
        .is_empty())
        .await
    );
    let create = &requests_to(&chat_seen, "NEW_THREAD")[0];
    assert_eq!(
        create.path,
        "/v1/spaces/AAA/messages?messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
    );
    assert_eq!(
        create.header("authorization"),
        Some("Bearer ya29.minted-token")
    );
    let sent = create.json();
    assert_eq!(sent["thread"]["name"], "spaces/AAA/threads/T1");
    assert!(
        sent["text"]
            .as_str()
            .unwrap()
            .starts_with("Found *3* tables")
    );
    // The token request: a JWT signed with the account's key, for its scope and endpoint.
    let request = &token_seen.all()[0];
    assert!(request.body.starts_with(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="
    ));
    let assertion = request.body.split("assertion=").nth(1).unwrap();
    assert!(
        jwt_signed_by(assertion, &account_key),
        "the token request is not signed with the service account's key"
    );
    assert!(!jwt_signed_by(assertion, &other_key));
    let claims = jwt_claims(assertion);
    assert_eq!(claims["iss"], "databot@project.iam.gserviceaccount.com");
    assert_eq!(claims["scope"], "https://www.googleapis.com/auth/chat.bot");
    assert_eq!(
        claims["aud"],
        format!("http://127.0.0.1:{token_port}/token")
    );
}
