//! The host's Kafka clients, one set per cluster of `data.kafka`, made on first use: a
//! metadata/offsets consumer (no group, never subscribes), a producer, and consumers bound to
//! a group id only to read that group's committed offsets. librdkafka calls block, so callers
//! run these on the blocking pool.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{Message, Timestamp};
use serde_json::{Value, json};

use crate::config::KafkaClusterConfig;

/// Group consumers kept per cluster (each holds connections; older ones are dropped).
const MAX_GROUP_CLIENTS: usize = 32;

/// Why a Kafka call failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    NotFound(String),
    #[error("cluster `{cluster}` cannot be reached: {message}")]
    Unavailable { cluster: String, message: String },
    #[error("cluster `{cluster}`: {message}")]
    Failed { cluster: String, message: String },
}

/// One configured cluster and its clients.
pub struct KafkaCluster {
    name: String,
    config: KafkaClusterConfig,
    timeout: Duration,
    meta: Mutex<Option<Arc<BaseConsumer>>>,
    producer: Mutex<Option<Arc<FutureProducer>>>,
    groups: Mutex<HashMap<String, (Instant, Arc<BaseConsumer>)>>,
}

/// Every configured cluster, by name.
#[derive(Default)]
pub struct KafkaClusters {
    clusters: BTreeMap<String, Arc<KafkaCluster>>,
}

impl KafkaClusters {
    pub fn from_config(config: &crate::config::Config) -> Self {
        let clusters = config
            .data
            .kafka
            .iter()
            .map(|(name, cluster)| {
                (
                    name.clone(),
                    Arc::new(KafkaCluster {
                        name: name.clone(),
                        timeout: Duration::from_millis(cluster.timeout_ms.max(1)),
                        config: cluster.clone(),
                        meta: Mutex::new(None),
                        producer: Mutex::new(None),
                        groups: Mutex::new(HashMap::new()),
                    }),
                )
            })
            .collect();
        Self { clusters }
    }

    pub fn get(&self, name: &str) -> Option<Arc<KafkaCluster>> {
        self.clusters.get(name).cloned()
    }
}

impl KafkaCluster {
    fn unavailable(&self, error: impl std::fmt::Display) -> KafkaError {
        KafkaError::Unavailable {
            cluster: self.name.clone(),
            message: error.to_string(),
        }
    }

    fn failed(&self, error: impl std::fmt::Display) -> KafkaError {
        KafkaError::Failed {
            cluster: self.name.clone(),
            message: error.to_string(),
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.config.bootstrap_servers)
            .set("client.id", "databot")
            .set(
                "socket.timeout.ms",
                self.timeout.as_millis().max(10).to_string(),
            )
            .set("log_level", "3")
            // Small requests (metadata, offsets, one produced message) go out at once instead
            // of waiting for the ACK of the previous one (librdkafka keeps Nagle on by default).
            .set("socket.nagle.disable", "true");
        for (key, value) in &self.config.properties {
            config.set(key, value.expose());
        }
        config
    }

    fn meta(&self) -> Result<Arc<BaseConsumer>, KafkaError> {
        let mut slot = self.meta.lock();
        if let Some(consumer) = slot.as_ref() {
            return Ok(consumer.clone());
        }
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", "databot-metadata")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(|e| self.failed(format!("creating the client: {e}")))?;
        let consumer = Arc::new(consumer);
        *slot = Some(consumer.clone());
        Ok(consumer)
    }

