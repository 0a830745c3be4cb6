//! A directed lineage graph and the walks over it: upstream (against the edges) and
//! downstream (with them) to a depth counted in dataset hops (job nodes between datasets do
//! not count), the shortest directed path, substring search and "did you mean" suggestions.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;
use serde_json::Value;

pub struct Node {
    pub id: String,
    pub is_job: bool,
    pub data: Value,
}

#[derive(Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    index: HashMap<String, usize>,
    out: Vec<Vec<usize>>,
    inn: Vec<Vec<usize>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Direction {
    Upstream,
    Downstream,
}

/// A node reached by a walk, with its distance in dataset hops.
#[derive(Debug, Clone, Serialize)]
pub struct Reached {
    pub id: String,
    pub depth: u32,
}

impl Graph {
    /// Add a node (or replace the data of a node already added by an edge).
    pub fn add_node(&mut self, id: &str, is_job: bool, data: Value) -> usize {
        if let Some(&at) = self.index.get(id) {
            let node = &mut self.nodes[at];
            node.is_job = node.is_job || is_job;
            if !data.is_null() {
                node.data = data;
            }
            return at;
        }
        self.nodes.push(Node {
            id: id.to_owned(),
            is_job,
            data,
        });
        self.out.push(Vec::new());
        self.inn.push(Vec::new());
        self.index.insert(id.to_owned(), self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    /// Add an edge `source -> target` (data flows that way); unknown ends become nodes.
    pub fn add_edge(&mut self, source: &str, target: &str) {
        let from = self.add_node(source, false, Value::Null);
        let to = self.add_node(target, false, Value::Null);
        if !self.out[from].contains(&to) {
            self.out[from].push(to);
            self.inn[to].push(from);
        }
    }

    /// A node by exact id, else by case-insensitive id.
    pub fn find(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied().or_else(|| {
            self.nodes
                .iter()
                .position(|n| n.id.eq_ignore_ascii_case(id))
        })
    }

    pub fn in_degree(&self, at: usize) -> usize {
        self.inn[at].len()
    }

    pub fn out_degree(&self, at: usize) -> usize {
        self.out[at].len()
    }

    pub fn neighbours(&self, at: usize, direction: Direction) -> Vec<&Node> {
        let list = match direction {
            Direction::Upstream => &self.inn[at],
            Direction::Downstream => &self.out[at],
        };
        list.iter().map(|&i| &self.nodes[i]).collect()
    }

    /// Every node reachable from `start` in `direction` within `depth` dataset hops, nearest
    /// first: (datasets, jobs). Entering a job costs nothing; entering a dataset costs one.
    pub fn walk(
        &self,
        start: usize,
        direction: Direction,
        depth: u32,
    ) -> (Vec<Reached>, Vec<Reached>) {
        let mut distance: Vec<Option<u32>> = vec![None; self.nodes.len()];
        distance[start] = Some(0);
        let mut queue = VecDeque::from([start]);
        while let Some(at) = queue.pop_front() {
            let here = distance[at].unwrap_or(0);
            let next = match direction {
                Direction::Upstream => &self.inn[at],
                Direction::Downstream => &self.out[at],
            };
            for &to in next {
                let cost = u32::from(!self.nodes[to].is_job);
                let candidate = here + cost;
                if candidate > depth || distance[to].is_some_and(|d| d <= candidate) {
                    continue;
                }
                distance[to] = Some(candidate);
                if cost == 0 {
                    queue.push_front(to);
                } else {
                    queue.push_back(to);
                }
            }
        }
        let mut datasets = Vec::new();
        let mut jobs = Vec::new();
        for (at, d) in distance.iter().enumerate() {
            let Some(d) = *d else { continue };
            if at == start {
                continue;
            }
            let node = &self.nodes[at];
            if node.is_job {
                // A job at the depth limit leads only to datasets beyond it.
                if d < depth {
                    jobs.push(Reached {
                        id: node.id.clone(),
                        depth: d + 1,
                    });
                }
            } else {
                datasets.push(Reached {
                    id: node.id.clone(),
                    depth: d,
                });
            }
        }
        datasets.sort_by(|a, b| a.depth.cmp(&b.depth).then_with(|| a.id.cmp(&b.id)));
        jobs.sort_by(|a, b| a.depth.cmp(&b.depth).then_with(|| a.id.cmp(&b.id)));
        (datasets, jobs)
    }

    /// The shortest directed path `from -> ... -> to` (node ids), by breadth-first search.
    pub fn shortest_path(&self, from: usize, to: usize) -> Option<Vec<String>> {
        let mut previous: Vec<Option<usize>> = vec![None; self.nodes.len()];
        let mut seen = vec![false; self.nodes.len()];
        seen[from] = true;
        let mut queue = VecDeque::from([from]);
        while let Some(at) = queue.pop_front() {
            if at == to {
                let mut path = vec![self.nodes[at].id.clone()];
                let mut cursor = at;
                while let Some(before) = previous[cursor] {
                    path.push(self.nodes[before].id.clone());
                    cursor = before;
                }
                path.reverse();
                return Some(path);
            }
            for &next in &self.out[at] {
                if !seen[next] {
                    seen[next] = true;
                    previous[next] = Some(at);
                    queue.push_back(next);
                }
            }
        }
        None
    }

    /// Node ids containing `query` (case-insensitive), up to `limit`.
    pub fn search(&self, query: &str, limit: usize) -> Vec<&Node> {
        let needle = query.to_lowercase();
        self.nodes
            .iter()
            .filter(|n| n.id.to_lowercase().contains(&needle))
            .take(limit)
            .collect()
    }

    /// Up to five ids close to `query`: containing it, contained in it, or a few edits away.
    pub fn suggestions(&self, query: &str) -> Vec<String> {
        suggest(self.nodes.iter().map(|n| n.id.as_str()), query)
    }
}

/// Up to five of `candidates` close to `query`, closest first.
pub fn suggest<'a>(candidates: impl Iterator<Item = &'a str>, query: &str) -> Vec<String> {
    let needle = query.to_lowercase();
    let mut scored: Vec<(usize, String)> = candidates
        .filter_map(|candidate| {
            let lower = candidate.to_lowercase();
            let distance = edit_distance(&lower, &needle);
            let close = lower.contains(&needle)
                || needle.contains(&lower)
                || distance <= 2.max(needle.len() / 4);
            close.then(|| (distance, candidate.to_owned()))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(5).map(|(_, id)| id).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// raw.orders -> job:clean -> stg.orders -> job:agg -> mart.revenue, and
    /// raw.customers -> job:agg.
    fn marquez_like() -> Graph {
        let mut g = Graph::default();
        g.add_node("job:clean", true, json!({}));
        g.add_node("job:agg", true, json!({}));
        for (s, t) in [
            ("raw.orders", "job:clean"),
            ("job:clean", "stg.orders"),
            ("stg.orders", "job:agg"),
            ("raw.customers", "job:agg"),
            ("job:agg", "mart.revenue"),
        ] {
            g.add_edge(s, t);
        }
        g
    }

    fn ids(list: &[Reached]) -> Vec<(&str, u32)> {
        list.iter().map(|r| (r.id.as_str(), r.depth)).collect()
    }

    #[test]
    fn upstream_and_downstream_differ_and_count_dataset_hops() {
        let g = marquez_like();
        let stg = g.find("stg.orders").unwrap();
        let (up, up_jobs) = g.walk(stg, Direction::Upstream, 3);
        assert_eq!(ids(&up), [("raw.orders", 1)]);
        assert_eq!(ids(&up_jobs), [("job:clean", 1)]);
        let (down, _) = g.walk(stg, Direction::Downstream, 3);
        assert_eq!(ids(&down), [("mart.revenue", 1)]);

        let mart = g.find("MART.REVENUE").unwrap();
        let (one, _) = g.walk(mart, Direction::Upstream, 1);
        assert_eq!(ids(&one), [("raw.customers", 1), ("stg.orders", 1)]);
        let (two, jobs) = g.walk(mart, Direction::Upstream, 2);
        assert_eq!(
            ids(&two),
            [("raw.customers", 1), ("stg.orders", 1), ("raw.orders", 2)]
        );
        assert_eq!(ids(&jobs), [("job:agg", 1), ("job:clean", 2)]);
    }

    #[test]
    fn shortest_path_follows_edge_direction() {
        let g = marquez_like();
        let (raw, mart) = (
            g.find("raw.orders").unwrap(),
            g.find("mart.revenue").unwrap(),
        );
        assert_eq!(
            g.shortest_path(raw, mart).unwrap(),
            [
                "raw.orders",
                "job:clean",
                "stg.orders",
                "job:agg",
                "mart.revenue"
            ]
        );
        assert!(g.shortest_path(mart, raw).is_none());
    }

    #[test]
    fn near_misses_are_suggested() {
        let g = marquez_like();
        assert_eq!(g.suggestions("stg.ordrs"), ["stg.orders"]);
        assert!(g.suggestions("zzzzzz").is_empty());
        assert_eq!(g.search("ORDERS", 10).len(), 2);
    }
}
