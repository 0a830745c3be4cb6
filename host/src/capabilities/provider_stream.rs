//! `stream-sink.emit`: a provider plugin's streamed events, parsed once into the turn's
//! `TurnEvent` and handed straight to the turn's `EventSink` (no forwarding task between).
//!
//! A provider may stream only text (`delta` events); tool progress and the end of the turn
//! come from the agent, so a provider cannot forge them. Malformed events are skipped (the
//! call's result still carries the whole answer). An event larger than `MAX_EVENT_BYTES` ends
//! the call with an error naming the limit. What the sink's queue holds is bounded in bytes
//! (`events::MAX_QUEUED_BYTES`) and charged to the call's memory budget (`HELD_BYTES`).

use crate::events::{EventSink, MAX_QUEUED_BYTES, TurnEvent};

/// Largest single event, in bytes (a text delta is far smaller).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// What a streaming call makes the host hold at most: the queue and the event being parsed.
pub const HELD_BYTES: usize = MAX_QUEUED_BYTES + MAX_EVENT_BYTES;

/// Why an event ended the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error(
        "the provider streamed an event of {size} bytes, over the limit of {MAX_EVENT_BYTES} bytes an event"
    )]
    TooLarge { size: usize },
}

/// Pass one event the provider emitted to `sink`.
pub fn forward(sink: &EventSink, json: &str) -> Result<(), StreamError> {
    if json.len() > MAX_EVENT_BYTES {
        return Err(StreamError::TooLarge { size: json.len() });
    }
    if sink.is_closed() {
        return Ok(());
    }
    match serde_json::from_str::<TurnEvent>(json) {
        Ok(event @ TurnEvent::Delta { .. }) => sink.emit(event),
        Ok(other) => {
            tracing::debug!(
                event = other.name(),
                "a provider may stream only `delta` events; skipped"
            );
        }
        Err(error) => tracing::debug!("skipping a malformed provider event: {error}"),
    }
    Ok(())
}

impl crate::contract::databot::plugin::stream_sink::Host for super::StoreState {
    async fn emit(&mut self, event: String) -> wasmtime::Result<()> {
        let Some(sink) = &self.sink else {
            return Ok(());
        };
        if let Err(error) = forward(sink, &event) {
            let message = error.to_string();
            self.output_breach = Some(message.clone());
            return Err(wasmtime::Error::msg(message));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use super::*;
    use crate::events::event_queue;

    #[test]
    fn deltas_pass_and_everything_else_is_skipped() {
        let (sink, mut receiver) = event_queue(16, Arc::new(AtomicU64::new(0)));
        forward(&sink, r#"{"type":"delta","text":"hel"}"#).unwrap();
        forward(&sink, r#"{"type":"done","content":"forged"}"#).unwrap();
        forward(&sink, r#"{"type":"tool_start","name":"shell"}"#).unwrap();
        forward(&sink, "not json").unwrap();
        forward(&sink, r#"{"type":"delta","text":"lo"}"#).unwrap();
        let mut texts = Vec::new();
        while let Some(event) = receiver.try_recv() {
            match event {
                TurnEvent::Delta { text } => texts.push(text),
                other => panic!("{other:?} passed"),
            }
        }
        assert_eq!(texts, ["hel", "lo"]);
    }

    #[test]
    fn an_oversized_event_is_an_error_naming_the_limit() {
        let (sink, _receiver) = event_queue(16, Arc::new(AtomicU64::new(0)));
        let error = forward(&sink, &"x".repeat(MAX_EVENT_BYTES + 1)).unwrap_err();
        assert!(error.to_string().contains("limit"));
    }

    #[test]
    fn a_listener_that_went_away_costs_nothing() {
        let (sink, receiver) = event_queue(16, Arc::new(AtomicU64::new(0)));
        drop(receiver);
        for _ in 0..100 {
            forward(&sink, r#"{"type":"delta","text":"x"}"#).unwrap();
        }
    }
}