    fn group_consumer(&self, group: &str) -> Result<Arc<BaseConsumer>, KafkaError> {
        if let Some((used, consumer)) = self.groups.lock().get_mut(group) {
            *used = Instant::now();
            return Ok(consumer.clone());
        }
        // Made and dropped outside the lock: destroying a client joins its threads.
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| self.failed(format!("creating the client: {e}")))?;
        let consumer = Arc::new(consumer);
        let evicted = {
            let mut groups = self.groups.lock();
            let evicted = if groups.len() >= MAX_GROUP_CLIENTS {
                groups
                    .iter()
                    .min_by_key(|(_, (used, _))| *used)
                    .map(|(name, _)| name.clone())
                    .and_then(|oldest| groups.remove(&oldest))
            } else {
                None
            };
            groups.insert(group.to_owned(), (Instant::now(), consumer.clone()));
            evicted
        };
        drop(evicted);
        Ok(consumer)
    }

    /// Brokers and topics with their partition counts.
    pub fn list_topics(&self, include_internal: bool) -> Result<Value, KafkaError> {
        let metadata = self
            .meta()?
            .fetch_metadata(None, self.timeout)
            .map_err(|e| self.unavailable(e))?;
        let brokers: Vec<Value> = metadata
            .brokers()
            .iter()
            .map(|b| json!({"id": b.id(), "host": b.host(), "port": b.port()}))
            .collect();
        let mut topics: Vec<Value> = metadata
            .topics()
            .iter()
            .filter(|t| include_internal || !t.name().starts_with("__"))
            .map(|t| json!({"name": t.name(), "partitions": t.partitions().len()}))
            .collect();
        topics.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        Ok(json!({"brokers": brokers, "topics": topics}))
    }

    /// Partitions of one topic with leader, replicas, in-sync replicas and offsets.
    pub fn describe_topic(&self, topic: &str) -> Result<Value, KafkaError> {
        let consumer = self.meta()?;
        let partitions = self.partitions_of(&consumer, topic)?;
        let mut low = TopicPartitionList::new();
        let mut high = TopicPartitionList::new();
        for partition in &partitions {
            low.add_partition_offset(topic, partition.0, Offset::Beginning)
                .map_err(|e| self.failed(e))?;
            high.add_partition_offset(topic, partition.0, Offset::End)
                .map_err(|e| self.failed(e))?;
        }
        let low = offsets_map(&self.list_offsets(&consumer, low)?);
        let high = offsets_map(&self.list_offsets(&consumer, high)?);
        let described: Vec<Value> = partitions
            .iter()
            .map(|(id, leader, replicas, isr)| {
                let key = (topic.to_owned(), *id);
                json!({
                    "partition": id,
                    "leader": leader,
                    "replicas": replicas,
                    "isr": isr,
                    "earliest_offset": low.get(&key),
                    "latest_offset": high.get(&key),
                    "messages": match (low.get(&key), high.get(&key)) {
                        (Some(l), Some(h)) => Some(h - l),
                        _ => None,
                    },
                })
            })
            .collect();
        Ok(json!({"topic": topic, "partitions": described}))
    }

    /// `(partition, leader, replicas, isr)` of a topic, or `NotFound`.
    #[allow(clippy::type_complexity)]
    fn partitions_of(
        &self,
        consumer: &BaseConsumer,
        topic: &str,
    ) -> Result<Vec<(i32, i32, Vec<i32>, Vec<i32>)>, KafkaError> {
        let metadata = consumer
            .fetch_metadata(Some(topic), self.timeout)
            .map_err(|e| self.unavailable(e))?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| {
                KafkaError::NotFound(format!("no topic `{topic}` in cluster `{}`", self.name))
            })?;
        let mut partitions: Vec<_> = found
            .partitions()
            .iter()
            .map(|p| (p.id(), p.leader(), p.replicas().to_vec(), p.isr().to_vec()))
            .collect();
        partitions.sort_by_key(|p| p.0);
        Ok(partitions)
    }

    /// ListOffsets for many partitions in one round trip per broker (`Offset::End` asks for
    /// the latest offset, `Offset::Beginning` for the earliest).
    fn list_offsets(
        &self,
        consumer: &BaseConsumer,
        request: TopicPartitionList,
    ) -> Result<TopicPartitionList, KafkaError> {
        if request.count() == 0 {
            return Ok(request);
        }
        consumer
            .offsets_for_times(request, self.timeout)
            .map_err(|e| self.unavailable(e))
    }

    /// Consumer groups with their state and members.
    pub fn list_groups(&self) -> Result<Value, KafkaError> {
        let groups = self
            .meta()?
            .fetch_group_list(None, self.timeout)
            .map_err(|e| self.unavailable(e))?;
        let mut listed: Vec<Value> = groups
            .groups()
            .iter()
            .filter(|g| g.name() != "databot-metadata")
            .map(|g| {
                json!({
                    "group": g.name(),
                    "state": g.state(),
                    "protocol_type": g.protocol_type(),
                    "protocol": g.protocol(),
                    "members": g.members().len(),
                })
            })
            .collect();
        listed.sort_by(|a, b| a["group"].as_str().cmp(&b["group"].as_str()));
        Ok(json!({"groups": listed}))
    }

    /// Committed offset, latest offset and lag of every partition the group has committed
    /// on, among `topics` (default: the topics its members are assigned, else all topics).
    pub fn group_lag(&self, group: &str, topics: Option<Vec<String>>) -> Result<Value, KafkaError> {
        let meta = self.meta()?;
        let topics = match topics {
            Some(topics) if !topics.is_empty() => topics,
            _ => {
                let assigned = self.assigned_topics(&meta, group)?;
                if assigned.is_empty() {
                    let metadata = meta
                        .fetch_metadata(None, self.timeout)
                        .map_err(|e| self.unavailable(e))?;
                    metadata
                        .topics()
                        .iter()
                        .map(|t| t.name().to_owned())
                        .filter(|t| !t.starts_with("__"))
                        .collect()
                } else {
                    assigned
                }
            }
        };
        let metadata = meta
            .fetch_metadata(None, self.timeout)
            .map_err(|e| self.unavailable(e))?;
        let mut wanted = TopicPartitionList::new();
        for topic in metadata
            .topics()
            .iter()
            .filter(|t| topics.iter().any(|w| w == t.name()))
        {
            for partition in topic.partitions() {
                wanted
                    .add_partition_offset(topic.name(), partition.id(), Offset::Invalid)
                    .map_err(|e| self.failed(e))?;
            }
        }
        let committed = self
            .group_consumer(group)?
            .committed_offsets(wanted, self.timeout)
            .map_err(|e| self.unavailable(e))?;
        let committed = offsets_map(&committed);
        let mut latest_request = TopicPartitionList::new();
        for (topic, partition) in committed.keys() {
            latest_request
                .add_partition_offset(topic, *partition, Offset::End)
                .map_err(|e| self.failed(e))?;
        }
        let latest = offsets_map(&self.list_offsets(&meta, latest_request)?);
        let mut total = 0i64;
        let mut rows = Vec::new();
        for ((topic, partition), offset) in &committed {
            let end = latest.get(&(topic.clone(), *partition)).copied();
            let lag = end.map(|end| (end - offset).max(0));
            total += lag.unwrap_or(0);
            rows.push(json!({
                "topic": topic,
                "partition": partition,
                "committed_offset": offset,
                "latest_offset": end,
                "lag": lag,
            }));
        }
        Ok(json!({"group": group, "total_lag": total, "partitions": rows}))
    }

    /// Topics assigned to the group's current members (from the consumer protocol).
    fn assigned_topics(&self, meta: &BaseConsumer, group: &str) -> Result<Vec<String>, KafkaError> {
        let groups = meta
            .fetch_group_list(Some(group), self.timeout)
            .map_err(|e| self.unavailable(e))?;
        let mut topics: Vec<String> = groups
            .groups()
            .iter()
            .flat_map(|g| g.members())
            .filter_map(|m| m.assignment())
            .flat_map(parse_assignment)
            .collect();
        topics.sort();
        topics.dedup();
        Ok(topics)
    }

    /// The last `count` messages of one partition, oldest first.
    pub fn peek(&self, topic: &str, partition: i32, count: u32) -> Result<Value, KafkaError> {
        let count = count.clamp(1, self.config.max_peek.max(1));
        let meta = self.meta()?;
        let (low, high) = meta
            .fetch_watermarks(topic, partition, self.timeout)
            .map_err(|e| match e.to_string() {
                text if text.contains("Unknown topic") || text.contains("Unknown partition") => {
                    KafkaError::NotFound(format!(
                        "no partition {partition} of topic `{topic}` in cluster `{}`",
                        self.name
                    ))
                }
                _ => self.unavailable(e),
            })?;
        let start = (high - i64::from(count)).max(low);
        if start >= high {
            return Ok(json!([]));
        }
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", "databot-peek")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()
            .map_err(|e| self.failed(format!("creating the client: {e}")))?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(start))
            .map_err(|e| self.failed(e))?;
        consumer.assign(&assignment).map_err(|e| self.failed(e))?;
        let deadline = Instant::now() + self.timeout;
        let mut messages = Vec::new();
        while Instant::now() < deadline {
            let Some(result) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = result.map_err(|e| self.unavailable(e))?;
            let limit = self.config.max_message_bytes;
            let value = message.payload().map(|bytes| shown(bytes, limit));
            messages.push(json!({
                "offset": message.offset(),
                "timestamp_ms": match message.timestamp() {
                    Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
                    Timestamp::NotAvailable => None,
                },
                "key": message.key().map(|k| shown(k, limit)),
                "value": value,
                "value_bytes": message.payload_len(),
            }));
            if message.offset() + 1 >= high {
                break;
            }
        }
        Ok(Value::Array(messages))
    }

    /// The producer, made on first use.
    fn producer(&self) -> Result<Arc<FutureProducer>, KafkaError> {
        let mut slot = self.producer.lock();
        if let Some(producer) = slot.as_ref() {
            return Ok(producer.clone());
        }
        let producer: FutureProducer = self
            .client_config()
            .set(
                "message.timeout.ms",
                self.timeout.as_millis().max(10).to_string(),
            )
            .create()
            .map_err(|e| self.failed(format!("creating the producer: {e}")))?;
        let producer = Arc::new(producer);
        *slot = Some(producer.clone());
        Ok(producer)
    }

    /// Produce one message and wait for the broker's acknowledgement.
    pub async fn produce(
        &self,
        topic: &str,
        key: Option<&str>,
        value: &str,
    ) -> Result<Value, KafkaError> {
        let producer = self.producer()?;
        let mut record = FutureRecord::<str, str>::to(topic).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        let delivery = producer
            .send(record, self.timeout)
            .await
            .map_err(|(e, _)| self.unavailable(format!("producing to `{topic}`: {e}")))?;
        Ok(json!({"topic": topic, "partition": delivery.partition, "offset": delivery.offset}))
    }
}

