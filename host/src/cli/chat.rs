//! `databot chat`: a REPL with streamed tokens and visible tool progress, or one message.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio::io::AsyncBufReadExt;

use crate::agent::Agent;
use crate::agent::sessions::SessionStore;
use crate::events::{TurnEvent, event_queue};

pub async fn run(
    config: Option<&Path>,
    message: Option<String>,
    session: &str,
) -> anyhow::Result<ExitCode> {
    let runtime = super::start_runtime(config).await?;
    let settings = runtime.config().agent.clone();
    let sessions = Arc::new(
        SessionStore::connect(&runtime.config().sessions_url())
            .await
            .context("opening the session store")?,
    );
    super::rag::ingest_new_samples(&runtime).await;
    let knowledge = super::rag::open_for_chat(&runtime);
    let config = runtime.config().clone();
    let schedules = crate::schedules::Schedules::open(&config, sessions.clone())
        .await
        .context("opening the scheduled jobs")?;
    let mut agent = Agent::new(runtime.clone(), sessions, settings);
    if config.schedules.agent.enabled {
        // Jobs made here are run by `databot serve` on the same database.
        agent = agent.with_host_tool(Arc::new(crate::schedules::cron_tool::CronTool::new(
            schedules.store.clone(),
            runtime,
            config.schedules.agent.clone(),
        )));
    }
    if let Some(knowledge) = knowledge {
        agent = agent.with_rag(knowledge);
    }
    let session_key = format!("cli:{session}");
    if let Some(message) = message {
        return Ok(if one_turn(&agent, &session_key, &message).await {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    eprintln!(
        "databot chat: session `{session_key}`, provider `{}`. Ctrl-D to leave.",
        agent.provider()
    );
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        eprint!("> ");
        let _ = std::io::stderr().flush();
        let Some(line) = lines.next_line().await.context("reading stdin")? else {
            break;
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if matches!(line, "/exit" | "/quit") {
            break;
        }
        one_turn(&agent, &session_key, line).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Run one turn, printing deltas to stdout and tool progress to stderr. False on failure.
async fn one_turn(agent: &Agent, session_key: &str, message: &str) -> bool {
    // Events the terminal is slow to print are dropped; the answer is then printed whole at
    // the end, as when no delta came at all.
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (events, mut received) = event_queue(4096, dropped.clone());
    let printer = tokio::spawn(async move {
        let mut streamed = false;
        while let Some(event) = received.recv().await {
            match event {
                TurnEvent::Delta { text } => {
                    streamed = true;
                    print!("{text}");
                    let _ = std::io::stdout().flush();
                }
                TurnEvent::ToolStart { name, arguments } => eprintln!("[tool] {name} {arguments}"),
                TurnEvent::ToolResult { name, ok, output } => {
                    let summary: String = output.chars().take(120).collect();
                    eprintln!(
                        "[tool] {name} {}: {summary}",
                        if ok { "ok" } else { "failed" }
                    );
                }
                TurnEvent::Done { .. } | TurnEvent::Error { .. } => {}
            }
        }
        streamed
    });
    let outcome = agent.turn(session_key, message, Some(&events)).await;
    drop(events);
    let printed = printer.await.unwrap_or(false);
    let lost = dropped.load(std::sync::atomic::Ordering::Relaxed) > 0;
    match outcome {
        Ok(outcome) => {
            if lost && printed {
                println!();
                eprintln!("[the terminal fell behind the stream; the whole answer:]");
            }
            if lost || !printed {
                print!("{}", outcome.content);
            }
            println!();
            eprintln!(
                "[{} tokens, {} tool call(s), {} round(s)]",
                outcome.usage.total_tokens, outcome.tool_calls, outcome.iterations
            );
            true
        }
        Err(error) => {
            eprintln!("error: {error}");
            false
        }
    }
}
