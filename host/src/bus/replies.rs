//! Replies coming back to the replica that took a message in, whichever replica ran its
//! turn: the waiters of this replica's submitted messages, fed by PostgreSQL notifications on
//! this replica's channel (`outbox::notify_channel`).
//!
//! A reply notification names ids only; the reply is read from its row, and only taken when
//! the row belongs to the waiter's conversation. Notifications are not stored: one sent while
//! the listening connection was down is lost. So every `CATCH_UP_EVERY`, the rows of waiters
//! that have waited that long are read in one query, and after every reconnection those of
//! all waiters.
//!
//! A conversation has at most `MAX_PER_CONVERSATION` messages waiting on this replica: a
//! waiter stays counted until its reply comes, even when its submitter stopped listening
//! (the message runs anyway), and is only forgotten `FORGET_AFTER` later.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sqlx::postgres::PgListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::OutboundMessage;
use super::outbox::{Notification, Outbox, StoredReply, notify_channel};
use crate::events::{EventSink, TurnEvent};

/// How often waiters that have waited this long are looked up in the outbox.
const CATCH_UP_EVERY: Duration = Duration::from_secs(5);
/// Replies marked delivered together, at most this often.
const MARK_EVERY: Duration = Duration::from_millis(50);
/// Messages of one conversation waiting for replies on one replica, at most.
pub const MAX_PER_CONVERSATION: usize = 100;
/// A waiter nobody listens to any more is forgotten this long after its message.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Any waiter is forgotten this long after its message (its submitter then learns the turn
/// ended without a reply; a reply recorded later goes out through the stranded-reply relay).
const MAX_WAIT: Duration = Duration::from_secs(60 * 60);
/// How long a reply taken to be posted to a chat is held from the stranded-reply relay.
const POSTING_LEASE: Duration = Duration::from_secs(15 * 60);
/// How soon marks the database did not take are tried again.
const MARK_RETRY: Duration = Duration::from_secs(1);
/// Marks kept for another try at most, when the database cannot take them.
const MAX_PENDING_MARKS: usize = 100_000;

/// One submitted message of this replica waiting for its reply.
pub struct Waiter {
    pub message_id: String,
    pub session_key: String,
    pub reply: oneshot::Sender<OutboundMessage>,
    pub events: EventSink,
    /// Emit the reply as the stream's last event (the submitter asked for events).
    pub stream: bool,
    /// Mark the reply delivered when it reaches the waiter (the submitter is the recipient:
    /// the API, the CLI). Otherwise the reply is leased while the submitter posts it, and
    /// settled once it is out.
    pub settle_on_handoff: bool,
    pub since: Instant,
}

impl Waiter {
    /// Nobody listens any more: neither for the reply nor for the events.
    fn abandoned(&self) -> bool {
        self.reply.is_closed() && self.events.is_closed()
    }
}

#[derive(Default)]
struct Waiting {
    by_request: HashMap<String, Waiter>,
    per_conversation: HashMap<String, usize>,
}

impl Waiting {
    fn remove(&mut self, request: &str) -> Option<Waiter> {
        let waiter = self.by_request.remove(request)?;
        if let Some(count) = self.per_conversation.get_mut(&waiter.session_key) {
            *count -= 1;
            if *count == 0 {
                self.per_conversation.remove(&waiter.session_key);
            }
        }
        Some(waiter)
    }

    /// Forget waiters nobody listens to that have waited past `FORGET_AFTER`, and any that
    /// waited past `MAX_WAIT`.
    fn forget_abandoned(&mut self) {
        let now = Instant::now();
        let gone: Vec<String> = self
            .by_request
            .iter()
            .filter(|(_, waiter)| {
                let waited = now.duration_since(waiter.since);
                (waiter.abandoned() && waited >= FORGET_AFTER) || waited >= MAX_WAIT
            })
            .map(|(request, _)| request.clone())
            .collect();
        for request in gone {
            self.remove(&request);
        }
    }
}

/// This replica's waiters and the listener that feeds them.
pub struct ReplyRelay {
    outbox: Outbox,
    waiting: Mutex<Waiting>,
    /// Replies to mark delivered.
    marks: mpsc::UnboundedSender<String>,
}

