//! The Kafka bus: several identical replicas, one consumer group.
//!
//! `submit` (any replica) gives the message an id when it has none, addresses its reply to
//! this replica (`ReplyAddress`), waits for its reply in `ReplyRelay` and produces it to the
//! inbound topic keyed by its conversation; so a conversation's messages share a partition,
//! and the partition's one owner in the group runs them in order (`consumer`). The owner runs
//! each through a local `MemoryBus` whose handler is a `DurableHandler`: the turn records its
//! reply in the outbox in the same statement as its session writes, and the waiting replica
//! is notified after the commit. Offsets are committed only up to the first message whose reply is not
//! recorded yet, so a replica that dies leaves its unfinished messages to be delivered again,
//! and their processed records keep any from being answered twice.

mod consumer;
mod gaps;
mod logged;
mod offsets;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use parking_lot::RwLock;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::logged::LoggedContext;
use super::outbox::{Outbox, ReplyAddress};
use super::replies::{ReplyRelay, Waiter};
use super::{
    Bus, BusError, BusLimits, Delivery, InboundMessage, MemoryBus, MessageHandler, Settle,
};
use crate::config::KafkaBusConfig;

pub use consumer::Consumer;

/// Create the inbound topic when it is missing. Failing to (no permission: the operator made
/// it) is not fatal; subscribing to a topic that does not exist is reported by the consumer.
pub async fn ensure_topic(config: &KafkaBusConfig, replica: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        match client_config(config, replica, ClientRole::Producer, &[]).create() {
            Ok(admin) => admin,
            Err(error) => {
                tracing::warn!("creating a Kafka admin client: {error}");
                return;
            }
        };
    // Records live no longer than their processed records: a group that lost its offsets
    // finds nothing it would answer twice (the consumer also refuses older records).
    let retention = (config.keep_replies_hours * 3_600_000).to_string();
    let topic = NewTopic::new(
        &config.topic,
        config.partitions,
        TopicReplication::Fixed(config.replication_factor),
    )
    .set("retention.ms", &retention);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    match admin.create_topics([&topic], &options).await {
        Ok(results) => {
            for result in results {
                match result {
                    Ok(name) => tracing::info!(topic = name, "created the bus topic"),
                    Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((name, code)) => {
                        tracing::warn!(topic = name, "the bus topic could not be created: {code}");
                    }
                }
            }
        }
        Err(error) => tracing::warn!("creating the bus topic: {error}"),
    }
}

/// Largest record produced (Kafka's default `message.max.bytes` is about 1 MB).
const MAX_RECORD_BYTES: usize = 900_000;

/// Messages this replica waits for replies to, at most (then `submit` answers busy).
const MAX_WAITING: usize = 10_000;

/// The submitting side of the Kafka bus on one replica.
pub struct KafkaBus {
    /// Replaced when librdkafka reports a fatal error (an idempotent producer that lost its
    /// sequence cannot send again).
    producer: RwLock<Arc<FutureProducer<LoggedContext>>>,
    producer_config: ClientConfig,
    topic: String,
    replica: String,
    relay: Arc<ReplyRelay>,
    publish_timeout: Duration,
    event_buffer: usize,
    dropped_events: Arc<std::sync::atomic::AtomicU64>,
}

/// The librdkafka settings every client of the bus shares, `defaults` (the operator may
/// override them), then the operator's properties.
/// Which client a configuration is for: `bus.kafka.properties` holds settings of both, and
/// each gets only those librdkafka accepts for it (another's would be logged as ignored).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientRole {
    Consumer,
    /// The producer and the admin client.
    Producer,
}

/// librdkafka's consumer-only properties (`C` in its CONFIGURATION.md).
const CONSUMER_ONLY: &[&str] = &[
    "group.id",
    "group.instance.id",
    "group.protocol",
    "group.protocol.type",
    "group.remote.assignor",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "coordinator.query.interval.ms",
    "max.poll.interval.ms",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.wait.max.ms",
    "fetch.queue.backoff.ms",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
    "fetch.min.bytes",
    "fetch.error.backoff.ms",
    "isolation.level",
    "consume.callback.max.messages",
    "enable.partition.eof",
    "check.crcs",
    "auto.offset.reset",
];

/// librdkafka's producer-only properties (`P` in its CONFIGURATION.md).
const PRODUCER_ONLY: &[&str] = &[
    "transactional.id",
    "transaction.timeout.ms",
    "enable.idempotence",
    "enable.gapless.guarantee",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.ms",
    "linger.ms",
    "message.send.max.retries",
    "retries",
    "retry.backoff.ms",
    "retry.backoff.max.ms",
    "queue.buffering.backpressure.threshold",
    "compression.codec",
    "compression.type",
    "compression.level",
    "batch.num.messages",
    "batch.size",
    "delivery.report.only.error",
    "sticky.partitioning.linger.ms",
    "request.required.acks",
    "acks",
    "request.timeout.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "partitioner",
];

