//! Marquez (the OpenLineage reference server) on endpoint `api`: the lineage graph of a node
//! (`GET /api/v1/lineage?nodeId=dataset:{ns}:{name}&depth=`) turned into a [`Graph`] whose
//! edges keep their direction, search, dataset details and job runs.

use databot_sdk::PluginError;
use databot_sdk::api::{Endpoint, segment};
use serde_json::{Value, json};

use crate::graph::{Graph, suggest};

pub struct Marquez {
    api: Endpoint,
}

/// `dataset:{namespace}:{name}` / `job:{namespace}:{name}`.
pub fn node_id(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind}:{namespace}:{name}")
}

/// The namespace and name of a lineage node, from its `data` (ids can hold colons).
pub fn describe(id: &str, data: &Value) -> Value {
    let namespace = data
        .get("namespace")
        .or_else(|| data.pointer("/id/namespace"))
        .and_then(Value::as_str);
    let name = data
        .get("name")
        .or_else(|| data.pointer("/id/name"))
        .and_then(Value::as_str);
    json!({"id": id, "namespace": namespace, "name": name})
}

impl Marquez {
    pub fn connect() -> Result<Self, PluginError> {
        Ok(Self {
            api: Endpoint::from_config("api")?,
        })
    }

    /// The lineage graph around `node` up to `depth`.
    pub fn lineage(&self, node: &str, depth: u32) -> Result<Graph, PluginError> {
        let answer = self
            .api
            .get(
                "/api/v1/lineage",
                &[("nodeId", node.to_owned()), ("depth", depth.to_string())],
            )
            .map_err(|error| self.with_suggestions(error, node))?;
        let mut graph = Graph::default();
        let nodes = answer
            .get("graph")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for entry in &nodes {
            let Some(id) = entry.get("id").and_then(Value::as_str) else {
                continue;
            };
            let is_job = entry.get("type").and_then(Value::as_str) == Some("JOB");
            graph.add_node(
                id,
                is_job,
                entry.get("data").cloned().unwrap_or(Value::Null),
            );
        }
        for entry in &nodes {
            for key in ["inEdges", "outEdges"] {
                for edge in entry
                    .get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let (Some(origin), Some(destination)) = (
                        edge.get("origin").and_then(Value::as_str),
                        edge.get("destination").and_then(Value::as_str),
                    ) {
                        graph.add_edge(origin, destination);
                    }
                }
            }
        }
        Ok(graph)
    }

    /// `GET /api/v1/search?q=&filter=&limit=`.
    pub fn search(
        &self,
        query: &str,
        filter: Option<&str>,
        limit: u32,
    ) -> Result<Value, PluginError> {
        let mut params = vec![("q", query.to_owned()), ("limit", limit.to_string())];
        if let Some(filter) = filter {
            params.push(("filter", filter.to_owned()));
        }
        self.api.get("/api/v1/search", &params)
    }

    /// Names close to the missing `node`, from the search API.
    fn with_suggestions(&self, error: PluginError, node: &str) -> PluginError {
        let PluginError::NotFound(message) = error else {
            return error;
        };
        let name = node.rsplit(':').next().unwrap_or(node);
        let short = name.rsplit('.').next().unwrap_or(name);
        let mut candidates: Vec<String> = Vec::new();
        for query in [short, short.get(..3).unwrap_or(short)] {
            if let Ok(found) = self.search(query, None, 50) {
                candidates = found
                    .get("results")
                    .and_then(Value::as_array)
                    .map(|r| {
                        r.iter()
                            .filter_map(|hit| hit.get("nodeId").and_then(Value::as_str))
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
            }
            if !candidates.is_empty() {
                break;
            }
        }
        let close = suggest(candidates.iter().map(String::as_str), node);
        let hint = if close.is_empty() {
            candidates.into_iter().take(5).collect()
        } else {
            close
        };
        if hint.is_empty() {
            PluginError::NotFound(message)
        } else {
            PluginError::NotFound(format!("{message}; did you mean: {}", hint.join(", ")))
        }
    }

    /// `GET /api/v1/namespaces/{ns}/datasets/{name}`.
    pub fn dataset(&self, namespace: &str, name: &str) -> Result<Value, PluginError> {
        self.api
            .get(
                &format!(
                    "/api/v1/namespaces/{}/datasets/{}",
                    segment(namespace),
                    segment(name)
                ),
                &[],
            )
            .map_err(|error| self.with_suggestions(error, &node_id("dataset", namespace, name)))
    }

    /// `GET /api/v1/namespaces/{ns}/jobs/{job}/runs?limit=`.
    pub fn runs(&self, namespace: &str, job: &str, limit: u32) -> Result<Value, PluginError> {
        self.api
            .get(
                &format!(
                    "/api/v1/namespaces/{}/jobs/{}/runs",
                    segment(namespace),
                    segment(job)
                ),
                &[("limit", limit.to_string())],
            )
            .map_err(|error| self.with_suggestions(error, &node_id("job", namespace, job)))
    }
}
