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
use crate::bus::TurnScope;
use crate::config::Config;
use crate::runtime::Runtime;

/// What the interfaces share: the store and the metrics of this host's scheduler.
#[derive(Clone)]
pub struct Schedules {
    pub store: Arc<ScheduleStore>,
    pub metrics: Arc<ScheduleMetrics>,
}

impl Schedules {
    /// Open the schedule tables beside `sessions` and bring `schedules.jobs` in step.
    pub async fn open(
        config: &Config,
        sessions: &crate::agent::sessions::SessionStore,
    ) -> anyhow::Result<Self> {
        let settings = &config.schedules;
        let replica = settings.replica.clone().unwrap_or_else(default_replica);
        let store = Arc::new(
            ScheduleStore::open(
                sessions,
                replica,
                std::time::Duration::from_secs(settings.lease_seconds),
            )
            .await?,
        );
        let clashes = store
            .sync_config_jobs(&settings.jobs, store::now_ms())
            .await
            .map_err(|e| anyhow::anyhow!("bringing schedules.jobs into the store: {e}"))?;
        for name in clashes {
            tracing::warn!(
                job = %name,
                "schedules.jobs: a job of this name was made from the CLI, the API or the agent; the file's job is not applied (rename one of them)"
            );
        }
        Ok(Self {
            store,
            metrics: Arc::default(),
        })
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

/// May a turn of `scope` use `tool` (its channel's tool list, if it has one)?
fn tool_in_scope(runtime: &Runtime, scope: &TurnScope, tool: &str) -> bool {
    let Some(list) = &scope.tools else {
        return true;
    };
    runtime.resolve_tool(tool).is_some_and(|resolved| {
        names_tool(
            list,
            tool,
            ToolOwner::Plugin {
                name: resolved.plugin(),
                configured: resolved.configured,
            },
        )
    })
}
