//! The `schedules` section: the scheduler's settings, the jobs the operator declares in the
//! file, the limits on jobs the agent creates with its `cron` tool, and the job definition
//! (`JobSpec`) every interface shares (file, CLI, HTTP, the tool).

use serde::{Deserialize, Serialize};

use crate::timing::Timing;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulesConfig {
    /// Run due jobs in `databot serve` (off: jobs are kept and listed, another host runs them).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Longest wait between two looks at the database for work another host or process added
    /// (this host's own changes wake it at once).
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How long a claimed run stays this host's without a renewal; a run whose host stopped
    /// is taken up again (per its misfire policy) after this.
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u64,
    /// Finished runs kept per job (older ones are deleted).
    #[serde(default = "default_history_per_job")]
    pub history_per_job: u32,
    /// Characters of a run's output kept in its history and sent in notifications.
    #[serde(default = "default_output_chars")]
    pub output_chars: usize,
    /// This host's name in run history and leases (default: host name and process id).
    #[serde(default)]
    pub replica: Option<String>,
    /// Jobs declared here, kept in step with the file at every start: added, updated by name,
    /// removed when they leave the file. Jobs created from the CLI, the API or the agent are
    /// never touched by this list.
    #[serde(default)]
    pub jobs: Vec<JobSpec>,
    /// What the agent's `cron` tool may do.
    #[serde(default)]
    pub agent: AgentSchedulingConfig,
    /// Delivery to webhook URLs.
    #[serde(default)]
    pub webhooks: WebhookDeliveryConfig,
}

impl Default for SchedulesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            poll_interval_ms: default_poll_interval_ms(),
            lease_seconds: default_lease_seconds(),
            history_per_job: default_history_per_job(),
            output_chars: default_output_chars(),
            replica: None,
            jobs: Vec::new(),
            agent: AgentSchedulingConfig::default(),
            webhooks: WebhookDeliveryConfig::default(),
        }
    }
}

impl SchedulesConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.poll_interval_ms == 0 || self.poll_interval_ms > 60_000 {
            return Err("schedules.poll_interval_ms must be between 1 and 60000".into());
        }
        if self.lease_seconds < 3 {
            return Err("schedules.lease_seconds must be at least 3".into());
        }
        if self.history_per_job == 0 {
            return Err("schedules.history_per_job must be at least 1".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for (index, job) in self.jobs.iter().enumerate() {
            job.validate(0)
                .map_err(|e| format!("schedules.jobs[{index}] ({}): {e}", job.name))?;
            if !names.insert(job.name.as_str()) {
                return Err(format!(
                    "schedules.jobs[{index}]: the name `{}` is used twice",
                    job.name
                ));
            }
        }
        if self.agent.min_interval_seconds == 0 {
            return Err("schedules.agent.min_interval_seconds must be at least 1".into());
        }
        Ok(())
    }
}

/// `schedules.agent`: the operator's limits on the agent's `cron` tool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSchedulingConfig {
    /// Offer the `cron` tool to the agent.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Who may create jobs: `channel:user` ids (`slack:U024BE7LH`), `channel:*` for every user
    /// of a channel, or `*` for anyone the channel lets talk to the agent. Everyone may list
    /// and remove the jobs of their own conversation.
    #[serde(default = "everyone")]
    pub allow: Vec<String>,
    /// The shortest gap between two runs of a job the agent creates.
    #[serde(default = "default_agent_min_interval")]
    pub min_interval_seconds: u64,
    /// Jobs one conversation may have at a time.
    #[serde(default = "default_jobs_per_conversation")]
    pub max_jobs_per_conversation: u32,
}

impl Default for AgentSchedulingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allow: everyone(),
            min_interval_seconds: default_agent_min_interval(),
            max_jobs_per_conversation: default_jobs_per_conversation(),
        }
    }
}

