//! The events a provider plugin streams during a chat call (`stream-sink.emit`), on their
//! way to whoever listens (the agent's turn). The queue is bounded in bytes: each queued
//! event holds permits for its size until the listener is done with it, and `emit` waits for
//! room, so a provider that emits faster than the listener reads is slowed to the listener's
//! pace (its call deadline still runs) instead of filling host memory. An event larger than
//! `MAX_EVENT_BYTES` ends the call with an error naming the limit.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Largest single event, in bytes (a text delta or a tool-call fragment is far smaller).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// Bytes of events queued for the listener at most (a small constant, the same for every
/// call, independent of the call's memory budget).
pub const QUEUE_BYTES: usize = 1024 * 1024;
/// What a streaming call makes the host hold at most: the queue and the event being queued.
pub const HELD_BYTES: usize = QUEUE_BYTES + MAX_EVENT_BYTES;
/// What each queued event is counted as beyond its text (so empty events are bounded too).
const EVENT_OVERHEAD: usize = 64;

/// The provider's end: cloned into the call's store.
#[derive(Clone)]
pub struct StreamSender {
    events: mpsc::UnboundedSender<StreamEvent>,
    room: Arc<Semaphore>,
}

/// One event as the listener receives it; its bytes count against the queue until dropped.
pub struct StreamEvent {
    pub json: String,
    _room: OwnedSemaphorePermit,
}

/// Why an event was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error(
        "the provider streamed an event of {size} bytes, over the limit of {MAX_EVENT_BYTES} bytes an event"
    )]
    TooLarge { size: usize },
}

/// A new bounded stream: the sender for the provider call, the receiver for the listener.
pub fn provider_stream() -> (StreamSender, mpsc::UnboundedReceiver<StreamEvent>) {
    let (events, receiver) = mpsc::unbounded_channel();
    let sender = StreamSender {
        events,
        room: Arc::new(Semaphore::new(QUEUE_BYTES)),
    };
    (sender, receiver)
}

impl StreamSender {
    /// Queue one event, waiting for room. A listener that went away is not the provider's
    /// fault: the event is dropped.
    pub async fn send(&self, json: String) -> Result<(), StreamError> {
        if json.len() > MAX_EVENT_BYTES {
            return Err(StreamError::TooLarge { size: json.len() });
        }
        if self.events.is_closed() {
            return Ok(());
        }
        // At most MAX_EVENT_BYTES + EVENT_OVERHEAD, far below u32::MAX and QUEUE_BYTES.
        let permits = (json.len() + EVENT_OVERHEAD) as u32;
        let Ok(room) = Arc::clone(&self.room).acquire_many_owned(permits).await else {
            return Ok(());
        };
        let _ = self.events.send(StreamEvent { json, _room: room });
        Ok(())
    }
}

impl crate::contract::databot::plugin::stream_sink::Host for super::StoreState {
    async fn emit(&mut self, event: String) -> wasmtime::Result<()> {
        let Some(sink) = &self.sink else {
            return Ok(());
        };
        if let Err(error) = sink.send(event).await {
            let message = error.to_string();
            self.output_breach = Some(message.clone());
            return Err(wasmtime::Error::msg(message));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_listener_slows_the_provider_instead_of_queueing_without_end() {
        let (sender, mut receiver) = provider_stream();
        let event = "x".repeat(100 * 1024);
        let mut sent = 0;
        // Without a listener reading, the queue fills at QUEUE_BYTES and `send` waits.
        loop {
            let send = sender.send(event.clone());
            match tokio::time::timeout(std::time::Duration::from_millis(50), send).await {
                Ok(result) => {
                    result.unwrap();
                    sent += 1;
                }
                Err(_waiting) => break,
            }
            assert!(sent * event.len() <= QUEUE_BYTES, "queued past the bound");
        }
        assert!(sent >= 8, "only {sent} events fit");
        // Reading one makes room for the next.
        drop(receiver.recv().await.unwrap());
        tokio::time::timeout(std::time::Duration::from_secs(1), sender.send(event))
            .await
            .expect("room after a read")
            .unwrap();
    }

    #[tokio::test]
    async fn an_oversized_event_is_an_error_naming_the_limit() {
        let (sender, _receiver) = provider_stream();
        let error = sender
            .send("x".repeat(MAX_EVENT_BYTES + 1))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("limit"));
    }

    #[tokio::test]
    async fn a_listener_that_went_away_drops_events() {
        let (sender, receiver) = provider_stream();
        drop(receiver);
        for _ in 0..100 {
            sender.send("x".repeat(100 * 1024)).await.unwrap();
        }
    }
}
