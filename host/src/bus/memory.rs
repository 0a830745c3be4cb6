//! In-process bus: a worker task per conversation with messages in flight (one message at a
//! time, in order), a global bound on pending messages and a per-conversation bound, both
//! enforced at submit time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::{Bus, BusError, Delivery, InboundMessage, MessageHandler};
use crate::events::EventSink;

#[derive(Debug, Clone)]
pub struct BusLimits {
    /// Messages accepted and not yet answered, across all conversations.
    pub max_pending: usize,
    /// Messages waiting in one conversation.
    pub max_pending_per_conversation: usize,
    /// How long `submit` waits for room before answering `Busy`.
    pub publish_timeout: Duration,
    /// Stream events buffered per message for a slow reader.
    pub event_buffer: usize,
    /// A conversation's worker stops after this long without messages. Zero (the default):
    /// as soon as its queue is empty, so idle conversations hold no task, channel or timer
    /// and memory follows the messages in flight, not the conversations seen.
    pub idle: Duration,
}

impl Default for BusLimits {
    fn default() -> Self {
        Self {
            max_pending: 10_000,
            max_pending_per_conversation: 100,
            publish_timeout: Duration::from_secs(5),
            event_buffer: 1024,
            idle: Duration::ZERO,
        }
    }
}

struct Job {
    message: InboundMessage,
    reply: oneshot::Sender<super::OutboundMessage>,
    events: EventSink,
    _permit: OwnedSemaphorePermit,
}

struct Conversation {
    jobs: mpsc::UnboundedSender<Job>,
    pending: Arc<AtomicUsize>,
}

struct Shared {
    handler: Arc<dyn MessageHandler>,
    limits: BusLimits,
    capacity: Arc<Semaphore>,
    conversations: Mutex<HashMap<String, Conversation>>,
    dropped_events: Arc<AtomicU64>,
}

pub struct MemoryBus {
    shared: Arc<Shared>,
}

impl MemoryBus {
    pub fn new(handler: Arc<dyn MessageHandler>, limits: BusLimits) -> Self {
        Self {
            shared: Arc::new(Shared {
                handler,
                capacity: Arc::new(Semaphore::new(limits.max_pending)),
                limits,
                conversations: Mutex::default(),
                dropped_events: Arc::default(),
            }),
        }
    }

    /// Conversations with a live worker.
    pub fn active_conversations(&self) -> usize {
        self.shared.conversations.lock().len()
    }

    /// Stream events dropped because their reader was gone or too slow.
    pub fn dropped_events(&self) -> u64 {
        self.shared.dropped_events.load(Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl Bus for MemoryBus {
    async fn submit(&self, message: InboundMessage) -> Result<Delivery, BusError> {
        let shared = &self.shared;
        let permit = match shared.capacity.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(BusError::Closed),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                match tokio::time::timeout(
                    shared.limits.publish_timeout,
                    shared.capacity.clone().acquire_owned(),
                )
                .await
                {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) => return Err(BusError::Closed),
                    Err(_) => {
                        return Err(BusError::Busy {
                            pending: shared.limits.max_pending,
                        });
                    }
                }
            }
        };
        let (reply, reply_receiver) = oneshot::channel();
        let (events, events_receiver) =
            crate::events::event_queue(shared.limits.event_buffer, shared.dropped_events.clone());
        let session = message.session_key();
        let mut job = Job {
            message,
            reply,
            events,
            _permit: permit,
        };
        // Route to the conversation's worker, starting one if there is none (or it just quit).
        loop {
            let mut conversations = shared.conversations.lock();
            let conversation = conversations
                .entry(session.clone())
                .or_insert_with(|| spawn_worker(shared.clone(), session.clone()));
            let pending = conversation.pending.load(Ordering::Acquire);
            if pending >= shared.limits.max_pending_per_conversation {
                return Err(BusError::ConversationBusy { session, pending });
            }
            conversation.pending.fetch_add(1, Ordering::AcqRel);
            match conversation.jobs.send(job) {
                Ok(()) => break,
                Err(mpsc::error::SendError(returned)) => {
                    // The worker exited between lookup and send; replace it and retry.
                    job = returned;
                    conversations.remove(&session);
                }
            }
        }
        Ok(Delivery {
            reply: reply_receiver,
            events: events_receiver,
            settle: super::Settle::default(),
        })
    }
}

