//! A replica's member of the consumer group: a thread of its own polls librdkafka (rebalance
//! callbacks run there and may wait for turns without holding up the async workers), hands
//! messages in partition order to one dispatcher task, which submits them to the local bus;
//! each message's completion moves its partition's committable offset (`offsets`).
//!
//! Offsets are stored for the auto-commit only once everything before them is recorded, and
//! committed synchronously when partitions are revoked and when the replica leaves. Fetching
//! pauses while `max_in_flight` messages run. Partitions are assigned cooperatively
//! (`cooperative-sticky`): a rebalance only stops the partitions that move. A revoked
//! partition's running turns get `revoke_grace` to finish, then are stopped and left to the
//! new owner (a turn whose save was already under way may still commit: its processed record
//! then keeps the new owner from answering it again). Fetching also pauses for one partition
//! whose backlog is long, so one conversation does not hold the others up, and records older
//! than the processed records are kept are refused. A record that does not follow the
//! previous one of its partition is logged: the records between never reached this replica.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientContext, Message};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::gaps::{GapWatch, Verdict};
use super::offsets::Progress;
use crate::bus::outbox::{Outbox, ReplyAddress};
use crate::bus::{Bus, BusError, Delivery, InboundMessage, MemoryBus};
use crate::config::KafkaBusConfig;
use crate::events::EventReceiver;

/// How long one poll waits for a message (and so how soon a stop or a finished message's
/// offset is noticed).
const POLL: Duration = Duration::from_millis(50);
/// Longest a revoked partition's running turns may take to finish before they are stopped
/// (never more than half of `max.poll.interval.ms`: the callback holds the poll up).
const REVOKE_GRACE: Duration = Duration::from_secs(10);
/// Group timing unless the operator sets it: a dead replica's partitions move after 6 s
/// without heartbeats (librdkafka's default is 45 s), and a member may go 20 s without
/// polling (a revoke's grace holds the poll) before it is taken out.
const GROUP_DEFAULTS: &[(&str, &str)] = &[
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "1500"),
    ("max.poll.interval.ms", "20000"),
];

/// Longest wait for a seek back to skipped records (the poll thread waits for it).
const SEEK_TIMEOUT: Duration = Duration::from_millis(500);

/// State the polling thread, the rebalance callbacks and the turns share.
struct Shared {
    topic: String,
    progress: Mutex<Progress>,
    /// Cancelled when its partition is revoked: the partition's turns still running stop.
    owned: Mutex<HashMap<i32, CancellationToken>>,
    in_flight: AtomicUsize,
    /// Revoked partitions wait this long for their turns.
    revoke_grace: Mutex<Duration>,
    /// Per owned partition, the offset the next polled record should have (`gaps`).
    gaps: Mutex<GapWatch>,
}

impl Shared {
    fn token(&self, partition: i32) -> Option<CancellationToken> {
        self.owned.lock().get(&partition).cloned()
    }

    fn finished(&self, partition: i32, offset: i64) {
        self.progress.lock().finished(partition, offset);
    }

    /// Stop at once the turns of partitions another member may already own, committing
    /// nothing (their unfinished messages run again there).
    fn drop_partitions(&self, partitions: &[i32]) {
        let mut owned = self.owned.lock();
        let mut progress = self.progress.lock();
        let mut gaps = self.gaps.lock();
        for partition in partitions {
            gaps.forget(*partition);
            if let Some(token) = owned.remove(partition) {
                token.cancel();
            }
            progress.remove(*partition);
        }
    }

    /// Give revoked partitions back: wait for their turns up to the grace, stop the rest,
    /// commit what finished.
    fn hand_back(&self, consumer: &BaseConsumer<GroupContext>, partitions: &[i32]) {
        let deadline = Instant::now() + *self.revoke_grace.lock();
        while self.progress.lock().unfinished_in(partitions) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut commits = TopicPartitionList::new();
        {
            let mut owned = self.owned.lock();
            let mut progress = self.progress.lock();
            let mut gaps = self.gaps.lock();
            for partition in partitions {
                gaps.forget(*partition);
                if let Some(token) = owned.remove(partition) {
                    token.cancel();
                }
                if let Some(offset) = progress.remove(*partition) {
                    let _ = commits.add_partition_offset(
                        &self.topic,
                        *partition,
                        Offset::Offset(offset),
                    );
                }
            }
        }
        // Stored too: librdkafka commits a removed partition's stored offset once more as it
        // lets it go, which must not be an older one.
        if commits.count() > 0
            && let Err(error) = consumer.store_offsets(&commits)
        {
            tracing::debug!("storing revoked partitions' offsets: {error}");
        }
        if commits.count() > 0
            && let Err(error) = consumer.commit(&commits, CommitMode::Sync)
        {
            // The new owner starts from the last commit: some messages run again and are
            // skipped by their processed records.
            tracing::warn!("committing revoked partitions failed: {error}");
        }
        tracing::info!(?partitions, "partitions handed back");
    }
}

