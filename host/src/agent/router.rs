//! The router: picks the specialist (a system prompt and a tool subset) for each message.
//!
//! The provider classifies the message; its answer is parsed strictly (a JSON object with
//! `agent`, fenced or not, or a reply that is exactly one specialist name). Anything else falls
//! back to the conversation's current specialist, or `general`. The choice sticks to a
//! conversation: the classifier is told the current specialist and keeps it unless the topic
//! clearly changed. Tool scoping is enforced when tools run, not only in what the model sees.

use serde::Deserialize;

use crate::config::SpecialistConfig;
pub use crate::runtime::tool_names::{ToolOwner, names_tool};

#[derive(Debug, Clone, PartialEq)]
pub struct Specialist {
    pub name: String,
    pub description: String,
    pub system_prompt: String,
    /// Tool names this specialist may use; empty means every tool.
    pub tools: Vec<String>,
}

impl Specialist {
    /// May this specialist use `tool`? Its list names host tools (`memory`), whole plugins
    /// (`sql` allows every tool of the `sql` plugin) or tools of configured plugins; a plugin
    /// the operator did not configure (a file that gave itself a name) is matched by no list.
    /// An empty list allows all.
    pub fn allows(&self, tool: &str, owner: ToolOwner<'_>) -> bool {
        self.tools.is_empty() || names_tool(&self.tools, tool, owner)
    }
}

pub const FALLBACK: &str = "general";

fn specialist(name: &str, description: &str, prompt: &str, tools: &[&str]) -> Specialist {
    Specialist {
        name: name.to_owned(),
        description: description.to_owned(),
        system_prompt: prompt.to_owned(),
        tools: tools.iter().map(|t| (*t).to_owned()).collect(),
    }
}

/// The six default specialists. The memory tool is available to all of them; the pipeline
/// and quality specialists may also schedule jobs (`cron`).
pub fn default_specialists() -> Vec<Specialist> {
    vec![
        specialist(
            "sql",
            "SQL queries, database schema exploration and data analysis.",
            "You are databot's SQL specialist. Explore schemas before querying, write correct read-only SQL for the source's dialect, show results as tables, and explain what the numbers mean. Suggest indexes or rewrites when a query is slow.",
            &["sql", "memory"],
        ),
        specialist(
            "pipeline",
            "Data pipelines: Airflow DAGs, Spark jobs, orchestration and their failures.",
            "You are databot's pipeline specialist. Inspect DAGs, runs, task instances and logs; find the failing step and its cause; propose the fix. Never trigger or pause anything without saying so first.",
            &["airflow", "spark", "shell", "memory", "cron"],
        ),
        specialist(
            "quality",
            "Data quality checks: row counts, null rates, freshness, uniqueness, comparisons.",
            "You are databot's data quality specialist. Define and run checks, compare tables, and diagnose anomalies with SQL. Report each check with its threshold and result.",
            &["data_quality", "sql", "memory", "cron"],
        ),
        specialist(
            "catalog",
            "Data catalogs and metadata: Iceberg, Glue, Unity, lineage.",
            "You are databot's catalog specialist. Browse namespaces and tables, explain schemas, partitions and snapshots, and trace lineage upstream and downstream.",
            &["catalog", "lineage", "memory"],
        ),
        specialist(
            "streaming",
            "Kafka: topics, partitions, consumer groups and lag, schemas, connectors.",
            "You are databot's streaming specialist. Inspect topics, consumer lag, Schema Registry subjects and Kafka Connect connectors; explain what is healthy and what is not.",
            &["kafka", "memory"],
        ),
        specialist(
            FALLBACK,
            "Anything that fits no other specialist.",
            crate::agent::context::DEFAULT_SYSTEM_PROMPT,
            &[],
        ),
    ]
}

/// Defaults with the operator's overrides applied (same name replaces fields; new names add).
pub fn specialists(overrides: &[SpecialistConfig]) -> Vec<Specialist> {
    let mut all = default_specialists();
    for custom in overrides {
        match all.iter_mut().find(|s| s.name == custom.name) {
            Some(existing) => {
                if let Some(description) = &custom.description {
                    existing.description = description.clone();
                }
                if let Some(prompt) = &custom.system_prompt {
                    existing.system_prompt = prompt.clone();
                }
                if let Some(tools) = &custom.tools {
                    existing.tools = tools.clone();
                }
            }
            None => all.push(Specialist {
                name: custom.name.clone(),
                description: custom.description.clone().unwrap_or_default(),
                system_prompt: custom
                    .system_prompt
                    .clone()
                    .unwrap_or_else(|| crate::agent::context::DEFAULT_SYSTEM_PROMPT.to_owned()),
                tools: custom.tools.clone().unwrap_or_default(),
            }),
        }
    }
    all
}