impl AgentSchedulingConfig {
    /// May `user` of `channel` create jobs?
    pub fn allows(&self, channel: &str, user: &str) -> bool {
        self.allow.iter().any(|entry| {
            entry == "*"
                || entry
                    .split_once(':')
                    .is_some_and(|(c, u)| c == channel && (u == "*" || u == user))
        })
    }
}

/// `schedules.webhooks`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookDeliveryConfig {
    /// Let webhook URLs reach loopback and private networks (off: public addresses only,
    /// checked after DNS resolution).
    #[serde(default)]
    pub allow_private: bool,
    /// Deadline of one delivery.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_seconds: u64,
}

impl Default for WebhookDeliveryConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            timeout_seconds: default_webhook_timeout(),
        }
    }
}

/// One scheduled job: when (exactly one of `cron`, `every`, `at`), what (exactly one of
/// `prompt`, `tool`), where the result goes, and the policies of its runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Letters, digits, `_`, `-` and `.`; at most 64.
    pub name: String,
    /// A cron pattern: 5 fields, or 6 with seconds first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// IANA zone of `cron` (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// A fixed interval: `30s`, `15m`, `1h`, `1d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Once, at an RFC 3339 instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Run this message as an agent turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Answer the prompt with this specialist, without routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specialist: Option<String>,
    /// Call this tool once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The tool's arguments (a JSON object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<serde_json::Value>,
    /// Where the result goes (default: kept in the run history only).
    #[serde(default, skip_serializing_if = "Delivery::is_stored")]
    pub deliver: Delivery,
    #[serde(default)]
    pub notify: Notify,
    #[serde(default)]
    pub misfire: Misfire,
    /// A slot whose run could not start within this long is a misfire.
    #[serde(default = "default_misfire_grace")]
    pub misfire_grace_seconds: u64,
    #[serde(default)]
    pub concurrency: Concurrency,
    /// A run (one attempt) that takes longer fails with a timeout.
    #[serde(default = "default_job_timeout")]
    pub timeout_seconds: u64,
    /// Attempts after a failed one.
    #[serde(default)]
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    #[serde(default = "default_retry_backoff")]
    pub retry_backoff_seconds: u64,
    /// Start each run up to this much later than its slot, at random (spreads load).
    #[serde(default)]
    pub jitter_seconds: u64,
    /// Create the job paused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// A day, the bound of a job's jitter, misfire grace and retry backoff.
const MAX_DAY_SECONDS: u64 = 86_400;

/// The longest prompt a job may carry.
pub const MAX_PROMPT_BYTES: usize = 16 * 1024;
/// The largest tool arguments a job may carry (JSON).
pub const MAX_ARGUMENTS_BYTES: usize = 64 * 1024;

