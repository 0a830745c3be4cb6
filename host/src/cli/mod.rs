//! The `databot` command line: argument parsing and dispatch to the subcommands.

mod bus_setup;
mod channel;
mod chat;
mod cron;
mod init;
pub mod plugin;
mod progress;
pub mod python_plugin;
pub mod rag;
pub mod scaffold;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::runtime::Runtime;

#[derive(Parser)]
#[command(
    name = "databot",
    version,
    about = "Host for AI data agents whose tools, connectors, channels and providers are sandboxed WebAssembly components"
)]
struct Cli {
    /// Configuration file (YAML); without it the embedded default is used.
    #[arg(long, short, global = true, env = "DATABOT_CONFIG")]
    config: Option<PathBuf>,
    /// Log filter, e.g. `info`, `debug`, `databot=debug,plugin=trace` (default: `info` for
    /// `serve`, `warn` otherwise).
    #[arg(long, global = true, env = "DATABOT_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage plugin components.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Run tools.
    #[command(subcommand)]
    Tool(ToolCommand),
    /// Inspect and call connectors.
    #[command(subcommand)]
    Connector(ConnectorCommand),
    /// Check configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The knowledge base: ingest schemas and documents, search, stats.
    #[command(subcommand)]
    Rag(rag::RagCommand),
    /// Chat channels: status of the running host, and a check of one channel.
    #[command(subcommand)]
    Channel(channel::ChannelCommand),
    /// Scheduled jobs: add, list, show, pause, resume, remove, run now, history.
    #[command(subcommand)]
    Cron(cron::CronCommand),
    /// One screen on this host: config, provider, plugins, connectors, channels, tool groups,
    /// schedules, sessions database, data dir. Exit code 1 when something is unhealthy.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Write a starting configuration, asking a few questions; secrets become `${VAR}`s.
    Init {
        /// Where to write it (asked when absent).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Start the host: load and watch plugins, run the agent behind the HTTP gateway, run
    /// scheduled jobs.
    Serve,
    /// Serve the tools and connector resources to one MCP client over stdin/stdout (for
    /// Claude Desktop, Cursor and other MCP hosts). Logs go to stderr.
    Mcp,
    /// Talk to the agent: a REPL with streamed answers, or one message with `-m`.
    Chat {
        /// Send this one message, print the answer and exit.
        #[arg(short, long)]
        message: Option<String>,
        /// Conversation to continue (session key `cli:NAME`).
        #[arg(long, default_value = "default")]
        session: String,
    },
}

#[derive(Subcommand)]
enum ToolCommand {
    /// Call one tool through the full sandbox and print its JSON result.
    Call {
        /// Tool name (see `databot tool list`).
        name: String,
        /// Arguments as a JSON object.
        #[arg(long, default_value = "{}")]
        args: String,
    },
    /// List the tools of every loaded plugin.
    List {
        /// Print JSON (with input schemas) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The tool groups, their tools and whether each is on.
    Groups {
        #[arg(long)]
        json: bool,
    },
    /// Turn a tool group on (kept in the data dir; a running host follows within a second).
    Enable { group: String },
    /// Turn a tool group off: its tools are neither offered, listed nor callable.
    Disable { group: String },
}

#[derive(Subcommand)]
enum ConnectorCommand {
    /// Every connector with its health (checked in parallel) and operations.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run one connector operation through the full sandbox and print its JSON result.
    Call {
        /// Connector instance name (see `databot connector list`).
        name: String,
        /// Operation name.
        operation: String,
        /// Parameters as a JSON object.
        #[arg(long, default_value = "{}")]
        params: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file; errors name the line and column.
    Check {
        /// The file to check.
        file: PathBuf,
    },
    /// Print the embedded default configuration.
    Default,
}

/// Parse arguments, run, and turn errors into a message and an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = if matches!(cli.command, Command::Serve) {
        "info"
    } else {
        "warn"
    };
    let log_filter = cli.log.clone().unwrap_or_else(|| default_log.to_owned());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Telemetry comes from the config, so read it before anything logs. A config that does not
    // load is reported by the command itself; logging then starts without export.
    let telemetry = match &cli.command {
        Command::Config(_) | Command::Init { .. } => crate::config::TelemetryConfig::default(),
        _ => Config::load(cli.config.as_deref())
            .map(|config| config.telemetry)
            .unwrap_or_default(),
    };
    // The gRPC exporter's connection runs on this runtime.
    let guard = {
        let _entered = runtime.enter();
        match crate::telemetry::init(&telemetry, &log_filter) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    };
    // Flush spans while the runtime (and the exporter's connection on it) still runs.
    guard.shutdown();
    code
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Config(ConfigCommand::Check { file }) => {
            let config = Config::load(Some(&file))?;
            crate::capabilities::validate_config(&config)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            println!(
                "{}: ok ({} plugin section(s))",
                file.display(),
                config.plugins.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Default) => {
            print!("{}", crate::config::EMBEDDED_DEFAULT);
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin(command) => plugin::run(command, cli.config.as_deref()).await,
        Command::Tool(ToolCommand::Call { name, args }) => {
            let runtime = start_runtime(cli.config.as_deref()).await?;
            match runtime.call_tool(&name, &args).await {
                Ok(json) => {
                    println!("{}", pretty(&json));
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Tool(ToolCommand::List { json }) => {
            let runtime = start_runtime(cli.config.as_deref()).await?;
            let tools = runtime.tools();
            if json {
                println!("{}", serde_json::to_string_pretty(&tools)?);
            } else {
                for tool in tools {
                    let summary = tool.description.lines().next().unwrap_or_default();
                    println!("{:<24} {:<16} {summary}", tool.name, tool.plugin);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tool(ToolCommand::Groups { json }) => {
            let groups = tool_groups(cli.config.as_deref())?;
            let list = groups.list();
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for group in list {
                    println!(
                        "{:<14} {:<4} {:<40} {}",
                        group.name,
                        if group.enabled { "on" } else { "off" },
                        group.tools.join(", "),
                        group.description
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tool(ToolCommand::Enable { group }) => {
            tool_groups(cli.config.as_deref())?.set_enabled(&group, true)?;
            println!("tool group `{group}` is on");
            Ok(ExitCode::SUCCESS)
        }
        Command::Tool(ToolCommand::Disable { group }) => {
            tool_groups(cli.config.as_deref())?.set_enabled(&group, false)?;
            println!("tool group `{group}` is off");
            Ok(ExitCode::SUCCESS)
        }
        Command::Connector(ConnectorCommand::List { json }) => {
            let runtime = start_runtime(cli.config.as_deref()).await?;
            let connectors = runtime.connectors_health(crate::runtime::HEALTH_TTL).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&connectors)?);
            } else {
                for connector in connectors {
                    println!(
                        "{:<20} {:<15} {}\n{:<20} operations: {}",
                        connector.name,
                        connector.status,
                        connector.message,
                        "",
                        connector.operations.join(", ")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Connector(ConnectorCommand::Call {
            name,
            operation,
            params,
        }) => {
            let runtime = start_runtime(cli.config.as_deref()).await?;
            match runtime.execute_connector(&name, &operation, &params).await {
                Ok(json) => {
                    println!("{}", pretty(&json));
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Serve => serve(cli.config.as_deref()).await,
        Command::Rag(command) => rag::run(command, cli.config.as_deref()).await,
        Command::Channel(command) => channel::run(command, cli.config.as_deref()).await,
        Command::Cron(command) => cron::run(command, cli.config.as_deref()).await,
        Command::Status { json } => status::run(cli.config.as_deref(), json).await,
        Command::Init { output } => init::run(output),
        Command::Mcp => {
            let runtime = start_runtime(cli.config.as_deref()).await?;
            // Hot loads reach the client as `notifications/tools/list_changed`.
            let _watcher = if runtime.config().runtime.watch {
                Some(runtime.watch()?)
            } else {
                None
            };
            crate::mcp::serve_stdio(runtime).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Chat { message, session } => {
            chat::run(cli.config.as_deref(), message, &session).await
        }
    }
}

/// The tool groups of the configured data dir, without loading any plugin.
fn tool_groups(
    config: Option<&std::path::Path>,
) -> anyhow::Result<crate::runtime::tool_groups::ToolGroups> {
    let config = Config::load(config)?;
    let data_dir = config.resolve_path(&config.runtime.data_dir);
    Ok(crate::runtime::tool_groups::ToolGroups::new(
        &config.agent.tool_groups,
        Some(data_dir.join("tool_groups.json")),
    ))
}

/// Load the configuration and every configured plugin.
pub(crate) async fn start_runtime(config: Option<&std::path::Path>) -> anyhow::Result<Runtime> {
    let config = Arc::new(Config::load(config)?);
    let runtime = Runtime::new(config).context("starting the plugin runtime")?;
    let progress = Arc::new(progress::TerminalProgress::new("loading plugins", 0));
    let loaded = runtime.load_configured_with(Some(progress.clone())).await;
    progress.finish();
    loaded?;
    Ok(runtime)
}

async fn serve(config: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let runtime = start_runtime(config).await?;
    let config = runtime.config().clone();
    // Fail before anything listens if the bind is not allowed.
    crate::gateway::check_bind(&config.gateway)?;
    let _watcher = if config.runtime.watch {
        Some(runtime.watch()?)
    } else {
        None
    };
    for status in runtime.status() {
        tracing::info!(plugin = %status.name, state = %status.state, operations = ?status.operations, "plugin status");
    }
    // Connect every connector in parallel in the background: their health is cached (and
    // logged) before the first status request, and a slow service does not delay serving.
    let warming = runtime.clone();
    tokio::spawn(async move {
        for health in warming.connectors_health(crate::runtime::HEALTH_TTL).await {
            tracing::info!(connector = %health.name, status = %health.status, "{}", health.message);
        }
    });
    let sessions = Arc::new(
        crate::agent::sessions::SessionStore::connect(&config.sessions_url())
            .await
            .context("opening the session store")?,
    );
    let schedules = crate::schedules::Schedules::open(&config, sessions.clone())
        .await
        .context("opening the scheduled jobs")?;
    schedules.sync_config(&config).await?;
    let mut agent =
        crate::agent::Agent::new(runtime.clone(), sessions.clone(), config.agent.clone());
    let knowledge = rag::start_for_serve(&runtime);
    if let Some(knowledge) = &knowledge {
        agent = agent.with_rag(knowledge.clone());
    }
    if config.schedules.agent.enabled {
        agent = agent.with_host_tool(Arc::new(crate::schedules::cron_tool::CronTool::new(
            schedules.store.clone(),
            runtime.clone(),
            config.schedules.agent.clone(),
        )));
    }
    agent
        .check_pinned_specialists(runtime.config())
        .map_err(anyhow::Error::msg)?;
    let agent = Arc::new(agent);
    let stop = tokio_util::sync::CancellationToken::new();
    // Replies keep coming until the gateway has answered its last request.
    let bus_stop = tokio_util::sync::CancellationToken::new();
    let buses = bus_setup::start(&config, agent, bus_stop.clone()).await?;
    // Replicas count each client's requests together unless the operator said otherwise.
    let mut gateway_config = config.gateway.clone();
    if config.bus.kind == crate::config::BusKind::Kafka {
        gateway_config.rate_limit.shared.get_or_insert(true);
    }
    let state = crate::gateway::GatewayState::new(
        &gateway_config,
        runtime.clone(),
        buses.inbound.clone(),
        sessions,
        config.agent.provider.clone(),
        Some(schedules.clone()),
    );
    if let Some(knowledge) = knowledge {
        state.set_knowledge(knowledge);
    }
    if let Some(replicated) = &buses.replicated {
        tokio::spawn(crate::channels::stranded::relay(
            state.channels.clone(),
            replicated.outbox.clone(),
            replicated.stranded_after,
            replicated.keep_replies,
            stop.clone(),
        ));
    }
    let scheduler = config.schedules.enabled.then(|| {
        // A scheduled run holds its job's lease: its turn runs here, not across the group.
        let scheduler = crate::schedules::Scheduler::new(
            schedules.store.clone(),
            buses.local.clone(),
            runtime,
            Some(state.channels.clone()),
            config.schedules.clone(),
            schedules.metrics.clone(),
        );
        tokio::spawn(scheduler.run(stop.clone()))
    });
    // On a signal a replica stops taking messages at once, finishes or hands back the running
    // ones, commits and leaves its group, while the gateway answers the requests it has.
    let draining = tokio_util::sync::CancellationToken::new();
    let drained = buses.replicated.map(|replicated| {
        let draining = draining.clone();
        tokio::spawn(async move {
            draining.cancelled().await;
            replicated.consumer.drain().await;
        })
    });
    tracing::info!("databot is serving; press Ctrl-C to stop");
    let stopping = stop.clone();
    crate::gateway::serve(state, &config.gateway, async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        draining.cancel();
        stopping.cancel();
    })
    .await?;
    if let Some(drained) = drained {
        let _ = drained.await;
    }
    bus_stop.cancel();
    stop.cancel();
    if let Some(scheduler) = scheduler {
        // The scheduler hands its runs in progress back before it returns.
        let _ = scheduler.await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C (SIGINT) or SIGTERM (what service managers and Kubernetes send).
async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!("cannot listen for SIGTERM ({error}); stop with Ctrl-C");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| json.to_owned())
}
