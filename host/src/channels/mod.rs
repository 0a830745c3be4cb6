//! Chat channels: the host side of channel plugins (Slack, Discord, Telegram, WhatsApp,
//! Google Chat). Owns what the plugins must not: webhook ingress (the plugin verifies through
//! `verify`, the host refuses what it did not verify), deduplication of retried deliveries
//! (stored with the sessions), the operator's allowlists, the hand-off to the bus, and the
//! replies (split, streamed as throttled edits, rate limits honoured), plus each channel's
//! status. Platform secrets stay in the host's config.
//!
//! Submodules: `policy` (who is answered), `split` (answers cut to the platform's limit),
//! `delivery` (sending and streaming a reply), `queue` (one conversation's replies in order),
//! `status` (counters).

pub mod connections;
mod delivery;
pub mod policy;
mod queue;
pub mod split;
mod status;
pub mod stranded;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use self::delivery::{Replier, ReplyShape, ReplyTarget};
use self::policy::Decision;
pub use self::status::ChannelStatus;
use self::status::{ChannelCounters, bump};
use crate::agent::sessions::SessionStore;
use crate::bus::{Bus, BusError, InboundMessage, TurnScope};
use crate::config::ChannelSettings;
use crate::contract::chat_channel::{self, InboundRequest, Transport};
use crate::runtime::{ErrorKind, Runtime};

/// How long a hand-off to the bus may wait for room before the platform is told to retry.
const SUBMIT_WAIT: Duration = Duration::from_millis(1500);
/// Longest wait of a proactive message for the replies queued before it in its conversation.
const SEND_QUEUE_WAIT: Duration = Duration::from_secs(60);

/// An HTTP request to `/channels/NAME[/...]`, as received.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// The HTTP answer to give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the channel verified the request (`Some(false)`: it ran and did not); `None`
    /// when it never got that far (no such channel, the plugin failed).
    pub verified: Option<bool>,
}

impl WebhookAnswer {
    fn json(status: u16, code: &str, message: &str) -> Self {
        let body = serde_json::json!({ "error": { "code": code, "message": message } });
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            verified: None,
        }
    }

    fn empty() -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
            verified: None,
        }
    }

    fn verified(self, verified: bool) -> Self {
        Self {
            verified: Some(verified),
            ..self
        }
    }
}

/// Why a proactive message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no channel named `{0}` is loaded")]
    NoSuchChannel(String),
    #[error("the message could not be delivered: {0}")]
    Failed(String),
}

/// The channels of one host.
pub struct Channels {
    runtime: Runtime,
    bus: Arc<dyn Bus>,
    sessions: Arc<SessionStore>,
    counters: Mutex<BTreeMap<String, Arc<ChannelCounters>>>,
    limits: delivery::LimitsCache,
    /// Events between their claim and their hand-off to the bus (`channel`, `event id`).
    handing_on: Mutex<std::collections::HashSet<(String, String)>>,
    replies: queue::ConversationQueue,
}

/// An event being handed on; it leaves `handing_on` when this is dropped.
struct HandingOn<'a> {
    set: &'a Mutex<std::collections::HashSet<(String, String)>>,
    key: (String, String),
}

impl<'a> HandingOn<'a> {
    /// `None` when the event is being handed on already.
    fn start(
        set: &'a Mutex<std::collections::HashSet<(String, String)>>,
        channel: &str,
        event: &str,
    ) -> Option<Self> {
        let key = (channel.to_owned(), event.to_owned());
        // Decided before a guard exists: a guard made and dropped while the lock is held
        // would take the lock again in its `drop`.
        let inserted = set.lock().insert(key.clone());
        inserted.then(|| Self { set, key })
    }
}

impl Drop for HandingOn<'_> {
    fn drop(&mut self) {
        self.set.lock().remove(&self.key);
    }
}

impl Channels {
    pub fn new(runtime: Runtime, bus: Arc<dyn Bus>, sessions: Arc<SessionStore>) -> Arc<Self> {
        Arc::new(Self {
            runtime,
            bus,
            sessions,
            counters: Mutex::default(),
            limits: delivery::LimitsCache::default(),
            handing_on: Mutex::default(),
            replies: queue::ConversationQueue::default(),
        })
    }

