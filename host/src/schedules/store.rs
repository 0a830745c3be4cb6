//! Jobs and their runs in the sessions database (SQLite by default, PostgreSQL for several
//! hosts), and the claims that make each `(job, slot)` run exactly once.
//!
//! A run row is keyed `(job, slot)`. Making a job's due slots into run rows and moving its
//! `next_slot` on happen in one transaction that only succeeds from the `next_slot` it read
//! (compare and set), so two hosts never make the same slot twice, and the primary key would
//! refuse it if they did. Starting a run is one more compare and set, `pending` to `running`
//! under this host's name with a lease. On PostgreSQL both reads take `FOR UPDATE SKIP LOCKED`
//! so hosts split the work instead of queueing on the same rows. A host renews the leases of
//! its runs while they go; a run whose lease ran out (its host stopped) is decided by the
//! job's misfire policy: taken up again, or recorded as interrupted.

use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};

use crate::agent::sessions::SessionStore;
use crate::bus::TurnScope;
use crate::config::{Concurrency, JobSpec, Misfire};

const SCHEMA: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS databot_schedules (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        origin TEXT NOT NULL,
        owner TEXT NOT NULL,
        conversation TEXT,
        context TEXT,
        paused BIGINT NOT NULL,
        next_slot BIGINT,
        last_digest TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS databot_schedules_due ON databot_schedules (next_slot)",
    "CREATE TABLE IF NOT EXISTS databot_schedule_runs (
        job TEXT NOT NULL,
        slot BIGINT NOT NULL,
        generation BIGINT NOT NULL,
        manual BIGINT NOT NULL,
        status TEXT NOT NULL,
        due_at BIGINT NOT NULL,
        attempt BIGINT NOT NULL,
        lease_until BIGINT,
        replica TEXT,
        cancel BIGINT NOT NULL,
        started_at BIGINT,
        finished_at BIGINT,
        output TEXT,
        error TEXT,
        trace_id TEXT,
        delivered TEXT,
        PRIMARY KEY (job, slot))",
    "CREATE INDEX IF NOT EXISTS databot_schedule_runs_due ON databot_schedule_runs (status, due_at)",
];

/// Which job a change may touch: any of that name, only the one of a conversation (the
/// agent's tool), or only the very one a caller looked at (its `created_at`).
#[derive(Debug, Clone, Copy)]
pub enum Only<'a> {
    Any,
    Conversation(&'a str),
    Generation(i64),
}

impl Only<'_> {
    fn admits(self, conversation: Option<&str>, created_at: i64) -> bool {
        match self {
            Self::Any => true,
            Self::Conversation(wanted) => conversation == Some(wanted),
            Self::Generation(wanted) => created_at == wanted,
        }
    }
}

/// Who made a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOrigin {
    /// `schedules.jobs` in the configuration file.
    Config,
    /// The CLI or the HTTP API.
    Operator,
    /// The agent's `cron` tool, for the conversation that asked.
    Agent,
}

impl JobOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Operator => "operator",
            Self::Agent => "agent",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "config" => Self::Config,
            "agent" => Self::Agent,
            _ => Self::Operator,
        }
    }
}

/// The conversation an agent-made job belongs to: its results go back there, its prompt
/// runs under that conversation's tool rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationContext {
    pub channel: String,
    pub chat: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    pub user: String,
    #[serde(default)]
    pub scope: TurnScope,
    /// The specialist that answered when the job was made (its tool jobs keep to its tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specialist: Option<String>,
    /// The Slack team, Discord guild or other workspace of the conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

/// A job as stored.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    pub spec: JobSpec,
    pub origin: JobOrigin,
    /// Who created it: `config`, an API key's principal, `cli`, or `channel:user`.
    pub owner: String,
    /// The session key of the conversation that asked (agent jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<ConversationContext>,
    pub paused: bool,
    /// The next slot not yet made into a run (ms); `None` when there is none left.
    pub next_slot: Option<i64>,
    #[serde(skip)]
    pub last_digest: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl JobRecord {
    /// The job as the API and the CLI show it: its definition with webhook URLs cut to their
    /// origin, and its times in RFC 3339.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.spec.name,
            "when": self.spec.when(),
            "what": self.spec.what(),
            "deliver": self.spec.deliver.describe(),
            "notify": self.spec.notify,
            "origin": self.origin,
            "owner": self.owner,
            "conversation": self.conversation,
            "paused": self.paused,
            "next_run": self.next_slot.map(super::deliver::rfc3339),
            "spec": self.spec.redacted(),
        })
    }
}

/// How a run ended (or where it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Pending,
    Running,
    /// Failed; waits for its next attempt.
    Retrying,
    Succeeded,
    Failed,
    /// Not run: the previous run was still going (`concurrency: forbid`).
    Skipped,
    /// Not run: its slot passed while no host could run it (`misfire: skip`, or beyond
    /// `catch_up`).
    Missed,
    Cancelled,
    /// Its host stopped while it ran, and the misfire policy says not to run it again.
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Missed => "missed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "retrying" => Self::Retrying,
            "succeeded" => Self::Succeeded,
            "skipped" => Self::Skipped,
            "missed" => Self::Missed,
            "cancelled" => Self::Cancelled,
            "interrupted" => Self::Interrupted,
            _ => Self::Failed,
        }
    }

    /// Will nothing more happen to this run?
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Running | Self::Retrying)
    }
}

/// One run as stored.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub job: String,
    /// The slot it ran for (ms); a manual run's is when it was triggered.
    pub slot: i64,
    pub manual: bool,
    pub status: RunStatus,
    pub due_at: i64,
    pub attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The W3C trace id of the run (and of its agent turn).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Where the result went, or why it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<String>,
}

impl RunRecord {
    /// Milliseconds from start to finish.
    pub fn duration_ms(&self) -> Option<i64> {
        Some(self.finished_at? - self.started_at?)
    }
}

