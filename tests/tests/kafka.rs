//! The host `kafka` capability against a real Kafka-protocol broker (tansu on 127.0.0.1:9092,
//! started by `.ci/start-tansu.sh`, which this test also runs), through the real
//! `kafka_connector` component: topics, partitions with offsets, consumer-group lag, peeking
//! the last messages, producing under its own grant, and a cluster that is down.

use std::time::Duration;

use databot::runtime::ErrorKind;
use databot_e2e::TestHost;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::json;

const BROKER: &str = "127.0.0.1:9092";

fn start_broker() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/start-tansu.sh");
    let status = std::process::Command::new("bash")
        .arg(script)
        .status()
        .expect("bash");
    assert!(
        status.success(),
        "a Kafka-protocol broker must run on {BROKER} (.ci/start-tansu.sh)"
    );
}

/// A topic with `partitions` partitions and `messages` messages in partition 0, and a group
/// that committed offset `committed` on partition 0.
async fn seed(topic: &str, partitions: i32, messages: i64, group: &str, committed: i64) {
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", BROKER)
        .create()
        .expect("admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topic");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", BROKER)
        .create()
        .expect("producer");
    for i in 0..messages {
        let value = format!("message {i}");
        let key = format!("k{i}");
        producer
            .send(
                FutureRecord::to(topic)
                    .partition(0)
                    .key(&key)
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("produce");
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", BROKER)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(topic, 0, Offset::Offset(committed))
        .expect("tpl");
    consumer.commit(&offsets, CommitMode::Sync).expect("commit");
}

fn config(cluster_url: &str) -> String {
    format!(
        "data:\n  kafka:\n    local: {{bootstrap_servers: \"{cluster_url}\", timeout_ms: 3000}}\nplugins:\n  kafka_connector:\n    config: {{cluster: local}}\n    permissions: {{kafka: [local]}}\n  kafka_writer:\n    builtin: kafka_connector\n    config: {{cluster: local}}\n    permissions: {{kafka: [local], kafka_produce: [local]}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_offsets_lag_peek_and_produce_through_the_host_client() {
    start_broker();
    let topic = format!("databot_e2e_{}", std::process::id());
    let group = format!("databot_e2e_group_{}", std::process::id());
    seed(&topic, 3, 10, &group, 4).await;
    let host = TestHost::start(&config(BROKER), &[])
        .await
        .expect("host starts");
    host.load_builtin("kafka_connector").await;

    let topics = host
        .connector("kafka_connector", "list_topics", json!({}))
        .await
        .expect("topics");
    let listed = topics["result"]["topics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        listed.contains(&json!({"name": topic, "partitions": 3})),
        "{topics}"
    );
    assert!(
        !topics["result"]["brokers"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{topics}"
    );

    let described = host
        .connector("kafka_connector", "describe_topic", json!({"topic": topic}))
        .await
        .expect("describe");
    let partitions = &described["result"]["partitions"];
    assert_eq!(partitions.as_array().map(Vec::len), Some(3), "{described}");
    assert_eq!(partitions[0]["latest_offset"], 10, "{described}");
    assert_eq!(partitions[0]["messages"], 10, "{described}");
    assert_eq!(partitions[1]["messages"], 0, "{described}");

    let lag = host
        .connector(
            "kafka_connector",
            "consumer_group_lag",
            json!({"group": group}),
        )
        .await
        .expect("lag");
    assert_eq!(lag["result"]["total_lag"], 6, "{lag}");
    assert_eq!(
        lag["result"]["partitions"][0]["committed_offset"], 4,
        "{lag}"
    );

    let peeked = host
        .connector(
            "kafka_connector",
            "peek_messages",
            json!({"topic": topic, "partition": 0, "count": 3}),
        )
        .await
        .expect("peek");
    let messages = peeked["messages"].as_array().cloned().unwrap_or_default();
    let values: Vec<&str> = messages
        .iter()
        .filter_map(|m| m["value"].as_str())
        .collect();
    assert_eq!(values, ["message 7", "message 8", "message 9"], "{peeked}");
    assert_eq!(messages[0]["key"], "k7");

    // Producing is its own grant.
    let error = host
        .connector(
            "kafka_connector",
            "produce_message",
            json!({"topic": topic, "value": "x"}),
        )
        .await
        .expect_err("not granted");
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    assert!(error.message.contains("kafka_produce"), "{error}");
    let produced = host
        .connector(
            "kafka_writer",
            "produce_message",
            json!({"topic": topic, "key": "k", "value": "hello"}),
        )
        .await
        .expect("produce");
    assert!(
        produced["result"]["offset"].as_i64().is_some(),
        "{produced}"
    );

    let error = host
        .connector(
            "kafka_connector",
            "describe_topic",
            json!({"topic": "no_such_topic_databot"}),
        )
        .await
        .expect_err("unknown topic");
    assert!(
        matches!(error.kind, ErrorKind::NotFound | ErrorKind::Unavailable),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_is_down_makes_the_connector_unhealthy_with_a_clear_error() {
    let host = TestHost::start(&config("127.0.0.1:1"), &[])
        .await
        .expect("host starts");
    host.load_builtin("kafka_connector").await;
    let error = host
        .connector("kafka_connector", "list_topics", json!({}))
        .await
        .expect_err("down");
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
    assert!(
        error.message.contains("cluster `local` cannot be reached"),
        "{error}"
    );
    let health = host.runtime.connectors_health(Duration::ZERO).await;
    assert_eq!(health[0].status, "unreachable", "{health:?}");
}