struct GroupContext {
    shared: Arc<Shared>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        super::logged::forward_log(level, facility, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        super::logged::forward_error(&error, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                let partitions = partitions_of(list, &self.shared.topic);
                if consumer.assignment_lost() {
                    self.shared.drop_partitions(&partitions);
                    tracing::warn!(?partitions, "partitions lost");
                } else {
                    self.shared.hand_back(consumer, &partitions);
                }
            }
            Rebalance::Error(error) => tracing::warn!("rebalance failed: {error}"),
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                // librdkafka keeps an application pause across a revoke: a partition paused
                // when it left must fetch again now it is back (`Pauses` pauses it again if
                // it should be).
                if let Err(error) = consumer.resume(list) {
                    tracing::warn!("resuming assigned partitions: {error}");
                }
                let partitions = partitions_of(list, &self.shared.topic);
                let mut owned = self.shared.owned.lock();
                let mut gaps = self.shared.gaps.lock();
                for partition in &partitions {
                    owned.entry(*partition).or_default();
                    gaps.forget(*partition);
                }
                tracing::info!(?partitions, "partitions assigned");
            }
            Rebalance::Revoke(_) | Rebalance::Error(_) => {}
        }
    }
}

fn partitions_of(list: &TopicPartitionList, topic: &str) -> Vec<i32> {
    list.elements()
        .iter()
        .filter(|element| element.topic() == topic)
        .map(|element| element.partition())
        .collect()
}

/// A message polled, on its way to the dispatcher, with its partition's ownership at the
/// time (a message of an ownership that ended is not run: the partition's next owner runs it).
struct Polled {
    partition: i32,
    offset: i64,
    message: InboundMessage,
    owner: CancellationToken,
}

/// The running member; `drain` makes it leave the group.
pub struct Consumer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Consumer {
    /// Join the group and run its messages on `local` (a `kafka::local_bus` over a
    /// `DurableHandler`), publishing stream events through `outbox`.
    pub fn start(
        config: &KafkaBusConfig,
        replica: &str,
        local: Arc<MemoryBus>,
        outbox: Outbox,
    ) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            topic: config.topic.clone(),
            progress: Mutex::default(),
            owned: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            revoke_grace: Mutex::new(revoke_grace(config)),
            gaps: Mutex::default(),
        });
        let mut client =
            super::client_config(config, replica, super::ClientRole::Consumer, GROUP_DEFAULTS);
        client
            .set("group.id", &config.group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("partition.assignment.strategy", "cooperative-sticky");
        let consumer: BaseConsumer<GroupContext> = client
            .create_with_context(GroupContext {
                shared: shared.clone(),
            })
            .context("creating the Kafka consumer of the bus")?;
        consumer
            .subscribe(&[&config.topic])
            .with_context(|| format!("subscribing to `{}`", config.topic))?;
        let (polled, to_dispatch) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(to_dispatch, local, outbox, shared.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("databot-bus-consumer".into())
            .spawn({
                let stop = stop.clone();
                let shared = shared.clone();
                let max_in_flight = config.max_in_flight;
                let keep = Duration::from_secs(config.keep_replies_hours * 3600);
                let drain = Duration::from_secs(config.drain_seconds);
                move || {
                    poll_loop(
                        &consumer,
                        &shared,
                        &polled,
                        &stop,
                        max_in_flight,
                        keep,
                        drain,
                    )
                }
            })
            .context("starting the bus consumer thread")?;
        Ok(Self {
            stop,
            thread: Some(thread),
            shared,
        })
    }

    /// Messages running on this replica now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// Stop taking messages, let the running ones finish (up to `drain_seconds`), commit and
    /// leave the group. Returns when the member is gone.
    pub async fn drain(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn poll_loop(
    consumer: &BaseConsumer<GroupContext>,
    shared: &Shared,
    polled: &mpsc::UnboundedSender<Polled>,
    stop: &AtomicBool,
    max_in_flight: usize,
    keep: Duration,
    drain: Duration,
) {
    let mut pauses = Pauses::default();
    while !stop.load(Ordering::Acquire) {
        pauses.update(consumer, shared, max_in_flight);
        match consumer.poll(POLL) {
            Some(Ok(record)) => {
                let partition = record.partition();
                let offset = record.offset();
                let owner = shared
                    .token(partition)
                    .filter(|token| !token.is_cancelled());
                if owner.is_some() && refetched(consumer, shared, partition, offset) {
                    continue;
                }
                let decoded = decode(record.payload(), record.timestamp().to_millis(), keep);
                match (owner, decoded) {
                    // Polled from a partition this replica no longer owns.
                    (None, _) => {
                        tracing::debug!(
                            partition,
                            offset,
                            "a record of a partition no longer owned was left to its owner"
                        );
                    }
                    (Some(owner), Ok(mut message)) => {
                        // The replica stops a turn whose partition it lost.
                        message.cancel_when_abandoned = true;
                        shared.progress.lock().started(partition, offset);
                        shared.in_flight.fetch_add(1, Ordering::AcqRel);
                        if polled
                            .send(Polled {
                                partition,
                                offset,
                                message,
                                owner,
                            })
                            .is_err()
                        {
                            break;
                        }
                    }
                    (Some(_), Err(error)) => {
                        // Nothing can answer it; it must not hold its partition up.
                        tracing::error!(partition, offset, "a bus message was skipped: {error}");
                        let mut progress = shared.progress.lock();
                        progress.started(partition, offset);
                        progress.finished(partition, offset);
                    }
                }
            }
            Some(Err(error)) => tracing::warn!("the bus consumer: {error}"),
            None => {}
        }
        store_commits(consumer, shared);
    }
    // Draining: nothing new is fetched; the running turns get `drain` to finish.
    pauses.pause_all(consumer);
    let deadline = Instant::now() + drain;
    while shared.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        // Polling keeps the membership alive (and serves callbacks) while turns finish.
        let _ = consumer.poll(Duration::from_millis(20));
        store_commits(consumer, shared);
    }
    store_commits(consumer, shared);
    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!("committing on leave: {error}");
    }
    // What still runs is stopped when its partition is handed back, at once.
    *shared.revoke_grace.lock() = Duration::ZERO;
    consumer.unsubscribe();
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until && !shared.owned.lock().is_empty() {
        let _ = consumer.poll(Duration::from_millis(20));
    }
    tracing::info!("left the bus consumer group");
}