/// A run this host has started.
#[derive(Debug, Clone)]
pub struct ClaimedRun {
    pub job: JobRecord,
    pub slot: i64,
    pub manual: bool,
    pub due_at: i64,
    pub attempt: u32,
    pub started_at: i64,
}

/// How a started run ended, as `finish` records it.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub status: RunStatus,
    pub output: Option<String>,
    pub error: Option<String>,
    pub trace_id: Option<String>,
    pub delivered: Option<String>,
    /// The job's new last-delivered digest (`notify: on_change`), when it changed.
    pub digest: Option<String>,
}

/// What a lease renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    Held,
    /// Someone asked to cancel this run (`concurrency: replace`, `remove`).
    CancelRequested,
    /// The run is no longer this host's (its lease ran out and another host took it up).
    Lost,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no job named `{0}`")]
    NoSuchJob(String),
    #[error("a job named `{0}` exists already")]
    Exists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the conversation has {0} scheduled jobs, the most allowed")]
    Limit(u32),
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error.into())
    }
}

pub struct ScheduleStore {
    pool: AnyPool,
    postgres: bool,
    /// This host's name in leases and history.
    replica: String,
    lease_ms: i64,
    /// Woken by every change this process makes, so its scheduler looks at once.
    changed: Arc<tokio::sync::Notify>,
}

/// A run queued by hand (`trigger`, `backfill`) for the job of that name made at `$4`: none
/// when the job is gone or was made again meanwhile.
const INSERT_MANUAL_RUN: &str = "INSERT INTO databot_schedule_runs (job, slot, generation, manual, status, due_at, attempt, cancel)
     SELECT name, $2, created_at, 1, 'pending', $3, 0, 0 FROM databot_schedules
     WHERE name = $1 AND created_at = $4
     ON CONFLICT (job, slot) DO NOTHING";

/// How long a backlog run blocked by its job's running one waits before it is looked at again.
const BACKLOG_RETRY_MS: i64 = 1000;

/// The most slots one backfill queues.
pub const MAX_BACKFILL: usize = 1000;

pub use crate::timing::now_ms;

const JOB_COLUMNS: &str = "name, spec, origin, owner, conversation, context, paused, next_slot, last_digest, created_at, updated_at";
/// `JOB_COLUMNS` of the job table aliased `s`.
const JOB_COLUMNS_OF_S: &str = "s.name, s.spec, s.origin, s.owner, s.conversation, s.context, s.paused, s.next_slot, s.last_digest, s.created_at, s.updated_at";
const RUN_COLUMNS: &str = "job, slot, manual, status, due_at, attempt, replica, started_at, finished_at, output, error, trace_id, delivered";

impl ScheduleStore {
    /// The schedule tables in `sessions`' database, created if missing.
    pub async fn open(
        sessions: &SessionStore,
        replica: String,
        lease: std::time::Duration,
    ) -> anyhow::Result<Self> {
        let pool = sessions.pool().clone();
        for statement in SCHEMA {
            sqlx::query(statement)
                .execute(&pool)
                .await
                .context("creating the schedule tables")?;
        }
        Ok(Self {
            postgres: !sessions.is_sqlite(),
            pool,
            replica,
            lease_ms: i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
            changed: Arc::default(),
        })
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    pub fn lease_ms(&self) -> i64 {
        self.lease_ms
    }

    /// Woken by this process's changes.
    pub fn changed(&self) -> Arc<tokio::sync::Notify> {
        self.changed.clone()
    }

    fn touched(&self) {
        self.changed.notify_one();
    }

    /// Add a job. Its first slot is the first after `now`; a one-off whose instant has passed
    /// is refused.
    pub async fn add(
        &self,
        spec: JobSpec,
        origin: JobOrigin,
        owner: &str,
        context: Option<ConversationContext>,
        now: i64,
    ) -> Result<JobRecord, StoreError> {
        self.add_limited(spec, origin, owner, context, now, None)
            .await
    }

    /// `add`, refused with `StoreError::Limit` when the job's conversation already has
    /// `limit` jobs; the count and the insert are one statement.
    pub async fn add_limited(
        &self,
        spec: JobSpec,
        origin: JobOrigin,
        owner: &str,
        context: Option<ConversationContext>,
        now: i64,
        limit: Option<u32>,
    ) -> Result<JobRecord, StoreError> {
        let timing = spec.validate(now).map_err(StoreError::Invalid)?;
        let next_slot = timing.next_after(now);
        if next_slot.is_none() {
            return Err(StoreError::Invalid(
                "the schedule has no time left to run (a one-off in the past?)".into(),
            ));
        }
        let conversation = context
            .as_ref()
            .map(|c| crate::bus::session_key(&c.channel, &c.chat, c.thread.as_deref()));
        let record = JobRecord {
            paused: spec.paused,
            spec,
            origin,
            owner: owner.to_owned(),
            conversation,
            context,
            next_slot,
            last_digest: None,
            created_at: now,
            updated_at: now,
        };
        if self.get(&record.spec.name).await.is_ok() {
            return Err(StoreError::Exists(record.spec.name));
        }
        let mut tx = self.pool.begin().await?;
        if self.postgres
            && limit.is_some()
            && let Some(conversation) = &record.conversation
        {
            // Hosts adding to one conversation at once take turns, so the count below holds
            // (SQLite has one writer anyway).
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(conversation)
                .execute(&mut *tx)
                .await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO databot_schedules (name, spec, origin, owner, conversation, context, paused, next_slot, last_digest, created_at, updated_at)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $9
             WHERE (SELECT COUNT(*) FROM databot_schedules WHERE conversation = $5) < $10
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&record.spec.name)
        .bind(serde_json::to_string(&record.spec).context("encoding the job")?)
        .bind(origin.as_str())
        .bind(owner)
        .bind(record.conversation.clone())
        .bind(
            record
                .context
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .context("encoding the job's conversation")?,
        )
        .bind(i64::from(record.paused))
        .bind(next_slot)
        .bind(now)
        .bind(limit.map_or(i64::MAX, i64::from))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if inserted.rows_affected() == 0 {
            return Err(match limit {
                Some(limit) if self.get(&record.spec.name).await.is_err() => {
                    StoreError::Limit(limit)
                }
                _ => StoreError::Exists(record.spec.name),
            });
        }
        self.touched();
        Ok(record)
    }

    /// Make the jobs of origin `config` match `jobs`: new ones added, changed ones updated
    /// (their next slot computed again), those no longer listed removed. An unchanged job
    /// keeps its next slot, so a restart across a due slot leaves it to the misfire policy.
    /// Returns the names of listed jobs skipped because a job of another origin has the name.
    pub async fn sync_config_jobs(
        &self,
        jobs: &[JobSpec],
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let existing = self.list().await?;
        let mut clashes = Vec::new();
        for spec in jobs {
            match existing.iter().find(|job| job.spec.name == spec.name) {
                None => match self
                    .add(spec.clone(), JobOrigin::Config, "config", None, now)
                    .await
                {
                    // Another host starting at the same time added it.
                    Ok(_) | Err(StoreError::Exists(_)) => {}
                    // A one-off whose time has passed: nothing to schedule.
                    Err(StoreError::Invalid(reason)) => {
                        tracing::warn!(job = %spec.name, "schedules.jobs: not scheduled: {reason}");
                    }
                    Err(other) => return Err(other),
                },
                Some(job) if job.origin != JobOrigin::Config => clashes.push(spec.name.clone()),
                Some(job) if job.spec == *spec => {}
                Some(job) => {
                    // Intervals keep counting from when the job was first made.
                    let timing = spec.validate(job.created_at).map_err(StoreError::Invalid)?;
                    // The file's `paused` applies when it changed there; otherwise a pause
                    // or resume from the CLI or the API stands.
                    let paused = if job.spec.paused == spec.paused {
                        job.paused
                    } else {
                        spec.paused
                    };
                    sqlx::query(
                        "UPDATE databot_schedules SET spec = $1, next_slot = $2, paused = $3, updated_at = $4
                         WHERE name = $5 AND origin = 'config' AND created_at = $6",
                    )
                    .bind(serde_json::to_string(spec).context("encoding the job")?)
                    .bind(timing.next_after(now))
                    .bind(i64::from(paused))
                    .bind(now)
                    .bind(&spec.name)
                    .bind(job.created_at)
                    .execute(&self.pool)
                    .await?;
                }
            }
        }
        for job in existing {
            if job.origin == JobOrigin::Config && !jobs.iter().any(|s| s.name == job.spec.name) {
                match self
                    .remove(&job.spec.name, Only::Generation(job.created_at))
                    .await
                {
                    // Removed meanwhile (another host starting): nothing left to do.
                    Ok(()) | Err(StoreError::NoSuchJob(_)) => {}
                    Err(other) => return Err(other),
                }
            }
        }
        self.touched();
        Ok(clashes)
    }

    pub async fn get(&self, name: &str) -> Result<JobRecord, StoreError> {
        known_name(name)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM databot_schedules WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NoSuchJob(name.to_owned()))?;
        job_from_row(&row)
    }

