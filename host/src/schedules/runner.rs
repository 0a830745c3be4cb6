//! The scheduler of one host: wakes when something is due (or another host may have added
//! work), makes due slots into runs and starts them through the store's claims, runs each
//! (an agent turn through the bus, or one tool call) under its timeout with its lease
//! renewed, retries with backoff, delivers the result, and records it in the history with a
//! span and metrics.
//!
//! Shutdown stops claiming, cancels the runs in progress and hands them back at once, so
//! another host (or the next start) applies their misfire policy without waiting for the lease.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::deliver::{self, Finished};
use super::metrics::ScheduleMetrics;
use super::store::{
    ClaimedRun, ConversationContext, JobOrigin, Lease, RunEnd, RunStatus, ScheduleStore, now_ms,
};
use crate::bus::{Bus, InboundMessage, TurnScope};
use crate::channels::Channels;
use crate::config::SchedulesConfig;
use crate::runtime::Runtime;

/// The channel name of scheduled turns: a job's prompt runs in the conversation
/// `schedule:JOB`, so each job keeps its own history.
pub const CHANNEL: &str = "schedule";

/// Runs started per look at the database.
const CLAIM_BATCH: u32 = 256;

/// The wait before looking again when something due could not be taken.
const IDLE_RETRY: Duration = Duration::from_millis(50);

/// How long shutdown waits for cancelled runs to hand themselves back.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why a run stopped before it ended on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// `concurrency: replace` or the job was removed.
    Cancelled,
    /// Another host has it now.
    LeaseLost,
    /// This host is shutting down.
    Shutdown,
}

/// How to stop a run in progress, and why it was stopped.
type RunControl = (CancellationToken, Arc<Mutex<Option<Stop>>>);

/// What performing a run gave.
struct Performed {
    output: String,
    /// The error, when the run failed (the turn or tool errored, the check did not pass).
    error: Option<String>,
}

pub struct Scheduler {
    store: Arc<ScheduleStore>,
    bus: Arc<dyn Bus>,
    runtime: Runtime,
    channels: Option<Arc<Channels>>,
    settings: SchedulesConfig,
    metrics: Arc<ScheduleMetrics>,
    /// Runs in progress on this host, with the way to stop each.
    running: Mutex<HashMap<(String, i64), RunControl>>,
    /// Runs in progress on this host (the shutdown waits for them to hand themselves back).
    active: Arc<tokio::sync::watch::Sender<usize>>,
}

