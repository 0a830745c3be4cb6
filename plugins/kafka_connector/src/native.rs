//! The native path: Kafka through the host's own client (`kafka` capability), used for the
//! topic and consumer-group operations when the operator sets config `cluster` (a cluster of
//! `data.kafka`, granted in `permissions.kafka`). Whatever the host answers is returned as
//! is, errors included: nothing here imitates a cluster.
//!
//! Admin requests are JSON objects `{"op": "<operation>", ...arguments}` with the operation
//! names of this connector (`list_topics`, `describe_topic`, `list_consumer_groups`,
//! `consumer_group_lag`).

use databot_sdk::PluginError;
use serde_json::{Value, json};

/// The configured host cluster, if the operator chose the native path.
pub fn cluster() -> Result<Option<String>, PluginError> {
    Ok(databot_sdk::config_value::<String>("cluster")?.filter(|c| !c.is_empty()))
}

fn parse(text: &str) -> Result<Value, PluginError> {
    serde_json::from_str(text)
        .map_err(|e| PluginError::Failed(format!("the host's kafka answer is not JSON: {e}")))
}

/// One admin request: `op` with its arguments merged in.
pub fn admin(cluster: &str, op: &str, arguments: Value) -> Result<Value, PluginError> {
    let mut request = json!({"op": op});
    if let (Some(map), Value::Object(arguments)) = (request.as_object_mut(), arguments) {
        map.extend(arguments);
    }
    let answer = databot_sdk::kafka::admin(cluster, &request.to_string())?;
    Ok(json!({"api": "native", "cluster": cluster, "result": parse(&answer)?}))
}

/// The last `count` messages of one partition.
pub fn peek(cluster: &str, topic: &str, partition: i32, count: u32) -> Result<Value, PluginError> {
    let answer = databot_sdk::kafka::peek(cluster, topic, partition, count)?;
    Ok(
        json!({"api": "native", "cluster": cluster, "topic": topic, "partition": partition, "messages": parse(&answer)?}),
    )
}

/// Produce one message through the host (a separate grant: `permissions.kafka_produce`).
pub fn produce(
    cluster: &str,
    topic: &str,
    key: Option<&str>,
    value: &str,
) -> Result<Value, PluginError> {
    let answer = databot_sdk::kafka::produce(cluster, topic, key, value)?;
    Ok(json!({"api": "native", "cluster": cluster, "result": parse(&answer)?}))
}