    /// Every job, by name.
    pub async fn list(&self) -> Result<Vec<JobRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM databot_schedules ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?;
        Ok(parsed_jobs(&rows))
    }

    /// The jobs of one conversation (session key), by name.
    pub async fn list_for_conversation(
        &self,
        conversation: &str,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM databot_schedules WHERE conversation = $1 ORDER BY name"
        )))
        .bind(conversation)
        .fetch_all(&self.pool)
        .await?;
        Ok(parsed_jobs(&rows))
    }

    /// Delete a job with its runs and its conversation (`schedule:NAME`: messages, usage,
    /// memories), in one transaction, so a job made later under the same name starts with
    /// nothing of this one's. A run in progress loses its lease and stops. `only` narrows
    /// which job may go (the one of a conversation, or the very one a caller looked at).
    pub async fn remove(&self, name: &str, only: Only<'_>) -> Result<(), StoreError> {
        known_name(name)?;
        let mut tx = self.pool.begin().await?;
        // The job row first, as `claim` locks it (then its runs): no lock order can deadlock.
        let lock = if self.postgres { " FOR UPDATE" } else { "" };
        let found = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT conversation, created_at FROM databot_schedules WHERE name = $1{lock}"
        )))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = found else {
            return Err(StoreError::NoSuchJob(name.to_owned()));
        };
        let conversation: Option<String> = row.try_get(0)?;
        let created_at: i64 = row.try_get(1)?;
        if !only.admits(conversation.as_deref(), created_at) {
            return Err(StoreError::NoSuchJob(name.to_owned()));
        }
        sqlx::query("DELETE FROM databot_schedule_runs WHERE job = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM databot_schedules WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let session = crate::bus::session_key(super::runner::CHANNEL, name, None);
        crate::agent::sessions::delete_conversation_in(&mut tx, &session)
            .await
            .context("removing the job's conversation")?;
        tx.commit().await?;
        self.touched();
        Ok(())
    }

    /// Pause or resume the job `name` (if `only` admits it). Resuming starts from the first
    /// slot after `now`: the slots that passed while paused are not made up.
    pub async fn set_paused(
        &self,
        name: &str,
        paused: bool,
        now: i64,
        only: Only<'_>,
    ) -> Result<JobRecord, StoreError> {
        let job = self.get(name).await?;
        if !only.admits(job.conversation.as_deref(), job.created_at) {
            return Err(StoreError::NoSuchJob(name.to_owned()));
        }
        // Only the row read above: a job removed and made again meanwhile is not touched.
        let updated = if paused {
            sqlx::query(
                "UPDATE databot_schedules SET paused = 1, updated_at = $1 WHERE name = $2 AND created_at = $3",
            )
            .bind(now)
            .bind(name)
            .bind(job.created_at)
            .execute(&self.pool)
            .await?
        } else {
            let next_slot = job
                .spec
                .timing(job.created_at)
                .map_err(StoreError::Invalid)?
                .next_after(now);
            sqlx::query(
                "UPDATE databot_schedules SET paused = 0, next_slot = $1, updated_at = $2 WHERE name = $3 AND created_at = $4",
            )
            .bind(next_slot)
            .bind(now)
            .bind(name)
            .bind(job.created_at)
            .execute(&self.pool)
            .await?
        };
        if updated.rows_affected() != 1 {
            return Err(StoreError::NoSuchJob(name.to_owned()));
        }
        self.touched();
        Ok(JobRecord {
            paused,
            updated_at: now,
            ..job
        })
    }

    /// Queue a run of `name` now, outside its schedule (paused jobs too). Returns its slot.
    pub async fn trigger(&self, name: &str, now: i64) -> Result<i64, StoreError> {
        let job = self.get(name).await?;
        let timing = job.spec.timing(job.created_at).ok();
        // A manual run's slot is its trigger time, moved on past any taken one and past the
        // job's own slots (which it must never take from the schedule).
        for slot in now..now + 1000 {
            if timing
                .as_ref()
                .is_some_and(|t| t.next_after(slot - 1) == Some(slot))
            {
                continue;
            }
            let inserted = sqlx::query(INSERT_MANUAL_RUN)
                .bind(name)
                .bind(slot)
                .bind(now)
                .bind(job.created_at)
                .execute(&self.pool)
                .await?;
            if inserted.rows_affected() == 1 {
                self.touched();
                return Ok(slot);
            }
            // Nothing inserted: that slot is taken, or the job is gone (or made again).
            if !self
                .get(name)
                .await
                .is_ok_and(|current| current.created_at == job.created_at)
            {
                return Err(StoreError::NoSuchJob(name.to_owned()));
            }
        }
        Err(StoreError::Invalid(format!(
            "`{name}` was triggered too often in this instant"
        )))
    }

    /// Queue a run for every slot of `name` from `from` to `to` (ms, inclusive) that has none
    /// yet, due now; slots that already have a run are left alone. Returns the slots queued
    /// and how many already had a run. At most `MAX_BACKFILL` slots.
    pub async fn backfill(
        &self,
        name: &str,
        from: i64,
        to: i64,
        now: i64,
    ) -> Result<(Vec<i64>, usize), StoreError> {
        let job = self.get(name).await?;
        let timing = job
            .spec
            .timing(job.created_at)
            .map_err(StoreError::Invalid)?;
        // Future slots are the schedule's to run, not a backfill's.
        let to = to.min(now);
        let mut slots = Vec::new();
        let mut at = timing.next_after(from - 1);
        while let Some(slot) = at.filter(|slot| *slot <= to) {
            if slots.len() == MAX_BACKFILL {
                return Err(StoreError::Invalid(format!(
                    "more than {MAX_BACKFILL} slots in that range; backfill a shorter one"
                )));
            }
            slots.push(slot);
            at = timing.next_after(slot);
        }
        let mut tx = self.pool.begin().await?;
        let mut queued = Vec::new();
        for slot in &slots {
            let inserted = sqlx::query(INSERT_MANUAL_RUN)
                .bind(name)
                .bind(slot)
                .bind(now)
                .bind(job.created_at)
                .execute(&mut *tx)
                .await?;
            if inserted.rows_affected() == 1 {
                queued.push(*slot);
            }
        }
        tx.commit().await?;
        self.touched();
        let existing = slots.len() - queued.len();
        Ok((queued, existing))
    }

    /// The latest `limit` runs of a job, newest first.
    pub async fn history(&self, name: &str, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        known_name(name)?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM databot_schedule_runs WHERE job = $1 ORDER BY slot DESC LIMIT $2"
        )))
        .bind(name)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    pub async fn run(&self, name: &str, slot: i64) -> Result<Option<RunRecord>, StoreError> {
        known_name(name)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM databot_schedule_runs WHERE job = $1 AND slot = $2"
        )))
        .bind(name)
        .bind(slot)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// The earliest instant anything is due: a job's next slot, a waiting run, or a lease
    /// that runs out. `None` when nothing is scheduled.
    pub async fn next_wake(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT
               (SELECT MIN(next_slot) FROM databot_schedules WHERE paused = 0),
               (SELECT MIN(r.due_at) FROM databot_schedule_runs r JOIN databot_schedules s ON s.name = r.job AND s.created_at = r.generation
                  WHERE r.status IN ('pending', 'retrying') AND (s.paused = 0 OR r.manual = 1)),
               (SELECT MIN(lease_until) FROM databot_schedule_runs WHERE status = 'running')",
        )
        .fetch_one(&self.pool)
        .await?;
        let mut earliest: Option<i64> = None;
        for index in 0..3 {
            if let Some(at) = row.try_get::<Option<i64>, _>(index)? {
                earliest = Some(earliest.map_or(at, |e: i64| e.min(at)));
            }
        }
        Ok(earliest)
    }

    /// Make the due slots of up to `batch` jobs into runs, by each job's misfire policy, and
    /// move their next slots past `now`. `jitter` gives a run's delay past its slot (ms) from
    /// the job's `jitter_seconds`. Returns how many runs were made.
    pub async fn materialize(
        &self,
        now: i64,
        batch: u32,
        jitter: impl Fn(&JobSpec) -> i64,
    ) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await?;
        let lock = if self.postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT name, spec, next_slot, created_at FROM databot_schedules
             WHERE paused = 0 AND next_slot IS NOT NULL AND next_slot <= $1
             ORDER BY next_slot LIMIT $2{lock}"
        )))
        .bind(now)
        .bind(i64::from(batch))
        .fetch_all(&mut *tx)
        .await?;
        let mut made = 0;
        for row in &rows {
            let name: String = row.try_get(0)?;
            let spec: JobSpec = match serde_json::from_str(&row.try_get::<String, _>(1)?) {
                Ok(spec) => spec,
                Err(error) => {
                    tracing::error!(job = %name, "a stored job does not parse, pausing it: {error}");
                    sqlx::query("UPDATE databot_schedules SET paused = 1 WHERE name = $1")
                        .bind(&name)
                        .execute(&mut *tx)
                        .await?;
                    continue;
                }
            };
            let first: i64 = row.try_get(2)?;
            let created_at: i64 = row.try_get(3)?;
            let timing = match spec.timing(created_at) {
                Ok(timing) => timing,
                Err(error) => {
                    tracing::error!(job = %name, "a stored job's schedule does not parse, pausing it: {error}");
                    sqlx::query("UPDATE databot_schedules SET paused = 1 WHERE name = $1")
                        .bind(&name)
                        .execute(&mut *tx)
                        .await?;
                    continue;
                }
            };
            let plan = plan_slots(&spec, &timing, first, now);
            let moved = sqlx::query(
                "UPDATE databot_schedules SET next_slot = $1 WHERE name = $2 AND next_slot = $3",
            )
            .bind(plan.next_slot)
            .bind(&name)
            .bind(first)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() != 1 {
                continue;
            }
            for slot in &plan.run {
                let inserted = sqlx::query(
                    "INSERT INTO databot_schedule_runs (job, slot, generation, manual, status, due_at, attempt, cancel)
                     VALUES ($1, $2, $3, 0, 'pending', $4, 0, 0) ON CONFLICT (job, slot) DO NOTHING",
                )
                .bind(&name)
                .bind(slot)
                .bind(created_at)
                .bind(slot.saturating_add(jitter(&spec).max(0)))
                .execute(&mut *tx)
                .await?;
                made += inserted.rows_affected() as usize;
            }
            if let Some(Missed {
                newest: slot,
                count,
                at_least,
            }) = plan.missed
            {
                sqlx::query(
                    "INSERT INTO databot_schedule_runs (job, slot, generation, manual, status, due_at, attempt, cancel, finished_at, error)
                     VALUES ($1, $2, $3, 0, 'missed', $2, 0, 0, $4, $5) ON CONFLICT (job, slot) DO NOTHING",
                )
                .bind(&name)
                .bind(slot)
                .bind(created_at)
                .bind(now)
                .bind(format!(
                    "{}{count} slot(s) up to this one passed while no host could run them; not run (misfire: {})",
                    if at_least { "at least " } else { "" },
                    misfire_name(spec.misfire)
                ))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(made)
    }

    /// Start up to `batch` runs due by `now` (skipping runs of paused jobs unless triggered by
    /// hand), under each job's concurrency policy; take up runs whose host stopped.
    pub async fn claim(&self, now: i64, batch: u32) -> Result<Vec<ClaimedRun>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (lock, lock_runs) = if self.postgres {
            // The job rows with their runs, at once and skipping locked ones: a host never
            // waits holding one lock for another (no deadlock with another host or `remove`).
            (" FOR UPDATE SKIP LOCKED", " FOR UPDATE OF r, s SKIP LOCKED")
        } else {
            ("", "")
        };
        // Runs whose host stopped: their job's misfire policy decides.
        let stranded = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT job, slot, attempt FROM databot_schedule_runs
             WHERE status = 'running' AND lease_until < $1 LIMIT $2{lock}"
        )))
        .bind(now)
        .bind(i64::from(batch))
        .fetch_all(&mut *tx)
        .await?;
        for row in &stranded {
            let (job, slot, attempt): (String, i64, i64) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            let spec = job_spec(&mut tx, &job).await?;
            let again = spec.as_ref().is_some_and(|spec| {
                spec.misfire != Misfire::Skip && attempt <= i64::from(spec.retries) + 1
            });
            let (status, error) = if again {
                (
                    "pending",
                    "its host stopped while it ran (lease expired); running it again",
                )
            } else {
                (
                    "interrupted",
                    "its host stopped while it ran (lease expired); not run again",
                )
            };
            let finished = (!again).then_some(now);
            sqlx::query(
                "UPDATE databot_schedule_runs SET status = $1, error = $2, due_at = $3, lease_until = NULL,
                   finished_at = $4
                 WHERE job = $5 AND slot = $6 AND status = 'running'",
            )
            .bind(status)
            .bind(error)
            .bind(now)
            .bind(finished)
            .bind(&job)
            .bind(slot)
            .execute(&mut *tx)
            .await?;
        }
        let due = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT r.job, r.slot, r.manual, r.due_at, r.attempt, {JOB_COLUMNS_OF_S} FROM databot_schedule_runs r
             JOIN databot_schedules s ON s.name = r.job AND s.created_at = r.generation
             WHERE r.status IN ('pending', 'retrying') AND r.due_at <= $1 AND (s.paused = 0 OR r.manual = 1)
             ORDER BY r.due_at LIMIT $2{lock_runs}"
        )))
        .bind(now)
        .bind(i64::from(batch))
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(due.len());
        for row in &due {
            let job_name: String = row.try_get(0)?;
            let slot: i64 = row.try_get(1)?;
            let manual = row.try_get::<i64, _>(2)? != 0;
            let due_at: i64 = row.try_get(3)?;
            let attempt = u32::try_from(row.try_get::<i64, _>(4)?).unwrap_or(u32::MAX);
            // The job's columns came with its run (one round trip less per run).
            let job = match job_from_row_at(row, 5) {
                Ok(job) => job,
                // A definition this host cannot read (a newer host's format): that run fails,
                // the others go on.
                Err(error) => {
                    sqlx::query(
                        "UPDATE databot_schedule_runs SET status = 'failed', finished_at = $1, error = $2
                         WHERE job = $3 AND slot = $4 AND status IN ('pending', 'retrying')",
                    )
                    .bind(now)
                    .bind(format!("the job's definition could not be read: {error}"))
                    .bind(&job_name)
                    .bind(slot)
                    .execute(&mut *tx)
                    .await?;
                    continue;
                }
            };
            if job.spec.concurrency != Concurrency::Allow {
                let running = sqlx::query(
                    "SELECT started_at FROM databot_schedule_runs WHERE job = $1 AND status = 'running' AND slot <> $2",
                )
                .bind(&job_name)
                .bind(slot)
                .fetch_all(&mut *tx)
                .await?;
                if !running.is_empty() {
                    // Under `forbid`, a slot that came due while the job was already running
                    // is skipped; backlog (a catch-up of missed slots, a backfill, a run by
                    // hand, or one started in this same look) waits for its turn.
                    let mut overlapped = false;
                    for row in &running {
                        let started: Option<i64> = row.try_get(0)?;
                        overlapped |= started.is_some_and(|started| started < due_at);
                    }
                    if job.spec.concurrency == Concurrency::Forbid && (manual || !overlapped) {
                        sqlx::query(
                            "UPDATE databot_schedule_runs SET due_at = $1
                             WHERE job = $2 AND slot = $3 AND status IN ('pending', 'retrying')",
                        )
                        .bind(now + BACKLOG_RETRY_MS)
                        .bind(&job_name)
                        .bind(slot)
                        .execute(&mut *tx)
                        .await?;
                        continue;
                    }
                    if job.spec.concurrency == Concurrency::Forbid {
                        sqlx::query(
                            "UPDATE databot_schedule_runs SET status = 'skipped', finished_at = $1,
                               error = 'the previous run was still going (concurrency: forbid)'
                             WHERE job = $2 AND slot = $3 AND status IN ('pending', 'retrying')",
                        )
                        .bind(now)
                        .bind(&job_name)
                        .bind(slot)
                        .execute(&mut *tx)
                        .await?;
                        continue;
                    }
                    sqlx::query(
                        "UPDATE databot_schedule_runs SET cancel = 1 WHERE job = $1 AND status = 'running' AND slot <> $2",
                    )
                    .bind(&job_name)
                    .bind(slot)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            // The start is when this claim happens, not when the look at the database began.
            let started_at = now_ms().max(now);
            let started = sqlx::query(
                "UPDATE databot_schedule_runs SET status = 'running', attempt = attempt + 1, replica = $1,
                   lease_until = $2, started_at = $3, finished_at = NULL, cancel = 0
                 WHERE job = $4 AND slot = $5 AND status IN ('pending', 'retrying')",
            )
            .bind(&self.replica)
            .bind(started_at + self.lease_ms)
            .bind(started_at)
            .bind(&job_name)
            .bind(slot)
            .execute(&mut *tx)
            .await?;
            if started.rows_affected() == 1 {
                claimed.push(ClaimedRun {
                    job,
                    slot,
                    manual,
                    due_at,
                    attempt: attempt.saturating_add(1),
                    started_at,
                });
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Keep this host's run going for another lease; says whether it should stop. Every
    /// statement on a started run names its attempt too: a run this host took up again after
    /// its own lease ran out is not the old attempt's any more.
    pub async fn renew(&self, run: &ClaimedRun, now: i64) -> Result<Lease, StoreError> {
        let row = sqlx::query(
            "UPDATE databot_schedule_runs SET lease_until = $1
             WHERE job = $2 AND slot = $3 AND attempt = $4 AND replica = $5 AND status = 'running'
             RETURNING cancel",
        )
        .bind(now + self.lease_ms)
        .bind(&run.job.spec.name)
        .bind(run.slot)
        .bind(i64::from(run.attempt))
        .bind(&self.replica)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => Lease::Lost,
            Some(row) if row.try_get::<i64, _>(0)? != 0 => Lease::CancelRequested,
            Some(_) => Lease::Held,
        })
    }

    /// Record how this host's run ended; `false` when it was no longer this host's. One row
    /// per statement (the run, then the job's digest), so it never holds one lock while
    /// waiting for another.
    pub async fn finish(
        &self,
        run: &ClaimedRun,
        end: &RunEnd,
        now: i64,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE databot_schedule_runs SET status = $1, output = $2, error = $3, trace_id = $4,
               delivered = $5, finished_at = $6, lease_until = NULL
             WHERE job = $7 AND slot = $8 AND attempt = $9 AND replica = $10 AND status = 'running'",
        )
        .bind(end.status.as_str())
        .bind(end.output.clone())
        .bind(end.error.clone())
        .bind(end.trace_id.clone())
        .bind(end.delivered.clone())
        .bind(now)
        .bind(&run.job.spec.name)
        .bind(run.slot)
        .bind(i64::from(run.attempt))
        .bind(&self.replica)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 1
            && let Some(digest) = &end.digest
        {
            sqlx::query(
                "UPDATE databot_schedules SET last_digest = $1 WHERE name = $2 AND created_at = $3",
            )
            .bind(digest)
            .bind(&run.job.spec.name)
            .bind(run.job.created_at)
            .execute(&self.pool)
            .await?;
        }
        Ok(updated.rows_affected() == 1)
    }

    /// Put this host's failed run back to wait for its next attempt at `due_at`.
    pub async fn retry_later(
        &self,
        run: &ClaimedRun,
        error: &str,
        trace_id: Option<&str>,
        due_at: i64,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE databot_schedule_runs SET status = 'retrying', error = $1, trace_id = $2, due_at = $3, lease_until = NULL
             WHERE job = $4 AND slot = $5 AND attempt = $6 AND replica = $7 AND status = 'running'",
        )
        .bind(error)
        .bind(trace_id)
        .bind(due_at)
        .bind(&run.job.spec.name)
        .bind(run.slot)
        .bind(i64::from(run.attempt))
        .bind(&self.replica)
        .execute(&self.pool)
        .await?;
        self.touched();
        Ok(updated.rows_affected() == 1)
    }

    /// Hand this host's run back on shutdown: taken up again (or recorded as interrupted) by
    /// its misfire policy, at once instead of after its lease.
    pub async fn release(&self, run: &ClaimedRun, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE databot_schedule_runs SET lease_until = $1
             WHERE job = $2 AND slot = $3 AND attempt = $4 AND replica = $5 AND status = 'running'",
        )
        .bind(now - 1)
        .bind(&run.job.spec.name)
        .bind(run.slot)
        .bind(i64::from(run.attempt))
        .bind(&self.replica)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Delete finished runs of `job` beyond the newest `keep`.
    pub async fn trim_history(&self, job: &str, keep: u32) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM databot_schedule_runs WHERE job = $1
               AND status NOT IN ('pending', 'running', 'retrying')
               AND slot < (SELECT MIN(slot) FROM (SELECT slot FROM databot_schedule_runs WHERE job = $1 ORDER BY slot DESC LIMIT $2) AS newest)",
        )
        .bind(job)
        .bind(i64::from(keep))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Runs of a job that are not finished (waiting, running or retrying).
    pub async fn open_runs(&self, job: &str) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM databot_schedule_runs
             WHERE job = $1 AND status IN ('pending', 'running', 'retrying') ORDER BY slot"
        )))
        .bind(job)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }
}

