//! `databot rag`: fill the knowledge base, search it, show what it holds. Also the background
//! ingestion `serve` starts.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;

use crate::rag::Rag;
use crate::runtime::Runtime;

#[derive(Subcommand)]
pub enum RagCommand {
    /// Ingest database schemas (from connectors offering `discover_schema`) and documents.
    /// Without flags or paths: schemas and the configured `rag.docs_dirs`.
    Ingest {
        /// Describe the schemas of every SQL connector.
        #[arg(long)]
        schemas: bool,
        /// Ingest the configured `rag.docs_dirs`.
        #[arg(long)]
        docs: bool,
        /// Markdown/text files or folders to ingest besides the configured ones.
        paths: Vec<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Search the knowledge base (no score threshold).
    Search {
        question: String,
        /// Matches to show.
        #[arg(short, default_value_t = 5)]
        k: usize,
        /// Only this source kind: schema, doc, conversation.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Chunks per source kind, store, dimension and embedding model.
    Stats {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(
    command: RagCommand,
    config: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let runtime = super::start_runtime(config).await?;
    if matches!(
        command,
        RagCommand::Search { .. } | RagCommand::Stats { .. }
    ) {
        ingest_new_samples(&runtime).await;
    }
    let progress = Arc::new(super::progress::TerminalProgress::new("ingesting", 0));
    let rag = match &command {
        RagCommand::Ingest { .. } => Rag::open(&runtime)?.with_progress(progress.clone()),
        RagCommand::Search { .. } | RagCommand::Stats { .. } => Rag::open_read_only(&runtime)?,
    };
    match command {
        RagCommand::Ingest {
            schemas,
            docs,
            paths,
            json,
        } => {
            let everything = !schemas && !docs && paths.is_empty();
            let mut report = serde_json::Map::new();
            // Everything runs under the progress bar; the summary is printed once it is gone.
            let schema_report = if schemas || everything {
                Some(rag.ingest_schemas().await?)
            } else {
                None
            };
            let mut runs = Vec::new();
            if docs || everything {
                runs.push(("docs", rag.ingest_docs().await?));
            }
            if !paths.is_empty() {
                runs.push(("paths", rag.ingest_paths(&paths).await?));
            }
            progress.finish();
            if let Some(schemas) = schema_report {
                if !json {
                    for gone in &schemas.removed_connectors {
                        println!(
                            "schema:{gone}: connector no longer configured, its tables removed"
                        );
                    }
                    if schemas.connectors.is_empty() {
                        println!("schemas: no loaded connector offers discover_schema");
                    }
                    for (name, c) in &schemas.connectors {
                        println!(
                            "schema:{name}: {} tables, {} embedded, {} removed",
                            c.tables, c.embedded, c.removed
                        );
                        for error in &c.errors {
                            println!("  error: {error}");
                        }
                    }
                }
                report.insert("schemas".into(), serde_json::to_value(&schemas)?);
            }
            for (name, docs_report) in runs {
                if !json {
                    println!(
                        "{name}: {} files ({} unchanged), {} chunks embedded, {} removed",
                        docs_report.files,
                        docs_report.unchanged,
                        docs_report.chunks,
                        docs_report.removed
                    );
                    for skipped in &docs_report.skipped {
                        println!("  skipped: {skipped}");
                    }
                }
                report.insert(name.into(), serde_json::to_value(&docs_report)?);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        RagCommand::Search {
            question,
            k,
            kind,
            json,
        } => {
            let matches = rag.search(&question, k, kind.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&matches)?);
            } else if matches.is_empty() {
                println!("no matches (is the knowledge base empty? `databot rag stats`)");
            } else {
                for m in matches {
                    println!("{:.3}  {}", m.score, m.source);
                    for line in m.text.lines().take(4) {
                        println!("       {line}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RagCommand::Stats { json } => {
            let stats = rag.stats().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                println!("store:    {} ({})", stats.store.store, stats.store.location);
                println!("chunks:   {}", stats.store.chunks);
                for (kind, count) in &stats.store.by_kind {
                    println!("  {kind:<14} {count}");
                }
                println!(
                    "dim:      {}",
                    stats.store.dim.map_or("-".into(), |d| d.to_string())
                );
                println!(
                    "model:    {} (provider `{}`)",
                    stats.store.model.as_deref().unwrap_or("-"),
                    stats.provider
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The knowledge base for `databot chat`: retrieval on, no background ingestion. When a
/// running `serve` owns the store, chat searches a read-only snapshot and does not keep its
/// turns (the owner would overwrite them). `None` when RAG is off or the store cannot be read.
/// The schema of every sample warehouse (`data.sql.NAME.sample`, served by the connector
/// `NAME`) into the knowledge base once, so a fresh install answers `rag search` and grounds
/// its first chat; a marker in the data dir records that it was done.
pub async fn ingest_new_samples(runtime: &Runtime) {
    let config = runtime.config();
    if !config.rag.enabled {
        return;
    }
    let data_dir = config.resolve_path(&config.runtime.data_dir);
    let fresh: Vec<&String> = config
        .data
        .sql
        .iter()
        .filter(|(name, source)| {
            source.sample
                && runtime.plugin(name).is_some()
                && !data_dir.join(format!("sample-{name}.ingested")).exists()
        })
        .map(|(name, _)| name)
        .collect();
    if fresh.is_empty() {
        return;
    }
    let rag = match Rag::open(runtime) {
        Ok(rag) => rag,
        Err(error) => {
            tracing::warn!(
                "the sample warehouse's schema is not in the knowledge base yet: {error}"
            );
            return;
        }
    };
    for name in fresh {
        match rag.ingest_connector(name).await {
            Ok(report) => {
                tracing::info!(connector = %name, tables = report.tables, "the sample warehouse's schema is in the knowledge base");
                if let Err(error) =
                    std::fs::write(data_dir.join(format!("sample-{name}.ingested")), "")
                {
                    tracing::warn!("recording the sample's ingestion: {error}");
                }
            }
            Err(error) => {
                tracing::warn!(connector = %name, "ingesting the sample warehouse's schema: {error}")
            }
        }
    }
}

pub fn open_for_chat(runtime: &Runtime) -> Option<Arc<Rag>> {
    if !runtime.config().rag.enabled {
        return None;
    }
    let opened = match Rag::open(runtime) {
        Err(crate::rag::RagError::Store(crate::rag::StoreError::Busy { path })) => {
            tracing::info!(
                store = %path,
                "the knowledge base is in use by another databot process; searching a read-only snapshot, this chat's turns are not kept"
            );
            Rag::open_read_only(runtime).map(|rag| rag.without_conversation_memory())
        }
        other => other,
    };
    match opened {
        Ok(rag) => Some(Arc::new(rag)),
        Err(error) => {
            tracing::warn!("knowledge base unavailable, chatting without retrieval: {error}");
            None
        }
    }
}

/// The knowledge base for `serve`: opened from config, with schemas and docs ingested in the
/// background when `rag.ingest_schemas_on_start`. `None` (with the reason logged) when RAG is
/// off or its store cannot be opened; the host then serves without it.
pub fn start_for_serve(runtime: &Runtime) -> Option<Arc<Rag>> {
    if !runtime.config().rag.enabled {
        return None;
    }
    let rag = match Rag::open(runtime) {
        Ok(rag) => Arc::new(rag),
        Err(error) => {
            tracing::error!("knowledge base unavailable, serving without retrieval: {error}");
            return None;
        }
    };
    if rag.settings().ingest_schemas_on_start {
        // Connectors loaded or swapped while serving get their schemas ingested too.
        let mut events = runtime.subscribe();
        let watcher = rag.clone();
        let live = runtime.clone();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let plugin = match events.recv().await {
                    Ok(crate::runtime::RuntimeEvent::Loaded { plugin, .. }) => plugin,
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                };
                let offers_schemas = live.status().iter().any(|s| {
                    s.name == plugin
                        && s.kind.as_deref() == Some("connector")
                        && s.operations.iter().any(|o| o == "discover_schema")
                });
                if !offers_schemas {
                    continue;
                }
                match watcher.ingest_connector(&plugin).await {
                    Ok(report) => tracing::info!(
                        connector = %plugin,
                        ?report,
                        "schemas of a newly loaded connector ingested"
                    ),
                    Err(error) => {
                        tracing::warn!(connector = %plugin, "schema ingestion failed: {error}")
                    }
                }
            }
        });
        let background = rag.clone();
        tokio::spawn(async move {
            match background.ingest_schemas().await {
                Ok(report) => {
                    for (connector, c) in report.connectors {
                        tracing::info!(
                            connector = %connector,
                            tables = c.tables,
                            embedded = c.embedded,
                            removed = c.removed,
                            errors = ?c.errors,
                            "schemas ingested into the knowledge base"
                        );
                    }
                }
                Err(error) => tracing::warn!("schema ingestion failed: {error}"),
            }
            if !background.settings().docs_dirs.is_empty() {
                match background.ingest_docs().await {
                    Ok(report) => tracing::info!(
                        files = report.files,
                        unchanged = report.unchanged,
                        chunks = report.chunks,
                        removed = report.removed,
                        "documents ingested into the knowledge base"
                    ),
                    Err(error) => tracing::warn!("document ingestion failed: {error}"),
                }
            }
        });
    }
    Some(rag)
}
