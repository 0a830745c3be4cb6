//! The gateway's open connections: how many there may be, which ones are waiting, and when a
//! waiting one must go.
//!
//! Every connection holds one of `limit` slots. A connection is *waiting* while none of its
//! requests is in flight: from connect until its first request head is complete (deadline
//! `header_read_timeout`), and after each response until the next head (deadline
//! `idle_timeout`). A waiting connection past its deadline is closed, whether it sent nothing,
//! part of a head, or went quiet after a response. When every slot is taken, the connection
//! that has been waiting the longest is closed to make room; only when every connection has a
//! request in flight does a new one wait for a slot. A connection with a request in flight is
//! never closed here (its body has its own deadline, see `server`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Set in `Connection::state` once the connection is being closed; the rest counts requests in
/// flight.
const CLOSING: u64 = 1 << 63;

pub struct Connections {
    shared: Arc<Shared>,
}

struct Shared {
    slots: Arc<Semaphore>,
    limit: usize,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    epoch: Instant,
    /// Waiting connections, longest-waiting first, tagged with the wait they were queued for.
    /// Entries of finished waits are skipped when met.
    waiting: Mutex<VecDeque<(u64, Weak<Connection>)>>,
}

/// One open connection. Dropping the last handle frees its slot.
pub struct Connection {
    shared: Arc<Shared>,
    /// Requests in flight, plus `CLOSING`.
    state: AtomicU64,
    /// Counts the waits so far; the current wait's number tags its `waiting` entry.
    waits: AtomicU64,
    /// When the current wait ends, in milliseconds after `Shared::epoch`.
    deadline_ms: AtomicU64,
    /// Wakes the connection's task when it is closed or its deadline moves.
    wake: Notify,
    _slot: OwnedSemaphorePermit,
}

/// A request in flight on a connection; the connection starts waiting again when the last one
/// is dropped (with the response body, after it was sent).
pub struct InFlight {
    connection: Arc<Connection>,
}

impl Connections {
    pub fn new(limit: usize, header_read_timeout: Duration, idle_timeout: Duration) -> Self {
        let limit = limit.max(1);
        Self {
            shared: Arc::new(Shared {
                slots: Arc::new(Semaphore::new(limit)),
                limit,
                header_read_timeout,
                idle_timeout,
                epoch: Instant::now(),
                waiting: Mutex::new(VecDeque::new()),
            }),
        }
    }

    pub fn limit(&self) -> usize {
        self.shared.limit
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.shared.limit - self.shared.slots.available_permits()
    }

    /// A slot for a new connection: a free one, or the one of the connection waiting the
    /// longest (closed for it), or, with every connection busy, the first one freed.
    pub async fn admit(&self) -> Arc<Connection> {
        let slot = match self.shared.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if self.evict() {
                    tracing::debug!("all connection slots taken: closed the longest-waiting one");
                }
                match self.shared.slots.clone().acquire_owned().await {
                    Ok(slot) => slot,
                    // The semaphore is never closed; this arm only satisfies the type.
                    Err(_) => unreachable!("the connection slots are never closed"),
                }
            }
        };
        let connection = Arc::new(Connection {
            shared: self.shared.clone(),
            state: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            deadline_ms: AtomicU64::new(0),
            wake: Notify::new(),
            _slot: slot,
        });
        connection.start_waiting(self.shared.header_read_timeout);
        connection
    }

    /// Close the connection that has been waiting the longest. False when none is waiting.
    pub fn evict(&self) -> bool {
        loop {
            let Some((wait, connection)) = self.shared.waiting.lock().pop_front() else {
                return false;
            };
            if let Some(connection) = connection.upgrade()
                && connection.waits.load(Ordering::Acquire) == wait
                && connection.close_if_waiting()
            {
                return true;
            }
        }
    }

    /// Resolves when every connection is gone (after a shutdown).
    pub async fn all_closed(&self) {
        let limit = u32::try_from(self.shared.limit).unwrap_or(u32::MAX);
        let _all = self.shared.slots.acquire_many(limit).await;
    }
}

