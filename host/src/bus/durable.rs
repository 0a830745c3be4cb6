//! The handler a replica of the Kafka bus runs messages with: the agent, plus the rule that a
//! message is answered once. A message whose reply is already recorded is not run again (its
//! reply is announced again if nobody took it); a turn that did not record its reply (it
//! failed before saving) has the failure recorded; and while the outbox cannot be reached
//! the message is retried, so nothing is lost or answered from memory alone.

use std::sync::Arc;
use std::time::Duration;

use super::outbox::{Outbox, ReplyReceipt};
use super::{InboundMessage, MessageHandler, OutboundMessage};
use crate::events::EventSink;

/// First and longest wait before a message whose outcome could not be recorded is retried.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const LONGEST_RETRY: Duration = Duration::from_secs(5);

pub struct DurableHandler {
    inner: Arc<dyn MessageHandler>,
    outbox: Outbox,
}

impl DurableHandler {
    pub fn new(inner: Arc<dyn MessageHandler>, outbox: Outbox) -> Self {
        Self { inner, outbox }
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
            match self.outbox.reply_for(&receipt.message_id).await {
                Ok(Some(stored)) => {
                    tracing::debug!(message = %receipt.message_id, "already answered; not run again");
                    if let Err(error) = self.outbox.renotify(&stored, &receipt.address).await {
                        tracing::warn!("announcing a recorded reply again failed: {error}");
                    }
                    return stored.reply;
                }
                Ok(None) => {
                    let outbound = self.inner.handle(message.clone(), events.clone()).await;
                    if outbound.recorded {
                        return outbound;
                    }
                    match receipt.record(&outbound.content, outbound.failed) {
                        Ok(record) => match self.outbox.record(&record).await {
                            // Recorded now, or by whoever recorded it first.
                            Ok(_) => {
                                return OutboundMessage {
                                    recorded: true,
                                    ..outbound
                                };
                            }
                            Err(error) => tracing::warn!(
                                message = %receipt.message_id,
                                "recording a reply failed: {error}; the message will run again"
                            ),
                        },
                        Err(error) => {
                            tracing::error!("encoding a reply failed: {error}");
                            return outbound;
                        }
                    }
                }
                Err(error) => tracing::warn!(
                    message = %receipt.message_id,
                    "the outbox cannot be read: {error}; retrying"
                ),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(LONGEST_RETRY);
        }
    }
}