/// Whether the record at `offset` came before records of its partition that were skipped,
/// and the partition was sent back to fetch them (the record then comes again after them).
fn refetched(
    consumer: &BaseConsumer<GroupContext>,
    shared: &Shared,
    partition: i32,
    offset: i64,
) -> bool {
    let verdict = shared.gaps.lock().check(partition, offset, Instant::now());
    let Verdict::Refetch(from) = verdict else {
        return false;
    };
    match consumer.seek(&shared.topic, partition, Offset::Offset(from), SEEK_TIMEOUT) {
        Ok(()) => true,
        Err(error) => {
            // Taking the record is better than stalling its partition.
            tracing::warn!(
                partition,
                from,
                "fetching skipped records again failed: {error}"
            );
            false
        }
    }
}

/// How long a revoked partition's turns may run on: `REVOKE_GRACE`, the drain time, and half
/// of the poll interval, whichever is shortest.
fn revoke_grace(config: &KafkaBusConfig) -> Duration {
    let poll_interval_ms = config
        .properties
        .get("max.poll.interval.ms")
        .map(|value| value.expose().to_owned())
        .or_else(|| {
            GROUP_DEFAULTS
                .iter()
                .find(|(key, _)| *key == "max.poll.interval.ms")
                .map(|(_, value)| (*value).to_owned())
        })
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(20_000);
    REVOKE_GRACE
        .min(Duration::from_secs(config.drain_seconds))
        .min(Duration::from_millis(poll_interval_ms / 2))
}

/// The message of a record; refused when unreadable, or when it is older than the
/// processed records are kept (`keep`): a group that lost its offsets and reads its topic
/// again must not answer messages whose answers it no longer knows.
fn decode(
    payload: Option<&[u8]>,
    timestamp: Option<i64>,
    keep: Duration,
) -> Result<InboundMessage, String> {
    if let Some(timestamp) = timestamp {
        let age = crate::timing::now_ms().saturating_sub(timestamp);
        if u128::try_from(age).unwrap_or(0) > keep.as_millis() {
            return Err(format!(
                "it is {} h old, older than bus.kafka.keep_replies_hours (was the group's offset lost?)",
                age / 3_600_000
            ));
        }
    }
    let payload = payload.ok_or("no payload")?;
    let message: InboundMessage = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    if message.id.is_empty() || message.reply_to.is_none() {
        return Err("a message without an id or a reply address".into());
    }
    Ok(message)
}

/// Unfinished messages at which one partition stops fetching (a conversation's backlog must
/// not hold the others up); it fetches again at half as many.
const PARTITION_BACKLOG: usize = 256;

/// Which owned partitions are paused: all while `max_in_flight` messages are unfinished
/// (until half of them finished), and any whose own backlog is too long. Looked at every
/// poll, so partitions assigned meanwhile follow the same rule.
#[derive(Default)]
struct Pauses {
    all: bool,
    paused: std::collections::HashSet<i32>,
}