impl Scheduler {
    pub fn new(
        store: Arc<ScheduleStore>,
        bus: Arc<dyn Bus>,
        runtime: Runtime,
        channels: Option<Arc<Channels>>,
        settings: SchedulesConfig,
        metrics: Arc<ScheduleMetrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            bus,
            runtime,
            channels,
            settings,
            metrics,
            running: Mutex::default(),
            active: Arc::new(tokio::sync::watch::Sender::new(0)),
        })
    }

    /// Run until `shutdown`, then cancel and hand back the runs in progress.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let changed = self.store.changed();
        let poll = Duration::from_millis(self.settings.poll_interval_ms.max(1));
        let mut failures = 0u32;
        loop {
            let now = now_ms();
            let wait = match self.tick(now).await {
                Ok(progress) => {
                    failures = 0;
                    match self.store.next_wake().await {
                        // Something is due that this look could not take (another host holds
                        // it): wait a little rather than spin.
                        Ok(Some(at)) if at <= now_ms() && progress == 0 => IDLE_RETRY.min(poll),
                        Ok(Some(at)) => {
                            Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0))
                                .min(poll)
                        }
                        Ok(None) => poll,
                        Err(error) => {
                            tracing::warn!("scheduler: reading the next due time failed: {error}");
                            poll
                        }
                    }
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!("scheduler: claiming due runs failed: {error:#}");
                    // Back off while the database is unwell, up to 30 polls.
                    poll.saturating_mul(failures.min(30))
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = changed.notified() => {}
                () = shutdown.cancelled() => break,
            }
        }
        for (cancel, reason) in self.running.lock().values() {
            reason.lock().get_or_insert(Stop::Shutdown);
            cancel.cancel();
        }
        let mut active = self.active.subscribe();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, active.wait_for(|n| *n == 0)).await;
    }

    /// Make due slots into runs and start the due runs; how many runs were made or started.
    async fn tick(self: &Arc<Self>, now: i64) -> anyhow::Result<usize> {
        let made = self
            .store
            .materialize(now, CLAIM_BATCH, |spec| jitter_ms(spec.jitter_seconds))
            .await?;
        let claimed = self.store.claim(now, CLAIM_BATCH).await?;
        let progress = made + claimed.len();
        for run in claimed {
            let cancel = CancellationToken::new();
            let reason = Arc::new(Mutex::new(None));
            self.running.lock().insert(
                (run.job.spec.name.clone(), run.slot),
                (cancel.clone(), reason.clone()),
            );
            let scheduler = self.clone();
            self.active.send_modify(|n| *n += 1);
            tokio::spawn(async move {
                let key = (run.job.spec.name.clone(), run.slot);
                scheduler.clone().execute(run, cancel, reason).await;
                scheduler.running.lock().remove(&key);
                scheduler.active.send_modify(|n| *n -= 1);
            });
        }
        Ok(progress)
    }

    async fn execute(
        self: Arc<Self>,
        run: ClaimedRun,
        cancel: CancellationToken,
        reason: Arc<Mutex<Option<Stop>>>,
    ) {
        use tracing::Instrument;
        use tracing::field::Empty;
        let name = run.job.spec.name.clone();
        let span = tracing::info_span!(
            "schedule.run",
            databot.job = %name,
            databot.slot = %deliver::rfc3339(run.slot),
            databot.attempt = run.attempt,
            databot.manual = run.manual,
            databot.outcome = Empty,
            otel.status_code = Empty,
            error.type = Empty,
        );
        // The run's trace: the span joins it when export is on, and the turn below joins the
        // span; the history keeps its id either way.
        let traceparent = new_traceparent();
        let trace_id = traceparent[3..35].to_owned();
        crate::telemetry::propagation::set_remote_parent(&span, |key| {
            (key == "traceparent").then(|| traceparent.clone())
        });
        let mut trace_context = crate::telemetry::propagation::current_context(&span);
        if trace_context.is_empty() {
            trace_context = vec![("traceparent".to_owned(), traceparent)];
        }
        self.metrics.lag(Duration::from_millis(
            u64::try_from(run.started_at - run.due_at).unwrap_or(0),
        ));
        let renewer = self.renew_lease(&run, cancel.clone(), reason.clone());
        let timeout = Duration::from_secs(run.job.spec.timeout_seconds.max(1));
        let performed = tokio::select! {
            result = tokio::time::timeout(timeout, self.perform(&run, trace_context)).instrument(span.clone()) => Some(match result {
                Ok(performed) => performed,
                Err(_) => Performed {
                    output: String::new(),
                    error: Some(format!("timed out after {} s (timeout_seconds)", timeout.as_secs())),
                },
            }),
            () = cancel.cancelled() => None,
        };
        let stop = *reason.lock();
        let result = match (performed, stop) {
            (_, Some(Stop::LeaseLost)) => {
                renewer.abort();
                tracing::warn!(job = %name, slot = run.slot, "the run's lease was lost; another host owns it now");
                span.record("databot.outcome", "lease_lost");
                return;
            }
            (_, Some(Stop::Shutdown)) | (None, None) => {
                renewer.abort();
                span.record("databot.outcome", "handed_back");
                if let Err(error) = self.store.release(&run, now_ms()).await {
                    tracing::warn!(job = %name, "handing the run back failed: {error}");
                }
                return;
            }
            (_, Some(Stop::Cancelled)) => Performed {
                output: String::new(),
                error: Some("cancelled (a newer run replaced it, or the job was removed)".into()),
            },
            (Some(performed), None) => performed,
        };
        // The lease is renewed until the outcome is recorded: a slow delivery must not let
        // the run look abandoned and be taken up again.
        self.conclude(&run, result, stop, &trace_id, &span).await;
        renewer.abort();
    }

    /// Record, retry or deliver a run that ended.
    async fn conclude(
        &self,
        run: &ClaimedRun,
        performed: Performed,
        stop: Option<Stop>,
        trace_id: &str,
        span: &tracing::Span,
    ) {
        let name = &run.job.spec.name;
        let output = excerpt(&performed.output, self.settings.output_chars);
        let status = match (&performed.error, stop) {
            (_, Some(Stop::Cancelled)) => RunStatus::Cancelled,
            (None, _) => RunStatus::Succeeded,
            (Some(_), _) => RunStatus::Failed,
        };
        if status == RunStatus::Failed && run.attempt <= run.job.spec.retries {
            let backoff = retry_backoff(run.job.spec.retry_backoff_seconds, run.attempt);
            let error = performed.error.as_deref().unwrap_or_default();
            self.metrics.run(name, run.job.origin, "retrying");
            span.record("databot.outcome", "retrying");
            crate::telemetry::spans::record_error(span, "failed");
            let due = now_ms() + i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX / 2);
            let recorded =
                with_retries(|| self.store.retry_later(run, error, Some(trace_id), due)).await;
            if let Err(error) = recorded {
                tracing::warn!(job = %name, "recording the retry failed: {error}");
            }
            return;
        }
        let finished = Finished {
            run,
            status,
            output: &output,
            error: performed.error.as_deref(),
            trace_id,
        };
        let (delivered, digest) = if status == RunStatus::Cancelled {
            (Some("not sent (cancelled)".to_owned()), None)
        } else if finished.wanted() {
            let digest = finished.digest();
            match deliver::deliver(
                &finished,
                &run.job.spec.deliver,
                self.channels.as_deref(),
                &self.settings.webhooks,
            )
            .await
            {
                Ok(where_to) => (Some(where_to), Some(digest)),
                Err((kind, error)) => {
                    tracing::warn!(job = %name, "delivering the result failed: {error}");
                    self.metrics.delivery_failed(kind);
                    (Some(format!("not delivered: {error}")), None)
                }
            }
        } else {
            (
                Some(format!("not sent (notify: {})", notify_name(run))),
                None,
            )
        };
        self.metrics.run(name, run.job.origin, status.as_str());
        span.record("databot.outcome", status.as_str());
        if status != RunStatus::Succeeded {
            crate::telemetry::spans::record_error(span, status.as_str());
        }
        let end = RunEnd {
            status,
            output: (!output.is_empty()).then_some(output.clone()),
            error: performed.error.clone(),
            trace_id: Some(trace_id.to_owned()),
            delivered,
            digest,
        };
        // Recorded while the lease is still renewed, with a few tries: a run left `running`
        // would be taken up again when its lease ran out, and delivered twice.
        match with_retries(|| self.store.finish(run, &end, now_ms())).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job = %name, slot = run.slot, "the run was no longer this host's when it ended; its result is not recorded");
            }
            Err(error) => tracing::warn!(job = %name, "recording the run failed: {error}"),
        }
        if let Err(error) = self
            .store
            .trim_history(name, self.settings.history_per_job)
            .await
        {
            tracing::debug!(job = %name, "trimming the history failed: {error}");
        }
    }

    /// Run the job's prompt or tool once.
    async fn perform(&self, run: &ClaimedRun, trace_context: Vec<(String, String)>) -> Performed {
        let spec = &run.job.spec;
        let context = match self.current_context(run) {
            Ok(context) => context,
            Err(denied) => return failed(denied),
        };
        if let Some(prompt) = &spec.prompt {
            let scope = context
                .as_ref()
                .map(|c| c.scope.clone())
                .unwrap_or_default();
            let scope = TurnScope {
                specialist: spec.specialist.clone().or(scope.specialist),
                tools: scope.tools,
            };
            let message = InboundMessage {
                channel: CHANNEL.to_owned(),
                chat_id: spec.name.clone(),
                sender_id: run.job.owner.clone(),
                content: prompt.clone(),
                trace_context,
                scope,
                // A run that stops waiting (timeout, cancelled, lease lost, shutdown) stops
                // its turn too: it must not go on beside a retry or another host's run.
                cancel_when_abandoned: true,
                ..InboundMessage::default()
            };
            let delivery = match self.bus.submit(message).await {
                Ok(delivery) => delivery,
                Err(error) => {
                    return failed(format!("the agent could not take the prompt: {error}"));
                }
            };
            return match delivery.reply.await {
                Ok(reply) if reply.failed => Performed {
                    error: Some("the agent's turn failed".into()),
                    output: reply.content,
                },
                Ok(reply) => Performed {
                    output: reply.content,
                    error: None,
                },
                Err(_) => failed("the agent's turn ended without a reply".into()),
            };
        }
        let Some(tool) = &spec.tool else {
            return failed("the job has neither a prompt nor a tool".into());
        };
        if let Some(context) = &context
            && let Err(denied) = super::tool_allowed(&self.runtime, context, tool)
        {
            return failed(denied);
        }
        let Some(resolved) = self.runtime.resolve_tool(tool) else {
            return failed(format!(
                "the tool failed: {}",
                self.runtime.unavailable_tool(tool)
            ));
        };
        let arguments = spec
            .arguments
            .clone()
            .unwrap_or_else(|| serde_json::json!({}));
        // A job the agent made acts for the user who made it, as their own turn's calls do.
        let caller = context.map(|c| {
            Arc::new(crate::capabilities::Caller {
                channel: c.channel,
                user: c.user,
                display_name: None,
                chat: c.chat,
                thread: c.thread,
                workspace: c.workspace,
            })
        });
        match self
            .runtime
            .call_resolved_as(&resolved, tool, &arguments, caller)
            .await
        {
            Ok(output) => {
                let error = check_failed(&output).then(|| "the check did not pass".to_owned());
                Performed { output, error }
            }
            Err(error) => failed(format!("the tool failed: {error}")),
        }
    }

    /// The conversation an agent-made job acts for, under its channel's rules as they are
    /// now (allowlists, pinned specialist, tool list); `None` for an operator's job. A job
    /// whose maker may no longer schedule, or may no longer use the channel, does not run.
    fn current_context(&self, run: &ClaimedRun) -> Result<Option<ConversationContext>, String> {
        let Some(mut context) = run.job.context.clone() else {
            if run.job.origin == JobOrigin::Agent {
                return Err(
                    "the job's conversation could not be read; remove the job and make it again"
                        .into(),
                );
            }
            return Ok(None);
        };
        if !self.settings.agent.allows(&context.channel, &context.user) {
            return Err(format!(
                "denied: `{}:{}` may no longer schedule jobs (schedules.agent.allow)",
                context.channel, context.user
            ));
        }
        let settings = self
            .runtime
            .config()
            .plugins
            .get(&context.channel)
            .and_then(|plugin| plugin.channel.as_ref());
        if let Some(settings) = settings {
            crate::channels::policy::admits(
                settings,
                &context.user,
                &context.chat,
                context.workspace.as_deref(),
            )
            .map_err(|why| {
                format!("denied: the channel no longer admits the job's maker ({why})")
            })?;
            context.scope = TurnScope {
                specialist: settings.specialist.clone(),
                tools: settings.tools.clone(),
            };
        }
        Ok(Some(context))
    }

    /// Renew the run's lease every third of it; stop the run when it is lost or cancelled,
    /// or before it would run out unrenewed.
    fn renew_lease(
        &self,
        run: &ClaimedRun,
        cancel: CancellationToken,
        reason: Arc<Mutex<Option<Stop>>>,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let run = run.clone();
        let every_ms = (store.lease_ms() / 3).max(100);
        let every = Duration::from_millis(u64::try_from(every_ms).unwrap_or(1000));
        tokio::spawn(async move {
            // The lease was last extended no later than this.
            let mut renewed = run.started_at;
            loop {
                tokio::time::sleep(every).await;
                let asked = now_ms();
                let answer = tokio::time::timeout(every, store.renew(&run, asked)).await;
                let stop = match answer {
                    Ok(Ok(Lease::Held)) => {
                        renewed = asked;
                        continue;
                    }
                    Ok(Ok(Lease::CancelRequested)) => Stop::Cancelled,
                    Ok(Ok(Lease::Lost)) => Stop::LeaseLost,
                    // Stop before the lease runs out unrenewed: past it, the run may be another
                    // host's (or this host's again), and two must never go at once.
                    _ if now_ms() - renewed >= store.lease_ms() - 2 * every_ms => {
                        tracing::warn!(job = %run.job.spec.name, "the run's lease could not be renewed in time; stopping it");
                        Stop::LeaseLost
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(job = %run.job.spec.name, "renewing the run's lease failed: {error}");
                        continue;
                    }
                    Err(_) => {
                        tracing::warn!(job = %run.job.spec.name, "renewing the run's lease took too long");
                        continue;
                    }
                };
                reason.lock().get_or_insert(stop);
                cancel.cancel();
                return;
            }
        })
    }
}