impl Connection {
    /// Mark a request in flight; `None` when the connection is already being closed.
    pub fn begin(self: &Arc<Self>) -> Option<InFlight> {
        let previous = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                (state & CLOSING == 0).then_some(state + 1)
            })
            .ok()?;
        if previous == 0 {
            self.wake.notify_one();
        }
        Some(InFlight {
            connection: self.clone(),
        })
    }

    /// When the current wait ends; `None` while a request is in flight.
    pub fn deadline(&self) -> Option<Instant> {
        if self.state.load(Ordering::Acquire) != 0 {
            return None;
        }
        let ms = self.deadline_ms.load(Ordering::Acquire);
        Some(self.shared.epoch + Duration::from_millis(ms))
    }

    /// Close the connection if it is waiting and its wait is over. True when closed.
    pub fn close_if_expired(&self) -> bool {
        self.deadline()
            .is_some_and(|deadline| Instant::now() >= deadline)
            && self.close_if_waiting()
    }

    /// Close the connection if no request is in flight (and none can start). True when closed.
    pub fn close_if_waiting(&self) -> bool {
        let closed = self
            .state
            .compare_exchange(0, CLOSING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if closed {
            self.wake.notify_one();
        }
        closed
    }

    pub fn is_closing(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSING != 0
    }

    /// Resolves when the connection is closed or its deadline moves.
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    fn start_waiting(self: &Arc<Self>, timeout: Duration) {
        let deadline = self.shared.epoch.elapsed() + timeout;
        self.deadline_ms.store(
            u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX / 2),
            Ordering::Release,
        );
        let wait = self.waits.fetch_add(1, Ordering::AcqRel) + 1;
        let mut waiting = self.shared.waiting.lock();
        waiting.push_back((wait, Arc::downgrade(self)));
        // Finished waits pile up behind busy connections; drop them now and then.
        if waiting.len() > 2 * self.shared.limit + 16 {
            waiting.retain(|(wait, connection)| {
                connection
                    .upgrade()
                    .is_some_and(|c| c.waits.load(Ordering::Acquire) == *wait)
            });
        }
        drop(waiting);
        self.wake.notify_one();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let connection = &self.connection;
        let previous = connection.state.fetch_sub(1, Ordering::AcqRel);
        if previous == 1 {
            connection.start_waiting(connection.shared.idle_timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_full_house_evicts_the_longest_waiting_connection() {
        let connections = Connections::new(3, LONG, LONG);
        let first = connections.admit().await;
        let second = connections.admit().await;
        let third = connections.admit().await;
        assert_eq!(connections.open(), 3);
        // The first one is busy: the second has waited the longest.
        let request = first.begin().unwrap();
        let admitting = tokio::spawn({
            let shared = connections.shared.clone();
            async move { Connections { shared }.admit().await }
        });
        // (The first wake-up may be the one of its own admission.)
        while !second.is_closing() {
            second.changed().await;
        }
        assert!(second.is_closing() && !first.is_closing() && !third.is_closing());
        assert!(
            second.begin().is_none(),
            "a closing connection takes no request"
        );
        drop(second);
        let fourth = admitting.await.unwrap();
        // The first one waits again after its request: now it is the newest waiter.
        drop(request);
        assert!(connections.evict());
        assert!(third.is_closing() && !first.is_closing());
        drop((third, fourth, first));
        assert_eq!(connections.open(), 0);
    }

    #[tokio::test]
    async fn busy_connections_are_never_evicted_and_newcomers_wait() {
        let connections = Connections::new(1, LONG, LONG);
        let only = connections.admit().await;
        let request = only.begin().unwrap();
        assert!(!connections.evict());
        let waiting = tokio::time::timeout(Duration::from_millis(50), connections.admit()).await;
        assert!(
            waiting.is_err(),
            "no slot while the only connection is busy"
        );
        drop(request);
        // Now it waits; a newcomer evicts it.
        assert!(connections.evict());
        drop(only);
        let next = tokio::time::timeout(Duration::from_secs(1), connections.admit()).await;
        assert!(next.is_ok());
    }

    #[tokio::test]
    async fn deadlines_are_header_read_then_idle_and_none_in_flight() {
        let connections =
            Connections::new(4, Duration::from_millis(30), Duration::from_millis(300));
        let connection = connections.admit().await;
        let first = connection.deadline().unwrap();
        assert!(first <= Instant::now() + Duration::from_millis(30));
        let request = connection.begin().unwrap();
        assert!(connection.deadline().is_none());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(!connection.close_if_expired(), "in flight: no deadline");
        drop(request);
        let idle = connection.deadline().unwrap();
        assert!(idle > Instant::now() + Duration::from_millis(200));
        assert!(!connection.close_if_expired());
        let quiet = connections.admit().await;
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(
            quiet.close_if_expired(),
            "no head within header_read_timeout"
        );
        assert!(!connection.is_closing());
    }

    #[tokio::test]
    async fn stale_wait_entries_stay_bounded() {
        let connections = Connections::new(2, LONG, LONG);
        let connection = connections.admit().await;
        for _ in 0..1000 {
            drop(connection.begin().unwrap());
        }
        assert!(connections.shared.waiting.lock().len() <= 2 * 2 + 16 + 1);
        // The only live entry is the current wait.
        assert!(connections.evict());
        assert!(!connections.evict());
    }
}
