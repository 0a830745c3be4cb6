//! The `data` section: SQL sources and Kafka clusters the host holds connections to. Plugins
//! reach them only by name, through the `sql` and `kafka` capabilities, and never see the
//! credentials in these URLs.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Secret;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// SQL sources by name.
    #[serde(default)]
    pub sql: BTreeMap<String, SqlSourceConfig>,
    /// Kafka clusters by name.
    #[serde(default)]
    pub kafka: BTreeMap<String, KafkaClusterConfig>,
    /// What the SQL safety policy lets statements do beyond its built-in rules.
    #[serde(default)]
    pub sql_policy: SqlPolicyConfig,
}

/// `data.sql_policy`: the operator's additions to the SQL function allowlists.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlPolicyConfig {
    /// Functions statements may call beyond the built-in read-only ones, by dialect
    /// (`postgres`, `mysql`, `sqlite`, `trino`): plain names (`my_udf`) or schema-qualified
    /// ones (`analytics.score`), lower case. Functions that touch files, locks, other
    /// sessions or server state cannot be added.
    #[serde(default)]
    pub allow_functions: BTreeMap<String, Vec<String>>,
}

/// One SQL source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlSourceConfig {
    /// `postgres://user:pass@host:5432/db`, `mysql://user:pass@host:3306/db` (MySQL and
    /// MariaDB) or `sqlite://path/to/file.db` (relative to the config file).
    pub url: Secret,
    /// Allow writes (INSERT, UPDATE, DELETE, MERGE) from plugins granted `sql_write` on it.
    /// Off: every statement runs in a read-only transaction, whatever it is.
    #[serde(default)]
    pub writable: bool,
    /// Most rows one call returns; more are cut with a notice.
    #[serde(default = "default_max_rows")]
    pub max_rows: u32,
    /// Most bytes (of JSON) of rows one call returns.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Statement timeout, enforced by the database where it can and by the host always.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Connections kept in the pool.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Give up connecting after this long.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// A `sqlite://` source whose file, when missing, is created with the built-in sample
    /// warehouse (customers, products, orders, order lines) on the first start.
    #[serde(default)]
    pub sample: bool,
}

fn default_max_rows() -> u32 {
    10_000
}
fn default_max_bytes() -> u64 {
    8 * 1024 * 1024
}
fn default_timeout_ms() -> u64 {
    30_000
}
fn default_pool_size() -> u32 {
    4
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}

/// One Kafka cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaClusterConfig {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// Extra librdkafka client properties (`security.protocol`, `sasl.username`, ...).
    #[serde(default)]
    pub properties: BTreeMap<String, Secret>,
    /// Timeout of one metadata, offsets or produce request.
    #[serde(default = "default_kafka_timeout_ms")]
    pub timeout_ms: u64,
    /// Most messages one peek returns.
    #[serde(default = "default_max_peek")]
    pub max_peek: u32,
    /// Most bytes of one message value shown by a peek.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
}

fn default_kafka_timeout_ms() -> u64 {
    10_000
}
fn default_max_peek() -> u32 {
    100
}
fn default_max_message_bytes() -> usize {
    64 * 1024
}
