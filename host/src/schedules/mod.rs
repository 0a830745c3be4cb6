//! Scheduled jobs: agent prompts and tool calls on cron patterns, intervals or one-off
//! instants, run exactly once per slot across restarts and hosts, delivered to a channel's
//! chat, a webhook or the history.
//!
//! Submodules: `store` (jobs, runs and the claims, in the sessions database), `runner` (the
//! loop that claims and runs, retries, delivers), `deliver` (notify rules, message and
//! webhook shapes), `cron_tool` (the agent's tool, under the operator's limits), `metrics`.
//! Timing (cron in IANA zones, daylight-saving rules) is the `timing` leaf.

pub mod cron_tool;
pub mod deliver;
pub mod metrics;
pub mod runner;
pub mod store;

use std::sync::Arc;

pub use self::metrics::ScheduleMetrics;
pub use self::runner::Scheduler;
pub use self::store::{JobOrigin, JobRecord, RunRecord, RunStatus, ScheduleStore, StoreError};
use crate::agent::router::{ToolOwner, names_tool};
use crate::config::Config;
use crate::runtime::Runtime;

/// What the interfaces share: the store and the metrics of this host's scheduler.
#[derive(Clone)]
pub struct Schedules {
    pub store: Arc<ScheduleStore>,
    pub metrics: Arc<ScheduleMetrics>,
}

impl Schedules {
    /// Open the schedule tables beside `sessions` (creating them if missing). Reads and
    /// changes jobs; the file's `schedules.jobs` are applied only by `sync_config`.
    pub async fn open(
        config: &Config,
        sessions: Arc<crate::agent::sessions::SessionStore>,
    ) -> anyhow::Result<Self> {
        let settings = &config.schedules;
        let replica = settings.replica.clone().unwrap_or_else(default_replica);
        let store = Arc::new(
            ScheduleStore::open(
                &sessions,
                replica,
                std::time::Duration::from_secs(settings.lease_seconds),
            )
            .await?,
        );
        Ok(Self {
            store,
            metrics: Arc::default(),
        })
    }

    /// Bring the jobs of `schedules.jobs` in step with the file (what `databot serve` does
    /// at start; other commands leave the store's config jobs as the serving host made them).
    pub async fn sync_config(&self, config: &Config) -> anyhow::Result<()> {
        let clashes = self
            .store
            .sync_config_jobs(&config.schedules.jobs, store::now_ms())
            .await
            .map_err(|e| anyhow::anyhow!("bringing schedules.jobs into the store: {e}"))?;
        for name in clashes {
            tracing::warn!(
                job = %name,
                "schedules.jobs: a job of this name was made from the CLI, the API or the agent; the file's job is not applied (rename one of them)"
            );
        }
        Ok(())
    }
}

/// `hostname-pid`: this process among the hosts sharing a database.
fn default_replica() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!("{host}-{}", std::process::id())
}

/// May a job made in the conversation `context` call `tool`: is it in that channel's tool
/// list (if it has one), and among the tools of the specialist that answered (a channel's
/// pinned one included)? Checked when the job is made and at every run.
fn tool_allowed(
    runtime: &Runtime,
    context: &store::ConversationContext,
    tool: &str,
) -> Result<(), String> {
    let Some(resolved) = runtime.resolve_tool(tool) else {
        return Err(runtime.unavailable_tool(tool).to_string());
    };
    let owner = ToolOwner::Plugin {
        name: resolved.plugin(),
        configured: resolved.configured,
    };
    if let Some(list) = &context.scope.tools
        && !names_tool(list, tool, owner)
    {
        return Err(format!(
            "denied: tool `{tool}` is not among the tools of the channel this job was made in"
        ));
    }
    for name in context
        .specialist
        .iter()
        .chain(context.scope.specialist.iter())
    {
        let specialists =
            crate::agent::router::specialists(&runtime.config().agent.router.specialists);
        match specialists.iter().find(|s| &s.name == name) {
            Some(specialist) if specialist.allows(tool, owner) => {}
            Some(_) => {
                return Err(format!(
                    "denied: tool `{tool}` is not among the `{name}` specialist's tools"
                ));
            }
            None => return Err(format!("denied: there is no specialist `{name}` any more")),
        }
    }
    Ok(())
}