fn client_config(
    config: &KafkaBusConfig,
    replica: &str,
    role: ClientRole,
    defaults: &[(&str, &str)],
) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("client.id", format!("databot-{replica}"))
        .set("log_level", "4")
        // Small messages go out at once instead of waiting for the previous ACK.
        .set("socket.nagle.disable", "true");
    for (key, value) in defaults {
        client.set(*key, *value);
    }
    let other_role = match role {
        ClientRole::Consumer => PRODUCER_ONLY,
        ClientRole::Producer => CONSUMER_ONLY,
    };
    for (key, value) in &config.properties {
        if !other_role.contains(&key.as_str()) {
            client.set(key, value.expose());
        }
    }
    client
}

impl KafkaBus {
    /// Connect the producer and start listening for replies addressed to `replica`.
    pub async fn start(
        config: &KafkaBusConfig,
        replica: &str,
        database_url: &str,
        outbox: Outbox,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let mut producer_config = client_config(config, replica, ClientRole::Producer, &[]);
        producer_config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set(
                "message.timeout.ms",
                config.publish_timeout_ms.max(1).to_string(),
            );
        let producer: FutureProducer<LoggedContext> = producer_config
            .create_with_context(LoggedContext)
            .context("creating the Kafka producer of the bus")?;
        let producer = RwLock::new(Arc::new(producer));
        let relay = ReplyRelay::start(database_url, outbox, replica, stop)
            .await
            .context("listening for replies in PostgreSQL")?;
        Ok(Self {
            producer,
            producer_config,
            topic: config.topic.clone(),
            replica: replica.to_owned(),
            relay,
            publish_timeout: Duration::from_millis(config.publish_timeout_ms),
            event_buffer: BusLimits::default().event_buffer,
            dropped_events: Arc::default(),
        })
    }

    /// A producer in a fatal state is replaced (once, by whoever sees it first).
    fn replace_if_fatal(&self, failed: &Arc<FutureProducer<LoggedContext>>) {
        use rdkafka::producer::Producer;
        let Some((code, reason)) = failed.client().fatal_error() else {
            return;
        };
        let mut current = self.producer.write();
        if !Arc::ptr_eq(&current, failed) {
            return;
        }
        match self
            .producer_config
            .create_with_context::<_, FutureProducer<LoggedContext>>(LoggedContext)
        {
            Ok(fresh) => {
                tracing::warn!(
                    "the bus producer failed for good ({code:?}: {reason}); replaced it"
                );
                *current = Arc::new(fresh);
            }
            Err(error) => tracing::error!("replacing the failed bus producer: {error}"),
        }
    }

    /// Messages this replica submitted and still waits on.
    pub fn waiting(&self) -> usize {
        self.relay.waiting()
    }

    /// Stream events dropped because their reader was gone or too slow.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl Bus for KafkaBus {
    async fn submit(&self, mut message: InboundMessage) -> Result<Delivery, BusError> {
        if self.relay.waiting() >= MAX_WAITING {
            return Err(BusError::Busy {
                pending: MAX_WAITING,
            });
        }
        message.id = if message.id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            super::outbox::message_id(&message.id)
        };
        let request = uuid::Uuid::new_v4().simple().to_string();
        message.reply_to = Some(ReplyAddress {
            replica: self.replica.clone(),
            request: request.clone(),
        });
        let payload = serde_json::to_vec(&message)
            .map_err(|e| BusError::Unavailable(format!("encoding the message: {e}")))?;
        if payload.len() > MAX_RECORD_BYTES {
            return Err(BusError::TooLarge {
                bytes: payload.len(),
                limit: MAX_RECORD_BYTES,
            });
        }
        let key = message.session_key();
        let (reply, reply_receiver) = oneshot::channel();
        let (events, events_receiver) =
            crate::events::event_queue(self.event_buffer, self.dropped_events.clone());
        let settle_on_handoff = crate::config::HOST_CHANNELS.contains(&message.channel.as_str());
        let message_id = message.id.clone();
        // Waiting before producing: the reply may come back before `send` returns.
        self.relay
            .expect(
                request.clone(),
                Waiter {
                    message_id: message_id.clone(),
                    session_key: key.clone(),
                    reply,
                    events,
                    stream: message.stream,
                    settle_on_handoff,
                    since: Instant::now(),
                },
            )
            .map_err(|pending| BusError::ConversationBusy {
                session: key.clone(),
                pending,
            })?;
        let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
        let producer = self.producer.read().clone();
        if let Err((error, _)) = producer.send(record, self.publish_timeout).await {
            self.relay.forget(&request);
            self.replace_if_fatal(&producer);
            return Err(BusError::Unavailable(error.to_string()));
        }
        let settle = if settle_on_handoff {
            Settle::default()
        } else {
            let relay = self.relay.clone();
            Settle::new(move || relay.settle(message_id))
        };
        Ok(Delivery {
            reply: reply_receiver,
            events: events_receiver,
            settle,
        })
    }
}

/// The local bus a replica runs the messages of its partitions on: every conversation in
/// order, one at a time; nothing refused for being many (Kafka holds the queue, and fetching
/// pauses at `max_in_flight`).
pub fn local_bus(handler: Arc<dyn MessageHandler>, max_in_flight: usize) -> MemoryBus {
    MemoryBus::new(
        handler,
        BusLimits {
            max_pending: max_in_flight.saturating_mul(4).max(64),
            max_pending_per_conversation: usize::MAX,
            publish_timeout: Duration::from_secs(3600),
            ..BusLimits::default()
        },
    )
}
