//! The Discord Gateway: `GET /gateway/bot` gives the WebSocket URL; after Hello the host
//! identifies with the bot token (or resumes the last session with its sequence number),
//! heartbeats at the interval Discord set, and reconnects (resuming) when Discord asks, when a
//! heartbeat goes unacknowledged, or when the socket drops. `MESSAGE_CREATE` dispatches go to
//! the channel with the bot's own user id in `x-databot-bot-user`, so it can tell mentions.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{Backoff, redact, report};
use crate::capabilities::host_http::{self, HostRequest};
use crate::channels::Channels;
use crate::config::DiscordGateway;

const DISPATCH: u64 = 0;
const HEARTBEAT: u64 = 1;
const IDENTIFY: u64 = 2;
const RESUME: u64 = 6;
const RECONNECT: u64 = 7;
const INVALID_SESSION: u64 = 9;
const HELLO: u64 = 10;
const HEARTBEAT_ACK: u64 = 11;

/// What survives a reconnect: the session to resume and the last sequence number seen.
#[derive(Default)]
struct Session {
    id: Option<String>,
    resume_url: Option<String>,
    sequence: Option<u64>,
    bot_user: Option<String>,
}

pub async fn run(
    channels: &Channels,
    name: &str,
    settings: DiscordGateway,
    allow_private: bool,
    stop: CancellationToken,
) {
    let token = settings.bot_token.expose().to_owned();
    let mut session = Session::default();
    let mut backoff = Backoff::new();
    while !stop.is_cancelled() {
        let started = std::time::Instant::now();
        let ended = connect(
            channels,
            name,
            &settings,
            allow_private,
            &stop,
            &mut session,
        )
        .await;
        match ended {
            Ok(()) => {
                if !backoff.after_session(started.elapsed(), &stop).await {
                    return;
                }
            }
            Err(Ended::Fatal(problem)) => {
                report(channels, name, redact(&problem, &token));
                return;
            }
            Err(Ended::Retry(problem)) => {
                report(channels, name, redact(&problem, &token));
                if !backoff.wait(&stop).await {
                    return;
                }
            }
        }
    }
}

/// Why a gateway connection ended.
enum Ended {
    /// Connect again (resuming when there is a session).
    Retry(String),
    /// Discord refused the bot for good (a bad token, intents it may not have): connecting
    /// again would only repeat it and spend the daily identify budget.
    Fatal(String),
}

impl From<String> for Ended {
    fn from(problem: String) -> Self {
        Self::Retry(problem)
    }
}

impl From<&str> for Ended {
    fn from(problem: &str) -> Self {
        Self::Retry(problem.to_owned())
    }
}

/// Close codes after which Discord will not accept the same identify again.
fn fatal_close(code: u16) -> Option<&'static str> {
    match code {
        4004 => Some("the bot token was refused (4004)"),
        4010 => Some("invalid shard (4010)"),
        4011 => Some("sharding required (4011)"),
        4012 => Some("invalid API version (4012)"),
        4013 => Some("invalid intents (4013)"),
        4014 => Some(
            "disallowed intents (4014): enable them for the bot in the developer portal (message content is privileged)",
        ),
        _ => None,
    }
}

/// What `GET /gateway/bot` tells: where to connect, and when the next Identify is allowed.
#[derive(Debug, PartialEq)]
struct GatewayInfo {
    url: String,
    /// Set when the day's session starts are used up: wait this long before identifying.
    wait_before_identify: Option<Duration>,
}

/// Longest wait for the session start budget to reset (Discord's window is a day).
const MAX_START_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

impl GatewayInfo {
    fn parse(answer: &Value) -> Result<Self, String> {
        let url = answer["url"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "GET /gateway/bot gave no url".to_owned())?;
        let limit = &answer["session_start_limit"];
        let wait_before_identify = (limit["remaining"].as_u64() == Some(0)).then(|| {
            Duration::from_millis(limit["reset_after"].as_u64().unwrap_or(5_000))
                .min(MAX_START_WAIT)
        });
        Ok(Self {
            url,
            wait_before_identify,
        })
    }
}

