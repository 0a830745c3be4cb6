//! The stream of a turn's events, from where they arise to whoever listens: one type
//! (`TurnEvent`, defined with the contract in `databot-types`) and one queue per turn.
//!
//! A provider plugin's `stream-sink.emit`, the agent's tool progress and the end of the turn
//! all go straight into an `EventSink`; the listener (the gateway's SSE response, the CLI, a
//! channel) holds the `EventReceiver`. The queue is bounded in events and in bytes and never
//! blocks the sender: when the listener is gone or too slow, events are dropped and counted.
//! The event that ends a turn (`done` or `error`) is never dropped for a listener that is still
//! there: one place in the queue is kept for it and the byte bound does not apply to it (its
//! text is the turn's answer, which the host holds anyway), so an SSE client always learns how
//! its turn ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::mpsc;

pub use databot_types::event::{TurnEvent, TurnSummary};

/// Bytes of events one turn's queue holds at most for its listener.
pub const MAX_QUEUED_BYTES: usize = 1024 * 1024;
/// What each queued event is counted as beyond its text, so empty events are bounded too.
const EVENT_OVERHEAD: usize = 64;

/// The sending end; cheap to clone into every place a turn's events arise.
#[derive(Clone)]
pub struct EventSink {
    sender: mpsc::Sender<TurnEvent>,
    queued: Arc<Queued>,
    /// Events other than the last that may be queued at once (the channel holds one more).
    capacity: usize,
    dropped: Arc<AtomicU64>,
}

/// What is queued and not yet read, shared by both ends.
#[derive(Debug, Default)]
struct Queued {
    events: AtomicUsize,
    bytes: AtomicUsize,
}

/// The listening end.
#[derive(Debug)]
pub struct EventReceiver {
    receiver: mpsc::Receiver<TurnEvent>,
    queued: Arc<Queued>,
}

/// A queue for `capacity` events (and `MAX_QUEUED_BYTES`) plus the turn's last event, its
/// drops counted into `dropped`.
pub fn event_queue(capacity: usize, dropped: Arc<AtomicU64>) -> (EventSink, EventReceiver) {
    let capacity = capacity.max(1);
    let (sender, receiver) = mpsc::channel(capacity + 1);
    let queued = Arc::new(Queued::default());
    (
        EventSink {
            sender,
            queued: queued.clone(),
            capacity,
            dropped,
        },
        EventReceiver { receiver, queued },
    )
}

/// A sink nobody listens to: for a turn whose provider streams although its sender asked for
/// no events (every event is discarded at once, unparsed).
pub fn unheard() -> EventSink {
    event_queue(1, Arc::default()).0
}

fn cost(event: &TurnEvent) -> usize {
    event.size().saturating_add(EVENT_OVERHEAD)
}

/// Add `amount` to `counter` if the total stays within `limit`.
fn reserve(counter: &AtomicUsize, amount: usize, limit: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
            let total = queued.checked_add(amount)?;
            (total <= limit).then_some(total)
        })
        .is_ok()
}

impl EventSink {
    /// Queue `event` if there is room for it; otherwise drop and count it. Never waits. The
    /// last event of a turn always has room while the listener is there.
    pub fn emit(&self, event: TurnEvent) {
        if self.sender.is_closed() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let cost = cost(&event);
        let last = event.is_last();
        let (event_limit, byte_limit) = if last {
            (self.capacity + 1, usize::MAX)
        } else {
            (self.capacity, MAX_QUEUED_BYTES)
        };
        if !reserve(&self.queued.events, 1, event_limit) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if !reserve(&self.queued.bytes, cost, byte_limit) {
            self.queued.events.fetch_sub(1, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.sender.try_send(event).is_err() {
            self.queued.events.fetch_sub(1, Ordering::AcqRel);
            self.queued.bytes.fetch_sub(cost, Ordering::AcqRel);
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
        self.release(&event);
        Some(event)
    }

    /// The next event if one is queued now.
    pub fn try_recv(&mut self) -> Option<TurnEvent> {
        let event = self.receiver.try_recv().ok()?;
        self.release(&event);
        Some(event)
    }

    fn release(&self, event: &TurnEvent) {
        self.queued.events.fetch_sub(1, Ordering::AcqRel);
        self.queued.bytes.fetch_sub(cost(event), Ordering::AcqRel);
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
        assert_eq!(receiver.queued.bytes.load(Ordering::Relaxed), 0);
        assert_eq!(receiver.queued.events.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn the_last_event_has_room_whatever_the_listener_left_unread() {
        let dropped = Arc::new(AtomicU64::new(0));
        let (sink, mut receiver) = event_queue(4, dropped.clone());
        for _ in 0..10 {
            sink.emit(delta(300 * 1024));
        }
        // Larger than the byte bound, after a full queue: still queued.
        let answer = "y".repeat(2 * MAX_QUEUED_BYTES);
        sink.emit(TurnEvent::done(answer.clone()));
        drop(sink);
        let mut last = None;
        while let Some(event) = receiver.recv().await {
            last = Some(event);
        }
        assert_eq!(last, Some(TurnEvent::done(answer)));
        assert_eq!(receiver.queued.bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_unheard_sink_discards_everything() {
        let sink = unheard();
        assert!(sink.is_closed());
        sink.emit(delta(10));
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