fn spawn_worker(shared: Arc<Shared>, session: String) -> Conversation {
    let (jobs, mut receiver) = mpsc::unbounded_channel::<Job>();
    let pending = Arc::new(AtomicUsize::new(0));
    let counter = pending.clone();
    tokio::spawn(async move {
        loop {
            let next = if shared.limits.idle.is_zero() {
                match receiver.try_recv() {
                    Ok(job) => Ok(Some(job)),
                    Err(mpsc::error::TryRecvError::Disconnected) => Ok(None),
                    Err(mpsc::error::TryRecvError::Empty) => Err(()),
                }
            } else {
                tokio::time::timeout(shared.limits.idle, receiver.recv())
                    .await
                    .map_err(|_| ())
            };
            let job = match next {
                Ok(Some(job)) => job,
                Ok(None) => break,
                Err(()) => {
                    // Leave only if nothing was routed here meanwhile (checked under the lock
                    // that `submit` routes under).
                    let mut conversations = shared.conversations.lock();
                    if counter.load(Ordering::Acquire) == 0 {
                        conversations.remove(&session);
                        break;
                    }
                    continue;
                }
            };
            let Job {
                message,
                mut reply,
                events,
                _permit,
            } = job;
            let cancellable = message.cancel_when_abandoned;
            let turn = shared.handler.handle(message, events);
            let outbound = if cancellable {
                // Dropping the turn's future stops it, guest calls included, saving nothing.
                tokio::select! {
                    outbound = turn => Some(outbound),
                    () = reply.closed() => None,
                }
            } else {
                Some(turn.await)
            };
            counter.fetch_sub(1, Ordering::AcqRel);
            match outbound {
                Some(outbound) => {
                    if reply.send(outbound).is_err() {
                        tracing::debug!(%session, "reply dropped: the submitter stopped waiting");
                    }
                }
                None => {
                    tracing::debug!(%session, "turn stopped: its submitter abandoned it");
                }
            }
        }
    });
    Conversation { jobs, pending }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::bus::OutboundMessage;
    use crate::events::TurnEvent;

    /// Records the order it sees messages in, per conversation, and how many run at once.
    #[derive(Default)]
    struct Recorder {
        seen: Mutex<HashMap<String, Vec<String>>>,
        running: AtomicUsize,
        most_at_once: AtomicUsize,
        gate: Option<Arc<tokio::sync::Semaphore>>,
        events_per_message: usize,
    }

    #[async_trait::async_trait]
    impl MessageHandler for Recorder {
        async fn handle(&self, message: InboundMessage, events: EventSink) -> OutboundMessage {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_at_once.fetch_max(now, Ordering::SeqCst);
            if let Some(gate) = &self.gate {
                let _open = gate.acquire().await;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
            for _ in 0..self.events_per_message {
                events.emit(TurnEvent::Delta { text: "x".into() });
            }
            self.seen
                .lock()
                .entry(message.session_key())
                .or_default()
                .push(message.content.clone());
            self.running.fetch_sub(1, Ordering::SeqCst);
            OutboundMessage {
                channel: message.channel,
                chat_id: message.chat_id,
                content: format!("re: {}", message.content),
                ..OutboundMessage::default()
            }
        }
    }

    fn message(chat: usize, n: usize) -> InboundMessage {
        InboundMessage {
            channel: "test".into(),
            chat_id: format!("chat-{chat}"),
            sender_id: "u".into(),
            content: format!("{n}"),
            stream: false,
            thread_id: None,
            trace_context: Vec::new(),
            ..Default::default()
        }
    }

    /// Takes a minute to answer "slow", at once otherwise.
    struct Slow;

    #[async_trait::async_trait]
    impl MessageHandler for Slow {
        async fn handle(&self, message: InboundMessage, _events: EventSink) -> OutboundMessage {
            if message.content == "slow" {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            OutboundMessage {
                content: message.content,
                ..OutboundMessage::default()
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_turn_stops_only_when_its_submitter_asked_for_that() {
        let bus = MemoryBus::new(Arc::new(Slow), BusLimits::default());
        let slow = |cancel| InboundMessage {
            content: "slow".into(),
            cancel_when_abandoned: cancel,
            ..message(1, 0)
        };
        // Abandoned and cancellable: the conversation's next message goes at once.
        drop(bus.submit(slow(true)).await.expect("accepted"));
        let next = bus.submit(message(1, 7)).await.expect("accepted");
        let reply = tokio::time::timeout(Duration::from_secs(5), next.reply)
            .await
            .expect("not behind the abandoned turn")
            .expect("a reply");
        assert_eq!(reply.content, "7");
        // Abandoned but not cancellable: it goes on, and the next one waits behind it.
        drop(bus.submit(slow(false)).await.expect("accepted"));
        let next = bus.submit(message(1, 8)).await.expect("accepted");
        assert!(
            tokio::time::timeout(Duration::from_millis(300), next.reply)
                .await
                .is_err()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_conversations_keep_their_order_and_lose_nothing() {
        let recorder = Arc::new(Recorder::default());
        let bus = MemoryBus::new(recorder.clone(), BusLimits::default());
        let mut replies = Vec::new();
        for n in 0..10 {
            for chat in 0..200 {
                let delivery = bus.submit(message(chat, n)).await.unwrap();
                replies.push((chat, n, delivery));
            }
        }
        for (chat, n, delivery) in replies {
            let reply = delivery.reply.await.unwrap();
            assert_eq!(reply.chat_id, format!("chat-{chat}"));
            assert_eq!(reply.content, format!("re: {n}"));
        }
        let seen = recorder.seen.lock();
        assert_eq!(seen.len(), 200);
        let expected: Vec<String> = (0..10).map(|n| n.to_string()).collect();
        for messages in seen.values() {
            assert_eq!(*messages, expected, "lost, duplicated or reordered");
        }
        assert!(
            recorder.most_at_once.load(Ordering::SeqCst) > 1,
            "conversations ran serially"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_bus_says_busy_instead_of_blocking() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let recorder = Arc::new(Recorder {
            gate: Some(gate.clone()),
            ..Recorder::default()
        });
        let limits = BusLimits {
            max_pending: 2,
            publish_timeout: Duration::from_millis(50),
            ..BusLimits::default()
        };
        let bus = MemoryBus::new(recorder, limits);
        let first = bus.submit(message(1, 0)).await.unwrap();
        let second = bus.submit(message(2, 0)).await.unwrap();
        let error = bus.submit(message(3, 0)).await.unwrap_err();
        assert_eq!(error, BusError::Busy { pending: 2 });
        gate.add_permits(10);
        first.reply.await.unwrap();
        second.reply.await.unwrap();
        let third = bus.submit(message(3, 0)).await.unwrap();
        third.reply.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_conversation_cannot_take_the_whole_bus() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let recorder = Arc::new(Recorder {
            gate: Some(gate.clone()),
            ..Recorder::default()
        });
        let limits = BusLimits {
            max_pending_per_conversation: 3,
            ..BusLimits::default()
        };
        let bus = MemoryBus::new(recorder, limits);
        let mut held = Vec::new();
        for n in 0..3 {
            held.push(bus.submit(message(1, n)).await.unwrap());
        }
        let error = bus.submit(message(1, 3)).await.unwrap_err();
        assert!(
            matches!(error, BusError::ConversationBusy { pending: 3, .. }),
            "{error}"
        );
        // Another conversation still gets in.
        held.push(bus.submit(message(2, 0)).await.unwrap());
        gate.add_permits(100);
        for delivery in held {
            delivery.reply.await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nobody_draining_replies_or_events_blocks_nothing() {
        let recorder = Arc::new(Recorder {
            events_per_message: 100,
            ..Recorder::default()
        });
        let limits = BusLimits {
            event_buffer: 4,
            ..BusLimits::default()
        };
        let bus = MemoryBus::new(recorder.clone(), limits);
        for n in 0..50 {
            // Deliveries dropped at once: nobody reads replies or events.
            drop(bus.submit(message(n % 5, n)).await.unwrap());
        }
        let last = bus.submit(message(0, 999)).await.unwrap();
        assert_eq!(last.reply.await.unwrap().content, "re: 999");
        // The other conversations run on their own workers and may finish a little later.
        let handled = || -> usize { recorder.seen.lock().values().map(Vec::len).sum() };
        for _ in 0..500 {
            if handled() == 51 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(handled(), 51);
        assert!(bus.dropped_events() > 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_conversations_release_their_worker() {
        let recorder = Arc::new(Recorder::default());
        let limits = BusLimits {
            idle: Duration::from_millis(20),
            ..BusLimits::default()
        };
        let bus = MemoryBus::new(recorder, limits);
        bus.submit(message(1, 0))
            .await
            .unwrap()
            .reply
            .await
            .unwrap();
        assert_eq!(bus.active_conversations(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(bus.active_conversations(), 0);
        // And the conversation comes back when it speaks again.
        bus.submit(message(1, 1))
            .await
            .unwrap()
            .reply
            .await
            .unwrap();
    }
}
