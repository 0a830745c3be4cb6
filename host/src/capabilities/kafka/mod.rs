//! The `kafka` capability: clusters of `data.kafka`, reached by name through the host's
//! librdkafka clients (`client.rs`). `admin` answers metadata, topic, consumer-group and lag
//! requests; `peek` reads the last messages of a partition; `produce` is a separate grant
//! (`permissions.kafka_produce`).
//!
//! Admin requests are JSON objects: `{"op": "list_topics", "include_internal": false}`,
//! `{"op": "describe_topic", "topic": "t"}`, `{"op": "list_consumer_groups"}`,
//! `{"op": "consumer_group_lag", "group": "g", "topics": ["t"]}`.

mod client;

pub use client::{KafkaCluster, KafkaClusters, KafkaError};

use std::sync::Arc;

use serde::Deserialize;

use crate::contract::GuestError;
use crate::contract::databot::plugin::kafka;

use super::StoreState;

impl From<KafkaError> for GuestError {
    fn from(error: KafkaError) -> Self {
        let message = error.to_string();
        match error {
            KafkaError::InvalidInput(_) => GuestError::InvalidInput(message),
            KafkaError::NotFound(_) => GuestError::NotFound(message),
            KafkaError::Unavailable { .. } => GuestError::Unavailable(message),
            KafkaError::Failed { .. } => GuestError::Failed(message),
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum AdminRequest {
    ListTopics {
        #[serde(default)]
        include_internal: bool,
    },
    DescribeTopic {
        topic: String,
    },
    ListConsumerGroups {},
    ConsumerGroupLag {
        group: String,
        #[serde(default)]
        topics: Option<Vec<String>>,
    },
}

/// Run blocking librdkafka work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, GuestError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(GuestError::from),
        Err(error) => Err(GuestError::Failed(format!(
            "the Kafka call failed: {error}"
        ))),
    }
}

/// The client span of one Kafka request (OpenTelemetry messaging conventions).
fn kafka_span(
    trace: &crate::telemetry::CallTrace,
    plugin: &str,
    cluster: &str,
    operation: &str,
    topic: Option<&str>,
) -> tracing::Span {
    use tracing::field::Empty;
    let span = tracing::info_span!(
        "kafka",
        otel.name = Empty,
        otel.kind = "client",
        messaging.system = "kafka",
        messaging.operation.name = operation,
        messaging.destination.name = topic,
        databot.kafka.cluster = cluster,
        databot.plugin.name = plugin,
        otel.status_code = Empty,
        error.type = Empty,
    );
    let span = crate::telemetry::child_span(span, trace);
    if !span.is_disabled() {
        span.record(
            "otel.name",
            match topic {
                Some(topic) => format!("{operation} {topic}"),
                None => format!("{operation} {cluster}"),
            },
        );
    }
    span
}

/// Await `work` in `span`, marking the span failed on an error.
async fn traced<T>(
    span: tracing::Span,
    work: impl Future<Output = Result<T, GuestError>>,
) -> Result<T, GuestError> {
    let result = tracing::Instrument::instrument(work, span.clone()).await;
    if result.is_err() {
        crate::telemetry::spans::record_error(&span, "kafka");
    }
    result
}

impl StoreState {
    fn kafka_cluster(
        &self,
        granted: &[String],
        capability: &str,
        cluster: &str,
    ) -> Result<Arc<KafkaCluster>, GuestError> {
        self.check_named_grant(granted, capability, cluster)?;
        self.services.kafka.get(cluster).ok_or_else(|| {
            GuestError::NotFound(format!(
                "no Kafka cluster `{cluster}` is configured; the operator defines it under `data.kafka.{cluster}`"
            ))
        })
    }
}

impl kafka::Host for StoreState {
    async fn admin(
        &mut self,
        cluster: String,
        request: String,
    ) -> wasmtime::Result<Result<String, GuestError>> {
        let found = match self.kafka_cluster(&self.grants.kafka, "kafka", &cluster) {
            Ok(found) => found,
            Err(error) => return Ok(Err(error)),
        };
        let request: AdminRequest = match serde_json::from_str(&request) {
            Ok(request) => request,
            Err(e) => {
                return Ok(Err(GuestError::InvalidInput(format!(
                    "kafka admin request: {e}; ops: list_topics, describe_topic {{topic}}, list_consumer_groups, consumer_group_lag {{group, topics?}}"
                ))));
            }
        };
        let (operation, topic) = match &request {
            AdminRequest::ListTopics { .. } => ("list_topics", None),
            AdminRequest::DescribeTopic { topic } => ("describe_topic", Some(topic.clone())),
            AdminRequest::ListConsumerGroups {} => ("list_consumer_groups", None),
            AdminRequest::ConsumerGroupLag { .. } => ("consumer_group_lag", None),
        };
        let span = kafka_span(
            self.trace(),
            &self.grants.plugin,
            &cluster,
            operation,
            topic.as_deref(),
        );
        let answer = traced(
            span,
            blocking(move || match request {
                AdminRequest::ListTopics { include_internal } => {
                    found.list_topics(include_internal)
                }
                AdminRequest::DescribeTopic { topic } => found.describe_topic(&topic),
                AdminRequest::ListConsumerGroups {} => found.list_groups(),
                AdminRequest::ConsumerGroupLag { group, topics } => found.group_lag(&group, topics),
            }),
        )
        .await;
        Ok(answer.map(|value| value.to_string()))
    }

    async fn peek(
        &mut self,
        cluster: String,
        topic: String,
        partition: i32,
        count: u32,
    ) -> wasmtime::Result<Result<String, GuestError>> {
        let found = match self.kafka_cluster(&self.grants.kafka, "kafka", &cluster) {
            Ok(found) => found,
            Err(error) => return Ok(Err(error)),
        };
        let span = kafka_span(
            self.trace(),
            &self.grants.plugin,
            &cluster,
            "receive",
            Some(&topic),
        );
        let answer = traced(span, blocking(move || found.peek(&topic, partition, count))).await;
        Ok(answer.map(|value| value.to_string()))
    }

    async fn produce(
        &mut self,
        cluster: String,
        topic: String,
        key: Option<String>,
        value: String,
    ) -> wasmtime::Result<Result<String, GuestError>> {
        let found = match self.kafka_cluster(&self.grants.kafka_produce, "kafka_produce", &cluster)
        {
            Ok(found) => found,
            Err(error) => return Ok(Err(error)),
        };
        let span = kafka_span(
            self.trace(),
            &self.grants.plugin,
            &cluster,
            "send",
            Some(&topic),
        );
        let answer = traced(span, async {
            found
                .produce(&topic, key.as_deref(), &value)
                .await
                .map_err(GuestError::from)
        })
        .await;
        Ok(answer.map(|v| v.to_string()))
    }
}
