//! `databot status`: one screen on this host's configuration and health: the config file,
//! provider, plugins and their state, connectors' health, channels, tool groups, scheduled
//! jobs, the sessions database and the data dir. The exit code is 1 when something is
//! unhealthy (a plugin refused or degraded, a configured plugin or the provider not loaded, a
//! connector not healthy, the sessions database unreachable, the data dir not writable), so
//! scripts can use it; a scheduled job whose last run failed is reported, not counted.

use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use crate::config::Config;
use crate::runtime::PluginKind;

#[derive(Serialize)]
struct Check {
    area: &'static str,
    name: String,
    state: String,
    healthy: bool,
    detail: String,
}

impl Check {
    fn new(
        area: &'static str,
        name: impl Into<String>,
        healthy: bool,
        state: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            area,
            name: name.into(),
            state: state.into(),
            healthy,
            detail: detail.into(),
        }
    }
}

pub async fn run(config_path: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let mut checks = Vec::new();
    let origin = config_path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<embedded default>".to_owned());
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(error) => {
            checks.push(Check::new(
                "config",
                origin,
                false,
                "invalid",
                error.to_string(),
            ));
            return report(&checks, json);
        }
    };
    checks.push(Check::new(
        "config",
        &origin,
        true,
        "ok",
        format!("{} plugin section(s)", config.plugins.len()),
    ));
    let data_dir = config.resolve_path(&config.runtime.data_dir);
    let writable = std::fs::create_dir_all(&data_dir)
        .and_then(|()| tempfile::tempfile_in(&data_dir).map(|_| ()));
    checks.push(match writable {
        Ok(()) => Check::new(
            "data dir",
            data_dir.display().to_string(),
            true,
            "writable",
            "",
        ),
        Err(error) => Check::new(
            "data dir",
            data_dir.display().to_string(),
            false,
            "not writable",
            error.to_string(),
        ),
    });
    let runtime = super::start_runtime(config_path).await?;
    let statuses = runtime.status();
    for status in &statuses {
        let healthy = status.state == "ready";
        checks.push(Check::new(
            "plugin",
            &status.name,
            healthy,
            format!(
                "{}{}",
                status.state,
                status
                    .kind
                    .as_deref()
                    .map(|k| format!(" {k}"))
                    .unwrap_or_default()
            ),
            status.last_error.clone().unwrap_or_default(),
        ));
    }
    for (name, section) in &config.plugins {
        if section.enabled
            && runtime.plugin(name).is_none()
            && !statuses.iter().any(|s| &s.name == name)
        {
            checks.push(Check::new("plugin", name, false, "not loaded", format!("plugins.{name} is configured but no plugin of that name loaded (see the log of `databot plugin list`)")));
        }
    }
    let provider = &config.agent.provider;
    let provider_loaded = runtime
        .plugin(provider)
        .is_some_and(|slot| slot.current().manifest.kind == PluginKind::Provider);
    checks.push(Check::new(
        "provider",
        provider,
        provider_loaded,
        if provider_loaded { "loaded" } else { "missing" },
        if provider_loaded {
            String::new()
        } else {
            format!("agent.provider names `{provider}`, which is not a loaded provider plugin")
        },
    ));
    for health in runtime.connectors_health(crate::runtime::HEALTH_TTL).await {
        let healthy = health.status == "healthy";
        checks.push(Check::new(
            "connector",
            health.name,
            healthy,
            health.status,
            health.message,
        ));
    }
    for status in statuses
        .iter()
        .filter(|s| s.kind.as_deref() == Some("channel"))
    {
        let settings = config.plugins.get(&status.name);
        let webhook = settings
            .map(|_| format!("webhook /channels/{}", status.name))
            .unwrap_or_default();
        checks.push(Check::new(
            "channel",
            &status.name,
            status.state == "ready",
            status.state.clone(),
            webhook,
        ));
    }
    for group in runtime
        .tool_groups()
        .list()
        .into_iter()
        .filter(|g| !g.enabled)
    {
        checks.push(Check::new(
            "tool group",
            group.name,
            true,
            "off",
            group.tools.join(", "),
        ));
    }
    match crate::agent::sessions::SessionStore::connect(&config.sessions_url())
        .await
        .map(std::sync::Arc::new)
    {
        Err(error) => checks.push(Check::new(
            "sessions",
            crate::agent::sessions::redact_url(&config.sessions_url()),
            false,
            "unreachable",
            format!("{error:#}"),
        )),
        Ok(sessions) => {
            checks.push(Check::new(
                "sessions",
                crate::agent::sessions::redact_url(&config.sessions_url()),
                true,
                "reachable",
                "",
            ));
            schedule_checks(&config, sessions, &mut checks).await;
        }
    }
    report(&checks, json)
}

async fn schedule_checks(
    config: &Config,
    sessions: std::sync::Arc<crate::agent::sessions::SessionStore>,
    checks: &mut Vec<Check>,
) {
    let unavailable =
        |detail: String| Check::new("schedules", "store", false, "unavailable", detail);
    let schedules = match crate::schedules::Schedules::open(config, sessions).await {
        Ok(schedules) => schedules,
        Err(error) => return checks.push(unavailable(format!("{error:#}"))),
    };
    let jobs = match schedules.store.list().await {
        Ok(jobs) => jobs,
        Err(error) => return checks.push(unavailable(error.to_string())),
    };
    let paused = jobs.iter().filter(|j| j.paused).count();
    checks.push(Check::new(
        "schedules",
        "jobs",
        true,
        format!("{} job(s), {paused} paused", jobs.len()),
        if config.schedules.enabled {
            "run by `databot serve`"
        } else {
            "schedules.enabled is off: another host runs them"
        },
    ));
    for job in &jobs {
        let Ok(runs) = schedules.store.history(&job.spec.name, 5).await else {
            continue;
        };
        if let Some(last) = runs.iter().find(|r| r.status.is_final())
            && last.status != crate::schedules::RunStatus::Succeeded
        {
            checks.push(Check::new(
                "schedule",
                &job.spec.name,
                true,
                format!("last run {}", last.status.as_str()),
                last.error.clone().unwrap_or_default(),
            ));
        }
    }
}

fn report(checks: &[Check], json: bool) -> anyhow::Result<ExitCode> {
    let healthy = checks.iter().all(|c| c.healthy);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "healthy": healthy, "checks": checks })
            )?
        );
    } else {
        for check in checks {
            println!(
                "{} {:<11} {:<24} {:<22} {}",
                if check.healthy { " " } else { "!" },
                check.area,
                check.name,
                check.state,
                check.detail.lines().next().unwrap_or_default()
            );
        }
        println!(
            "{}",
            if healthy {
                "all healthy"
            } else {
                "something is unhealthy (lines marked !)"
            }
        );
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