async fn gateway_info(
    settings: &DiscordGateway,
    allow_private: bool,
) -> Result<GatewayInfo, String> {
    let mut authorization =
        http::HeaderValue::from_str(&format!("Bot {}", settings.bot_token.expose()))
            .map_err(|_| "the bot token is not a valid header value".to_owned())?;
    authorization.set_sensitive(true);
    let response = host_http::send(HostRequest {
        method: http::Method::GET,
        url: &format!("{}/gateway/bot", settings.api.trim_end_matches('/')),
        headers: vec![(http::header::AUTHORIZATION, authorization)],
        body: bytes::Bytes::new(),
        allow_private,
        timeout: Duration::from_secs(15),
        max_body_bytes: 64 * 1024,
    })
    .await
    .map_err(|e| format!("GET /gateway/bot: {e:#}"))?;
    if !response.status.is_success() {
        return Err(format!(
            "GET /gateway/bot answered HTTP {}",
            response.status
        ));
    }
    let answer: Value = serde_json::from_slice(&response.body)
        .map_err(|e| format!("GET /gateway/bot answered no JSON: {e}"))?;
    GatewayInfo::parse(&answer)
}

fn with_query(url: &str) -> String {
    format!("{}/?v=10&encoding=json", url.trim_end_matches('/'))
}

/// One socket, from Hello to its end (`Ok` when Discord asked to reconnect).
async fn connect(
    channels: &Channels,
    name: &str,
    settings: &DiscordGateway,
    allow_private: bool,
    stop: &CancellationToken,
    session: &mut Session,
) -> Result<(), Ended> {
    let base = match (&session.id, &session.resume_url) {
        (Some(_), Some(resume)) => resume.clone(),
        _ => {
            let info = gateway_info(settings, allow_private).await?;
            if let Some(wait) = info.wait_before_identify {
                // Identifying past the budget would get the token reset by Discord.
                report(
                    channels,
                    name,
                    format!(
                        "the day's session starts are used up; identifying again in {} s",
                        wait.as_secs()
                    ),
                );
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop.cancelled() => return Ok(()),
                }
            }
            info.url
        }
    };
    let mut socket =
        host_http::websocket(&with_query(&base), allow_private, Duration::from_secs(15))
            .await
            .map_err(|e| format!("opening the gateway: {e:#}"))?;
    let hello = next_json(&mut socket).await?;
    if hello["op"].as_u64() != Some(HELLO) {
        return Err("the gateway did not start with Hello".into());
    }
    let interval = Duration::from_millis(
        hello["d"]["heartbeat_interval"]
            .as_u64()
            .unwrap_or(41_250)
            .clamp(100, 300_000),
    );
    let greeting = match (&session.id, session.sequence) {
        (Some(id), Some(sequence)) => json!({"op": RESUME, "d": {
            "token": settings.bot_token.expose(), "session_id": id, "seq": sequence}}),
        _ => json!({"op": IDENTIFY, "d": {
            "token": settings.bot_token.expose(),
            "intents": settings.intents,
            "properties": {"os": std::env::consts::OS, "browser": "databot", "device": "databot"},
        }}),
    };
    send(&mut socket, &greeting).await?;
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut acknowledged = true;
    loop {
        let frame = tokio::select! {
            frame = socket.next() => frame,
            _ = heartbeat.tick() => {
                if !acknowledged {
                    return Err("a heartbeat went unacknowledged; reconnecting".into());
                }
                acknowledged = false;
                send(&mut socket, &json!({"op": HEARTBEAT, "d": session.sequence})).await?;
                continue;
            }
            () = stop.cancelled() => {
                let _ = socket.close(None).await;
                return Ok(());
            }
        };
        let payload: Value = match frame {
            Some(Ok(Message::Text(text))) => match serde_json::from_str(text.as_str()) {
                Ok(payload) => payload,
                Err(_) => continue,
            },
            Some(Ok(Message::Close(frame))) => {
                let code = frame.as_ref().map(|f| u16::from(f.code));
                if let Some(reason) = code.and_then(fatal_close) {
                    return Err(Ended::Fatal(format!(
                        "Discord closed the gateway: {reason}"
                    )));
                }
                if matches!(code, Some(4007 | 4009)) {
                    // The session cannot be resumed: identify afresh.
                    *session = Session {
                        bot_user: session.bot_user.take(),
                        ..Session::default()
                    };
                }
                return Err(format!("the gateway closed the socket ({code:?})").into());
            }
            None => return Err("the gateway closed the socket".into()),
            Some(Ok(_)) => continue,
            Some(Err(error)) => {
                return Err(format!("the gateway socket failed: {error}").into());
            }
        };
        match payload["op"].as_u64() {
            Some(HEARTBEAT_ACK) => acknowledged = true,
            Some(HEARTBEAT) => {
                send(
                    &mut socket,
                    &json!({"op": HEARTBEAT, "d": session.sequence}),
                )
                .await?;
            }
            Some(RECONNECT) => return Ok(()),
            Some(INVALID_SESSION) => {
                if payload["d"] != true {
                    *session = Session {
                        bot_user: session.bot_user.take(),
                        ..Session::default()
                    };
                }
                return Err("Discord invalidated the session".into());
            }
            Some(DISPATCH) => {
                // The sequence moves on only past what was handed on: a dispatch that was not
                // is replayed by Discord when the session is resumed.
                dispatch(channels, name, &payload, session).await?;
                if let Some(sequence) = payload["s"].as_u64() {
                    session.sequence = Some(sequence);
                }
            }
            _ => {}
        }
    }
}

