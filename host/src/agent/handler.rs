//! The agent as the bus's message handler: a turn per inbound message, its events straight
//! into the message's event queue, failures as a reply that says what went wrong without
//! leaking internals.

use crate::bus::{InboundMessage, MessageHandler, OutboundMessage};
use crate::events::{EventSink, TurnEvent};

use super::{Agent, Conversation};

#[async_trait::async_trait]
impl MessageHandler for Agent {
    async fn handle(&self, message: InboundMessage, events: EventSink) -> OutboundMessage {
        let conversation = Conversation {
            session_key: message.session_key(),
            user: message.user_key(),
        };
        let session = conversation.session_key.clone();
        let turn_events = message.stream.then_some(&events);
        let outcome = self
            .turn_in_trace(
                &conversation,
                &message.content,
                turn_events,
                &message.trace_context,
            )
            .await;
        let (content, failed) = match outcome {
            Ok(outcome) => (outcome.content, false),
            Err(error) => {
                tracing::error!(%session, "turn failed: {error}");
                (
                    format!("Sorry, this message could not be answered: {error}"),
                    true,
                )
            }
        };
        if let Some(events) = turn_events {
            events.emit(if failed {
                TurnEvent::Error {
                    message: content.clone(),
                }
            } else {
                TurnEvent::Done {
                    content: content.clone(),
                }
            });
        }
        OutboundMessage {
            channel: message.channel,
            chat_id: message.chat_id,
            content,
            thread_id: message.thread_id,
            failed,
        }
    }
}
