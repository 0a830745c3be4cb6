//! `bus`: how messages reach the agent. `memory` (the default) is one process; `kafka` runs
//! several identical replicas as one consumer group on a topic keyed by conversation, with
//! their shared state in PostgreSQL.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Secret;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    #[serde(default)]
    pub kind: BusKind,
    /// Required when `kind` is `kafka`.
    #[serde(default)]
    pub kafka: Option<KafkaBusConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// In-process: one host, conversations ordered by a task each.
    #[default]
    Memory,
    /// Kafka: replicas in one consumer group; needs `agent.sessions_url` on PostgreSQL.
    Kafka,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaBusConfig {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// The inbound topic, keyed by conversation (`channel:chat[:thread]`).
    #[serde(default = "default_topic")]
    pub topic: String,
    /// The consumer group the replicas form.
    #[serde(default = "default_group")]
    pub group: String,
    /// This replica's name (`${POD_NAME}` on Kubernetes); default `HOSTNAME-PID`. Names must
    /// differ between replicas that run at the same time.
    #[serde(default)]
    pub replica: Option<String>,
    /// Extra librdkafka properties for both the producer and the consumer
    /// (`security.protocol`, `sasl.*`, `session.timeout.ms`, ...).
    #[serde(default)]
    pub properties: BTreeMap<String, Secret>,
    /// Partitions of the topic when the bus creates it (it does when the topic is missing).
    /// A partition has one owner at a time: have at least as many as replicas at most.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// The topic's replication factor when the bus creates it; -1: the broker's default.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// Messages this replica runs at once (across conversations); past it, fetching pauses.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// On SIGTERM, how long turns in progress may take to finish before the replica leaves
    /// its group anyway (their messages are then handled again by another replica).
    #[serde(default = "default_drain_seconds")]
    pub drain_seconds: u64,
    /// How long a submit waits for the broker to take a message before answering 503.
    #[serde(default = "default_publish_timeout_ms")]
    pub publish_timeout_ms: u64,
    /// A saved reply not delivered by the replica that received its message within this
    /// time (that replica died) is delivered by another one.
    #[serde(default = "default_stranded_after_seconds")]
    pub stranded_after_seconds: u64,
    /// How long processed-message records (and their replies) are kept: a message
    /// redelivered within this time is never answered twice.
    #[serde(default = "default_keep_replies_hours")]
    pub keep_replies_hours: u64,
}

fn default_topic() -> String {
    "databot.inbound".into()
}
fn default_group() -> String {
    "databot".into()
}
fn default_partitions() -> i32 {
    12
}
fn default_replication_factor() -> i32 {
    -1
}
fn default_max_in_flight() -> usize {
    256
}
fn default_drain_seconds() -> u64 {
    25
}
fn default_publish_timeout_ms() -> u64 {
    5_000
}
fn default_stranded_after_seconds() -> u64 {
    60
}
fn default_keep_replies_hours() -> u64 {
    24
}

/// Longest replica name (it names a PostgreSQL notification channel, hashed, and a
/// Kafka client id).
const MAX_REPLICA_CHARS: usize = 128;

impl BusConfig {
    /// `sessions_url` is the session store the host will use (the bus needs PostgreSQL).
    pub fn validate(&self, sessions_url: &str) -> Result<(), String> {
        match (self.kind, &self.kafka) {
            (BusKind::Memory, _) => Ok(()),
            (BusKind::Kafka, None) => Err(
                "bus.kind is kafka but bus.kafka is missing (bootstrap_servers at least)".into(),
            ),
            (BusKind::Kafka, Some(kafka)) => {
                if !(sessions_url.starts_with("postgres://")
                    || sessions_url.starts_with("postgresql://"))
                {
                    return Err("bus.kind kafka needs agent.sessions_url on PostgreSQL \
                         (postgres://...): the replicas share sessions, replies and \
                         processed-message records there"
                        .into());
                }
                kafka.validate()
            }
        }
    }
}

