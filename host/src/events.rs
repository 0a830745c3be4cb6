//! The stream of a turn's events, from where they arise to whoever listens: one type
//! (`TurnEvent`, defined with the contract in `databot-types`) and one queue per turn.
//!
//! A provider plugin's `stream-sink.emit`, the agent's tool progress and the end of the turn
//! all go straight into an `EventSink`; the listener (the gateway's SSE response, the CLI, a
//! channel) holds the `EventReceiver`. The queue is bounded in events and in bytes and never
//! blocks the sender: when the listener is gone or too slow, events are dropped and counted
//! (the turn's reply still carries the whole answer, and the last event is never needed to
//! wake anyone).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::mpsc;

pub use databot_types::event::TurnEvent;

/// Bytes of events one turn's queue holds at most for its listener.
pub const MAX_QUEUED_BYTES: usize = 1024 * 1024;
/// What each queued event is counted as beyond its text, so empty events are bounded too.
const EVENT_OVERHEAD: usize = 64;

/// The sending end; cheap to clone into every place a turn's events arise.
#[derive(Clone)]
pub struct EventSink {
    sender: mpsc::Sender<TurnEvent>,
    queued_bytes: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
}

/// The listening end.
#[derive(Debug)]
pub struct EventReceiver {
    receiver: mpsc::Receiver<TurnEvent>,
    queued_bytes: Arc<AtomicUsize>,
}

/// A queue for `capacity` events (and `MAX_QUEUED_BYTES`), its drops counted into `dropped`.
pub fn event_queue(capacity: usize, dropped: Arc<AtomicU64>) -> (EventSink, EventReceiver) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    (
        EventSink {
            sender,
            queued_bytes: queued_bytes.clone(),
            dropped,
        },
        EventReceiver {
            receiver,
            queued_bytes,
        },
    )
}

fn cost(event: &TurnEvent) -> usize {
    event.size().saturating_add(EVENT_OVERHEAD)
}

impl EventSink {
    /// Queue `event` if there is room for it; otherwise drop and count it. Never waits.
    pub fn emit(&self, event: TurnEvent) {
        let cost = cost(&event);
        let reserved = self
            .queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                let total = queued.checked_add(cost)?;
                (total <= MAX_QUEUED_BYTES).then_some(total)
            })
            .is_ok();
        if !reserved {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.sender.try_send(event).is_err() {
            self.queued_bytes.fetch_sub(cost, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// True once the listener is gone (emitting is then pointless).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

impl EventReceiver {
    /// The next event; `None` when every sink is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<TurnEvent> {
        let event = self.receiver.recv().await?;
        self.queued_bytes.fetch_sub(cost(&event), Ordering::AcqRel);
        Some(event)
    }

    /// The next event if one is queued now.
    pub fn try_recv(&mut self) -> Option<TurnEvent> {
        let event = self.receiver.try_recv().ok()?;
        self.queued_bytes.fetch_sub(cost(&event), Ordering::AcqRel);
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(bytes: usize) -> TurnEvent {
        TurnEvent::Delta {
            text: "x".repeat(bytes),
        }
    }

    #[tokio::test]
    async fn a_slow_listener_loses_events_past_the_byte_bound_and_nothing_waits() {
        let dropped = Arc::new(AtomicU64::new(0));
        let (sink, mut receiver) = event_queue(10_000, dropped.clone());
        for _ in 0..100 {
            sink.emit(delta(100 * 1024));
        }
        let kept = 100 - dropped.load(Ordering::Relaxed) as usize;
        assert!(kept * 100 * 1024 <= MAX_QUEUED_BYTES, "{kept} kept");
        assert!(kept >= 9, "only {kept} kept");
        // Reading makes room again.
        receiver.recv().await.unwrap();
        sink.emit(delta(100 * 1024));
        assert_eq!(101 - dropped.load(Ordering::Relaxed) as usize, kept + 1);
    }

    #[tokio::test]
    async fn the_event_count_is_bounded_too() {
        let dropped = Arc::new(AtomicU64::new(0));
        let (sink, mut receiver) = event_queue(4, dropped.clone());
        for _ in 0..10 {
            sink.emit(delta(1));
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 6);
        let mut read = 0;
        while receiver.try_recv().is_some() {
            read += 1;
        }
        assert_eq!(read, 4);
        assert_eq!(receiver.queued_bytes.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_listener_that_went_away_drops_events() {
        let dropped = Arc::new(AtomicU64::new(0));
        let (sink, receiver) = event_queue(4, dropped.clone());
        drop(receiver);
        assert!(sink.is_closed());
        for _ in 0..100 {
            sink.emit(delta(100 * 1024));
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 100);
    }
}
