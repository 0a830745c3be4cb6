//! Fake chat platforms for channel tests: webhooks signed the way each platform signs them,
//! and a platform API on loopback that records every request and answers like the real one.

use std::sync::Arc;

use crate::{ScriptedResponse, SeenRequest, recorded, serve_scripted};

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Slack's `X-Slack-Signature` of `body` sent at `timestamp` under `secret`:
/// `v0=` + hex(HMAC-SHA256(secret, "v0:{timestamp}:{body}")).
pub fn slack_signature(secret: &str, timestamp: i64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(tag.as_ref()))
}

/// The headers of a Slack delivery of `body`, signed under `secret` at `timestamp`.
pub fn slack_headers(secret: &str, timestamp: i64, body: &str) -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/json".into()),
        ("x-slack-request-timestamp".into(), timestamp.to_string()),
        (
            "x-slack-signature".into(),
            slack_signature(secret, timestamp, body),
        ),
    ]
}

/// An Events API `event_callback` for an `app_mention` of the bot `UBOT` by `user`.
pub fn slack_mention(event_id: &str, user: &str, channel: &str, ts: &str, text: &str) -> String {
    serde_json::json!({
        "type": "event_callback",
        "team_id": "T1",
        "event_id": event_id,
        "authorizations": [{"user_id": "UBOT", "is_bot": true}],
        "event": {
            "type": "app_mention",
            "user": user,
            "text": format!("<@UBOT> {text}"),
            "ts": ts,
            "channel": channel,
            "team": "T1",
        }
    })
    .to_string()
}

/// A Slack Web API on loopback: `chat.postMessage` answers a new `ts` each time,
/// `chat.update` and `auth.test` answer ok. `script` may replace an answer (to send a 429):
/// it gets the request and its index and returns `Some` to answer otherwise.
pub async fn fake_slack(
    script: impl Fn(&SeenRequest, usize) -> Option<ScriptedResponse> + Send + Sync + 'static,
) -> (u16, Arc<recorded::Requests>) {
    serve_scripted(move |request, index| {
        if let Some(answer) = script(request, index) {
            return answer;
        }
        let body = if request.path.ends_with("/chat.postMessage") {
            serde_json::json!({"ok": true, "channel": "C1", "ts": format!("1700000000.{index:06}")})
        } else {
            serde_json::json!({"ok": true})
        };
        ScriptedResponse::json(200, body)
    })
    .await
}
