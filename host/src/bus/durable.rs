//! The handler a replica of the Kafka bus runs messages with: the agent, plus the rule that a
//! message is answered once. A message whose reply is already recorded is not run again (its
//! reply is announced again to whoever waits now). A turn that did not record its reply (it
//! failed before saving) has the failure recorded, unless it failed because the session store
//! was out of reach: then, as while the outbox cannot be read, the message waits and runs
//! again (the whole turn, tools included: nothing of the failed run was saved). A failure to
//! record is retried without running the turn again. A turn that panics is answered as
//! failed. Errors that retrying cannot cure (a stored reply that does not parse, a value
//! PostgreSQL refuses) end the message unanswered rather than holding its conversation up.

use std::sync::Arc;
use std::time::Duration;

use super::outbox::{Outbox, ReplyReceipt};
use super::{InboundMessage, MessageHandler, OutboundMessage};
use crate::events::EventSink;

/// First and longest wait before a message is tried again.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const LONGEST_RETRY: Duration = Duration::from_secs(5);

pub struct DurableHandler {
    inner: Arc<dyn MessageHandler>,
    outbox: Outbox,
}

/// How one try of a message ended.
enum Attempt {
    Done(OutboundMessage),
    /// Nothing was saved; run it again after a wait.
    Again,
}

/// An error that may pass: the database is unreachable, restarting, overloaded, or the
/// transaction lost a conflict.
pub fn transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(error) => error.code().is_some_and(|code| {
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
        }),
        _ => false,
    }
}

/// `transient` for the first database error in an error's chain (none: not transient).
pub fn transient_in(error: &anyhow::Error) -> bool {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<sqlx::Error>())
        .is_some_and(transient)
}

impl DurableHandler {
    pub fn new(inner: Arc<dyn MessageHandler>, outbox: Outbox) -> Self {
        Self { inner, outbox }
    }

    async fn attempt(
        &self,
        receipt: &ReplyReceipt,
        message: &InboundMessage,
        events: &EventSink,
    ) -> Attempt {
        match self.outbox.reply_for(&receipt.message_id).await {
            Ok(Some(stored)) if stored.session_key != receipt.session_key => {
                tracing::error!(message = %receipt.message_id, "the message id is already another conversation's; left unanswered");
                return Attempt::Done(OutboundMessage::default());
            }
            Ok(Some(stored)) => {
                tracing::debug!(message = %receipt.message_id, "already answered; not run again");
                self.announce(receipt).await;
                return Attempt::Done(stored.reply);
            }
            Ok(None) => {}
            Err(error) if transient(&error) => {
                tracing::warn!(message = %receipt.message_id, "the outbox cannot be read: {error}; waiting");
                return Attempt::Again;
            }
            Err(error) => {
                tracing::error!(message = %receipt.message_id, "the message's record cannot be read: {error}; it is left unanswered");
                return Attempt::Done(OutboundMessage::default());
            }
        }
        let outbound = self.run(message.clone(), events.clone()).await;
        if outbound.recorded {
            self.announce(receipt).await;
            return Attempt::Done(outbound);
        }
        if outbound.transient {
            tracing::warn!(message = %receipt.message_id, "the turn could not reach the session store; it runs again");
            return Attempt::Again;
        }
        let record = match receipt.record(&outbound.content, outbound.failed) {
            Ok(record) => record,
            Err(error) => {
                tracing::error!("encoding a reply failed: {error}");
                return Attempt::Done(outbound);
            }
        };
        let mut wait = FIRST_RETRY;
        loop {
            match self.outbox.record(&record).await {
                // Recorded now, or by whoever recorded it first.
                Ok(_) => {
                    self.announce(receipt).await;
                    return Attempt::Done(OutboundMessage {
                        recorded: true,
                        ..outbound
                    });
                }
                Err(error) if transient(&error) => tracing::warn!(
                    message = %receipt.message_id,
                    "recording a reply failed: {error}; trying again"
                ),
                Err(error) => {
                    tracing::error!(message = %receipt.message_id, "the reply cannot be recorded: {error}; it is left unanswered");
                    return Attempt::Done(outbound);
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(LONGEST_RETRY);
        }
    }

    /// The inner handler's answer; a panic in it is a failed turn, not a lost message.
    async fn run(&self, message: InboundMessage, events: EventSink) -> OutboundMessage {
        let inner = self.inner.clone();
        let reply_to = (
            message.channel.clone(),
            message.chat_id.clone(),
            message.thread_id.clone(),
        );
        let mut task = AbortOnDrop(tokio::spawn(
            async move { inner.handle(message, events).await },
        ));
        match (&mut task.0).await {
            Ok(outbound) => outbound,
            Err(error) => {
                tracing::error!("a turn panicked: {error}");
                OutboundMessage {
                    channel: reply_to.0,
                    chat_id: reply_to.1,
                    thread_id: reply_to.2,
                    content:
                        "Sorry, this message could not be answered: the turn failed unexpectedly."
                            .into(),
                    failed: true,
                    ..OutboundMessage::default()
                }
            }
        }
    }

    /// Tell the waiting replica (best effort: its catch-up finds the reply anyway).
    async fn announce(&self, receipt: &ReplyReceipt) {
        if let Err(error) = self
            .outbox
            .announce(&receipt.address, &receipt.message_id)
            .await
        {
            tracing::debug!("announcing a reply failed: {error}");
        }
    }
}

/// A spawned turn that stops when the message is abandoned (its future dropped).
struct AbortOnDrop(tokio::task::JoinHandle<OutboundMessage>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[async_trait::async_trait]
impl MessageHandler for DurableHandler {
    async fn handle(&self, message: InboundMessage, events: EventSink) -> OutboundMessage {
        let Some(receipt) = ReplyReceipt::of(&message) else {
            return self.inner.handle(message, events).await;
        };
        let mut wait = FIRST_RETRY;
        loop {
            match self.attempt(&receipt, &message, &events).await {
                Attempt::Done(outbound) => return outbound,
                Attempt::Again => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(LONGEST_RETRY);
                }
            }
        }
    }
}