/// `(topic, partition) -> offset` of the entries that carry a real offset.
fn offsets_map(list: &TopicPartitionList) -> BTreeMap<(String, i32), i64> {
    list.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) if offset >= 0 && e.error().is_ok() => {
                Some(((e.topic().to_owned(), e.partition()), offset))
            }
            _ => None,
        })
        .collect()
}

/// Bytes as text when they are UTF-8, else base64; cut to `limit` bytes.
fn shown(bytes: &[u8], limit: usize) -> Value {
    use base64::Engine as _;
    let cut = &bytes[..bytes.len().min(limit)];
    match std::str::from_utf8(cut) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => Value::String(format!(
            "base64:{}",
            base64::engine::general_purpose::STANDARD.encode(cut)
        )),
    }
}

/// Topics of a consumer-protocol member assignment: version (i16), then an array of
/// (topic: string, partitions: array of i32), then user data.
fn parse_assignment(bytes: &[u8]) -> Vec<String> {
    let mut topics = Vec::new();
    let mut at = 2usize;
    let read_i32 = |at: &mut usize| -> Option<i32> {
        let value = i32::from_be_bytes(bytes.get(*at..*at + 4)?.try_into().ok()?);
        *at += 4;
        Some(value)
    };
    let Some(count) = read_i32(&mut at) else {
        return topics;
    };
    for _ in 0..count.max(0) {
        let Some(len) = bytes
            .get(at..at + 2)
            .and_then(|b| b.try_into().ok())
            .map(i16::from_be_bytes)
        else {
            break;
        };
        at += 2;
        let Some(name) = bytes
            .get(at..at + len.max(0) as usize)
            .and_then(|b| std::str::from_utf8(b).ok())
        else {
            break;
        };
        topics.push(name.to_owned());
        at += len.max(0) as usize;
        let Some(partitions) = read_i32(&mut at) else {
            break;
        };
        at += 4 * partitions.max(0) as usize;
    }
    topics
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_are_parsed_and_garbage_is_not_trusted() {
        let mut bytes = vec![0, 0, 0, 0, 0, 1, 0, 6];
        bytes.extend_from_slice(b"orders");
        bytes.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(parse_assignment(&bytes), vec!["orders".to_owned()]);
        assert!(parse_assignment(&[0, 0, 0, 0, 0, 9, 0]).is_empty());
        assert!(parse_assignment(&[]).is_empty());
    }

    #[test]
    fn binary_values_are_shown_as_base64_and_cut() {
        assert_eq!(shown(b"hello", 3), json!("hel"));
        assert_eq!(shown(&[0xff, 0xfe], 10), json!("base64://4="));
    }
}
