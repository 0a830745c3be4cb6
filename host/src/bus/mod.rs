//! The message bus: how channels, the gateway and the CLI hand messages to the agent.
//!
//! `MemoryBus` is the in-process bus; `KafkaBus` runs several replicas as one consumer group
//! on a topic keyed by conversation, with replies recorded in PostgreSQL (`outbox`) and
//! brought back to the replica that took the message in (`replies`). Guarantees of both:
//! messages of one conversation (`channel:chat_id`) are handled in order, one at a time;
//! different conversations run concurrently; queues are bounded and a full bus answers
//! `BusError::Busy` instead of dropping or blocking forever; nobody has to drain anything for
//! the bus to keep working. The Kafka bus adds: a message is answered once even when it is
//! delivered again (its processed record is written with the turn).

mod durable;
pub mod kafka;
mod memory;
pub mod outbox;
mod replies;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::events::{EventReceiver, EventSink};

pub use durable::{DurableHandler, transient_in as transient_store_error};
pub use kafka::KafkaBus;
pub use memory::{BusLimits, MemoryBus};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InboundMessage {
    /// Set by the receiving side (`api` for the gateway), never taken from a client.
    pub channel: String,
    pub chat_id: String,
    /// Set by the receiving side from who it authenticated (the gateway: the API key).
    pub sender_id: String,
    pub content: String,
    /// The sender wants stream events (deltas, tool progress).
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub thread_id: Option<String>,
    /// W3C trace context of the sender (`traceparent`, `tracestate`), so the turn that answers
    /// joins the sender's trace (see `telemetry::propagation`). Empty when there is none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace_context: Vec<(String, String)>,
    /// The sender's display name, when the channel gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    /// The Slack team, Discord guild or other workspace the message came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// What the receiving side allows this turn (a channel's specialist and tools).
    #[serde(default)]
    pub scope: TurnScope,
    /// Stop the turn (nothing of it is saved) if the submitter stops waiting for the reply:
    /// a scheduled run that timed out, was cancelled or lost its lease. Otherwise a turn
    /// goes on and is saved whether or not anyone waits.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_when_abandoned: bool,
    /// The message's id: the platform's event id for a channel message, one the gateway or
    /// the bus assigns otherwise. A replicated bus answers each id once.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Set by a replicated bus: the replica and request the reply goes back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<outbox::ReplyAddress>,
}

/// Rules the receiving side sets for a turn, from the operator's config (never from a
/// message): the specialist that answers and the tools it may use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnScope {
    /// Answer with this specialist, without routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specialist: Option<String>,
    /// Only these tools (tool names, plugin names, `memory`); `None`: no narrowing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
}

/// The conversation a message of `channel` in `chat` (and `thread`) belongs to: a thread is
/// a conversation of its own.
pub fn session_key(channel: &str, chat: &str, thread: Option<&str>) -> String {
    match thread {
        Some(thread) => format!("{channel}:{chat}:{thread}"),
        None => format!("{channel}:{chat}"),
    }
}

impl InboundMessage {
    /// The conversation this message belongs to: `channel:chat`, or `channel:chat:thread`
    /// for a thread (a thread is its own conversation).
    pub fn session_key(&self) -> String {
        session_key(&self.channel, &self.chat_id, self.thread_id.as_deref())
    }

    /// The user who sent it, as its channel names them.
    pub fn user_key(&self) -> String {
        format!("{}:{}", self.channel, self.sender_id)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutboundMessage {
    pub channel: String,
    pub chat_id: String,
    pub content: String,
    #[serde(default)]
    pub thread_id: Option<String>,
    /// The turn failed; `content` says why in words fit for the user.
    #[serde(default)]
    pub failed: bool,
    /// The reply is recorded in the outbox of a replicated bus (with the turn, or on its own).
    #[serde(skip)]
    pub recorded: bool,
    /// The turn failed for a reason that may pass (its session store was unreachable): a
    /// replicated bus runs the message again instead of recording the failure.
    #[serde(skip)]
    pub transient: bool,
}

/// What a submitter gets back: the reply when the turn ends, and its stream events.
#[derive(Debug)]
pub struct Delivery {
    pub reply: oneshot::Receiver<OutboundMessage>,
    /// The turn's events (`stream: true` messages only), ending with `done` or `error`.
    pub events: EventReceiver,
    /// Call `settled` once the reply has reached its recipient (a chat platform took it):
    /// until then a replicated bus keeps it to send again should this replica die.
    pub settle: Settle,
}

/// The acknowledgement of a delivered reply (see `Delivery::settle`); nothing to do for the
/// in-process bus.
#[derive(Default)]
pub struct Settle(Option<Box<dyn FnOnce() + Send + Sync>>);

impl Settle {
    pub fn new(settle: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self(Some(Box::new(settle)))
    }

    /// The reply reached its recipient.
    pub fn settled(mut self) {
        if let Some(settle) = self.0.take() {
            settle();
        }
    }
}

impl std::fmt::Debug for Settle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Settle(pending)"
        } else {
            "Settle(none)"
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("the bus is full ({pending} messages pending); retry later")]
    Busy { pending: usize },
    #[error(
        "conversation `{session}` already has {pending} messages waiting; wait for the replies"
    )]
    ConversationBusy { session: String, pending: usize },
    #[error("the bus is shutting down")]
    Closed,
    #[error("the message broker cannot take messages now ({0}); retry later")]
    Unavailable(String),
    #[error(
        "the message takes {bytes} bytes on the bus, over its limit of {limit}; send a shorter one"
    )]
    TooLarge { bytes: usize, limit: usize },
}

/// Handles one message of a conversation (the agent, in production).
#[async_trait::async_trait]
pub trait MessageHandler: Send + Sync + 'static {
    async fn handle(&self, message: InboundMessage, events: EventSink) -> OutboundMessage;
}

#[async_trait::async_trait]
pub trait Bus: Send + Sync {
    /// Accept a message for its conversation. Waits for room up to the bus's publish timeout.
    async fn submit(&self, message: InboundMessage) -> Result<Delivery, BusError>;
}
