//! The agent as the bus's message handler: a turn per inbound message, its events straight
//! into the message's event queue, failures as a reply that says what went wrong without
//! leaking internals.

use crate::bus::{InboundMessage, MessageHandler, OutboundMessage};
use crate::events::{EventSink, TurnEvent, unheard};

use super::{Agent, Conversation};

#[async_trait::async_trait]
impl MessageHandler for Agent {
    async fn handle(&self, message: InboundMessage, events: EventSink) -> OutboundMessage {
        let conversation = Conversation {
            session_key: message.session_key(),
            user: message.user_key(),
            caller: Some(std::sync::Arc::new(crate::capabilities::Caller {
                channel: message.channel.clone(),
                user: message.sender_id.clone(),
                display_name: message.sender_name.clone(),
                chat: message.chat_id.clone(),
                thread: message.thread_id.clone(),
                workspace: message.workspace.clone(),
            })),
            scope: message.scope.clone(),
            reply: crate::bus::outbox::ReplyReceipt::of(&message),
        };
        let recorded_with_turn = conversation.reply.is_some();
        let session = conversation.session_key.clone();
        // A bus turn always asks its provider for a stream (the same provider operation whether
        // or not the sender listens); without a listener its events go nowhere.
        let unheard_events;
        let turn_events = if message.stream {
            &events
        } else {
            unheard_events = unheard();
            &unheard_events
        };
        let outcome = self
            .turn_in_trace(
                &conversation,
                &message.content,
                Some(turn_events),
                &message.trace_context,
            )
            .await;
        let (content, failed, transient, summary) = match outcome {
            Ok(outcome) => {
                let summary = crate::events::TurnSummary {
                    specialist: outcome.specialist,
                    prompt_tokens: outcome.usage.prompt_tokens,
                    completion_tokens: outcome.usage.completion_tokens,
                    tool_calls: outcome.tool_calls,
                    trace_id: outcome.trace_id,
                };
                (outcome.content, false, false, Some(summary))
            }
            Err(error) => {
                tracing::error!(%session, "turn failed: {error}");
                (
                    format!("Sorry, this message could not be answered: {error}"),
                    true,
                    // The session store was out of reach: worth running again.
                    matches!(&error, super::AgentError::Sessions(cause) if crate::bus::transient_store_error(cause)),
                    None,
                )
            }
        };
        if transient && recorded_with_turn {
            // A replicated bus runs it again; a failure now would only be a stray event.
            return OutboundMessage {
                channel: message.channel,
                chat_id: message.chat_id,
                content,
                thread_id: message.thread_id,
                failed,
                transient,
                ..OutboundMessage::default()
            };
        }
        if message.stream {
            events.emit(if failed {
                TurnEvent::Error {
                    message: content.clone(),
                }
            } else {
                TurnEvent::Done {
                    content: content.clone(),
                    summary,
                }
            });
        }
        OutboundMessage {
            channel: message.channel,
            chat_id: message.chat_id,
            content,
            thread_id: message.thread_id,
            failed,
            // A turn that succeeded saved its reply with it.
            recorded: recorded_with_turn && !failed,
            transient,
        }
    }
}