impl KafkaBusConfig {
    fn validate(&self) -> Result<(), String> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err("bus.kafka.bootstrap_servers is empty".into());
        }
        for (name, value) in [("topic", &self.topic), ("group", &self.group)] {
            let valid = !value.is_empty()
                && value.len() <= 249
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !valid {
                return Err(format!(
                    "bus.kafka.{name} `{value}` must be 1-249 characters of letters, digits, `.`, `_` and `-`"
                ));
            }
        }
        if let Some(replica) = &self.replica {
            check_replica_name(replica).map_err(|e| format!("bus.kafka.replica: {e}"))?;
        }
        if !(1..=10_000).contains(&self.partitions) {
            return Err("bus.kafka.partitions must be between 1 and 10000".into());
        }
        if self.replication_factor != -1 && !(1..=32).contains(&self.replication_factor) {
            return Err(
                "bus.kafka.replication_factor must be -1 (the broker's default) or 1-32".into(),
            );
        }
        if self.max_in_flight == 0 {
            return Err("bus.kafka.max_in_flight must be at least 1".into());
        }
        if self.drain_seconds == 0 || self.drain_seconds > 3600 {
            return Err("bus.kafka.drain_seconds must be between 1 and 3600".into());
        }
        if self.publish_timeout_ms == 0 {
            return Err("bus.kafka.publish_timeout_ms must be at least 1".into());
        }
        if self.stranded_after_seconds < 5 {
            return Err("bus.kafka.stranded_after_seconds must be at least 5".into());
        }
        if self.keep_replies_hours == 0 {
            return Err("bus.kafka.keep_replies_hours must be at least 1".into());
        }
        for key in self.properties.keys() {
            if matches!(
                key.as_str(),
                "group.id"
                    | "enable.auto.commit"
                    | "enable.auto.offset.store"
                    | "partition.assignment.strategy"
                    | "bootstrap.servers"
            ) {
                return Err(format!(
                    "bus.kafka.properties: `{key}` is set by the bus itself (see bus.kafka.group and bootstrap_servers)"
                ));
            }
        }
        Ok(())
    }

    /// This replica's name: configured, or `HOSTNAME-PID`.
    pub fn replica_name(&self) -> String {
        if let Some(replica) = &self.replica {
            return replica.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
            .filter(|name| check_replica_name(name).is_ok())
            .unwrap_or_else(|| "databot".into());
        format!("{host}-{}", std::process::id())
    }
}

fn check_replica_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > MAX_REPLICA_CHARS {
        return Err(format!("must be 1-{MAX_REPLICA_CHARS} characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!(
            "`{name}` may hold only letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka() -> KafkaBusConfig {
        serde_yaml::from_str("bootstrap_servers: 127.0.0.1:9092").expect("parses")
    }

    #[test]
    fn the_kafka_bus_needs_postgres_sessions_and_its_section() {
        let missing = BusConfig {
            kind: BusKind::Kafka,
            kafka: None,
        };
        assert!(missing.validate("postgres://x/db").is_err());
        let config = BusConfig {
            kind: BusKind::Kafka,
            kafka: Some(kafka()),
        };
        let error = config.validate("sqlite:///tmp/s.db").unwrap_err();
        assert!(error.contains("PostgreSQL"), "{error}");
        assert!(config.validate("postgres://127.0.0.1/test").is_ok());
        assert!(BusConfig::default().validate("sqlite://x").is_ok());
    }

    #[test]
    fn names_and_owned_properties_are_checked() {
        let mut bad = kafka();
        bad.topic = "in bound".into();
        assert!(bad.validate().is_err());
        let mut bad = kafka();
        bad.replica = Some("a/b".into());
        assert!(bad.validate().is_err());
        let mut bad = kafka();
        bad.properties.insert(
            "group.id".into(),
            serde_yaml::from_str("x").expect("secret"),
        );
        assert!(bad.validate().unwrap_err().contains("group.id"));
        let named = kafka().replica_name();
        assert!(check_replica_name(&named).is_ok(), "{named}");
    }
}