    /// The operator's settings for channel `name` (closed to everyone when it has none).
    pub fn settings(&self, name: &str) -> ChannelSettings {
        self.runtime
            .config()
            .plugins
            .get(name)
            .and_then(|plugin| plugin.channel.clone())
            .unwrap_or_default()
    }

    fn counters(&self, name: &str) -> Arc<ChannelCounters> {
        self.counters
            .lock()
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// Is `name` a loaded channel the host can serve? `Err` is the answer to give.
    pub fn servable(&self, name: &str) -> Result<(), WebhookAnswer> {
        use crate::runtime::revision::KindExports;
        let Some(slot) = self.runtime.plugin(name) else {
            return Err(WebhookAnswer::json(404, "not_found", "no such channel"));
        };
        let revision = slot.current();
        match revision.exports {
            KindExports::Channel(_) => Ok(()),
            KindExports::LegacyChannel(_) => Err(WebhookAnswer::json(
                501,
                "legacy_channel",
                "this channel plugin was built against databot:plugin@0.1.0; rebuild it",
            )),
            _ => Err(WebhookAnswer::json(404, "not_found", "no such channel")),
        }
    }

    /// Most body bytes channel `name` accepts.
    pub fn max_body_bytes(&self, name: &str) -> usize {
        self.settings(name).max_body_bytes
    }

    /// Handle one webhook request: the channel turns it into an answer and messages; unless
    /// it verified the request, the answer is 401 and nothing goes further. Verified messages
    /// are deduplicated, checked against the allowlists and handed to the bus; their replies
    /// are sent in the background, so the platform gets its answer at once.
    pub async fn receive_webhook(&self, name: &str, request: WebhookRequest) -> WebhookAnswer {
        if let Err(answer) = self.servable(name) {
            return answer;
        }
        self.receive(
            name,
            InboundRequest {
                transport: Transport::Webhook,
                method: request.method,
                path: request.path,
                query: request.query,
                headers: request.headers,
                body: request.body.to_vec(),
            },
        )
        .await
    }

    /// Handle one frame or update of a connection the host holds to the platform (it
    /// authenticated the connection itself, so the channel need not verify it). `Err` when
    /// the frame could not be handed on and should be received again.
    pub async fn receive_from_connection(
        &self,
        name: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<(), String> {
        if let Err(answer) = self.servable(name) {
            return Err(String::from_utf8_lossy(&answer.body).into_owned());
        }
        let limit = self.max_body_bytes(name);
        if body.len() > limit {
            // Dropped, not retried: it would be as large the next time.
            self.counters(name).error(format!(
                "a {}-byte frame from the connection was over max_body_bytes ({limit}) and was dropped",
                body.len()
            ));
            return Ok(());
        }
        let answer = self
            .receive(
                name,
                InboundRequest {
                    transport: Transport::Connection,
                    method: "POST".into(),
                    path: "/".into(),
                    query: String::new(),
                    headers,
                    body,
                },
            )
            .await;
        if answer.status == 503 {
            Err(String::from_utf8_lossy(&answer.body).into_owned())
        } else {
            Ok(())
        }
    }

    async fn receive(&self, name: &str, inbound: InboundRequest) -> WebhookAnswer {
        let counters = self.counters(name);
        bump(&counters.requests);
        let webhook = inbound.transport == Transport::Webhook;
        let receipt = match self.runtime.channel_receive(name, inbound).await {
            Ok(receipt) => receipt,
            Err(error) => {
                counters.error(error.to_string());
                tracing::warn!(channel = name, "receiving a request failed: {error}");
                // The caller is anonymous: the details (config keys, budgets) stay in the
                // status and the log.
                let (status, message) = match error.kind {
                    ErrorKind::InvalidInput => (400, "the request could not be understood"),
                    ErrorKind::Unavailable | ErrorKind::CircuitOpen | ErrorKind::Timeout => {
                        (503, "the channel is busy; retry later")
                    }
                    _ => (500, "the channel failed to handle the request"),
                };
                return WebhookAnswer::json(status, error.kind.as_str(), message);
            }
        };
        if webhook && receipt.verified_by.is_none() {
            bump(&counters.verification_failures);
            tracing::info!(
                channel = name,
                "refused a request the channel did not verify"
            );
            return WebhookAnswer::json(
                401,
                "unverified",
                "the request's signature or token could not be verified",
            )
            .verified(false);
        }
        counters.event_seen();
        let answer = match receipt.received.response {
            Some(response) => WebhookAnswer {
                status: response.status,
                headers: response.headers,
                body: response.body,
                verified: None,
            },
            None => WebhookAnswer::empty(),
        };
        let verified = receipt.verified_by.is_some();
        match self
            .accept(name, &counters, receipt.received.messages)
            .await
        {
            Ok(()) => answer.verified(verified),
            Err(busy) => busy.verified(verified),
        }
    }

    /// Hand verified messages on. `Err` is the answer that makes the platform retry (the bus
    /// is full, or the dedupe store failed); messages handed on before stay handed on, and
    /// the retry's copies of them are dropped as duplicates.
    async fn accept(
        &self,
        name: &str,
        counters: &Arc<ChannelCounters>,
        messages: Vec<chat_channel::InboundMessage>,
    ) -> Result<(), WebhookAnswer> {
        if messages.is_empty() {
            return Ok(());
        }
        let settings = self.settings(name);
        let keep = Duration::from_secs(settings.dedupe_hours * 3600);
        for message in messages {
            match policy::decide(&settings, &message) {
                Decision::Answer => {}
                Decision::Ignore(why) => {
                    bump(&counters.ignored);
                    tracing::debug!(channel = name, event = %message.event_id, "ignored: {why}");
                    continue;
                }
                Decision::Refuse(why) => {
                    bump(&counters.refused);
                    tracing::info!(
                        channel = name,
                        sender = %message.sender,
                        chat = %message.chat,
                        "refused: {why}"
                    );
                    continue;
                }
            }
            if message.event_id.is_empty() {
                bump(&counters.ignored);
                tracing::warn!(channel = name, "a message without an event id was dropped");
                continue;
            }
            // A retry that arrives while its first delivery is still being handed on is told
            // to come back: if the hand-off fails, the event is released, and the platform's
            // next retry must find it unclaimed rather than dropped as a duplicate.
            let Some(_handing_on) = HandingOn::start(&self.handing_on, name, &message.event_id)
            else {
                return Err(WebhookAnswer::json(
                    503,
                    "in_progress",
                    "this event is being handed on; retry later",
                ));
            };
            match self
                .sessions
                .claim_event(name, &message.event_id, keep)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    bump(&counters.duplicates);
                    tracing::debug!(channel = name, event = %message.event_id, "duplicate dropped");
                    continue;
                }
                Err(error) => {
                    counters.error(format!("dedupe store: {error:#}"));
                    return Err(WebhookAnswer::json(
                        503,
                        "unavailable",
                        "the event store is unavailable; retry later",
                    ));
                }
            }
            let event_id = message.event_id.clone();
            if let Err(error) = self.submit(name, &settings, counters, message).await {
                bump(&counters.busy);
                tracing::warn!(
                    channel = name,
                    "handing a message to the agent failed: {error}"
                );
                // Not handed on: the platform's retry must be processed.
                if let Err(release) = self.sessions.release_event(name, &event_id).await {
                    tracing::warn!(channel = name, "releasing event {event_id}: {release:#}");
                }
                return Err(WebhookAnswer::json(
                    503,
                    "busy",
                    "the agent is busy; retry later",
                ));
            }
        }
        Ok(())
    }