impl JobSpec {
    /// Check the definition; `anchor` (ms) is where an interval counts from.
    pub fn validate(&self, anchor: i64) -> Result<Timing, String> {
        check_job_name(&self.name)?;
        let timing = self.timing(anchor)?;
        match (&self.prompt, &self.tool) {
            (Some(prompt), None) => {
                if prompt.trim().is_empty() {
                    return Err("`prompt` is empty".into());
                }
                if prompt.len() > MAX_PROMPT_BYTES {
                    return Err(format!("`prompt` is longer than {MAX_PROMPT_BYTES} bytes"));
                }
                if self.arguments.is_some() {
                    return Err("`arguments` go with `tool`, not `prompt`".into());
                }
            }
            (None, Some(tool)) => {
                if tool.trim().is_empty() {
                    return Err("`tool` is empty".into());
                }
                if self.specialist.is_some() {
                    return Err("`specialist` goes with `prompt`, not `tool`".into());
                }
                if let Some(arguments) = &self.arguments {
                    if !arguments.is_object() {
                        return Err("`arguments` must be a JSON object".into());
                    }
                    if arguments.to_string().len() > MAX_ARGUMENTS_BYTES {
                        return Err(format!(
                            "`arguments` are larger than {MAX_ARGUMENTS_BYTES} bytes"
                        ));
                    }
                }
            }
            (Some(_), Some(_)) => return Err("give `prompt` or `tool`, not both".into()),
            (None, None) => {
                return Err(
                    "say what to run: `prompt` (an agent turn) or `tool` (one tool call)".into(),
                );
            }
        }
        self.deliver.validate()?;
        if self.timeout_seconds == 0 {
            return Err("`timeout_seconds` must be at least 1".into());
        }
        if self.retries > 20 {
            return Err("`retries` is at most 20".into());
        }
        if self.jitter_seconds > MAX_DAY_SECONDS || self.misfire_grace_seconds > MAX_DAY_SECONDS {
            return Err(
                "`jitter_seconds` and `misfire_grace_seconds` are at most 86400 (a day)".into(),
            );
        }
        if self.timeout_seconds > 7 * MAX_DAY_SECONDS
            || self.retry_backoff_seconds > MAX_DAY_SECONDS
        {
            return Err(
                "`timeout_seconds` is at most a week and `retry_backoff_seconds` a day".into(),
            );
        }
        if let Misfire::CatchUp(n) = self.misfire
            && !(1..=1000).contains(&n)
        {
            return Err("`misfire: {catch_up: N}` takes N from 1 to 1000".into());
        }
        Ok(timing)
    }

    /// When the job is due, from `cron`/`timezone`, `every` or `at`.
    pub fn timing(&self, anchor: i64) -> Result<Timing, String> {
        let timing = match (&self.cron, &self.every, &self.at) {
            (Some(pattern), None, None) => Timing::cron(pattern, self.timezone.as_deref()),
            (None, Some(interval), None) => Timing::every(interval, anchor),
            (None, None, Some(at)) => Timing::once(at),
            (None, None, None) => {
                return Err("say when: `cron`, `every` or `at`".into());
            }
            _ => return Err("give one of `cron`, `every` and `at`".into()),
        }
        .map_err(|e| e.to_string())?;
        if self.timezone.is_some() && self.cron.is_none() {
            return Err("`timezone` goes with `cron`".into());
        }
        Ok(timing)
    }

    /// The definition fit to show: a webhook URL cut to its origin (its path may hold a token).
    pub fn redacted(&self) -> Self {
        let mut shown = self.clone();
        if let Some(url) = &mut shown.deliver.webhook
            && let Ok(parsed) = url::Url::parse(url)
        {
            *url = format!("{}/…", parsed.origin().ascii_serialization());
        }
        shown
    }

    /// The schedule in words for lists: `cron 0 9 * * * (Europe/Berlin)`, `every 1h`, `at …`.
    pub fn when(&self) -> String {
        match (&self.cron, &self.every, &self.at) {
            (Some(pattern), _, _) => match &self.timezone {
                Some(zone) => format!("cron {pattern} ({zone})"),
                None => format!("cron {pattern}"),
            },
            (_, Some(interval), _) => format!("every {interval}"),
            (_, _, Some(at)) => format!("at {at}"),
            _ => String::new(),
        }
    }

    /// What the job runs, in words for lists.
    pub fn what(&self) -> String {
        match (&self.prompt, &self.tool) {
            (Some(prompt), _) => format!("prompt: {}", first_line(prompt, 60)),
            (_, Some(tool)) => format!("tool: {tool}"),
            _ => String::new(),
        }
    }
}

fn first_line(text: &str, max_chars: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// A job name: 1–64 of `A-Z a-z 0-9 _ - .`, not starting with `.` or `-`.
pub fn check_job_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.starts_with(['.', '-']);
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a job name: use 1 to 64 letters, digits, `_`, `-` or `.`"
        ))
    }
}

/// Where a run's result goes: a channel's chat (and thread), a webhook URL, or nowhere but
/// the run history (all fields unset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// A channel plugin (`slack`, `telegram`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The platform's chat id (a Slack channel id, a Telegram chat id, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<String>,
    /// A thread in that chat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// POST the result as JSON to this `https://` (or `http://`) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