/// The classifier's instructions.
pub fn router_prompt(specialists: &[Specialist], current: Option<&str>) -> String {
    let list: Vec<String> = specialists
        .iter()
        .map(|s| format!("- {}: {}", s.name, s.description))
        .collect();
    let sticky = match current {
        Some(name) => format!(
            "\nThe conversation is currently handled by `{name}`. Keep `{name}` unless the new message clearly belongs to another specialist."
        ),
        None => String::new(),
    };
    format!(
        "You route messages of a data-platform assistant to one specialist. Answer with ONLY a JSON object: {{\"agent\": \"<name>\", \"reasoning\": \"<short>\"}}.\nSpecialists:\n{}\nIf no specialist fits, use \"{FALLBACK}\".{sticky}",
        list.join("\n")
    )
}

#[derive(Deserialize)]
struct Choice {
    agent: String,
}

/// Parse a classifier answer into a known specialist name, or `None`.
pub fn parse_choice(reply: &str, specialists: &[Specialist]) -> Option<String> {
    let known = |name: &str| {
        let name = name.trim().to_ascii_lowercase();
        specialists
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.name.clone())
    };
    // A JSON object anywhere in the reply (covers ```json fences and leading prose).
    let mut rest = reply;
    while let Some(start) = rest.find('{') {
        let candidate = &rest[start..];
        let mut stream = serde_json::Deserializer::from_str(candidate).into_iter::<Choice>();
        if let Some(Ok(choice)) = stream.next() {
            return known(&choice.agent);
        }
        rest = &candidate[1..];
    }
    // Or exactly one name, perhaps quoted or with a full stop.
    let bare = reply
        .trim()
        .trim_matches(|c: char| c == '"' || c == '`' || c == '.' || c == '\'');
    known(bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_fenced_json_and_bare_names() {
        let all = default_specialists();
        assert_eq!(
            parse_choice(r#"{"agent": "sql", "reasoning": "x"}"#, &all).as_deref(),
            Some("sql")
        );
        assert_eq!(
            parse_choice("Sure!\n```json\n{\"agent\": \"streaming\"}\n```", &all).as_deref(),
            Some("streaming")
        );
        assert_eq!(
            parse_choice("  Pipeline. ", &all).as_deref(),
            Some("pipeline")
        );
    }

    #[test]
    fn nonsense_and_unknown_names_are_none() {
        let all = default_specialists();
        assert_eq!(parse_choice("I think sql or maybe kafka stuff", &all), None);
        assert_eq!(parse_choice(r#"{"agent": "astrology"}"#, &all), None);
        assert_eq!(parse_choice("", &all), None);
        assert_eq!(parse_choice("{broken json", &all), None);
    }

    #[test]
    fn overrides_replace_fields_and_add_specialists() {
        let all = specialists(&[
            SpecialistConfig {
                name: "sql".into(),
                description: None,
                system_prompt: Some("custom".into()),
                tools: None,
            },
            SpecialistConfig {
                name: "finance".into(),
                description: Some("Money.".into()),
                system_prompt: None,
                tools: Some(vec!["sql".into()]),
            },
        ]);
        let sql = all.iter().find(|s| s.name == "sql").unwrap();
        assert_eq!(sql.system_prompt, "custom");
        assert_eq!(sql.tools, ["sql", "memory"]);
        assert!(all.iter().any(|s| s.name == "finance"
            && s.allows(
                "sql_query",
                ToolOwner::Plugin {
                    name: "sql",
                    configured: true
                }
            )
            && !s.allows(
                "kafka_list_topics",
                ToolOwner::Plugin {
                    name: "kafka",
                    configured: true
                }
            )
            && !s.allows(
                "sql_query",
                ToolOwner::Plugin {
                    name: "sql",
                    configured: false
                }
            )
            && !s.allows(
                "sql",
                ToolOwner::Plugin {
                    name: "evil",
                    configured: false
                }
            )
            && !s.allows(
                "memory",
                ToolOwner::Plugin {
                    name: "evil",
                    configured: false
                }
            )));
        assert!(sql.allows("memory", ToolOwner::Host));
    }

    #[test]
    fn the_prompt_names_the_sticky_choice() {
        let prompt = router_prompt(&default_specialists(), Some("sql"));
        assert!(prompt.contains("currently handled by `sql`"));
        assert!(prompt.contains("- streaming:"));
    }
}