async fn dispatch(
    channels: &Channels,
    name: &str,
    payload: &Value,
    session: &mut Session,
) -> Result<(), String> {
    match payload["t"].as_str() {
        Some("READY") => {
            session.id = payload["d"]["session_id"].as_str().map(str::to_owned);
            session.resume_url = payload["d"]["resume_gateway_url"]
                .as_str()
                .map(str::to_owned);
            session.bot_user = payload["d"]["user"]["id"].as_str().map(str::to_owned);
        }
        Some("MESSAGE_CREATE") => {
            let headers = session
                .bot_user
                .iter()
                .map(|id| ("x-databot-bot-user".to_owned(), id.clone()))
                .collect();
            channels
                .receive_from_connection(name, headers, payload.to_string().into_bytes())
                .await
                .map_err(|problem| {
                    format!("a message was not handed on ({problem}); resuming to get it again")
                })?;
        }
        _ => {}
    }
    Ok(())
}

async fn next_json(socket: &mut host_http::HostWebSocket) -> Result<Value, String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                return serde_json::from_str(text.as_str()).map_err(|e| format!("not JSON: {e}"));
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(error))) => return Err(format!("the gateway socket failed: {error}")),
            Ok(None) => return Err("the gateway closed the socket".into()),
            Err(_) => return Err("no Hello within 30 s".into()),
        }
    }
}

async fn send(socket: &mut host_http::HostWebSocket, payload: &Value) -> Result<(), String> {
    socket
        .send(Message::text(payload.to_string()))
        .await
        .map_err(|e| format!("writing to the gateway: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exhausted_session_start_budget_means_waiting_for_its_reset() {
        let info = GatewayInfo::parse(&json!({"url": "wss://g", "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 0, "reset_after": 1500, "max_concurrency": 1}}))
        .unwrap();
        assert_eq!(info.url, "wss://g");
        assert_eq!(info.wait_before_identify, Some(Duration::from_millis(1500)));
        let fine = GatewayInfo::parse(&json!({"url": "wss://g",
            "session_start_limit": {"remaining": 999, "reset_after": 1500}}))
        .unwrap();
        assert_eq!(fine.wait_before_identify, None);
        assert!(GatewayInfo::parse(&json!({})).is_err());
    }
}