impl Pauses {
    fn update(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        shared: &Shared,
        max_in_flight: usize,
    ) {
        let in_flight = shared.in_flight.load(Ordering::Acquire);
        if in_flight >= max_in_flight {
            self.all = true;
        } else if in_flight <= max_in_flight / 2 {
            self.all = false;
        }
        let owned: Vec<i32> = shared.owned.lock().keys().copied().collect();
        self.paused.retain(|partition| owned.contains(partition));
        let mut pause = TopicPartitionList::new();
        let mut resume = TopicPartitionList::new();
        {
            let progress = shared.progress.lock();
            for partition in owned {
                let backlog = progress.unfinished_in(&[partition]);
                let paused = self.paused.contains(&partition);
                let want = self.all
                    || backlog >= PARTITION_BACKLOG
                    || (paused && backlog > PARTITION_BACKLOG / 2);
                if want && !paused {
                    pause.add_partition(&shared.topic, partition);
                    self.paused.insert(partition);
                } else if !want && paused {
                    resume.add_partition(&shared.topic, partition);
                    self.paused.remove(&partition);
                }
            }
        }
        if pause.count() > 0
            && let Err(error) = consumer.pause(&pause)
        {
            tracing::warn!("pausing partitions: {error}");
        }
        if resume.count() > 0
            && let Err(error) = consumer.resume(&resume)
        {
            tracing::warn!("resuming partitions: {error}");
        }
    }

    fn pause_all(&mut self, consumer: &BaseConsumer<GroupContext>) {
        self.all = true;
        if let Ok(assignment) = consumer.assignment()
            && let Err(error) = consumer.pause(&assignment)
        {
            tracing::warn!("pausing the bus consumer: {error}");
        }
    }
}

/// Store the offsets that moved, for the next auto-commit.
fn store_commits(consumer: &BaseConsumer<GroupContext>, shared: &Shared) {
    let commits = shared.progress.lock().new_commits();
    if commits.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    for (partition, offset) in commits {
        let _ = list.add_partition_offset(&shared.topic, partition, Offset::Offset(offset));
    }
    if let Err(error) = consumer.store_offsets(&list) {
        tracing::debug!("storing offsets: {error}");
    }
}

/// Submit polled messages to the local bus in the order they came, and follow each to its
/// end.
async fn dispatch(
    mut polled: mpsc::UnboundedReceiver<Polled>,
    local: Arc<MemoryBus>,
    outbox: Outbox,
    shared: Arc<Shared>,
) {
    while let Some(Polled {
        partition,
        offset,
        message,
        owner,
    }) = polled.recv().await
    {
        if owner.is_cancelled() {
            // Revoked since it was polled: the new owner runs it.
            tracing::debug!(
                partition,
                offset,
                "a message of a revoked partition was left to its new owner"
            );
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let token = owner;
        let address = message.reply_to.clone();
        let stream = message.stream;
        let delivery = loop {
            match local.submit(message.clone()).await {
                Ok(delivery) => break Some(delivery),
                Err(BusError::Closed) => break None,
                Err(error) => {
                    tracing::debug!("the local bus is full ({error}); waiting");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let Some(delivery) = delivery else {
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            continue;
        };
        let shared = shared.clone();
        let outbox = outbox.clone();
        tokio::spawn(async move {
            let Delivery { reply, events, .. } = delivery;
            if stream && let Some(address) = address {
                tokio::spawn(forward_events(outbox, address, events));
            }
            tokio::select! {
                // The handler returns once the reply is recorded (or the message was answered
                // before).
                replied = reply => match replied {
                    Ok(_) => shared.finished(partition, offset),
                    // The local bus lost the message without a reply: its offset stays
                    // uncommitted, so the partition's next owner runs it.
                    Err(_) => tracing::error!(partition, offset, "a bus message ended without a reply; it runs again after the next rebalance or restart"),
                },
                // Dropping the reply stops the turn: the partition's new owner runs it.
                () = token.cancelled() => {}
            }
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Send a turn's stream events to the replica its submitter waits on, batched as they come.
async fn forward_events(outbox: Outbox, address: ReplyAddress, mut events: EventReceiver) {
    while let Some(first) = events.recv().await {
        let mut batch = vec![first];
        while let Some(event) = events.try_recv() {
            batch.push(event);
        }
        // The reply itself ends the stream on the other side.
        batch.retain(|event| !event.is_last());
        if batch.is_empty() {
            continue;
        }
        if let Err(error) = outbox.publish_events(&address, batch).await {
            tracing::debug!("forwarding stream events failed: {error}");
        }
    }
}
