//! `lineage`: data lineage for agents, from Marquez / OpenLineage (endpoint `api`) or a local
//! graph file (config `graph_path` in a granted folder). Upstream and downstream really are
//! different walks (against and along the edges), `lineage_path` returns the path itself, and
//! a name that is not found comes back with "did you mean" suggestions.

mod graph;
mod local;
mod marquez;

use databot_sdk::prelude::*;

use crate::graph::{Direction, Graph, Reached};
use crate::marquez::{Marquez, describe, node_id};

databot_sdk::manifest! {
    name: "lineage",
    kind: "tool",
    description: "Data lineage (Marquez/OpenLineage or a local graph): upstream, downstream, paths, search, dataset info, jobs and runs.",
    capabilities: ["http", "filesystem", "config", "logging"],
}

const DEFAULT_DEPTH: u32 = 3;
const DEFAULT_PATH_DEPTH: u32 = 10;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WalkArgs {
    /// Dataset (table) name, e.g. `public.orders`.
    table: String,
    /// Marquez namespace of the dataset (default: the tool's configured `namespace`).
    #[serde(default)]
    namespace: Option<String>,
    /// How many dataset hops to follow (default 3).
    #[serde(default)]
    #[schemars(range(min = 1, max = 20))]
    depth: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PathArgs {
    /// Dataset the path starts from.
    table: String,
    /// Dataset the path should reach.
    target_table: String,
    /// Marquez namespace of `table` (default: the configured `namespace`).
    #[serde(default)]
    namespace: Option<String>,
    /// Marquez namespace of `target_table` (default: the same as `table`).
    #[serde(default)]
    target_namespace: Option<String>,
    /// Longest path searched, in dataset hops (default 10).
    #[serde(default)]
    #[schemars(range(min = 1, max = 50))]
    depth: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    /// Text to look for in dataset (and job) names.
    query: String,
    /// Most results (default 20).
    #[serde(default)]
    #[schemars(range(min = 1, max = 200))]
    limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NodeArgs {
    /// Dataset (table) name.
    table: String,
    /// Marquez namespace of the dataset (default: the configured `namespace`).
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RunsArgs {
    /// Job name, e.g. `etl_orders.load`.
    job: String,
    /// Marquez namespace of the job (default: the configured `namespace`).
    #[serde(default)]
    namespace: Option<String>,
    /// Most runs, newest first (default 10).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    limit: Option<u32>,
}

enum Backend {
    Marquez(Marquez),
    File(Graph),
}

/// Marquez when `config.backend` says so or an `api` endpoint is configured, else the graph
/// file of `config.graph_path`.
fn backend() -> Result<Backend, PluginError> {
    let chosen = databot_sdk::config_value::<String>("backend")?;
    let has_api = databot_sdk::api::endpoint_url("api")?.is_some();
    let graph_path = databot_sdk::config_value::<String>("graph_path")?;
    match (chosen.as_deref(), has_api, graph_path) {
        (Some("marquez"), _, _) | (None, true, _) => Ok(Backend::Marquez(Marquez::connect()?)),
        (Some("graph") | None, _, Some(path)) => Ok(Backend::File(local::load(&path)?)),
        (Some("graph"), _, None) => Err(PluginError::InvalidInput(
            "`backend: graph` needs `graph_path` in the tool's config".into(),
        )),
        (Some(other), _, _) if other != "graph" => Err(PluginError::InvalidInput(format!(
            "config `backend: {other}` is not a lineage backend; use `marquez` or `graph`"
        ))),
        _ => Err(PluginError::NotFound(
            "no lineage source is configured: set `endpoints.api.url` to a Marquez server, or `config.graph_path` to a graph file in a granted folder".into(),
        )),
    }
}

fn namespace(given: Option<String>) -> Result<String, PluginError> {
    Ok(match given.filter(|n| !n.is_empty()) {
        Some(namespace) => namespace,
        None => {
            databot_sdk::config_value::<String>("namespace")?.unwrap_or_else(|| "default".into())
        }
    })
}

/// The node of `name` in a file graph, or NotFound with suggestions.
fn locate(graph: &Graph, name: &str) -> Result<usize, PluginError> {
    graph.find(name).ok_or_else(|| {
        let close = graph.suggestions(name);
        let hint = if close.is_empty() {
            String::new()
        } else {
            format!("; did you mean: {}", close.join(", "))
        };
        PluginError::NotFound(format!("`{name}` is not in the lineage graph{hint}"))
    })
}

fn reached(graph: &Graph, list: Vec<Reached>, marquez: bool) -> Vec<Value> {
    list.into_iter()
        .map(|r| {
            let mut out = if marquez {
                let data = graph.find(&r.id).map(|at| &graph.nodes[at].data);
                describe(&r.id, data.unwrap_or(&Value::Null))
            } else {
                json!({"id": r.id})
            };
            out["depth"] = json!(r.depth);
            out
        })
        .collect()
}

fn walk(args: WalkArgs, direction: Direction) -> Result<Value, PluginError> {
    let depth = args.depth.unwrap_or(DEFAULT_DEPTH);
    let label = match direction {
        Direction::Upstream => "upstream",
        Direction::Downstream => "downstream",
    };
    let (graph, start, source, ns) = match backend()? {
        Backend::Marquez(marquez) => {
            let ns = namespace(args.namespace)?;
            let id = node_id("dataset", &ns, &args.table);
            let graph = marquez.lineage(&id, depth)?;
            let start = locate(&graph, &id)?;
            (graph, start, "marquez", Some(ns))
        }
        Backend::File(graph) => {
            let start = locate(&graph, &args.table)?;
            (graph, start, "graph", None)
        }
    };
    let (datasets, jobs) = graph.walk(start, direction, depth);
    let marquez = source == "marquez";
    Ok(json!({
        "backend": source,
        "table": args.table,
        "namespace": ns,
        "direction": label,
        "depth": depth,
        "count": datasets.len(),
        "datasets": reached(&graph, datasets, marquez),
        "jobs": reached(&graph, jobs, marquez),
    }))
}

databot_sdk::tools! {
    /// Datasets the table is built from (following lineage edges backwards), nearest first,
    /// with the jobs in between and each dataset's distance in hops.
    fn lineage_upstream(args: WalkArgs) -> Result<Value, PluginError> {
        walk(args, Direction::Upstream)
    }

    /// Datasets built from the table (following lineage edges forwards): the impact of a
    /// change, nearest first, with the jobs in between.
    fn lineage_downstream(args: WalkArgs) -> Result<Value, PluginError> {
        walk(args, Direction::Downstream)
    }

    /// The shortest lineage path between two datasets, in either direction, as the list of
    /// nodes (datasets and jobs) it passes through.
    fn lineage_path(args: PathArgs) -> Result<Value, PluginError> {
        let depth = args.depth.unwrap_or(DEFAULT_PATH_DEPTH);
        let (graph, from, to, source) = match backend()? {
            Backend::Marquez(marquez) => {
                let ns = namespace(args.namespace)?;
                let target_ns = args.target_namespace.unwrap_or_else(|| ns.clone());
                let from_id = node_id("dataset", &ns, &args.table);
                let to_id = node_id("dataset", &target_ns, &args.target_table);
                let graph = marquez.lineage(&from_id, depth)?;
                let from = locate(&graph, &from_id)?;
                let to = graph.find(&to_id);
                (graph, from, to, "marquez")
            }
            Backend::File(graph) => {
                let from = locate(&graph, &args.table)?;
                let to = Some(locate(&graph, &args.target_table)?);
                (graph, from, to, "graph")
            }
        };
        let found = to.and_then(|to| {
            graph
                .shortest_path(from, to)
                .map(|p| ("downstream", p))
                .or_else(|| graph.shortest_path(to, from).map(|p| ("upstream", p)))
        });
        Ok(match found {
            Some((direction, path)) => {
                let hops = path
                    .iter()
                    .skip(1)
                    .filter(|id| graph.find(id).is_some_and(|at| !graph.nodes[at].is_job))
                    .count();
                json!({
                    "backend": source, "from": args.table, "to": args.target_table,
                    "found": true, "direction": direction, "dataset_hops": hops, "path": path,
                })
            }
            None => json!({
                "backend": source, "from": args.table, "to": args.target_table,
                "found": false, "path": [],
                "note": format!("no lineage path within {depth} hops in either direction"),
            }),
        })
    }

    /// Find datasets (and jobs) whose name contains the query.
    fn lineage_search(args: SearchArgs) -> Result<Value, PluginError> {
        let limit = args.limit.unwrap_or(20);
        match backend()? {
            Backend::Marquez(marquez) => {
                let answer = marquez.search(&args.query, None, limit)?;
                let results: Vec<Value> = answer
                    .get("results")
                    .and_then(Value::as_array)
                    .map(|hits| {
                        hits.iter()
                            .map(|h| json!({
                                "id": h.get("nodeId"), "type": h.get("type"),
                                "namespace": h.get("namespace"), "name": h.get("name"),
                                "updated_at": h.get("updatedAt"),
                            }))
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(json!({
                    "backend": "marquez", "query": args.query, "count": results.len(),
                    "total": answer.get("totalCount"), "results": results,
                }))
            }
            Backend::File(graph) => {
                let results: Vec<Value> = graph
                    .search(&args.query, limit as usize)
                    .into_iter()
                    .map(|n| json!({"id": n.id, "type": if n.is_job { "JOB" } else { "DATASET" }}))
                    .collect();
                Ok(json!({"backend": "graph", "query": args.query, "count": results.len(), "results": results}))
            }
        }
    }

    /// Details of a dataset: fields, source, tags, timestamps (Marquez), or its attributes
    /// and direct neighbours (graph file).
    fn lineage_info(args: NodeArgs) -> Result<Value, PluginError> {
        match backend()? {
            Backend::Marquez(marquez) => {
                let ns = namespace(args.namespace)?;
                let d = marquez.dataset(&ns, &args.table)?;
                let fields: Vec<Value> = d
                    .get("fields")
                    .and_then(Value::as_array)
                    .map(|f| {
                        f.iter()
                            .map(|f| json!({"name": f.get("name"), "type": f.get("type"), "description": f.get("description")}))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut facets: Vec<String> = d
                    .get("facets")
                    .and_then(Value::as_object)
                    .map(|f| f.keys().cloned().collect())
                    .unwrap_or_default();
                facets.sort();
                Ok(json!({
                    "backend": "marquez",
                    "namespace": d.get("namespace"), "name": d.get("name"),
                    "type": d.get("type"), "physical_name": d.get("physicalName"),
                    "source": d.get("sourceName"), "description": d.get("description"),
                    "fields": fields, "tags": d.get("tags"),
                    "created_at": d.get("createdAt"), "updated_at": d.get("updatedAt"),
                    "last_modified_at": d.get("lastModifiedAt"),
                    "current_version": d.get("currentVersion"), "facets": facets,
                }))
            }
            Backend::File(graph) => {
                let at = locate(&graph, &args.table)?;
                let names = |direction| -> Vec<String> {
                    graph.neighbours(at, direction).iter().map(|n| n.id.clone()).collect()
                };
                Ok(json!({
                    "backend": "graph",
                    "id": graph.nodes[at].id,
                    "attributes": graph.nodes[at].data,
                    "in_degree": graph.in_degree(at),
                    "out_degree": graph.out_degree(at),
                    "direct_upstream": names(Direction::Upstream),
                    "direct_downstream": names(Direction::Downstream),
                }))
            }
        }
    }

    /// The jobs that write the dataset (producers) and read it (consumers).
    fn lineage_jobs(args: NodeArgs) -> Result<Value, PluginError> {
        let (graph, at, source) = match backend()? {
            Backend::Marquez(marquez) => {
                let ns = namespace(args.namespace)?;
                let id = node_id("dataset", &ns, &args.table);
                let graph = marquez.lineage(&id, 1)?;
                let at = locate(&graph, &id)?;
                (graph, at, "marquez")
            }
            Backend::File(graph) => {
                let at = locate(&graph, &args.table)?;
                (graph, at, "graph")
            }
        };
        let jobs = |direction| -> Vec<Value> {
            graph
                .neighbours(at, direction)
                .into_iter()
                .filter(|n| n.is_job)
                .map(|n| describe(&n.id, &n.data))
                .collect()
        };
        Ok(json!({
            "backend": source,
            "table": args.table,
            "producers": jobs(Direction::Upstream),
            "consumers": jobs(Direction::Downstream),
        }))
    }

    /// Recent runs of a job (Marquez): state, start and end, duration.
    fn lineage_runs(args: RunsArgs) -> Result<Value, PluginError> {
        let Backend::Marquez(marquez) = backend()? else {
            return Err(PluginError::InvalidInput(
                "job runs come from Marquez; the operator sets `endpoints.api.url` for this tool".into(),
            ));
        };
        let ns = namespace(args.namespace)?;
        let answer = marquez.runs(&ns, &args.job, args.limit.unwrap_or(10))?;
        let runs: Vec<Value> = answer
            .get("runs")
            .and_then(Value::as_array)
            .map(|runs| {
                runs.iter()
                    .map(|r| json!({
                        "id": r.get("id"), "state": r.get("state"),
                        "started_at": r.get("startedAt"), "ended_at": r.get("endedAt"),
                        "duration_ms": r.get("durationMs"),
                        "nominal_start": r.get("nominalStartTime"), "nominal_end": r.get("nominalEndTime"),
                        "args": r.get("args"),
                    }))
                    .collect()
            })
            .unwrap_or_default();
        Ok(json!({
            "backend": "marquez", "namespace": ns, "job": args.job,
            "total": answer.get("totalCount"), "count": runs.len(), "runs": runs,
        }))
    }
}
