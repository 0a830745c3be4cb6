//! `kafka_connector`: Kafka for agents. Topics and consumer groups through the Kafka REST
//! Proxy (v3, falling back to v2) on endpoint `api`, or through the host's Kafka client when
//! config `cluster` names a granted cluster; Schema Registry on endpoint `schema_registry`;
//! Kafka Connect on endpoint `connect`. Every endpoint gets the host's credentials and the
//! SDK's retries. Pausing, resuming and restarting connectors are separate write operations.

mod connect;
mod native;
mod registry;
mod rest_proxy;

use databot_sdk::api::endpoint_url;
use databot_sdk::prelude::*;
use databot_sdk::{Health, HealthStatus};

use crate::rest_proxy::RestProxy;

databot_sdk::manifest! {
    name: "kafka_connector",
    kind: "connector",
    description: "Kafka topics, consumer groups and lag (REST Proxy v3/v2 or the host's Kafka client), Schema Registry and Kafka Connect.",
    capabilities: ["http", "config", "logging", "kafka"],
}

plugin_shared::kafka_args!();

const DEFAULT_PEEK: u32 = 10;

databot_sdk::connector! {
    health: check_health,

    /// List the topics with partition count and replication factor (internal topics only
    /// when asked).
    fn list_topics(args: ListTopicsArgs) -> Result<Value, PluginError> {
        if let Some(cluster) = native::cluster()? {
            return native::admin(&cluster, "list_topics", json!({"include_internal": args.include_internal}));
        }
        RestProxy::connect()?.list_topics(args.include_internal)
    }

    /// One topic: partitions with their leaders, replication factor and the configs that
    /// differ from the defaults.
    fn describe_topic(args: TopicArgs) -> Result<Value, PluginError> {
        if let Some(cluster) = native::cluster()? {
            return native::admin(&cluster, "describe_topic", json!({"topic": args.topic}));
        }
        RestProxy::connect()?.describe_topic(&args.topic)
    }

    /// List the consumer groups with their state (REST Proxy v3 or the host's client).
    fn list_consumer_groups(_args: NoArgs) -> Result<Value, PluginError> {
        if let Some(cluster) = native::cluster()? {
            return native::admin(&cluster, "list_consumer_groups", json!({}));
        }
        RestProxy::connect()?.list_consumer_groups()
    }

    /// Lag of a consumer group per partition, with the total and the largest.
    fn consumer_group_lag(args: GroupArgs) -> Result<Value, PluginError> {
        if let Some(cluster) = native::cluster()? {
            return native::admin(
                &cluster,
                "consumer_group_lag",
                json!({"group": args.group, "topics": args.topics}),
            );
        }
        let lag = RestProxy::connect()?.consumer_group_lag(&args.group)?;
        Ok(match &args.topics {
            Some(topics) => only_topics(lag, topics),
            None => lag,
        })
    }

    /// Read the latest messages of one partition through the host's Kafka client (needs
    /// config `cluster` and `permissions.kafka`).
    fn peek_messages(args: PeekArgs) -> Result<Value, PluginError> {
        let cluster = native::cluster()?.ok_or_else(|| PluginError::InvalidInput(
            "peek_messages reads through the host's Kafka client: the operator sets `cluster` in this connector's config (a cluster of `data.kafka`) and grants it in `permissions.kafka`".into(),
        ))?;
        native::peek(&cluster, &args.topic, args.partition, args.count.unwrap_or(DEFAULT_PEEK))
    }

    /// Produce one message to a topic through the host's Kafka client (the operator grants
    /// writes separately, with `permissions.kafka_produce`). Returns partition and offset.
    fn produce_message(args: ProduceArgs) -> Result<Value, PluginError> {
        let cluster = native::cluster()?.ok_or_else(|| PluginError::InvalidInput(
            "producing needs the native path: the operator sets `config.cluster` to a `data.kafka` cluster".into(),
        ))?;
        native::produce(&cluster, &args.topic, args.key.as_deref(), &args.value)
    }

    /// List Schema Registry subjects (optionally by prefix, optionally with deleted ones).
    fn list_subjects(args: ListSubjectsArgs) -> Result<Value, PluginError> {
        registry::list_subjects(args.prefix.as_deref(), args.deleted)
    }

    /// List the registered versions of a subject.
    fn list_schema_versions(args: SubjectArgs) -> Result<Value, PluginError> {
        registry::list_versions(&args.subject)
    }

    /// One schema of a subject (`version` number or `latest`), with Avro/JSON schemas parsed.
    fn get_schema(args: GetSchemaArgs) -> Result<Value, PluginError> {
        registry::get_schema(&args.subject, args.version.as_deref())
    }

    /// Check whether a candidate schema is compatible with a subject's version (the
    /// registry's messages say why not).
    fn check_compatibility(args: CompatibilityArgs) -> Result<Value, PluginError> {
        registry::check_compatibility(&args.subject, &args.schema, args.schema_type.as_deref(), args.version.as_deref())
    }

    /// List Kafka Connect connectors with their state, worker and failed tasks.
    fn list_connectors(_args: NoArgs) -> Result<Value, PluginError> {
        connect::list_connectors()
    }

    /// Status of one Kafka Connect connector and each of its tasks.
    fn connector_status(args: ConnectorArgs) -> Result<Value, PluginError> {
        connect::connector_status(&args.connector_name)
    }

    /// Pause a Kafka Connect connector (a write).
    fn pause_connector(args: ConnectorArgs) -> Result<Value, PluginError> {
        connect::pause(&args.connector_name)
    }

    /// Resume a paused Kafka Connect connector (a write).
    fn resume_connector(args: ConnectorArgs) -> Result<Value, PluginError> {
        connect::resume(&args.connector_name)
    }

    /// Restart a Kafka Connect connector, optionally with its (failed) tasks (a write).
    fn restart_connector(args: RestartArgs) -> Result<Value, PluginError> {
        connect::restart(&args.connector_name, args.include_tasks, args.only_failed)
    }
}