/// A name that cannot be a job's is no job's (checked before it reaches the database).
fn known_name(name: &str) -> Result<(), StoreError> {
    crate::config::check_job_name(name).map_err(|_| StoreError::NoSuchJob(name.to_owned()))
}

/// The rows that parse; one that does not (a newer host's format) is left out and logged.
fn parsed_jobs(rows: &[sqlx::any::AnyRow]) -> Vec<JobRecord> {
    rows.iter()
        .filter_map(|row| match job_from_row(row) {
            Ok(job) => Some(job),
            Err(error) => {
                tracing::warn!("a stored job does not parse, left out: {error}");
                None
            }
        })
        .collect()
}

async fn job_spec(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    name: &str,
) -> Result<Option<JobSpec>, StoreError> {
    let row = sqlx::query("SELECT spec FROM databot_schedules WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(match row {
        Some(row) => serde_json::from_str(&row.try_get::<String, _>(0)?).ok(),
        None => None,
    })
}

fn misfire_name(misfire: Misfire) -> String {
    match misfire {
        Misfire::Skip => "skip".into(),
        Misfire::RunOnce => "run_once".into(),
        Misfire::CatchUp(n) => format!("catch_up {n}"),
    }
}

/// What to make of a job's slots from `first` (its stored next slot) up to `now`.
#[derive(Debug, PartialEq)]
struct SlotPlan {
    /// Slots to run, oldest first.
    run: Vec<i64>,
    /// Slots not run: the newest, how many, and whether that count is only a lower bound.
    missed: Option<Missed>,
    /// The job's next slot after `now`.
    next_slot: Option<i64>,
}

