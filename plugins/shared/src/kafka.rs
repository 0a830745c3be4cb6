//! Arguments of the Kafka operations, shared word for word by the `kafka_connector` (which
//! runs them) and the `kafka` tool (which forwards them).
//!
//! `kafka_args!()` declares the structs; the tool passes extra fields (its `connector`).

/// Declare the argument structs, each with the extra fields given (`$extra`).
#[macro_export]
macro_rules! kafka_args {
    ($($extra:tt)*) => {
        /// Arguments of `list_topics`.
        #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct ListTopicsArgs {
            /// Include internal topics such as `__consumer_offsets` (default false).
            #[serde(default, skip_serializing_if = "std::ops::Not::not")]
            pub include_internal: bool,
            $($extra)*
        }

        /// Arguments of operations on one topic.
        #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct TopicArgs {
            /// Topic name.
            pub topic: String,
            $($extra)*
        }

        /// Arguments of `list_consumer_groups`.
        #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct NoArgs {
            $($extra)*
        }

        /// Arguments of `consumer_group_lag`.
        #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct GroupArgs {
            /// Consumer group id.
            pub group: String,
            /// Only these topics (default: the topics the group's members are assigned, else
            /// every topic it committed offsets on).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub topics: Option<Vec<String>>,
            $($extra)*
        }

        /// Arguments of `peek_messages`.
        #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct PeekArgs {
            /// Topic name.
            pub topic: String,
            /// Partition to read (default 0).
            #[serde(default)]
            #[schemars(range(min = 0))]
            pub partition: i32,
            /// How many of the latest messages to read (default 10).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(range(min = 1, max = 1000))]
            pub count: Option<u32>,
            $($extra)*
        }

        /// Arguments of `produce_message`.
        #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct ProduceArgs {
            /// Topic name.
            pub topic: String,
            /// Message key (messages with the same key go to the same partition).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub key: Option<String>,
            /// Message value, as text.
            pub value: String,
            $($extra)*
        }

        /// Arguments of `list_subjects`.
        #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct ListSubjectsArgs {
            /// Only subjects starting with this text.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub prefix: Option<String>,
            /// Include soft-deleted subjects (default false).
            #[serde(default, skip_serializing_if = "std::ops::Not::not")]
            pub deleted: bool,
            $($extra)*
        }

        /// Arguments of `list_schema_versions`.
        #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct SubjectArgs {
            /// Schema Registry subject, e.g. `orders-value`.
            pub subject: String,
            $($extra)*
        }

        /// Arguments of `get_schema`.
        #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct GetSchemaArgs {
            /// Schema Registry subject, e.g. `orders-value`.
            pub subject: String,
            /// Version number, or `latest` (the default).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub version: Option<String>,
            $($extra)*
        }

        /// Arguments of `check_compatibility`.
        #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct CompatibilityArgs {
            /// Schema Registry subject, e.g. `orders-value`.
            pub subject: String,
            /// The candidate schema, as text (Avro JSON, JSON Schema or Protobuf source).
            pub schema: String,
            /// `AVRO` (default), `JSON` or `PROTOBUF`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub schema_type: Option<String>,
            /// Version to check against, or `latest` (the default).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub version: Option<String>,
            $($extra)*
        }

        /// Arguments of operations on one Kafka Connect connector.
        #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct ConnectorArgs {
            /// Kafka Connect connector name.
            pub connector_name: String,
            $($extra)*
        }

        /// Arguments of `restart_connector`.
        #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct RestartArgs {
            /// Kafka Connect connector name.
            pub connector_name: String,
            /// Restart the connector's tasks too (default false).
            #[serde(default, skip_serializing_if = "std::ops::Not::not")]
            pub include_tasks: bool,
            /// Restart only failed instances (default false).
            #[serde(default, skip_serializing_if = "std::ops::Not::not")]
            pub only_failed: bool,
            $($extra)*
        }
    };
}
