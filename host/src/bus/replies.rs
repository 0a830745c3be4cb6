//! Replies coming back to the replica that took a message in, whichever replica ran its
//! turn: the waiters of this replica's submitted messages, fed by PostgreSQL notifications on
//! this replica's channel (`outbox::notify_channel`).
//!
//! Notifications are not stored: one sent while the listening connection was down is lost.
//! So after every reconnection, and every `CATCH_UP_EVERY` for waiters older than that, the
//! waiters' replies are read from the outbox, where a saved turn's reply always is.

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

/// One submitted message of this replica waiting for its reply.
pub struct Waiter {
    pub message_id: String,
    pub reply: oneshot::Sender<OutboundMessage>,
    pub events: EventSink,
    /// Emit the reply as the stream's last event (the submitter asked for events).
    pub stream: bool,
    /// Mark the reply delivered when it reaches the waiter (the submitter is the recipient:
    /// the API, the CLI). Otherwise the submitter settles it once the reply is out.
    pub settle_on_handoff: bool,
    pub since: Instant,
}

impl Waiter {
    /// Nobody listens any more: neither for the reply nor for the events.
    fn abandoned(&self) -> bool {
        self.reply.is_closed() && self.events.is_closed()
    }
}

/// This replica's waiters and the listener that feeds them.
pub struct ReplyRelay {
    outbox: Outbox,
    waiters: Mutex<HashMap<String, Waiter>>,
    delivered: mpsc::UnboundedSender<String>,
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
        let (delivered, marks) = mpsc::unbounded_channel();
        let relay = Arc::new(Self {
            outbox,
            waiters: Mutex::default(),
            delivered,
        });
        tokio::spawn(relay.clone().mark_delivered(marks, stop.clone()));
        tokio::spawn(relay.clone().listen(listener, stop));
        Ok(relay)
    }

    /// Wait for the reply to `request`.
    pub fn expect(&self, request: String, waiter: Waiter) {
        let mut waiters = self.waiters.lock();
        // A waiter whose submitter left is dropped whenever the map has grown: the map is
        // bounded by the messages whose submitters still wait.
        if waiters.len() >= 1024 && waiters.len().is_power_of_two() {
            waiters.retain(|_, waiter| !waiter.abandoned());
        }
        waiters.insert(request, waiter);
    }

    /// Stop waiting for `request` (its message never reached the bus).
    pub fn forget(&self, request: &str) {
        self.waiters.lock().remove(request);
    }

    /// Messages whose replies this replica waits for.
    pub fn waiting(&self) -> usize {
        self.waiters.lock().len()
    }

    /// Mark a reply delivered (its submitter handed it on).
    pub fn settle(&self, message_id: String) {
        let _ = self.delivered.send(message_id);
    }

    async fn listen(self: Arc<Self>, mut listener: PgListener, stop: CancellationToken) {
        let mut catch_up = tokio::time::interval(CATCH_UP_EVERY);
        catch_up.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = catch_up.tick() => {
                    self.catch_up(Some(CATCH_UP_EVERY)).await;
                }
                received = listener.try_recv() => match received {
                    Ok(Some(notification)) => self.heard(notification.payload()),
                    Ok(None) => {
                        // The connection dropped and the next receive reconnects: what was
                        // said meanwhile is read back from the outbox.
                        tracing::warn!("the reply listener lost its database connection; reconnecting");
                        self.catch_up(None).await;
                    }
                    Err(error) => {
                        tracing::warn!("the reply listener failed: {error}; retrying");
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        self.catch_up(None).await;
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
                let waiters = self.waiters.lock();
                if let Some(waiter) = waiters.get(&request) {
                    // The last event is made from the reply itself, when it arrives.
                    for event in events.into_iter().filter(|event| !event.is_last()) {
                        waiter.events.emit(event);
                    }
                }
            }
            Notification::Reply {
                request,
                message,
                reply: Some(reply),
            } => self.answer(&request, &message, reply),
            Notification::Reply {
                request,
                message,
                reply: None,
            } => {
                if !self.waiters.lock().contains_key(&request) {
                    return;
                }
                // Too long for the notification: read from the outbox (the waiter stays).
                let relay = self.clone();
                tokio::spawn(async move {
                    match relay.outbox.reply_for(&message).await {
                        Ok(Some(stored)) => relay.answer(&request, &message, stored.reply),
                        Ok(None) => {
                            tracing::warn!(message, "an announced reply is not in the outbox")
                        }
                        Err(error) => {
                            tracing::warn!(message, "reading an announced reply failed: {error}");
                        }
                    }
                });
            }
        }
    }

    /// Hand `reply` to the waiter of `request`, if it is still there and is for `message`.
    fn answer(&self, request: &str, message: &str, reply: OutboundMessage) {
        let waiter = {
            let mut waiters = self.waiters.lock();
            match waiters.get(request) {
                Some(waiter) if waiter.message_id == message => waiters.remove(request),
                _ => None,
            }
        };
        let Some(waiter) = waiter else {
            return;
        };
        // A streaming submitter listens to the events only (the gateway's SSE response).
        let streamed = waiter.stream && !waiter.events.is_closed();
        if waiter.stream {
            waiter.events.emit(if reply.failed {
                TurnEvent::Error {
                    message: reply.content.clone(),
                }
            } else {
                TurnEvent::Done {
                    content: reply.content.clone(),
                }
            });
        }
        let handed = waiter.reply.send(reply).is_ok() || streamed;
        if handed && waiter.settle_on_handoff {
            self.settle(waiter.message_id);
        }
    }

    /// Read from the outbox the replies of waiters that have waited at least `older_than`
    /// (all of them when `None`): the replies whose notification was lost.
    async fn catch_up(self: &Arc<Self>, older_than: Option<Duration>) {
        let now = Instant::now();
        let due: Vec<(String, String)> = self
            .waiters
            .lock()
            .iter()
            .filter(|(_, waiter)| {
                older_than.is_none_or(|age| now.duration_since(waiter.since) >= age)
            })
            .map(|(request, waiter)| (request.clone(), waiter.message_id.clone()))
            .collect();
        for (request, message) in due {
            match self.outbox.reply_for(&message).await {
                Ok(Some(StoredReply { reply, .. })) => self.answer(&request, &message, reply),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!("looking up replies in the outbox failed: {error}");
                    return;
                }
            }
        }
        self.waiters.lock().retain(|_, waiter| !waiter.abandoned());
    }

    /// Mark settled replies delivered, in batches.
    async fn mark_delivered(
        self: Arc<Self>,
        mut marks: mpsc::UnboundedReceiver<String>,
        stop: CancellationToken,
    ) {
        let mut batch = Vec::new();
        loop {
            let stopping = tokio::select! {
                () = stop.cancelled() => true,
                received = marks.recv_many(&mut batch, 1000) => {
                    if received == 0 {
                        return;
                    }
                    false
                }
            };
            if stopping {
                while let Ok(mark) = marks.try_recv() {
                    batch.push(mark);
                }
            }
            if !batch.is_empty() {
                if let Err(error) = self.outbox.mark_delivered(&batch).await {
                    // Left undelivered: the stranded-reply relay may send them again.
                    tracing::warn!(
                        replies = batch.len(),
                        "marking replies delivered failed: {error}"
                    );
                }
                batch.clear();
            }
            if stopping {
                return;
            }
            tokio::time::sleep(MARK_EVERY).await;
        }
    }
}
