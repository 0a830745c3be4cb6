//! The agent's `cron` tool: schedule, list, pause, resume and remove jobs of the
//! conversation that asks, under the operator's limits (`schedules.agent`): who may create
//! jobs, the shortest interval, the most jobs per conversation.
//!
//! A job made here delivers to the conversation that asked (its chat and thread) when that
//! conversation is on a chat channel, and is kept in the run history otherwise (CLI, API).
//! Its prompt runs under that conversation's channel rules (pinned specialist, tool list); a
//! tool job is held to those rules and to the specialist that answered, when it is made and
//! at every run. The model can neither aim a job elsewhere nor touch another conversation's
//! jobs, and a scheduled run cannot make jobs (no job begets jobs).

use std::sync::Arc;

use serde::Deserialize;

use super::store::{ConversationContext, JobOrigin, Only, ScheduleStore, StoreError, now_ms};
use crate::agent::Conversation;
use crate::agent::host_tool::HostTool;
use crate::config::{AgentSchedulingConfig, Delivery, JobSpec, Notify};
use crate::contract::chat::ToolDefinition;
use crate::runtime::Runtime;

pub struct CronTool {
    store: Arc<ScheduleStore>,
    runtime: Runtime,
    limits: AgentSchedulingConfig,
    /// One add at a time in this process: the per-conversation count and the insert are one
    /// statement, and parallel tool calls of one answer cannot race past the limit.
    adding: tokio::sync::Mutex<()>,
}

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
enum Action {
    Add {
        name: String,
        #[serde(default)]
        cron: Option<String>,
        #[serde(default)]
        timezone: Option<String>,
        #[serde(default)]
        every: Option<String>,
        #[serde(default)]
        at: Option<String>,
        #[serde(default)]
        prompt: Option<String>,
        #[serde(default)]
        tool: Option<String>,
        #[serde(default)]
        arguments: Option<serde_json::Value>,
        #[serde(default)]
        notify: Option<Notify>,
    },
    List,
    Remove {
        name: String,
    },
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
}

impl CronTool {
    pub fn new(store: Arc<ScheduleStore>, runtime: Runtime, limits: AgentSchedulingConfig) -> Self {
        Self {
            store,
            runtime,
            limits,
            adding: tokio::sync::Mutex::new(()),
        }
    }

    /// The conversation a call comes from, as a job's context.
    fn context(conversation: &Conversation, specialist: Option<&str>) -> ConversationContext {
        let specialist = specialist
            .map(str::to_owned)
            .or_else(|| conversation.scope.specialist.clone());
        match &conversation.caller {
            Some(caller) => ConversationContext {
                channel: caller.channel.clone(),
                chat: caller.chat.clone(),
                thread: caller.thread.clone(),
                user: caller.user.clone(),
                scope: conversation.scope.clone(),
                specialist,
                workspace: caller.workspace.clone(),
            },
            None => {
                let (channel, chat) = conversation
                    .session_key
                    .split_once(':')
                    .unwrap_or(("cli", conversation.session_key.as_str()));
                ConversationContext {
                    channel: channel.to_owned(),
                    chat: chat.to_owned(),
                    thread: None,
                    user: "local".to_owned(),
                    scope: conversation.scope.clone(),
                    specialist,
                    workspace: None,
                }
            }
        }
    }

    async fn add(
        &self,
        conversation: &Conversation,
        specialist: Option<&str>,
        mut spec: JobSpec,
    ) -> Result<String, String> {
        let context = Self::context(conversation, specialist);
        if !self.limits.allows(&context.channel, &context.user) {
            return Err(format!(
                "denied: `{}:{}` may not schedule jobs (schedules.agent.allow)",
                context.channel, context.user
            ));
        }
        let now = now_ms();
        let timing = spec.validate(now)?;
        let min = std::time::Duration::from_secs(self.limits.min_interval_seconds);
        if let Some(gap) = timing.shortest_gap(now, 64)
            && gap < min
        {
            return Err(format!(
                "denied: runs would be {} s apart; the shortest interval allowed is {} s (schedules.agent.min_interval_seconds)",
                gap.as_secs(),
                min.as_secs()
            ));
        }
        if let Some(tool) = &spec.tool {
            super::tool_allowed(&self.runtime, &context, tool)?;
        }
        spec.deliver = if self.runtime.is_channel(&context.channel) {
            Delivery {
                channel: Some(context.channel.clone()),
                chat: Some(context.chat.clone()),
                thread: context.thread.clone(),
                webhook: None,
            }
        } else {
            Delivery::default()
        };
        let owner = format!("{}:{}", context.channel, context.user);
        let _one_at_a_time = self.adding.lock().await;
        let job = self
            .store
            .add_limited(
                spec,
                JobOrigin::Agent,
                &owner,
                Some(context),
                now,
                Some(self.limits.max_jobs_per_conversation),
            )
            .await
            .map_err(|e| match e {
                StoreError::Exists(name) => {
                    format!("a job named `{name}` exists already; choose another name")
                }
                StoreError::Limit(limit) => format!(
                    "denied: this conversation has {limit} scheduled jobs, the most allowed (schedules.agent.max_jobs_per_conversation); remove one first"
                ),
                other => other.to_string(),
            })?;
        let next = job
            .next_slot
            .map(super::deliver::rfc3339)
            .unwrap_or_default();
        Ok(format!(
            "Scheduled `{}` ({}); first run {next}; results go to {}.",
            job.spec.name,
            job.spec.when(),
            match job.spec.deliver.describe().as_str() {
                "stored" => "the run history (`databot cron history NAME`)".to_owned(),
                _ => "this conversation".to_owned(),
            }
        ))
    }
}