/// `attempt` with a few tries, a second apart: a database blip must not leave a run's outcome
/// unrecorded.
async fn with_retries<T, F, Fut>(mut attempt: F) -> Result<T, super::StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, super::StoreError>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(error) if tries < 3 => {
                tries += 1;
                tracing::debug!("retrying a schedule store write: {error}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

fn failed(error: String) -> Performed {
    Performed {
        output: String::new(),
        error: Some(error),
    }
}

fn notify_name(run: &ClaimedRun) -> &'static str {
    match run.job.spec.notify {
        crate::config::Notify::Always => "always",
        crate::config::Notify::OnFailure => "on_failure",
        crate::config::Notify::OnChange => "on_change",
    }
}

/// Does a tool's JSON result say it failed (`"passed": false` or `"ok": false` at its top
/// level, the convention of check tools such as `data_quality`)?
pub fn check_failed(output: &str) -> bool {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(output)
    else {
        return false;
    };
    ["passed", "ok"]
        .iter()
        .any(|key| fields.get(*key) == Some(&serde_json::Value::Bool(false)))
}

/// The wait before attempt `attempt + 1`: the backoff doubled per failed attempt, at most a day.
fn retry_backoff(base_seconds: u64, attempt: u32) -> Duration {
    let factor = 1u64 << attempt.saturating_sub(1).min(20);
    Duration::from_secs(base_seconds.saturating_mul(factor).min(86_400))
}

/// A random delay of up to `seconds` (ms).
fn jitter_ms(seconds: u64) -> i64 {
    if seconds == 0 {
        return 0;
    }
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0;
    }
    let span = seconds.saturating_mul(1000).saturating_add(1);
    i64::try_from(u64::from_le_bytes(bytes) % span).unwrap_or(0)
}