    async fn submit(
        &self,
        name: &str,
        settings: &ChannelSettings,
        counters: &Arc<ChannelCounters>,
        message: chat_channel::InboundMessage,
    ) -> Result<(), BusError> {
        let target = ReplyTarget {
            channel: name.to_owned(),
            chat: message.chat.clone(),
            thread: message.thread.clone(),
            reply_context: message.reply_context.clone(),
        };
        let shape = ReplyShape::of(
            &self.runtime,
            &self.limits,
            name,
            settings.stream,
            Duration::from_millis(settings.edit_interval_ms),
        )
        .await;
        let inbound = InboundMessage {
            channel: name.to_owned(),
            chat_id: message.chat,
            sender_id: message.sender,
            content: message.text,
            stream: shape.edit_interval.is_some(),
            thread_id: message.thread,
            trace_context: Vec::new(),
            sender_name: message.sender_name,
            workspace: message.workspace,
            scope: TurnScope {
                specialist: settings.specialist.clone(),
                tools: settings.tools.clone(),
            },
            cancel_when_abandoned: false,
            // Platforms retry and replay: the event id names the message everywhere.
            id: format!("{name}:{}", message.event_id),
            reply_to: None,
        };
        // Queued before the hand-off, so the conversation's replies go out in the order its
        // messages went to the bus (a failed hand-off gives its place up).
        let mut place = self.replies.enqueue(inbound.session_key());
        let delivery = match tokio::time::timeout(SUBMIT_WAIT, self.bus.submit(inbound)).await {
            Ok(result) => result?,
            Err(_) => return Err(BusError::Busy { pending: 0 }),
        };
        bump(&counters.accepted);
        let replier = Replier {
            runtime: self.runtime.clone(),
            target,
            counters: counters.clone(),
        };
        tokio::spawn(async move {
            place.turn().await;
            delivery::deliver(replier, delivery, shape).await;
            drop(place);
        });
        Ok(())
    }