#[derive(Debug, PartialEq)]
struct Missed {
    newest: i64,
    count: usize,
    at_least: bool,
}

/// The most runs one look makes of a job's slots (the newest are kept).
const MAX_RUNS_PER_LOOK: usize = 1000;

/// The most late slots counted one by one; past it the count is a lower bound.
const MAX_SLOTS_COUNTED: usize = 10_000;

/// Slots from `first` to `now`: those within the job's misfire grace (at most
/// `MAX_RUNS_PER_LOOK`, the newest) run; older ones are misfires, of which the policy runs
/// the newest it keeps, found walking back from the grace boundary, so a long outage costs
/// the kept slots and a bounded count, never a walk over every slot missed.
fn plan_slots(spec: &JobSpec, timing: &crate::timing::Timing, first: i64, now: i64) -> SlotPlan {
    let grace = i64::try_from(spec.misfire_grace_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    let boundary = now.saturating_sub(grace);
    let next_slot = timing.next_after(now);
    // On time: from the grace boundary (or `first`) to `now`, the newest first.
    let on_time_from = first.max(boundary);
    let (on_time, newest_dropped) = newest_slots(timing, on_time_from, now, MAX_RUNS_PER_LOOK);
    let (dropped, dropped_at_least) = match newest_dropped {
        Some(newest) => timing.count_between(on_time_from, newest + 1, MAX_SLOTS_COUNTED),
        None => (0, false),
    };
    // Late: from `first` to before the boundary. The policy's newest ones run.
    let keep = match spec.misfire {
        Misfire::Skip => 0,
        Misfire::RunOnce => 1,
        Misfire::CatchUp(n) => n as usize,
    }
    .min(MAX_RUNS_PER_LOOK);
    let (late, newest_late_not_run) = if first < boundary {
        newest_slots(timing, first, boundary - 1, keep)
    } else {
        (Vec::new(), None)
    };
    let (late_count, late_at_least) = timing.count_between(first, boundary, MAX_SLOTS_COUNTED);
    let not_run = late_count.saturating_sub(late.len()) + dropped;
    let newest = newest_dropped.max(newest_late_not_run);
    let missed = newest.filter(|_| not_run > 0).map(|newest| Missed {
        newest,
        count: not_run,
        at_least: late_at_least || dropped_at_least,
    });
    let mut run = late;
    run.extend(on_time);
    SlotPlan {
        run,
        missed,
        next_slot,
    }
}

/// The newest `keep` slots in `from..=until`, oldest first, walking back from `until`; and
/// the newest slot left out, if one is.
fn newest_slots(
    timing: &crate::timing::Timing,
    from: i64,
    until: i64,
    keep: usize,
) -> (Vec<i64>, Option<i64>) {
    let mut kept = Vec::new();
    let mut at = timing.last_at_or_before(until);
    while let Some(slot) = at.filter(|slot| *slot >= from) {
        if kept.len() == keep {
            kept.reverse();
            return (kept, Some(slot));
        }
        kept.push(slot);
        at = timing.last_at_or_before(slot - 1);
    }
    kept.reverse();
    (kept, None)
}

fn job_from_row(row: &sqlx::any::AnyRow) -> Result<JobRecord, StoreError> {
    job_from_row_at(row, 0)
}

/// A job from `JOB_COLUMNS` starting at column `at` of `row`.
fn job_from_row_at(row: &sqlx::any::AnyRow, at: usize) -> Result<JobRecord, StoreError> {
    let spec: String = row.try_get(at + 1)?;
    let context: Option<String> = row.try_get(at + 5)?;
    Ok(JobRecord {
        spec: serde_json::from_str(&spec).context("a stored job does not parse")?,
        origin: JobOrigin::parse(&row.try_get::<String, _>(at + 2)?),
        owner: row.try_get(at + 3)?,
        conversation: row.try_get(at + 4)?,
        context: context.and_then(|text| serde_json::from_str(&text).ok()),
        paused: row.try_get::<i64, _>(at + 6)? != 0,
        next_slot: row.try_get(at + 7)?,
        last_digest: row.try_get(at + 8)?,
        created_at: row.try_get(at + 9)?,
        updated_at: row.try_get(at + 10)?,
    })
}

fn run_from_row(row: &sqlx::any::AnyRow) -> Result<RunRecord, StoreError> {
    Ok(RunRecord {
        job: row.try_get(0)?,
        slot: row.try_get(1)?,
        manual: row.try_get::<i64, _>(2)? != 0,
        status: RunStatus::parse(&row.try_get::<String, _>(3)?),
        due_at: row.try_get(4)?,
        attempt: u32::try_from(row.try_get::<i64, _>(5)?).unwrap_or(u32::MAX),
        replica: row.try_get(6)?,
        started_at: row.try_get(7)?,
        finished_at: row.try_get(8)?,
        output: row.try_get(9)?,
        error: row.try_get(10)?,
        trace_id: row.try_get(11)?,
        delivered: row.try_get(12)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> JobSpec {
        serde_yaml::from_str(yaml).expect("a job")
    }

    #[test]
    fn on_time_slots_run_and_misfires_follow_the_policy() {
        // Every 10 s from 0; the host looks at 100 s with a 15 s grace: slots 90 and 100 are
        // on time, 0..=80 (9 slots) are late.
        let timing = crate::timing::Timing::every("10s", 0).expect("valid");
        let base = "{name: a, every: 10s, prompt: x, misfire_grace_seconds: 15";
        let skip = plan_slots(
            &spec(&format!("{base}, misfire: skip}}")),
            &timing,
            0,
            100_000,
        );
        assert_eq!(skip.run, vec![90_000, 100_000]);
        assert_eq!(
            skip.missed,
            Some(Missed {
                newest: 80_000,
                count: 9,
                at_least: false
            })
        );
        assert_eq!(skip.next_slot, Some(110_000));
        let once = plan_slots(
            &spec(&format!("{base}, misfire: run_once}}")),
            &timing,
            0,
            100_000,
        );
        assert_eq!(once.run, vec![80_000, 90_000, 100_000]);
        assert_eq!(
            once.missed,
            Some(Missed {
                newest: 70_000,
                count: 8,
                at_least: false
            })
        );
        let three = plan_slots(
            &spec(&format!("{base}, misfire: {{catch_up: 3}}}}")),
            &timing,
            0,
            100_000,
        );
        assert_eq!(three.run, vec![60_000, 70_000, 80_000, 90_000, 100_000]);
        assert_eq!(three.missed.map(|m| m.count), Some(6));
        let all = plan_slots(
            &spec(&format!("{base}, misfire: {{catch_up: 50}}}}")),
            &timing,
            0,
            100_000,
        );
        assert_eq!(all.run.len(), 11);
        assert_eq!(all.missed, None);
    }

    #[test]
    fn a_long_outage_is_walked_in_bounded_steps() {
        let timing = crate::timing::Timing::every("1s", 0).expect("valid");
        let plan = plan_slots(
            &spec("{name: a, every: 1s, prompt: x, misfire: run_once, misfire_grace_seconds: 2}"),
            &timing,
            0,
            // A month of one-second slots.
            30 * 86_400_000,
        );
        assert_eq!(plan.next_slot, Some(30 * 86_400_000 + 1000));
        assert_eq!(plan.run.len(), 4, "{:?}", plan.run);
        let missed = plan.missed.expect("missed slots");
        assert!(
            missed.at_least && missed.count >= MAX_SLOTS_COUNTED - 1,
            "{missed:?}"
        );
    }

    #[test]
    fn the_newest_late_slot_is_found_even_far_past_the_first() {
        // Every second from 09:00 to 09:59 UTC; down for ten days; looked at at 15:00.
        let timing = crate::timing::Timing::cron("* * 9 * * *", None).expect("valid");
        let day = 86_400_000;
        let first = 9 * 3_600_000;
        let now = 10 * day + 15 * 3_600_000;
        let plan = plan_slots(
            &spec("{name: a, cron: '* * 9 * * *', prompt: x, misfire: run_once}"),
            &timing,
            first,
            now,
        );
        let latest = 10 * day + 9 * 3_600_000 + 3_599_000;
        assert_eq!(plan.run, vec![latest], "the newest missed slot runs once");
        assert_eq!(plan.missed.expect("missed").newest, latest - 1000);
    }

    #[test]
    fn on_time_runs_are_bounded_per_look() {
        let timing = crate::timing::Timing::every("1s", 0).expect("valid");
        let plan = plan_slots(
            &spec("{name: a, every: 1s, prompt: x, misfire: skip, misfire_grace_seconds: 86400}"),
            &timing,
            0,
            86_400_000,
        );
        assert_eq!(plan.run.len(), MAX_RUNS_PER_LOOK);
        assert_eq!(plan.run.last(), Some(&86_400_000));
        let missed = plan.missed.expect("missed");
        assert!(
            missed.at_least && missed.count >= MAX_SLOTS_COUNTED,
            "{missed:?}"
        );
    }
}
