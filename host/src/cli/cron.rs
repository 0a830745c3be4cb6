//! `databot cron`: scheduled jobs from the command line, on the same database the serving
//! host uses (the host picks changes up within `schedules.poll_interval_ms`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::config::{Concurrency, Config, Delivery, JobSpec, Misfire, Notify};
use crate::schedules::deliver::rfc3339;
use crate::schedules::store::{Only, now_ms};
use crate::schedules::{JobOrigin, RunRecord, Schedules};

#[derive(Subcommand)]
pub enum CronCommand {
    /// Add a job (from flags, or a YAML/JSON file with the `schedules.jobs` fields).
    Add(Box<AddArgs>),
    /// Every job with its schedule, next run and state.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One job: its definition and latest runs.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop making runs of a job (a run in progress finishes).
    Pause { name: String },
    /// Make runs again, from the next slot on (slots missed while paused are not made up).
    Resume { name: String },
    /// Delete a job; a run in progress is cancelled.
    Remove { name: String },
    /// Run a job now, outside its schedule, and wait for the outcome.
    Run {
        name: String,
        /// Seconds to wait for a serving host to run it (0: queue and return).
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
    /// Run a job for every slot in a time range that has no run yet (at most 1,000 slots),
    /// and follow them to the end.
    Backfill {
        name: String,
        /// First instant, RFC 3339 (`2026-11-01T00:00:00Z`).
        #[arg(long)]
        from: String,
        /// Last instant, RFC 3339.
        #[arg(long)]
        to: String,
        /// Seconds to follow the runs (0: queue and return).
        #[arg(long, default_value_t = 600)]
        wait: u64,
    },
    /// The latest runs of a job.
    History {
        name: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct AddArgs {
    /// Job name (letters, digits, `_`, `-`, `.`).
    name: Option<String>,
    /// Read the job from this YAML or JSON file instead of flags.
    #[arg(long, conflicts_with_all = ["cron", "every", "at", "prompt", "tool"])]
    file: Option<PathBuf>,
    /// Cron pattern: 5 fields, or 6 with seconds first (`0 9 * * MON-FRI`).
    #[arg(long)]
    cron: Option<String>,
    /// IANA time zone of `--cron` (`Europe/Berlin`).
    #[arg(long)]
    timezone: Option<String>,
    /// Fixed interval (`30s`, `15m`, `1h`).
    #[arg(long)]
    every: Option<String>,
    /// Once, at an RFC 3339 instant.
    #[arg(long)]
    at: Option<String>,
    /// Run this message as an agent turn.
    #[arg(long)]
    prompt: Option<String>,
    /// Answer the prompt with this specialist.
    #[arg(long)]
    specialist: Option<String>,
    /// Call this tool.
    #[arg(long)]
    tool: Option<String>,
    /// The tool's arguments as a JSON object.
    #[arg(long)]
    args: Option<String>,
    /// Deliver to this channel plugin's chat (with `--chat`).
    #[arg(long, requires = "chat")]
    channel: Option<String>,
    #[arg(long, requires = "channel")]
    chat: Option<String>,
    #[arg(long, requires = "chat")]
    thread: Option<String>,
    /// POST the result to this URL.
    #[arg(long, conflicts_with = "channel")]
    webhook: Option<String>,
    /// always, on_failure or on_change.
    #[arg(long, value_parser = parse_notify)]
    notify: Option<Notify>,
    /// skip, run_once or catch_up:N.
    #[arg(long, value_parser = parse_misfire)]
    misfire: Option<Misfire>,
    /// forbid, allow or replace.
    #[arg(long, value_parser = parse_concurrency)]
    concurrency: Option<Concurrency>,
    /// Seconds one attempt may take.
    #[arg(long)]
    timeout: Option<u64>,
    /// Attempts after a failed one.
    #[arg(long)]
    retries: Option<u32>,
    /// Seconds before the first retry (doubled for each further one).
    #[arg(long)]
    backoff: Option<u64>,
    /// Start each run up to this many seconds late, at random.
    #[arg(long)]
    jitter: Option<u64>,
    /// Create it paused.
    #[arg(long)]
    paused: bool,
}

fn parse_notify(text: &str) -> Result<Notify, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| "use always, on_failure or on_change".to_owned())
}

fn parse_concurrency(text: &str) -> Result<Concurrency, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| "use forbid, allow or replace".to_owned())
}

