//! A lineage graph from a JSON file the operator grants (a folder in
//! `permissions.filesystem`, the file named by config `graph_path` as the plugin sees it):
//! `{"nodes": [{"id": "...", ...}], "edges": [{"source": "...", "target": "...", ...}]}`.
//! A node whose `type` is `job` is a job; every other node is a dataset.

use databot_sdk::PluginError;
use serde_json::Value;

use crate::graph::Graph;

/// Parse the graph document.
pub fn parse(text: &str, path: &str) -> Result<Graph, PluginError> {
    let document: Value = serde_json::from_str(text).map_err(|e| {
        PluginError::InvalidInput(format!("the lineage graph `{path}` is not valid JSON: {e}"))
    })?;
    let mut graph = Graph::default();
    for node in document
        .get("nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(id) = node.get("id").and_then(Value::as_str) else {
            continue;
        };
        let is_job = node
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("job"));
        let mut attributes = node.clone();
        if let Some(map) = attributes.as_object_mut() {
            map.remove("id");
        }
        graph.add_node(id, is_job, attributes);
    }
    for edge in document
        .get("edges")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let source = edge.get("source").and_then(Value::as_str);
        let target = edge.get("target").and_then(Value::as_str);
        match (source, target) {
            (Some(source), Some(target)) => graph.add_edge(source, target),
            _ => {
                return Err(PluginError::InvalidInput(format!(
                    "the lineage graph `{path}` has an edge without `source` and `target`: {edge}"
                )));
            }
        }
    }
    Ok(graph)
}

/// Read and parse the graph file at `path` (a path inside a granted folder).
pub fn load(path: &str) -> Result<Graph, PluginError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let message = format!(
            "cannot read the lineage graph `{path}` ({e}); the operator grants its folder in `permissions.filesystem` and sets `config.graph_path` to the path as the plugin sees it (e.g. /lineage/graph.json)"
        );
        match e.kind() {
            std::io::ErrorKind::NotFound => PluginError::NotFound(message),
            std::io::ErrorKind::PermissionDenied => PluginError::Denied(message),
            _ => PluginError::Failed(message),
        }
    })?;
    parse(&text, path)
}