impl Delivery {
    pub fn is_stored(&self) -> bool {
        self == &Self::default()
    }

    pub fn validate(&self) -> Result<(), String> {
        match (&self.channel, &self.chat, &self.webhook) {
            (None, None, None) if self.thread.is_none() => Ok(()),
            (Some(channel), Some(chat), None) => {
                if channel.is_empty() || chat.is_empty() {
                    return Err("`deliver.channel` and `deliver.chat` must not be empty".into());
                }
                Ok(())
            }
            (None, None, Some(url)) if self.thread.is_none() => {
                let parsed = url::Url::parse(url)
                    .map_err(|e| format!("`deliver.webhook` is not a URL: {e}"))?;
                if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
                    return Err("`deliver.webhook` must be an http(s) URL with a host".into());
                }
                Ok(())
            }
            (Some(_), None, _) | (None, Some(_), _) => {
                Err("`deliver` needs both `channel` and `chat`".into())
            }
            _ => Err(
                "`deliver` is a channel (`channel`, `chat`, optional `thread`) or a `webhook`, not both"
                    .into(),
            ),
        }
    }

    /// Where, in words (a webhook shows its origin only: its path may carry a token).
    pub fn describe(&self) -> String {
        match (&self.channel, &self.chat, &self.webhook) {
            (Some(channel), Some(chat), _) => match &self.thread {
                Some(thread) => format!("{channel} {chat} (thread {thread})"),
                None => format!("{channel} {chat}"),
            },
            (_, _, Some(url)) => match url::Url::parse(url) {
                Ok(url) => format!("webhook {}", url.origin().ascii_serialization()),
                Err(_) => "webhook".to_owned(),
            },
            _ => "stored".to_owned(),
        }
    }
}

/// When a finished run is delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notify {
    /// Every run.
    #[default]
    Always,
    /// Only runs that failed (the check failed, the tool or turn errored, the run timed out).
    OnFailure,
    /// Only when the outcome or output differs from the previous delivered run's.
    OnChange,
}

/// What happens to slots that passed while no host could run them (down, paused lease).
/// Written `skip`, `run_once` or `{catch_up: N}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "MisfireForm", into = "MisfireForm")]
pub enum Misfire {
    /// Run none of them; the next slot runs as usual. The history records the skip.
    Skip,
    /// Run the latest missed slot once.
    #[default]
    RunOnce,
    /// Run the latest N missed slots, oldest first.
    CatchUp(u32),
}

/// How `Misfire` is written in YAML and JSON.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum MisfireForm {
    Name(String),
    CatchUp { catch_up: u32 },
}

impl TryFrom<MisfireForm> for Misfire {
    type Error = String;

    fn try_from(form: MisfireForm) -> Result<Self, String> {
        match form {
            MisfireForm::Name(name) => match name.as_str() {
                "skip" => Ok(Self::Skip),
                "run_once" => Ok(Self::RunOnce),
                other => Err(format!(
                    "`{other}` is not a misfire policy: use skip, run_once or {{catch_up: N}}"
                )),
            },
            MisfireForm::CatchUp { catch_up } => Ok(Self::CatchUp(catch_up)),
        }
    }
}

impl From<Misfire> for MisfireForm {
    fn from(misfire: Misfire) -> Self {
        match misfire {
            Misfire::Skip => Self::Name("skip".into()),
            Misfire::RunOnce => Self::Name("run_once".into()),
            Misfire::CatchUp(catch_up) => Self::CatchUp { catch_up },
        }
    }
}

/// What a slot does when the job's previous run is still going.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    /// Skip this slot (recorded in the history).
    #[default]
    Forbid,
    /// Run both.
    Allow,
    /// Cancel the running one, then run this one.
    Replace,
}