fn parse_misfire(text: &str) -> Result<Misfire, String> {
    if let Some(count) = text.strip_prefix("catch_up:") {
        return count
            .parse()
            .map(Misfire::CatchUp)
            .map_err(|_| "catch_up:N takes a number".to_owned());
    }
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|e| e.to_string())
}

impl AddArgs {
    fn into_spec(self) -> anyhow::Result<JobSpec> {
        if let Some(file) = &self.file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let mut spec: JobSpec = serde_yaml::from_str(&text)
                .with_context(|| format!("{} is not a job definition", file.display()))?;
            if let Some(name) = self.name {
                spec.name = name;
            }
            return Ok(spec);
        }
        let Some(name) = self.name else {
            bail!("give the job a name: `databot cron add NAME …`");
        };
        let arguments = self
            .args
            .as_deref()
            .map(serde_json::from_str::<serde_json::Value>)
            .transpose()
            .context("--args is not JSON")?;
        // Start from the defaults a YAML job gets, then apply the flags.
        let mut spec: JobSpec = serde_json::from_value(serde_json::json!({ "name": name }))
            .context("a job with only a name")?;
        spec.cron = self.cron;
        spec.timezone = self.timezone;
        spec.every = self.every;
        spec.at = self.at;
        spec.prompt = self.prompt;
        spec.specialist = self.specialist;
        spec.tool = self.tool;
        spec.arguments = arguments;
        spec.deliver = Delivery {
            channel: self.channel,
            chat: self.chat,
            thread: self.thread,
            webhook: self.webhook,
        };
        if let Some(notify) = self.notify {
            spec.notify = notify;
        }
        if let Some(misfire) = self.misfire {
            spec.misfire = misfire;
        }
        if let Some(concurrency) = self.concurrency {
            spec.concurrency = concurrency;
        }
        if let Some(timeout) = self.timeout {
            spec.timeout_seconds = timeout;
        }
        if let Some(retries) = self.retries {
            spec.retries = retries;
        }
        if let Some(backoff) = self.backoff {
            spec.retry_backoff_seconds = backoff;
        }
        if let Some(jitter) = self.jitter {
            spec.jitter_seconds = jitter;
        }
        spec.paused = self.paused;
        Ok(spec)
    }
}