impl ReplyRelay {
    /// Listen on `replica`'s channel (listening before this returns, so no reply to a
    /// message submitted afterwards can be missed) until `stop`.
    pub async fn start(
        database_url: &str,
        outbox: Outbox,
        replica: &str,
        stop: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let channel = notify_channel(replica);
        let mut listener = PgListener::connect(database_url).await?;
        listener.listen(&channel).await?;
        let (marks, marks_receiver) = mpsc::unbounded_channel();
        let relay = Arc::new(Self {
            outbox,
            waiting: Mutex::default(),
            marks,
        });
        tokio::spawn(relay.clone().mark(marks_receiver, stop.clone()));
        tokio::spawn(relay.clone().catch_up_every(stop.clone()));
        tokio::spawn(relay.clone().listen(listener, stop));
        Ok(relay)
    }

    /// Wait for the reply to `request`; refused with the number waiting when its
    /// conversation already has `MAX_PER_CONVERSATION` messages waiting here.
    pub fn expect(&self, request: String, waiter: Waiter) -> Result<(), usize> {
        let mut waiting = self.waiting.lock();
        if waiting.by_request.len() >= 1024 && waiting.by_request.len().is_power_of_two() {
            waiting.forget_abandoned();
        }
        let count = waiting
            .per_conversation
            .entry(waiter.session_key.clone())
            .or_default();
        if *count >= MAX_PER_CONVERSATION {
            return Err(*count);
        }
        *count += 1;
        waiting.by_request.insert(request, waiter);
        Ok(())
    }

    /// Stop waiting for `request` (its message never reached the bus).
    pub fn forget(&self, request: &str) {
        self.waiting.lock().remove(request);
    }