fn yes() -> bool {
    true
}
fn everyone() -> Vec<String> {
    vec!["*".to_owned()]
}
fn default_poll_interval_ms() -> u64 {
    1000
}
fn default_lease_seconds() -> u64 {
    30
}
fn default_history_per_job() -> u32 {
    200
}
fn default_output_chars() -> usize {
    2000
}
fn default_agent_min_interval() -> u64 {
    900
}
fn default_jobs_per_conversation() -> u32 {
    5
}
fn default_webhook_timeout() -> u64 {
    10
}
fn default_misfire_grace() -> u64 {
    60
}
fn default_job_timeout() -> u64 {
    300
}
fn default_retry_backoff() -> u64 {
    30
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(yaml: &str) -> JobSpec {
        serde_yaml::from_str(yaml).expect("a job")
    }

    #[test]
    fn a_job_needs_one_when_and_one_what() {
        assert!(job("{name: a, every: 1h, prompt: hi}").validate(0).is_ok());
        let both = job("{name: a, every: 1h, cron: '* * * * *', prompt: hi}");
        assert!(both.validate(0).unwrap_err().contains("one of"));
        let none = job("{name: a, prompt: hi}");
        assert!(none.validate(0).unwrap_err().contains("say when"));
        let nothing = job("{name: a, every: 1h}");
        assert!(nothing.validate(0).unwrap_err().contains("say what"));
        let args = job("{name: a, every: 1h, tool: t, arguments: [1]}");
        assert!(args.validate(0).unwrap_err().contains("JSON object"));
        let zone = job("{name: a, every: 1h, timezone: UTC, prompt: x}");
        assert!(zone.validate(0).unwrap_err().contains("goes with `cron`"));
        let name = job("{name: 'a b', every: 1h, prompt: x}");
        assert!(name.validate(0).unwrap_err().contains("not a job name"));
    }

    #[test]
    fn delivery_is_a_chat_a_webhook_or_stored() {
        let chat = job(
            "{name: a, every: 1h, prompt: x, deliver: {channel: slack, chat: C1, thread: '1.2'}}",
        );
        assert!(chat.validate(0).is_ok());
        assert_eq!(chat.deliver.describe(), "slack C1 (thread 1.2)");
        let half = job("{name: a, every: 1h, prompt: x, deliver: {channel: slack}}");
        assert!(
            half.validate(0)
                .unwrap_err()
                .contains("both `channel` and `chat`")
        );
        let hook = job(
            "{name: a, every: 1h, prompt: x, deliver: {webhook: 'https://h.example/t/SECRET'}}",
        );
        assert!(hook.validate(0).is_ok());
        assert_eq!(hook.deliver.describe(), "webhook https://h.example");
        let ftp = job("{name: a, every: 1h, prompt: x, deliver: {webhook: 'ftp://h.example/'}}");
        assert!(ftp.validate(0).is_err());
    }

    #[test]
    fn policies_parse_from_yaml() {
        let spec = job(
            "{name: a, cron: '0 9 * * MON', timezone: Europe/Berlin, prompt: x, misfire: {catch_up: 3}, concurrency: replace, notify: on_change}",
        );
        assert_eq!(spec.misfire, Misfire::CatchUp(3));
        assert_eq!(spec.concurrency, Concurrency::Replace);
        assert_eq!(spec.notify, Notify::OnChange);
        let round = serde_json::to_string(&spec).expect("serialises");
        assert_eq!(
            serde_json::from_str::<JobSpec>(&round).expect("parses"),
            spec
        );
    }

    #[test]
    fn the_agent_allowlist_matches_users_channels_and_everyone() {
        let mut limits = AgentSchedulingConfig {
            allow: vec!["slack:U1".into(), "telegram:*".into()],
            ..AgentSchedulingConfig::default()
        };
        assert!(limits.allows("slack", "U1"));
        assert!(!limits.allows("slack", "U2"));
        assert!(limits.allows("telegram", "42"));
        limits.allow = vec![];
        assert!(!limits.allows("slack", "U1"));
    }
}