pub async fn run(command: CronCommand, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let sessions = crate::agent::sessions::SessionStore::connect(&config.sessions_url())
        .await
        .context("opening the session store")?;
    let schedules = Schedules::open(&config, std::sync::Arc::new(sessions)).await?;
    let store = &schedules.store;
    match command {
        CronCommand::Add(args) => {
            let spec = args.into_spec()?;
            let owner = format!("cli:{}", local_user());
            let job = store
                .add(spec, JobOrigin::Operator, &owner, None, now_ms())
                .await?;
            println!(
                "added `{}`: {}, {}; first run {}",
                job.spec.name,
                job.spec.when(),
                job.spec.what(),
                job.next_slot.map(rfc3339).unwrap_or_default()
            );
        }
        CronCommand::List { json } => {
            let jobs = store.list().await?;
            if json {
                let views: Vec<_> = jobs.iter().map(|j| j.view()).collect();
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else if jobs.is_empty() {
                println!("no scheduled jobs");
            } else {
                println!(
                    "{:<24} {:<34} {:<26} {:<8} WHAT",
                    "NAME", "WHEN", "NEXT RUN", "STATE"
                );
                for job in jobs {
                    println!(
                        "{:<24} {:<34} {:<26} {:<8} {}",
                        job.spec.name,
                        job.spec.when(),
                        job.next_slot.map(rfc3339).unwrap_or_else(|| "-".into()),
                        if job.paused { "paused" } else { "active" },
                        job.spec.what()
                    );
                }
            }
        }
        CronCommand::Show { name, json } => {
            let job = store.get(&name).await?;
            let runs = store.history(&name, 10).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "job": job.view(), "runs": runs })
                    )?
                );
            } else {
                println!(
                    "{}",
                    serde_yaml::to_string(&job.spec.redacted())?.trim_end()
                );
                println!("origin: {} (owner {})", job.origin.as_str(), job.owner);
                println!("state: {}", if job.paused { "paused" } else { "active" });
                println!(
                    "next run: {}",
                    job.next_slot.map(rfc3339).unwrap_or_else(|| "-".into())
                );
                print_runs(&runs);
            }
        }
        CronCommand::Pause { name } => {
            store.set_paused(&name, true, now_ms(), Only::Any).await?;
            println!("paused `{name}`");
        }
        CronCommand::Resume { name } => {
            let job = store.set_paused(&name, false, now_ms(), Only::Any).await?;
            println!(
                "resumed `{name}`; next run {}",
                job.next_slot.map(rfc3339).unwrap_or_else(|| "-".into())
            );
        }
        CronCommand::Remove { name } => {
            store.remove(&name, Only::Any).await?;
            println!("removed `{name}`");
        }
        CronCommand::Run { name, wait } => {
            let slot = store.trigger(&name, now_ms()).await?;
            if wait == 0 {
                println!("queued a run of `{name}` ({})", rfc3339(slot));
                return Ok(ExitCode::SUCCESS);
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
            loop {
                if let Some(run) = store.run(&name, slot).await?
                    && run.status.is_final()
                {
                    print_runs(std::slice::from_ref(&run));
                    return Ok(if run.status == crate::schedules::RunStatus::Succeeded {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    });
                }
                if tokio::time::Instant::now() >= deadline {
                    eprintln!(
                        "queued a run of `{name}`, but no host finished it within {wait} s; is `databot serve` running with schedules.enabled? (`databot cron history {name}` shows it later)"
                    );
                    return Ok(ExitCode::from(3));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        CronCommand::Backfill {
            name,
            from,
            to,
            wait,
        } => {
            let instant = |text: &str| {
                chrono::DateTime::parse_from_rfc3339(text)
                    .map(|t| t.timestamp_millis())
                    .with_context(|| format!("`{text}` is not an RFC 3339 instant"))
            };
            let (from, to) = (instant(&from)?, instant(&to)?);
            if from > to {
                bail!("--from is after --to");
            }
            let (queued, existing) = store.backfill(&name, from, to, now_ms()).await?;
            println!(
                "queued {} run(s) of `{name}`; {existing} slot(s) in the range already had one",
                queued.len()
            );
            if wait == 0 || queued.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            return follow_backfill(store, &name, &queued, Duration::from_secs(wait)).await;
        }
        CronCommand::History { name, limit, json } => {
            store.get(&name).await?;
            let runs = store.history(&name, limit.clamp(1, 1000)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                print_runs(&runs);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Follow backfilled runs to their end with a progress bar; exit 1 if any failed, 3 if some
/// were not finished in time.
async fn follow_backfill(
    store: &crate::schedules::ScheduleStore,
    name: &str,
    slots: &[i64],
    wait: Duration,
) -> anyhow::Result<ExitCode> {
    use crate::progress::Progress as _;
    let progress = super::progress::TerminalProgress::new("backfill", slots.len() as u64);
    let deadline = tokio::time::Instant::now() + wait;
    let mut finished = std::collections::BTreeMap::new();
    while finished.len() < slots.len() && tokio::time::Instant::now() < deadline {
        for slot in slots {
            if finished.contains_key(slot) {
                continue;
            }
            if let Some(run) = store.run(name, *slot).await?
                && run.status.is_final()
            {
                progress.next(&rfc3339(*slot));
                finished.insert(*slot, run.status);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    progress.finish();
    let failed = finished
        .values()
        .filter(|s| **s != crate::schedules::RunStatus::Succeeded)
        .count();
    println!(
        "{} of {} finished, {failed} not succeeded (`databot cron history {name}`)",
        finished.len(),
        slots.len()
    );
    Ok(if finished.len() < slots.len() {
        ExitCode::from(3)
    } else if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn local_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "local".to_owned())
}

fn print_runs(runs: &[RunRecord]) {
    if runs.is_empty() {
        println!("no runs yet");
        return;
    }
    println!(
        "{:<26} {:<12} {:>7} {:>9} {:<32} DETAIL",
        "SLOT", "STATUS", "ATTEMPT", "DURATION", "TRACE"
    );
    for run in runs {
        let duration = run
            .duration_ms()
            .map(|ms| format!("{ms} ms"))
            .unwrap_or_else(|| "-".into());
        let detail = run
            .error
            .as_deref()
            .or(run.output.as_deref())
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(80)
            .collect::<String>();
        println!(
            "{:<26} {:<12} {:>7} {:>9} {:<32} {}{}",
            format!("{}{}", rfc3339(run.slot), if run.manual { "*" } else { "" }),
            run.status.as_str(),
            run.attempt,
            duration,
            run.trace_id.as_deref().unwrap_or("-"),
            detail,
            run.delivered
                .as_deref()
                .map(|d| format!(" [{d}]"))
                .unwrap_or_default()
        );
    }
}