    /// Messages whose replies this replica waits for.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().by_request.len()
    }

    /// Mark a reply delivered (its submitter handed it on).
    pub fn settle(&self, message_id: String) {
        let _ = self.marks.send(message_id);
    }

    async fn listen(self: Arc<Self>, mut listener: PgListener, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                received = listener.try_recv() => match received {
                    Ok(Some(notification)) => self.heard(notification.payload()),
                    Ok(None) => {
                        // The connection dropped and the next receive reconnects: what was
                        // said meanwhile is read back from the outbox.
                        tracing::warn!("the reply listener lost its database connection; reconnecting");
                        tokio::spawn(self.clone().catch_up(None));
                    }
                    Err(error) => {
                        tracing::warn!("the reply listener failed: {error}; retrying");
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        tokio::spawn(self.clone().catch_up(None));
                    }
                },
            }
        }
    }

    fn heard(self: &Arc<Self>, payload: &str) {
        let notification = match serde_json::from_str::<Notification>(payload) {
            Ok(notification) => notification,
            Err(error) => {
                tracing::warn!("an unreadable reply notification was ignored: {error}");
                return;
            }
        };
        match notification {
            Notification::Events { request, events } => {
                let waiting = self.waiting.lock();
                if let Some(waiter) = waiting.by_request.get(&request) {
                    // The last event is made from the reply itself, when it arrives.
                    for event in events.into_iter().filter(|event| !event.is_last()) {
                        waiter.events.emit(event);
                    }
                }
            }
            Notification::Reply { request, message } => {
                if !self.waiting.lock().by_request.contains_key(&request) {
                    return;
                }
                let relay = self.clone();
                tokio::spawn(async move {
                    match relay.outbox.reply_for(&message).await {
                        Ok(Some(stored)) => relay.answer(&request, stored).await,
                        Ok(None) => {
                            tracing::warn!(message, "an announced reply is not in the outbox")
                        }
                        Err(error) => {
                            // The catch-up reads it again.
                            tracing::warn!(message, "reading an announced reply failed: {error}");
                        }
                    }
                });
            }
        }
    }

    /// Hand a stored reply to the waiter of `request`, if it is still there and the reply is
    /// its message's, in its conversation. A reply for a chat is first taken from the
    /// stranded-reply relay (leased while it is posted); if another replica holds it or it is
    /// delivered already, the waiter is let go without it.
    async fn answer(&self, request: &str, stored: StoredReply) {
        let waiter = {
            let mut waiting = self.waiting.lock();
            match waiting.by_request.get(request) {
                Some(waiter)
                    if waiter.message_id == stored.message_id
                        && waiter.session_key == stored.session_key =>
                {
                    waiting.remove(request)
                }
                _ => None,
            }
        };
        let Some(waiter) = waiter else {
            return;
        };
        if !waiter.settle_on_handoff {
            match self
                .outbox
                .take_for_posting(&waiter.message_id, POSTING_LEASE)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(message = %waiter.message_id, "the reply is posted by another replica");
                    return;
                }
                // Posting it is better than losing it; the relay may post it again.
                Err(error) => tracing::warn!("leasing a reply to post failed: {error}"),
            }
        }
        let reply = stored.reply;
        // A streaming submitter listens to the events only (the gateway's SSE response).
        let streamed = waiter.stream && !waiter.events.is_closed();
        if waiter.stream {
            waiter.events.emit(if reply.failed {
                TurnEvent::Error {
                    message: reply.content.clone(),
                }
            } else {
                TurnEvent::done(reply.content.clone())
            });
        }
        let handed = waiter.reply.send(reply).is_ok() || streamed;
        if handed && waiter.settle_on_handoff {
            let _ = self.marks.send(waiter.message_id);
        }
    }

    async fn catch_up_every(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(CATCH_UP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => self.clone().catch_up(Some(CATCH_UP_EVERY)).await,
            }
        }
    }

    /// Read from the outbox, in one query, the replies of waiters that have waited at least
    /// `older_than` (all of them when `None`): the replies whose notification was lost.
    async fn catch_up(self: Arc<Self>, older_than: Option<Duration>) {
        let now = Instant::now();
        // Several waiters may wait for one message (a client that submitted it twice here).
        let due: HashMap<String, Vec<String>> = {
            let mut waiting = self.waiting.lock();
            waiting.forget_abandoned();
            let mut due: HashMap<String, Vec<String>> = HashMap::new();
            for (request, waiter) in &waiting.by_request {
                if older_than.is_none_or(|age| now.duration_since(waiter.since) >= age) {
                    due.entry(waiter.message_id.clone())
                        .or_default()
                        .push(request.clone());
                }
            }
            due
        };
        if due.is_empty() {
            return;
        }
        let ids: Vec<String> = due.keys().cloned().collect();
        match self.outbox.replies_for(&ids).await {
            Ok(found) => {
                for stored in found {
                    for request in due.get(&stored.message_id).into_iter().flatten() {
                        self.answer(request, stored.clone()).await;
                    }
                }
            }
            Err(error) => tracing::warn!("looking up replies in the outbox failed: {error}"),
        }
    }

    /// Mark replies delivered in batches; a batch the database did not take is tried again
    /// a second later, whether or not more marks come.
    async fn mark(
        self: Arc<Self>,
        mut marks: mpsc::UnboundedReceiver<String>,
        stop: CancellationToken,
    ) {
        let mut pending: Vec<String> = Vec::new();
        loop {
            let wait = if pending.is_empty() {
                Duration::from_secs(24 * 3600)
            } else {
                MARK_RETRY
            };
            let stopping = tokio::select! {
                () = stop.cancelled() => true,
                received = tokio::time::timeout(wait, marks.recv_many(&mut pending, 1000)) => {
                    if matches!(received, Ok(0)) {
                        return;
                    }
                    false
                }
            };
            if stopping {
                while let Ok(mark) = marks.try_recv() {
                    pending.push(mark);
                }
            }
            if !pending.is_empty() {
                match self.outbox.mark_delivered(&pending).await {
                    Ok(()) => pending.clear(),
                    Err(error) => tracing::warn!(
                        replies = pending.len(),
                        "marking replies delivered failed: {error}; trying again"
                    ),
                }
                if pending.len() > MAX_PENDING_MARKS {
                    let excess = pending.len() - MAX_PENDING_MARKS;
                    pending.drain(..excess);
                }
            }
            if stopping {
                return;
            }
            tokio::time::sleep(MARK_EVERY).await;
        }
    }
}
