//! Where a finished run's result goes: whether to send it at all (`notify`), the text a chat
//! gets, the JSON a webhook gets, and the sending.

use std::time::Duration;

use serde_json::json;

use super::store::{ClaimedRun, RunStatus};
use crate::capabilities::host_http::{HostRequest, send};
use crate::channels::Channels;
use crate::config::{Delivery, Notify, WebhookDeliveryConfig};

/// A run's result, ready to judge and send.
pub struct Finished<'a> {
    pub run: &'a ClaimedRun,
    pub status: RunStatus,
    /// The answer or tool output (already cut to `output_chars`).
    pub output: &'a str,
    pub error: Option<&'a str>,
    pub trace_id: &'a str,
}

impl Finished<'_> {
    /// What `notify: on_change` compares: the status and the output.
    pub fn digest(&self) -> String {
        crate::digest::sha256_hex(format!("{}\n{}", self.status.as_str(), self.output).as_bytes())
    }

    /// Should this result be sent, given the job's `notify` and the previous digest?
    pub fn wanted(&self) -> bool {
        match self.run.job.spec.notify {
            Notify::Always => true,
            Notify::OnFailure => self.status != RunStatus::Succeeded,
            Notify::OnChange => self.run.job.last_digest.as_deref() != Some(&self.digest()),
        }
    }

    /// The message a chat gets.
    pub fn chat_text(&self) -> String {
        let name = &self.run.job.spec.name;
        match (self.status, &self.run.job.spec.prompt) {
            (RunStatus::Succeeded, Some(_)) => self.output.to_owned(),
            (RunStatus::Succeeded, None) => {
                format!("Scheduled job `{name}` passed.\n{}", self.output)
            }
            _ => {
                let mut text = format!(
                    "Scheduled job `{name}` {}: {}",
                    self.status.as_str(),
                    self.error.unwrap_or("no reason given")
                );
                if !self.output.is_empty() {
                    text.push('\n');
                    text.push_str(self.output);
                }
                text
            }
        }
    }

    /// The JSON a webhook gets.
    pub fn webhook_body(&self) -> serde_json::Value {
        json!({
            "job": self.run.job.spec.name,
            "slot": rfc3339(self.run.slot),
            "manual": self.run.manual,
            "attempt": self.run.attempt,
            "status": self.status.as_str(),
            "output": self.output,
            "error": self.error,
            "trace_id": self.trace_id,
        })
    }
}

/// `ms` since the epoch as RFC 3339 (UTC).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Send the result; `Ok` says where it went, `Err` why it did not (the target kind first).
pub async fn deliver(
    finished: &Finished<'_>,
    target: &Delivery,
    channels: Option<&Channels>,
    webhooks: &WebhookDeliveryConfig,
) -> Result<String, (&'static str, String)> {
    match (&target.channel, &target.chat, &target.webhook) {
        (Some(channel), Some(chat), _) => {
            let Some(channels) = channels else {
                return Err((
                    "channel",
                    "channels are not running in this process".to_owned(),
                ));
            };
            channels
                .send(
                    channel,
                    chat,
                    target.thread.as_deref(),
                    &finished.chat_text(),
                )
                .await
                .map(|_| format!("sent to {}", target.describe()))
                .map_err(|e| ("channel", e.to_string()))
        }
        (_, _, Some(url)) => {
            let body = finished.webhook_body().to_string();
            let answer = send(HostRequest {
                method: http::Method::POST,
                url,
                headers: vec![
                    (
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    ),
                    (
                        http::header::USER_AGENT,
                        http::HeaderValue::from_static("databot-scheduler"),
                    ),
                ],
                body: body.into(),
                allow_private: webhooks.allow_private,
                timeout: Duration::from_secs(webhooks.timeout_seconds.max(1)),
                max_body_bytes: 64 * 1024,
            })
            .await
            .map_err(|e| ("webhook", format!("{e:#}")))?;
            if answer.status.is_success() {
                Ok(format!("posted to {}", target.describe()))
            } else {
                Err((
                    "webhook",
                    format!("{} answered {}", target.describe(), answer.status),
                ))
            }
        }
        _ => Ok("stored".to_owned()),
    }
}