#[async_trait::async_trait]
impl HostTool for CronTool {
    fn name(&self) -> &str {
        crate::config::HOST_CRON_TOOL
    }

    /// Not in a scheduled run's own turn: a job cannot make jobs.
    fn offered(&self, conversation: &Conversation) -> bool {
        let channel = conversation
            .caller
            .as_ref()
            .map(|c| c.channel.as_str())
            .or_else(|| conversation.session_key.split(':').next());
        channel != Some(super::runner::CHANNEL)
    }

    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: crate::config::HOST_CRON_TOOL.to_owned(),
            description: format!(
                "Scheduled jobs of this conversation. `add` runs a prompt (an agent turn) or one tool call on a schedule and posts the result here; `list`, `pause`, `resume`, `remove` manage this conversation's jobs. Schedule with `cron` (5 fields, or 6 with seconds first, e.g. `0 9 * * MON-FRI`) and an IANA `timezone`, or `every` (`1h`, `30m`), or `at` (RFC 3339, once). Runs at least {} s apart; at most {} jobs per conversation.",
                self.limits.min_interval_seconds, self.limits.max_jobs_per_conversation
            ),
            input_schema: serde_json::json!({
                "type": "object",
                "properties": {
                    "action": { "type": "string", "enum": ["add", "list", "remove", "pause", "resume"] },
                    "name": { "type": "string", "description": "Job name: letters, digits, `_`, `-`, `.`." },
                    "cron": { "type": "string" },
                    "timezone": { "type": "string", "description": "IANA zone for `cron`, e.g. Europe/Berlin." },
                    "every": { "type": "string" },
                    "at": { "type": "string" },
                    "prompt": { "type": "string", "description": "What to ask the agent at each run." },
                    "tool": { "type": "string", "description": "A tool to call at each run instead of a prompt." },
                    "arguments": { "type": "object", "description": "The tool's arguments." },
                    "notify": { "type": "string", "enum": ["always", "on_failure", "on_change"] }
                },
                "required": ["action"],
                "additionalProperties": false
            }),
        }
    }

    async fn call(
        &self,
        conversation: &Conversation,
        specialist: Option<&str>,
        arguments: &serde_json::Value,
    ) -> Result<String, String> {
        if !self.offered(conversation) {
            return Err("denied: a scheduled run cannot make or change jobs".into());
        }
        let action: Action = serde_json::from_value(arguments.clone())
            .map_err(|e| format!("invalid arguments for `cron`: {e}"))?;
        match action {
            Action::Add {
                name,
                cron,
                timezone,
                every,
                at,
                prompt,
                tool,
                arguments,
                notify,
            } => {
                let spec = JobSpec {
                    name,
                    cron,
                    timezone,
                    every,
                    at,
                    prompt,
                    specialist: None,
                    tool,
                    arguments,
                    deliver: Delivery::default(),
                    notify: notify.unwrap_or_default(),
                    ..default_spec()
                };
                self.add(conversation, specialist, spec).await
            }
            Action::List => {
                let jobs = self
                    .store
                    .list_for_conversation(&conversation.session_key)
                    .await
                    .map_err(|e| e.to_string())?;
                if jobs.is_empty() {
                    return Ok("This conversation has no scheduled jobs.".into());
                }
                let mut text = String::from(
                    "| name | when | what | next run | state |\n|---|---|---|---|---|\n",
                );
                for job in jobs {
                    text.push_str(&format!(
                        "| {} | {} | {} | {} | {} |\n",
                        job.spec.name,
                        job.spec.when(),
                        job.spec.what(),
                        job.next_slot
                            .map(super::deliver::rfc3339)
                            .unwrap_or_else(|| "-".into()),
                        if job.paused { "paused" } else { "active" }
                    ));
                }
                Ok(text)
            }
            Action::Remove { name } => {
                self.store
                    .remove(&name, Only::Conversation(&conversation.session_key))
                    .await
                    .map_err(|e| not_ours(e, &name))?;
                Ok(format!("Removed `{name}`."))
            }
            Action::Pause { name } => self.set_paused(conversation, &name, true).await,
            Action::Resume { name } => self.set_paused(conversation, &name, false).await,
        }
    }
}

impl CronTool {
    async fn set_paused(
        &self,
        conversation: &Conversation,
        name: &str,
        pause: bool,
    ) -> Result<String, String> {
        {
            let job = self
                .store
                .set_paused(
                    name,
                    pause,
                    now_ms(),
                    Only::Conversation(&conversation.session_key),
                )
                .await
                .map_err(|e| not_ours(e, name))?;
            Ok(if pause {
                format!("Paused `{name}`.")
            } else {
                format!(
                    "Resumed `{name}`; next run {}.",
                    job.next_slot
                        .map(super::deliver::rfc3339)
                        .unwrap_or_default()
                )
            })
        }
    }
}

/// A store error for a job this conversation asked about: another conversation's job is
/// "not there" for it.
fn not_ours(error: StoreError, name: &str) -> String {
    match error {
        StoreError::NoSuchJob(_) => format!("this conversation has no job named `{name}`"),
        other => other.to_string(),
    }
}

/// A job with every policy at its default (the YAML defaults).
fn default_spec() -> JobSpec {
    // Proven invariant: the minimal job below parses (its fields are all optional but the
    // name); every other field takes the same default a YAML job would.
    serde_json::from_value(serde_json::json!({ "name": "x" }))
        .expect("a job with only a name parses")
}
