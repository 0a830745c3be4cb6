//! `databot channel`: the chat channels of a running host (`list`, from its
//! `/api/v1/channels`) and a local check of one channel (`test`: it loads, its limits, the
//! platform's health check, optionally a message sent).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::capabilities::host_http::{self, HostRequest};
use crate::channels::ChannelStatus;
use crate::contract::chat_channel::Outgoing;

#[derive(Subcommand)]
pub enum ChannelCommand {
    /// The channels of the running host: requests, verification failures, duplicates dropped,
    /// messages refused, replies sent and failed, the last event and error.
    List {
        /// The host's gateway (default: `http://` + `gateway.bind` of the config).
        #[arg(long)]
        url: Option<String>,
        /// An API key of the gateway, if it has keys.
        #[arg(long, env = "DATABOT_API_KEY", hide_env_values = true)]
        key: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check one channel here: it loads, its limits and the platform's health check; with
    /// `--chat`, also post `--text` there.
    Test {
        /// The channel plugin's name (`slack`, `telegram`, ...).
        name: String,
        /// A chat to post a test message to (a Slack channel id, a Telegram chat id, ...).
        #[arg(long)]
        chat: Option<String>,
        /// The thread to post in.
        #[arg(long)]
        thread: Option<String>,
        #[arg(long, default_value = "databot: test message")]
        text: String,
    },
}

pub async fn run(
    command: ChannelCommand,
    config: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    match command {
        ChannelCommand::List { url, key, json } => list(config, url, key, json).await,
        ChannelCommand::Test {
            name,
            chat,
            thread,
            text,
        } => test(config, &name, chat, thread, text).await,
    }
}

async fn list(
    config: Option<&std::path::Path>,
    url: Option<String>,
    key: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let base = match url {
        Some(url) => url,
        None => {
            let config = crate::config::Config::load(config)?;
            format!("http://{}", config.gateway.bind)
        }
    };
    let url = format!("{}/api/v1/channels", base.trim_end_matches('/'));
    let mut headers = Vec::new();
    if let Some(key) = key {
        let mut value =
            http::HeaderValue::from_str(&key).context("the API key is not a valid header value")?;
        value.set_sensitive(true);
        headers.push((http::HeaderName::from_static("x-api-key"), value));
    }
    let response = host_http::send(HostRequest {
        method: http::Method::GET,
        url: &url,
        headers,
        body: bytes::Bytes::new(),
        // The operator's own host, usually on loopback.
        allow_private: true,
        timeout: Duration::from_secs(10),
        max_body_bytes: 4 * 1024 * 1024,
    })
    .await
    .with_context(|| format!("asking the running host at {base} (is `databot serve` running?)"))?;
    if !response.status.is_success() {
        bail!(
            "{url} answered HTTP {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    #[derive(serde::Deserialize)]
    struct Listing {
        channels: Vec<serde_json::Value>,
    }
    let listing: Listing = serde_json::from_slice(&response.body)
        .context("the host's answer is not a channel list")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&listing.channels)?);
        return Ok(ExitCode::SUCCESS);
    }
    if listing.channels.is_empty() {
        println!("no channel plugins are loaded");
    }
    for value in listing.channels {
        let status: ChannelStatus = serde_json::from_value(value)?;
        println!("{}", render(&status));
    }
    Ok(ExitCode::SUCCESS)
}

fn render(status: &ChannelStatus) -> String {
    let last_event = match status.last_event_ms {
        Some(ms) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            format!("{} s ago", now.saturating_sub(ms) / 1000)
        }
        None => "never".into(),
    };
    let mut text = format!(
        "{:<16} {}\n  requests {} · verification failures {} · duplicates dropped {} · ignored {} · refused {} · accepted {} · busy {}\n  replies {} · send failures {} · rate limited {} · last event {last_event}",
        status.name,
        status.state,
        status.requests,
        status.verification_failures,
        status.duplicates,
        status.ignored,
        status.refused,
        status.accepted,
        status.busy,
        status.replies,
        status.send_failures,
        status.rate_limited,
    );
    if let Some(error) = &status.last_error {
        text.push_str(&format!("\n  last error: {error}"));
    }
    text
}

async fn test(
    config: Option<&std::path::Path>,
    name: &str,
    chat: Option<String>,
    thread: Option<String>,
    text: String,
) -> anyhow::Result<ExitCode> {
    let runtime = super::start_runtime(config).await?;
    let limits = runtime
        .channel_limits(name)
        .await
        .with_context(|| format!("channel `{name}`"))?;
    println!(
        "{name}: loaded; messages up to {} characters, edits {}",
        limits.max_message_chars,
        if limits.min_edit_interval_ms == 0 {
            "not supported (answers are sent whole)".to_owned()
        } else {
            format!("at most every {} ms", limits.min_edit_interval_ms)
        }
    );
    let health = runtime.channel_health(name).await?;
    println!("health: {:?}: {}", health.status, health.message);
    let mut code = if matches!(health.status, crate::contract::HealthStatus::Healthy) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    };
    if let Some(chat) = chat {
        let message = Outgoing {
            chat: chat.clone(),
            thread,
            text,
            reply_context: None,
            finished: true,
        };
        match runtime.channel_send(name, message).await {
            Ok(handle) => println!("sent to {chat} (message {handle})"),
            Err(error) => {
                println!("sending to {chat} failed: {error}");
                code = ExitCode::from(2);
            }
        }
    }
    Ok(code)
}
