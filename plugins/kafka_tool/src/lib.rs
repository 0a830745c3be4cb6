//! `kafka`: Kafka tools for agents. Each tool `kafka_<op>` runs operation `<op>` of a Kafka
//! connector instance with the argument structs the connector declares (the file is shared),
//! so tool and connector cannot drift apart.

use plugin_shared::resolve;

use databot_sdk::prelude::*;

databot_sdk::manifest! {
    name: "kafka",
    kind: "tool",
    description: "Kafka topics, consumer lag, Schema Registry and Kafka Connect through kafka connectors.",
    capabilities: ["connectors", "config", "logging"],
}

plugin_shared::kafka_args! {
    /// Kafka connector instance to use (default: the only one this tool is configured with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
}

fn run<T: Serialize>(
    operation: &str,
    connector: Option<&str>,
    args: &T,
) -> Result<Value, PluginError> {
    let name = resolve::connector(connector, "Kafka")?;
    resolve::execute(&name, operation, args)
}

databot_sdk::tools! {
    /// List Kafka topics with partition count and replication factor.
    fn kafka_list_topics(args: ListTopicsArgs) -> Result<Value, PluginError> {
        run("list_topics", args.connector.as_deref(), &args)
    }

    /// Describe one topic: partitions, leaders, replication, non-default configs.
    fn kafka_describe_topic(args: TopicArgs) -> Result<Value, PluginError> {
        run("describe_topic", args.connector.as_deref(), &args)
    }

    /// List consumer groups with their state.
    fn kafka_list_consumer_groups(args: NoArgs) -> Result<Value, PluginError> {
        run("list_consumer_groups", args.connector.as_deref(), &args)
    }

    /// Lag of a consumer group per partition, with total and maximum lag.
    fn kafka_consumer_group_lag(args: GroupArgs) -> Result<Value, PluginError> {
        run("consumer_group_lag", args.connector.as_deref(), &args)
    }

    /// Read the latest messages of a topic partition (through the host's Kafka client).
    fn kafka_peek_messages(args: PeekArgs) -> Result<Value, PluginError> {
        run("peek_messages", args.connector.as_deref(), &args)
    }

    /// Produce one message to a topic (only where the operator granted producing).
    fn kafka_produce_message(args: ProduceArgs) -> Result<Value, PluginError> {
        run("produce_message", args.connector.as_deref(), &args)
    }

    /// List Schema Registry subjects.
    fn kafka_list_subjects(args: ListSubjectsArgs) -> Result<Value, PluginError> {
        run("list_subjects", args.connector.as_deref(), &args)
    }

    /// List the versions registered for a subject.
    fn kafka_list_schema_versions(args: SubjectArgs) -> Result<Value, PluginError> {
        run("list_schema_versions", args.connector.as_deref(), &args)
    }

    /// Get a subject's schema (a version number or `latest`).
    fn kafka_get_schema(args: GetSchemaArgs) -> Result<Value, PluginError> {
        run("get_schema", args.connector.as_deref(), &args)
    }

    /// Check a candidate schema's compatibility with a subject.
    fn kafka_check_compatibility(args: CompatibilityArgs) -> Result<Value, PluginError> {
        run("check_compatibility", args.connector.as_deref(), &args)
    }

    /// List Kafka Connect connectors with state and failed tasks.
    fn kafka_list_connectors(args: NoArgs) -> Result<Value, PluginError> {
        run("list_connectors", args.connector.as_deref(), &args)
    }

    /// Status of one Kafka Connect connector and its tasks.
    fn kafka_connector_status(args: ConnectorArgs) -> Result<Value, PluginError> {
        run("connector_status", args.connector.as_deref(), &args)
    }

    /// Pause a Kafka Connect connector (changes the pipeline).
    fn kafka_pause_connector(args: ConnectorArgs) -> Result<Value, PluginError> {
        run("pause_connector", args.connector.as_deref(), &args)
    }

    /// Resume a paused Kafka Connect connector (changes the pipeline).
    fn kafka_resume_connector(args: ConnectorArgs) -> Result<Value, PluginError> {
        run("resume_connector", args.connector.as_deref(), &args)
    }

    /// Restart a Kafka Connect connector, optionally its (failed) tasks (changes the pipeline).
    fn kafka_restart_connector(args: RestartArgs) -> Result<Value, PluginError> {
        run("restart_connector", args.connector.as_deref(), &args)
    }
}
