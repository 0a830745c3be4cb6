//! Telegram long polling: `getUpdates` with `offset` one past the last update handed on, so
//! an update is confirmed to Telegram only once the channel received it; an update that could
//! not be handed on is fetched again. A restart starts from what Telegram still holds, and
//! the channel's dedupe drops what was already handled.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Backoff, redact, report};
use crate::capabilities::host_http::{self, HostRequest};
use crate::channels::Channels;
use crate::config::TelegramPolling;

const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Hand-offs of one update tried before it is skipped (reported, and confirmed to Telegram so
/// the updates after it are not held up forever).
const MAX_ATTEMPTS: u32 = 5;
/// Most bytes of an error answer kept in the status and the log.
const MAX_ERROR_BYTES: usize = 512;

pub async fn run(
    channels: &Channels,
    name: &str,
    settings: TelegramPolling,
    allow_private: bool,
    stop: CancellationToken,
) {
    let token = settings.bot_token.expose().to_owned();
    let url = format!(
        "{}/bot{token}/getUpdates",
        settings.api.trim_end_matches('/')
    );
    let mut offset: Option<i64> = None;
    let mut backoff = Backoff::new();
    let mut failing: Option<(i64, u32)> = None;
    while !stop.is_cancelled() {
        let body = serde_json::json!({
            "offset": offset,
            "timeout": settings.timeout_seconds,
            "allowed_updates": ["message", "edited_message", "channel_post"],
        });
        let request = host_http::send(HostRequest {
            method: http::Method::POST,
            url: &url,
            headers: vec![(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            )],
            body: body.to_string().into(),
            allow_private,
            timeout: Duration::from_secs(settings.timeout_seconds + 15),
            max_body_bytes: MAX_BATCH_BYTES,
        });
        let response = tokio::select! {
            response = request => response,
            () = stop.cancelled() => return,
        };
        let updates = match response {
            Ok(response) if response.status.is_success() => {
                match serde_json::from_slice::<serde_json::Value>(&response.body) {
                    Ok(answer) => answer["result"].as_array().cloned().unwrap_or_default(),
                    Err(error) => {
                        report(
                            channels,
                            name,
                            format!("getUpdates answered no JSON: {error}"),
                        );
                        if !backoff.wait(&stop).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            Ok(response) => {
                let problem = if response.status == http::StatusCode::CONFLICT {
                    "Telegram refuses long polling while a webhook is set (deleteWebhook, or use the webhook instead)".to_owned()
                } else {
                    format!(
                        "getUpdates answered HTTP {}: {}",
                        response.status,
                        redact(
                            &String::from_utf8_lossy(
                                &response.body[..response.body.len().min(MAX_ERROR_BYTES)]
                            ),
                            &token
                        )
                    )
                };
                report(channels, name, problem);
                if !backoff.wait(&stop).await {
                    return;
                }
                continue;
            }
            Err(error) => {
                report(
                    channels,
                    name,
                    redact(&format!("getUpdates: {error:#}"), &token),
                );
                if !backoff.wait(&stop).await {
                    return;
                }
                continue;
            }
        };
        let mut stalled = false;
        for update in updates {
            let Some(id) = update["update_id"].as_i64() else {
                continue;
            };
            match channels
                .receive_from_connection(name, Vec::new(), update.to_string().into_bytes())
                .await
            {
                Ok(()) => {
                    offset = Some(id + 1);
                    failing = None;
                }
                Err(problem) => {
                    let attempts = match failing {
                        Some((failed, attempts)) if failed == id => attempts + 1,
                        _ => 1,
                    };
                    if attempts >= MAX_ATTEMPTS {
                        report(
                            channels,
                            name,
                            format!("update {id} skipped after {attempts} attempts: {problem}"),
                        );
                        offset = Some(id + 1);
                        failing = None;
                        continue;
                    }
                    // Not confirmed: the next poll, after a pause, gets it again.
                    report(
                        channels,
                        name,
                        format!("update {id} not handed on: {problem}"),
                    );
                    failing = Some((id, attempts));
                    stalled = true;
                    break;
                }
            }
        }
        if stalled {
            if !backoff.wait(&stop).await {
                return;
            }
        } else {
            backoff.reset();
        }
    }
}