/// A fresh W3C `traceparent` (random trace and span ids, sampled).
fn new_traceparent() -> String {
    let mut bytes = [0u8; 24];
    if getrandom::fill(&mut bytes).is_err() || bytes[..16].iter().all(|b| *b == 0) {
        // Ids must not be all zero; the clock stands in for a failed random source.
        bytes[..16].copy_from_slice(&now_ms().to_le_bytes().repeat(2));
        bytes[16..].copy_from_slice(&now_ms().to_be_bytes());
    }
    format!(
        "00-{}-{}-01",
        hex::encode(&bytes[..16]),
        hex::encode(&bytes[16..])
    )
}

/// At most `max_chars` characters of `text`, with a note when cut.
fn excerpt(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}… [{} more bytes]", &text[..cut], text.len() - cut),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_tools_fail_by_their_passed_or_ok_field() {
        assert!(check_failed(r#"{"passed": false, "summary": "stale"}"#));
        assert!(check_failed(r#"{"ok": false}"#));
        assert!(!check_failed(r#"{"passed": true}"#));
        assert!(!check_failed(r#"[{"passed": false}]"#));
        assert!(!check_failed("plain text"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(retry_backoff(30, 1), Duration::from_secs(30));
        assert_eq!(retry_backoff(30, 2), Duration::from_secs(60));
        assert_eq!(retry_backoff(30, 3), Duration::from_secs(120));
        assert_eq!(retry_backoff(30, 40), Duration::from_secs(86_400));
    }

    #[test]
    fn traceparents_are_well_formed_and_jitter_stays_in_range() {
        let parent = new_traceparent();
        assert_eq!(parent.len(), 55);
        assert!(parent.starts_with("00-") && parent.ends_with("-01"));
        for _ in 0..100 {
            assert!((0..=2000).contains(&jitter_ms(2)));
        }
        assert_eq!(jitter_ms(0), 0);
        assert_eq!(excerpt("héllo", 2), "hé… [3 more bytes]");
    }
}