/// Every configured part is probed; healthy only when all answer.
/// Keep the lag rows of `topics` (REST Proxy answers for the whole group), with the total
/// and the largest lag recomputed over them.
fn only_topics(mut lag: Value, topics: &[String]) -> Value {
    let Some(rows) = lag.get_mut("partitions").and_then(Value::as_array_mut) else {
        return lag;
    };
    rows.retain(|row| {
        row["topic"]
            .as_str()
            .is_some_and(|t| topics.iter().any(|w| w == t))
    });
    let lags: Vec<i64> = rows.iter().filter_map(|r| r["lag"].as_i64()).collect();
    let (total, max) = (
        lags.iter().sum::<i64>(),
        lags.iter().copied().max().unwrap_or(0),
    );
    lag["total_lag"] = json!(total);
    lag["max_lag"] = json!(max);
    lag
}

fn check_health() -> Health {
    let mut parts: Vec<(String, Result<(), PluginError>)> = Vec::new();
    let configured = |name: &str| matches!(endpoint_url(name), Ok(Some(_)));
    match native::cluster() {
        Ok(Some(cluster)) => parts.push((
            format!("cluster `{cluster}`"),
            native::admin(&cluster, "list_topics", json!({})).map(|_| ()),
        )),
        Ok(None) => {}
        Err(error) => parts.push(("config".into(), Err(error))),
    }
    if configured("api") {
        parts.push((
            "REST Proxy".into(),
            RestProxy::connect().and_then(|proxy| proxy.probe()),
        ));
    }
    if configured("schema_registry") {
        parts.push((
            "Schema Registry".into(),
            databot_sdk::api::Endpoint::from_config("schema_registry")
                .and_then(|e| e.get("/subjects", &[]))
                .map(|_| ()),
        ));
    }
    if configured("connect") {
        parts.push((
            "Kafka Connect".into(),
            databot_sdk::api::Endpoint::from_config("connect")
                .and_then(|e| e.get("/", &[]))
                .map(|_| ()),
        ));
    }
    if parts.is_empty() {
        return Health {
            status: HealthStatus::NotConfigured,
            message: "nothing to reach: configure `endpoints.api` (REST Proxy), `endpoints.schema_registry`, `endpoints.connect` or config `cluster`".into(),
        };
    }
    let failed: Vec<String> = parts
        .iter()
        .filter_map(|(name, result)| result.as_ref().err().map(|e| format!("{name}: {e:?}")))
        .collect();
    let names: Vec<&str> = parts.iter().map(|(name, _)| name.as_str()).collect();
    if failed.is_empty() {
        Health {
            status: HealthStatus::Healthy,
            message: format!("{} answered", names.join(", ")),
        }
    } else if failed.len() < parts.len() {
        Health {
            status: HealthStatus::Degraded,
            message: failed.join("; "),
        }
    } else {
        Health {
            status: HealthStatus::Unreachable,
            message: failed.join("; "),
        }
    }
}
