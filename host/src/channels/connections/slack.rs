//! Slack Socket Mode: `apps.connections.open` with the app-level token gives a WebSocket URL;
//! each envelope is acknowledged (`{"envelope_id"}`) as soon as the channel has received it,
//! and its payload goes to the channel as an Events API body. A `disconnect` (Slack refreshes
//! connections every few hours) or a dropped socket opens a new one.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{Backoff, redact, report};
use crate::capabilities::host_http::{self, HostRequest};
use crate::channels::Channels;
use crate::config::SlackSocketMode;

/// Our own pings keep a half-open connection from going unnoticed.
const PING_EVERY: Duration = Duration::from_secs(30);
/// With nothing heard for this long (not even a pong), the socket is given up.
const SILENCE: Duration = Duration::from_secs(90);

pub async fn run(
    channels: &Channels,
    name: &str,
    settings: SlackSocketMode,
    allow_private: bool,
    stop: CancellationToken,
) {
    let token = settings.app_token.expose().to_owned();
    let mut backoff = Backoff::new();
    while !stop.is_cancelled() {
        let started = std::time::Instant::now();
        match session(channels, name, &settings, allow_private, &stop).await {
            Ok(()) => {
                if !backoff.after_session(started.elapsed(), &stop).await {
                    return;
                }
            }
            Err(problem) => {
                report(channels, name, redact(&problem, &token));
                if !backoff.wait(&stop).await {
                    return;
                }
            }
        }
    }
}

/// One WebSocket, from opening to its end (`Ok` when Slack asked to reconnect).
async fn session(
    channels: &Channels,
    name: &str,
    settings: &SlackSocketMode,
    allow_private: bool,
    stop: &CancellationToken,
) -> Result<(), String> {
    let mut authorization =
        http::HeaderValue::from_str(&format!("Bearer {}", settings.app_token.expose()))
            .map_err(|_| "the app token is not a valid header value".to_owned())?;
    authorization.set_sensitive(true);
    let open = host_http::send(HostRequest {
        method: http::Method::POST,
        url: &format!(
            "{}/apps.connections.open",
            settings.api.trim_end_matches('/')
        ),
        headers: vec![
            (http::header::AUTHORIZATION, authorization),
            (
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-www-form-urlencoded"),
            ),
        ],
        body: bytes::Bytes::new(),
        allow_private,
        timeout: Duration::from_secs(15),
        max_body_bytes: 64 * 1024,
    })
    .await
    .map_err(|e| format!("apps.connections.open: {e:#}"))?;
    let answer: serde_json::Value = serde_json::from_slice(&open.body)
        .map_err(|e| format!("apps.connections.open answered no JSON: {e}"))?;
    let Some(url) = answer["url"].as_str().filter(|_| answer["ok"] == true) else {
        return Err(format!(
            "apps.connections.open failed: {}",
            answer["error"].as_str().unwrap_or("no URL")
        ));
    };
    let mut socket = host_http::websocket(url, allow_private, Duration::from_secs(15))
        .await
        .map_err(|e| format!("opening the socket: {e:#}"))?;
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_heard = std::time::Instant::now();
    loop {
        let frame = tokio::select! {
            frame = socket.next() => frame,
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE {
                    return Err("nothing heard on the socket for 90 s; reconnecting".into());
                }
                socket
                    .send(Message::Ping(Vec::new().into()))
                    .await
                    .map_err(|e| format!("pinging the socket: {e}"))?;
                continue;
            }
            () = stop.cancelled() => {
                let _ = socket.close(None).await;
                return Ok(());
            }
        };
        last_heard = std::time::Instant::now();
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None => return Err("the socket closed".into()),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(format!("the socket failed: {error}")),
        };
        let Ok(envelope) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
            continue;
        };
        match envelope["type"].as_str() {
            Some("hello") => continue,
            Some("disconnect") => return Ok(()),
            _ => {}
        }
        let Some(envelope_id) = envelope["envelope_id"].as_str() else {
            continue;
        };
        let payload = envelope["payload"].to_string().into_bytes();
        let handed_on = channels
            .receive_from_connection(name, Vec::new(), payload)
            .await;
        match handed_on {
            Ok(()) => {
                let ack = serde_json::json!({ "envelope_id": envelope_id }).to_string();
                socket
                    .send(Message::text(ack))
                    .await
                    .map_err(|e| format!("acknowledging an envelope: {e}"))?;
            }
            // Unacknowledged, Slack delivers the envelope again.
            Err(problem) => report(channels, name, format!("envelope not handed on: {problem}")),
        }
    }
}
