//! Kafka REST Proxy (endpoint `api`): the v3 admin API (`/v3/clusters/{id}/...`, Confluent
//! REST Proxy 5.5+ and Confluent Server) with the v2 API (`/topics`) as the fallback when
//! `/v3/clusters` does not exist. The cluster id is looked up once per call (or taken from
//! config `cluster_id`).

use databot_sdk::PluginError;
use databot_sdk::api::{Endpoint, segment};
use serde_json::{Value, json};

pub enum Api {
    V3 { cluster_id: String },
    V2,
}

pub struct RestProxy {
    api: Endpoint,
    pub version: Api,
}

/// The last path segment of a v3 `related` link (`.../brokers/1` -> `1`).
pub fn related_id(value: &Value) -> Option<String> {
    value
        .get("related")
        .and_then(Value::as_str)
        .and_then(|link| link.trim_end_matches('/').rsplit('/').next())
        .map(str::to_owned)
}

impl RestProxy {
    /// The proxy and its API version: `config.api_version` (`v2` / `v3`) or discovered.
    pub fn connect() -> Result<Self, PluginError> {
        let api = Endpoint::from_config("api")?;
        let forced = databot_sdk::config_value::<String>("api_version")?;
        if forced.as_deref() == Some("v2") {
            return Ok(Self {
                api,
                version: Api::V2,
            });
        }
        if let Some(cluster_id) = databot_sdk::config_value::<String>("cluster_id")? {
            return Ok(Self {
                api,
                version: Api::V3 { cluster_id },
            });
        }
        match api.get("/v3/clusters", &[]) {
            Ok(clusters) => {
                let cluster_id = clusters
                    .pointer("/data/0/cluster_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        PluginError::Failed(
                            "GET /v3/clusters listed no cluster; set `cluster_id` in the plugin's config".into(),
                        )
                    })?
                    .to_owned();
                Ok(Self {
                    api,
                    version: Api::V3 { cluster_id },
                })
            }
            Err(PluginError::NotFound(_)) if forced.as_deref() != Some("v3") => Ok(Self {
                api,
                version: Api::V2,
            }),
            Err(error) => Err(error),
        }
    }

    /// One cheap read: the cluster (v3) or the topic names (v2).
    pub fn probe(&self) -> Result<(), PluginError> {
        match &self.version {
            Api::V3 { .. } => self.api.get(&self.v3("health")?, &[]).map(|_| ()),
            Api::V2 => self.api.get("/topics", &[]).map(|_| ()),
        }
    }

    fn v3(&self, what: &str) -> Result<String, PluginError> {
        match &self.version {
            Api::V3 { cluster_id } => Ok(format!("/v3/clusters/{}", segment(cluster_id))),
            Api::V2 => Err(PluginError::InvalidInput(format!(
                "{what} needs the REST Proxy v3 API (Confluent REST Proxy 5.5+ or Confluent Server), and this proxy only has v2; or set config `cluster` to use the host's Kafka client"
            ))),
        }
    }

    fn cluster_id(&self) -> Option<&str> {
        match &self.version {
            Api::V3 { cluster_id } => Some(cluster_id),
            Api::V2 => None,
        }
    }

    fn api_name(&self) -> &'static str {
        match self.version {
            Api::V3 { .. } => "v3",
            Api::V2 => "v2",
        }
    }

    pub fn list_topics(&self, include_internal: bool) -> Result<Value, PluginError> {
        let topics: Vec<Value> = match &self.version {
            Api::V3 { .. } => {
                let root = self.v3("list_topics")?;
                let page = self.api.get(&format!("{root}/topics"), &[])?;
                page.get("data")
                    .and_then(Value::as_array)
                    .map(|data| {
                        data.iter()
                            .filter(|t| include_internal || t["is_internal"] != json!(true))
                            .map(|t| {
                                json!({
                                    "name": t["topic_name"],
                                    "partitions": t["partitions_count"],
                                    "replication_factor": t["replication_factor"],
                                    "internal": t["is_internal"],
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            }
            Api::V2 => {
                let names = self.api.get("/topics", &[])?;
                names
                    .as_array()
                    .map(|names| {
                        names
                            .iter()
                            .filter_map(Value::as_str)
                            .filter(|n| include_internal || !n.starts_with("__"))
                            .map(|n| json!({"name": n}))
                            .collect()
                    })
                    .unwrap_or_default()
            }
        };
        Ok(json!({
            "api": self.api_name(),
            "cluster_id": self.cluster_id(),
            "count": topics.len(),
            "topics": topics,
        }))
    }

    pub fn describe_topic(&self, topic: &str) -> Result<Value, PluginError> {
        if let Api::V2 = self.version {
            let found = self.api.get(&format!("/topics/{}", segment(topic)), &[])?;
            let partitions: Vec<Value> = found
                .get("partitions")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .map(|p| {
                            let replicas = p["replicas"].as_array().cloned().unwrap_or_default();
                            json!({
                                "partition": p["partition"],
                                "leader": p["leader"],
                                "replicas": replicas.iter().map(|r| r["broker"].clone()).collect::<Vec<_>>(),
                                "in_sync": replicas.iter().filter(|r| r["in_sync"] == json!(true)).map(|r| r["broker"].clone()).collect::<Vec<_>>(),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            return Ok(json!({
                "api": "v2",
                "name": found.get("name").cloned().unwrap_or(json!(topic)),
                "partitions_count": partitions.len(),
                "configs": found.get("configs"),
                "partitions": partitions,
            }));
        }
        let root = format!("{}/topics/{}", self.v3("describe_topic")?, segment(topic));
        let found = self.api.get(&root, &[])?;
        let partitions = self.api.get(&format!("{root}/partitions"), &[])?;
        let partitions: Vec<Value> = partitions
            .get("data")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|p| {
                        json!({
                            "partition": p["partition_id"],
                            "leader": related_id(&p["leader"]).and_then(|id| id.parse::<i64>().ok()),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let configs = self.api.get(&format!("{root}/configs"), &[])?;
        let overrides: serde_json::Map<String, Value> = configs
            .get("data")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter(|c| c["is_default"] != json!(true))
                    .filter_map(|c| {
                        let name = c["name"].as_str()?.to_owned();
                        let value = if c["is_sensitive"] == json!(true) {
                            json!("(sensitive)")
                        } else {
                            c["value"].clone()
                        };
                        Some((name, value))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(json!({
            "api": "v3",
            "cluster_id": self.cluster_id(),
            "name": found["topic_name"],
            "internal": found["is_internal"],
            "replication_factor": found["replication_factor"],
            "partitions_count": found["partitions_count"],
            "configs": overrides,
            "partitions": partitions,
        }))
    }

    pub fn list_consumer_groups(&self) -> Result<Value, PluginError> {
        let root = self.v3("list_consumer_groups")?;
        let page = self.api.get(&format!("{root}/consumer-groups"), &[])?;
        let groups: Vec<Value> = page
            .get("data")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|g| {
                        json!({
                            "group": g["consumer_group_id"],
                            "state": g["state"],
                            "simple": g["is_simple"],
                            "partition_assignor": g["partition_assignor"],
                            "coordinator": related_id(&g["coordinator"]).and_then(|id| id.parse::<i64>().ok()),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(
            json!({"api": "v3", "cluster_id": self.cluster_id(), "count": groups.len(), "groups": groups}),
        )
    }

    pub fn consumer_group_lag(&self, group: &str) -> Result<Value, PluginError> {
        let root = self.v3("consumer_group_lag")?;
        let page = self.api.get(
            &format!("{root}/consumer-groups/{}/lags", segment(group)),
            &[],
        )?;
        let partitions: Vec<Value> = page
            .get("data")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|l| {
                        json!({
                            "topic": l["topic_name"],
                            "partition": l["partition_id"],
                            "current_offset": l["current_offset"],
                            "log_end_offset": l["log_end_offset"],
                            "lag": l["lag"],
                            "consumer_id": l["consumer_id"],
                            "client_id": l["client_id"],
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let lags = partitions.iter().filter_map(|p| p["lag"].as_i64());
        let total: i64 = lags.clone().sum();
        let max = lags.max().unwrap_or(0);
        Ok(json!({
            "api": "v3",
            "group": group,
            "total_lag": total,
            "max_lag": max,
            "partitions": partitions,
        }))
    }
}
