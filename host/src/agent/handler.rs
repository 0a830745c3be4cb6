//! The agent as the bus's message handler: a turn per inbound message, turn events as stream
//! events, failures as a reply that says what went wrong without leaking internals.

use crate::bus::{
    EventSink, InboundMessage, MessageHandler, OutboundMessage, StreamEvent, StreamEventKind,
};

use super::{Agent, Conversation, TurnEvent};

fn stream_event(event: TurnEvent) -> StreamEvent {
    match event {
        TurnEvent::Delta { text } => StreamEvent {
            kind: StreamEventKind::Delta,
            data: text,
            tool_name: None,
        },
        TurnEvent::ToolStart { name, arguments } => StreamEvent {
            kind: StreamEventKind::ToolStart,
            data: arguments.to_string(),
            tool_name: Some(name),
        },
        TurnEvent::ToolResult { name, output, .. } => StreamEvent {
            kind: StreamEventKind::ToolResult,
            data: output,
            tool_name: Some(name),
        },
    }
}

#[async_trait::async_trait]
impl MessageHandler for Agent {
    async fn handle(&self, message: InboundMessage, events: EventSink) -> OutboundMessage {
        let conversation = Conversation {
            session_key: message.session_key(),
            user: message.user_key(),
        };
        let session = conversation.session_key.clone();
        let (turn_events, mut received) = tokio::sync::mpsc::unbounded_channel();
        let wants_events = message.stream;
        let forward = events.clone();
        let forwarder = tokio::spawn(async move {
            while let Some(event) = received.recv().await {
                if wants_events {
                    forward.emit(stream_event(event));
                }
            }
        });
        let outcome = self
            .turn_in_trace(
                &conversation,
                &message.content,
                Some(turn_events),
                &message.trace_context,
            )
            .await;
        let _ = forwarder.await;
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
        if message.stream {
            events.emit(StreamEvent {
                kind: if failed {
                    StreamEventKind::Error
                } else {
                    StreamEventKind::Done
                },
                data: content.clone(),
                tool_name: None,
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
