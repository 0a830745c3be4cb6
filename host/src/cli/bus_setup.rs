//! The bus `databot serve` runs on: the in-process one, or this process as one replica of
//! the Kafka bus (producer, reply listener, consumer-group member, on the shared outbox).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::bus::kafka::{self, Consumer, KafkaBus};
use crate::bus::outbox::Outbox;
use crate::bus::{Bus, BusLimits, DurableHandler, MemoryBus};
use crate::config::{BusKind, Config};

/// Connections of the outbox pool (replies, notifications, catch-ups, marks).
const OUTBOX_CONNECTIONS: u32 = 6;

pub struct Buses {
    /// Where the gateway and the channels submit messages.
    pub inbound: Arc<dyn Bus>,
    /// Where this process runs turns of its own (scheduled runs).
    pub local: Arc<dyn Bus>,
    /// Set when this process is a replica of the Kafka bus.
    pub replicated: Option<Replicated>,
}

pub struct Replicated {
    pub consumer: Consumer,
    pub outbox: Outbox,
    pub stranded_after: Duration,
    pub keep_replies: Duration,
}

/// Start the configured bus. `stop` ends the reply listener: cancel it only once the gateway
/// no longer waits for replies.
pub async fn start(
    config: &Config,
    agent: Arc<Agent>,
    stop: CancellationToken,
) -> anyhow::Result<Buses> {
    let kafka_config = match (config.bus.kind, &config.bus.kafka) {
        (BusKind::Kafka, Some(kafka_config)) => kafka_config,
        (BusKind::Kafka, None) => anyhow::bail!("bus.kind is kafka but bus.kafka is missing"),
        (BusKind::Memory, _) => {
            let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new(agent, BusLimits::default()));
            return Ok(Buses {
                inbound: bus.clone(),
                local: bus,
                replicated: None,
            });
        }
    };
    let replica = kafka_config.replica_name();
    // Its own connections: replies, notifications and catch-ups never wait behind turns'
    // session reads and writes (and the reverse).
    sqlx::any::install_default_drivers();
    let outbox_pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(OUTBOX_CONNECTIONS)
        .connect(&config.sessions_url())
        .await
        .context("connecting to PostgreSQL for the replies outbox")?;
    let outbox = Outbox::open(outbox_pool)
        .await
        .context("opening the replies outbox in PostgreSQL")?;
    kafka::ensure_topic(kafka_config, &replica).await;
    let local = Arc::new(kafka::local_bus(
        Arc::new(DurableHandler::new(agent, outbox.clone())),
        kafka_config.max_in_flight,
    ));
    let inbound = KafkaBus::start(
        kafka_config,
        &replica,
        &config.sessions_url(),
        outbox.clone(),
        stop,
    )
    .await
    .context("starting the Kafka bus")?;
    let consumer = Consumer::start(kafka_config, &replica, local.clone(), outbox.clone())
        .context("joining the bus consumer group")?;
    tracing::info!(%replica, topic = %kafka_config.topic, group = %kafka_config.group, "serving as a replica of the Kafka bus");
    Ok(Buses {
        inbound: Arc::new(inbound),
        local,
        replicated: Some(Replicated {
            consumer,
            outbox,
            stranded_after: Duration::from_secs(kafka_config.stranded_after_seconds),
            keep_replies: Duration::from_secs(kafka_config.keep_replies_hours * 3600),
        }),
    })
}
