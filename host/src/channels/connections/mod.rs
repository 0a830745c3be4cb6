//! Connections the host holds to chat platforms, for bots with no public URL: Slack Socket
//! Mode and the Discord Gateway (WebSockets) and Telegram long polling. Each feeds what it
//! receives to the channel's `receive` (transport `connection`) like a webhook, and owns its
//! protocol: acknowledgements, heartbeats, resuming, offsets, reconnecting with backoff. The
//! credentials are the host's (`plugins.NAME.channel.connection`); errors never show them.

mod discord;
mod slack;
mod telegram;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Channels;

/// Longest wait between two attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A connection that lived this long was healthy: the next reconnect starts from 1 s again.
const HEALTHY: Duration = Duration::from_secs(30);

/// Start a task for every channel whose settings name a connection; they end with `stop`.
pub fn start(channels: &Arc<Channels>, stop: &CancellationToken) {
    for (name, plugin) in &channels.runtime.config().plugins {
        let Some(connection) = plugin.channel.as_ref().and_then(|c| c.connection.clone()) else {
            continue;
        };
        let name = name.clone();
        let channels = channels.clone();
        let stop = stop.clone();
        tracing::info!(channel = %name, "starting the channel's connection");
        tokio::spawn(async move {
            let allow_private = connection.allow_private;
            if let Some(settings) = connection.slack_socket_mode {
                slack::run(&channels, &name, settings, allow_private, stop).await;
            } else if let Some(settings) = connection.discord_gateway {
                discord::run(&channels, &name, settings, allow_private, stop).await;
            } else if let Some(settings) = connection.telegram_polling {
                telegram::run(&channels, &name, settings, allow_private, stop).await;
            }
        });
    }
}

/// Exponential backoff from 1 s up to `MAX_BACKOFF`, reset after a healthy stretch.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: Duration::from_secs(1),
        }
    }

    fn reset(&mut self) {
        self.next = Duration::from_secs(1);
    }

    /// After a connection that ended without an error: reconnect at once when it lived long
    /// enough to count as healthy, else wait like after an error (a platform that keeps
    /// closing at once must not get a reconnect storm). False when stopped.
    async fn after_session(&mut self, lived: Duration, stop: &CancellationToken) -> bool {
        if lived >= HEALTHY {
            self.reset();
            return !stop.is_cancelled();
        }
        self.wait(stop).await
    }

    /// Wait the current delay (or until `stop`); false when stopped.
    async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = stop.cancelled() => false,
        }
    }
}

/// `text` with every occurrence of `secret` replaced, for errors that may quote a URL or a
/// request.
fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "<redacted>")
    }
}

/// Record a connection problem on the channel's status and in the log.
fn report(channels: &Channels, name: &str, problem: String) {
    tracing::warn!(channel = name, "connection: {problem}");
    channels
        .counters(name)
        .error(format!("connection: {problem}"));
}