    /// Post `text` to a chat (and thread) of channel `name` on the host's own initiative
    /// (`POST /api/v1/channels/NAME/send`, scheduled jobs): split at the platform's limit,
    /// rate limits waited out. The handles of the messages posted.
    pub async fn send(
        &self,
        name: &str,
        chat: &str,
        thread: Option<&str>,
        text: &str,
    ) -> Result<Vec<String>, SendError> {
        if self.servable(name).is_err() {
            return Err(SendError::NoSuchChannel(name.to_owned()));
        }
        let counters = self.counters(name);
        let shape = ReplyShape::of(&self.runtime, &self.limits, name, false, Duration::ZERO).await;
        // After the replies queued in that conversation, not in the middle of one; but a
        // message sent on the host's initiative waits at most `SEND_QUEUE_WAIT` for them.
        let mut place = self
            .replies
            .enqueue(crate::bus::session_key(name, chat, thread));
        if tokio::time::timeout(SEND_QUEUE_WAIT, place.turn())
            .await
            .is_err()
        {
            tracing::info!(
                channel = name,
                chat,
                "a reply in this conversation is still going out; sending without waiting for it"
            );
        }
        let replier = Replier {
            runtime: self.runtime.clone(),
            target: ReplyTarget {
                channel: name.to_owned(),
                chat: chat.to_owned(),
                thread: thread.map(str::to_owned),
                reply_context: None,
            },
            counters,
        };
        replier
            .send_whole(text, shape.max_chars)
            .await
            .map_err(SendError::Failed)
    }

    /// Every loaded channel's status.
    pub fn status(&self) -> Vec<ChannelStatus> {
        use crate::runtime::revision::KindExports;
        self.runtime
            .channels()
            .into_iter()
            .map(|name| {
                let state = match self.runtime.plugin(&name).map(|slot| slot.current()) {
                    Some(revision) if matches!(revision.exports, KindExports::LegacyChannel(_)) => {
                        "legacy contract (rebuild against databot:plugin@0.1.1)"
                    }
                    _ => "ready",
                };
                self.counters(&name).status(&name, state)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_handed_on_once_at_a_time() {
        let set = Mutex::default();
        let first = HandingOn::start(&set, "slack", "Ev1");
        assert!(first.is_some());
        assert!(HandingOn::start(&set, "slack", "Ev1").is_none());
        assert!(HandingOn::start(&set, "slack", "Ev2").is_some());
        drop(first);
        assert!(HandingOn::start(&set, "slack", "Ev1").is_some());
        assert!(set.lock().is_empty());
    }
}
