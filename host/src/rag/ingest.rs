//! What goes into the knowledge base: database schemas from connectors offering
//! `discover_schema` (one chunk per table), documents from folders (chunked with overlap,
//! unchanged files skipped by content hash) and completed conversation turns.
//!
//! Re-ingesting is idempotent: ids are stable, unchanged chunks are not re-embedded, and
//! tables or files that vanished are removed from their group.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::chunking::chunk_document;
use super::{Rag, RagError};
use crate::digest::sha256_hex;
use crate::vectors::Chunk;

/// File extensions read as documents (markdown ones get heading-aware chunking).
const DOC_EXTENSIONS: &[&str] = &["md", "markdown", "mdx", "txt", "text", "rst", "adoc"];
const MARKDOWN_EXTENSIONS: &[&str] = &["md", "markdown", "mdx"];

/// What one schema ingestion did, per connector.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SchemaReport {
    pub connectors: BTreeMap<String, ConnectorReport>,
    /// Connectors no longer in the configuration whose tables were removed.
    pub removed_connectors: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectorReport {
    pub tables: usize,
    /// Tables new or changed since the last ingestion (re-embedded).
    pub embedded: usize,
    /// Tables that vanished and were removed.
    pub removed: usize,
    /// Why this connector was not (fully) ingested; its previous chunks stay.
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DocsReport {
    pub files: usize,
    pub chunks: usize,
    /// Files whose content had not changed.
    pub unchanged: usize,
    /// Files that disappeared from the folders and were removed.
    pub removed: usize,
    pub skipped: Vec<String>,
}

/// The parts of `discover_schema`'s answer used here (see plugins/sql_connector).
#[derive(Deserialize)]
struct Discovery {
    #[serde(default)]
    dialect: String,
    #[serde(default)]
    schema: String,
    tables: Vec<Table>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Deserialize)]
struct Table {
    #[serde(default)]
    schema: String,
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    columns: Vec<Column>,
    #[serde(default)]
    primary_key: Vec<String>,
    #[serde(default)]
    foreign_keys: Vec<ForeignKey>,
}

#[derive(Deserialize)]
struct Column {
    name: String,
    #[serde(default)]
    data_type: String,
    #[serde(default = "yes")]
    nullable: bool,
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Deserialize)]
struct ForeignKey {
    columns: Vec<String>,
    references_table: String,
    #[serde(default)]
    references_columns: Vec<String>,
}

fn yes() -> bool {
    true
}

/// A stable id for a source string.
pub(crate) fn chunk_id(source: &str) -> String {
    sha256_hex(source.as_bytes())[..32].to_owned()
}

/// Describe one table for retrieval, compactly (boilerplate words dilute similarity): its
/// name (also split into words), comment, then columns with types, keys, references and
/// comments.
fn table_text(connector: &str, dialect: &str, table: &Table) -> String {
    let kind = if table.kind.is_empty() {
        "table"
    } else {
        &table.kind
    };
    let mut text = format!(
        "{kind} {}.{} ({}), connector {connector}, {dialect}",
        table.schema,
        table.name,
        table.name.replace('_', " "),
    );
    if let Some(comment) = table.comment.as_deref().filter(|c| !c.is_empty()) {
        text.push_str(&format!("\n{comment}"));
    }
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|column| {
            let mut part = format!("{} {}", column.name, column.data_type);
            if table.primary_key.contains(&column.name) {
                part.push_str(" primary key");
            } else if !column.nullable {
                part.push_str(" not null");
            }
            for fk in &table.foreign_keys {
                if let Some(i) = fk.columns.iter().position(|c| c == &column.name) {
                    let target = fk.references_columns.get(i).map_or("?", String::as_str);
                    part.push_str(&format!(", references {}.{target}", fk.references_table));
                }
            }
            if let Some(comment) = column.comment.as_deref().filter(|c| !c.is_empty()) {
                part.push_str(&format!(", {comment}"));
            }
            part
        })
        .collect();
    text.push_str(&format!("\ncolumns: {}", columns.join("; ")));
    text
}

impl Rag {
    /// Describe every loaded connector that offers `discover_schema` and store one chunk per
    /// table under `schema:CONNECTOR/SCHEMA.TABLE`.
    pub async fn ingest_schemas(&self) -> Result<SchemaReport, RagError> {
        let mut report = SchemaReport::default();
        let connectors: Vec<String> = self
            .runtime
            .status()
            .into_iter()
            .filter(|s| s.kind.as_deref() == Some("connector"))
            .filter(|s| s.operations.iter().any(|o| o == "discover_schema"))
            .map(|s| s.name)
            .collect();
        self.found(connectors.len());
        for connector in &connectors {
            self.next_item(connector);
            let entry = self.ingest_connector(connector).await?;
            report.connectors.insert(connector.clone(), entry);
        }
        // Tables of connectors the operator removed go too; a configured connector that
        // failed to load keeps what it had.
        let config = self.runtime.config();
        for group in self.store.groups("schema:").await? {
            let name = &group["schema:".len()..];
            if !connectors.iter().any(|c| c == name) && !config.plugins.contains_key(name) {
                self.store.delete_group(&group).await?;
                report.removed_connectors.push(name.to_owned());
            }
        }
        Ok(report)
    }

    /// Ingest the schemas of one connector (one just loaded or swapped), replacing its
    /// previous tables.
    pub async fn ingest_connector(&self, connector: &str) -> Result<ConnectorReport, RagError> {
        let mut report = ConnectorReport::default();
        let schemas: Vec<Option<String>> = match self.settings.schemas.get(connector) {
            Some(list) if !list.is_empty() => list.iter().cloned().map(Some).collect(),
            _ => vec![None],
        };
        let group = format!("schema:{connector}");
        let mut chunks = Vec::new();
        for schema in schemas {
            let params = match &schema {
                Some(schema) => serde_json::json!({ "schema": schema }),
                None => serde_json::json!({}),
            };
            let answer = match self
                .runtime
                .execute_connector(connector, "discover_schema", &params.to_string())
                .await
            {
                Ok(answer) => answer,
                Err(error) => {
                    tracing::warn!(connector, "schema discovery failed: {error}");
                    report.errors.push(error.to_string());
                    continue;
                }
            };
            let discovery: Discovery = match serde_json::from_str(&answer) {
                Ok(discovery) => discovery,
                Err(error) => {
                    report.errors.push(format!(
                        "discover_schema answered in an unknown format: {error}"
                    ));
                    continue;
                }
            };
            if discovery.truncated {
                tracing::warn!(
                    connector,
                    schema = %discovery.schema,
                    "schema discovery was truncated; only the first tables are in the knowledge base"
                );
            }
            for table in &discovery.tables {
                let schema = if table.schema.is_empty() {
                    &discovery.schema
                } else {
                    &table.schema
                };
                let source = format!("schema:{connector}/{schema}.{}", table.name);
                let text = table_text(connector, &discovery.dialect, table);
                let mut metadata = serde_json::Map::new();
                metadata.insert("connector".into(), connector.into());
                metadata.insert("schema".into(), schema.as_str().into());
                metadata.insert("table".into(), table.name.as_str().into());
                chunks.push(Chunk {
                    id: chunk_id(&source),
                    hash: sha256_hex(text.as_bytes()),
                    source,
                    group: group.clone(),
                    text,
                    metadata,
                    vector: Vec::new(),
                });
            }
        }
        report.tables = chunks.len();
        if !report.errors.is_empty() {
            // Keep what we knew: a failing database must not empty the knowledge base.
            let (embedded, _) = self.replace_group(&group, chunks, false).await?;
            report.embedded = embedded;
            return Ok(report);
        }
        let (embedded, removed) = self.replace_group(&group, chunks, true).await?;
        report.embedded = embedded;
        report.removed = removed;
        Ok(report)
    }

    /// Store `chunks` as the content of `group`: chunks whose id and hash are already stored
    /// are not re-embedded; with `prune`, stored chunks of the group not in `chunks` go.
    /// Returns (embedded, removed).
    pub(crate) async fn replace_group(
        &self,
        group: &str,
        chunks: Vec<Chunk>,
        prune: bool,
    ) -> Result<(usize, usize), RagError> {
        let stored: HashMap<String, String> = self
            .store
            .entries(group)
            .await?
            .into_iter()
            .map(|e| (e.id, e.hash))
            .collect();
        let wanted: HashSet<&str> = chunks.iter().map(|c| c.id.as_str()).collect();
        let stale: Vec<String> = if prune {
            stored
                .keys()
                .filter(|id| !wanted.contains(id.as_str()))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let changed: Vec<Chunk> = chunks
            .into_iter()
            .filter(|c| stored.get(&c.id) != Some(&c.hash))
            .collect();
        let embedded = changed.len();
        self.embed_and_upsert(changed).await?;
        let removed = self.store.delete_ids(&stale).await?;
        Ok((embedded, removed))
    }

    /// Compute vectors for `chunks` (their `vector` is ignored) and store them.
    pub async fn embed_and_upsert(&self, mut chunks: Vec<Chunk>) -> Result<(), RagError> {
        if chunks.is_empty() {
            return Ok(());
        }
        let texts: Vec<String> = chunks.iter().map(embedding_text).collect();
        let embeddings = self.embedder.embed(&texts).await?;
        for (chunk, vector) in chunks.iter_mut().zip(embeddings.vectors) {
            chunk.vector = vector;
        }
        self.store.upsert(chunks, &embeddings.model).await?;
        Ok(())
    }

    /// Ingest the configured `rag.docs_dirs`; their files that disappeared are removed.
    pub async fn ingest_docs(&self) -> Result<DocsReport, RagError> {
        let config = self.runtime.config();
        let configured: Vec<PathBuf> = self
            .settings
            .docs_dirs
            .iter()
            .map(|dir| config.resolve_path(dir))
            .collect();
        self.ingest_roots(&configured, true).await
    }

    /// Ingest these files or folders (kept until removed by hand or re-ingested).
    pub async fn ingest_paths(&self, paths: &[PathBuf]) -> Result<DocsReport, RagError> {
        self.ingest_roots(paths, false).await
    }

    async fn ingest_roots(&self, roots: &[PathBuf], prune: bool) -> Result<DocsReport, RagError> {
        let mut report = DocsReport::default();
        let mut seen = HashSet::new();
        for root in roots {
            let files = match doc_files(root, &mut report.skipped) {
                Ok(files) => files,
                Err(error) => {
                    tracing::warn!("documents folder skipped: {error}");
                    report.skipped.push(error.to_string());
                    continue;
                }
            };
            self.found(files.len());
            for (path, relative) in files {
                self.next_item(&relative);
                let group = format!("doc:{relative}");
                if seen.contains(&group) {
                    report.skipped.push(format!(
                        "{}: another folder has a file at the same relative path `{relative}`",
                        path.display()
                    ));
                    continue;
                }
                match self.ingest_file(root, &path, &group, &relative).await {
                    Ok(FileOutcome::Unchanged) => report.unchanged += 1,
                    Ok(FileOutcome::Stored(chunks)) => report.chunks += chunks,
                    Ok(FileOutcome::Skipped(why)) => {
                        report.skipped.push(format!("{}: {why}", path.display()));
                        continue;
                    }
                    Err(RagError::Io { path, source }) => {
                        report.skipped.push(format!("{}: {source}", path.display()));
                        continue;
                    }
                    Err(error) => return Err(error),
                }
                report.files += 1;
                seen.insert(group);
            }
        }
        if prune {
            // A full run over the configured folders: their files that vanished go (files
            // ingested by hand from elsewhere stay).
            let roots: HashSet<String> = roots
                .iter()
                .map(|root| root.display().to_string())
                .collect();
            for group in self.store.groups("doc:").await? {
                if seen.contains(&group) {
                    continue;
                }
                let from_configured = self.store.entries(&group).await?.iter().any(|e| {
                    e.metadata
                        .get("root")
                        .and_then(|r| r.as_str())
                        .is_some_and(|r| roots.contains(r))
                });
                if from_configured {
                    self.store.delete_group(&group).await?;
                    report.removed += 1;
                }
            }
        }
        Ok(report)
    }

    async fn ingest_file(
        &self,
        root: &Path,
        path: &Path,
        group: &str,
        relative: &str,
    ) -> Result<FileOutcome, RagError> {
        // Sized before it is read: one huge file must not be loaded to be refused.
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|source| RagError::Io {
                path: path.to_owned(),
                source,
            })?
            .len();
        if size > self.settings.max_doc_bytes {
            return Ok(FileOutcome::Skipped(format!(
                "{size} bytes, over rag.max_doc_bytes ({})",
                self.settings.max_doc_bytes
            )));
        }
        let bytes = tokio::fs::read(path).await.map_err(|source| RagError::Io {
            path: path.to_owned(),
            source,
        })?;
        // The file may have grown between the two looks.
        if bytes.len() as u64 > self.settings.max_doc_bytes {
            return Ok(FileOutcome::Skipped(format!(
                "{} bytes, over rag.max_doc_bytes ({})",
                bytes.len(),
                self.settings.max_doc_bytes
            )));
        }
        let Ok(text) = String::from_utf8(bytes) else {
            return Ok(FileOutcome::Skipped("not UTF-8 text".into()));
        };
        let hash = sha256_hex(
            format!(
                "{}:{}:{text}",
                self.settings.chunk_chars, self.settings.chunk_overlap
            )
            .as_bytes(),
        );
        let stored = self.store.entries(group).await?;
        if !stored.is_empty() && stored.iter().all(|e| e.hash == hash) {
            return Ok(FileOutcome::Unchanged);
        }
        let markdown = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| MARKDOWN_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        let pieces = chunk_document(
            &text,
            self.settings.chunk_chars,
            self.settings.chunk_overlap,
            markdown,
        );
        let chunks: Vec<Chunk> = pieces
            .into_iter()
            .enumerate()
            .map(|(i, piece)| {
                let source = format!("{group}#chunk{i}");
                let mut metadata = serde_json::Map::new();
                metadata.insert("path".into(), path.display().to_string().into());
                metadata.insert("root".into(), root.display().to_string().into());
                metadata.insert("file".into(), relative.into());
                metadata.insert("heading".into(), piece.heading.clone().into());
                metadata.insert("chunk".into(), i.into());
                Chunk {
                    id: chunk_id(&source),
                    source,
                    group: group.to_owned(),
                    hash: hash.clone(),
                    text: if piece.heading.is_empty() {
                        piece.text
                    } else {
                        format!("{}\n\n{}", piece.heading, piece.text)
                    },
                    metadata,
                    vector: Vec::new(),
                }
            })
            .collect();
        let count = chunks.len();
        // Every chunk's hash changed, so all are re-embedded; old extra chunks are pruned.
        self.replace_group(group, chunks, true).await?;
        Ok(FileOutcome::Stored(count))
    }

    /// Keep a completed turn (question and final answer) under `conversation:SESSION`.
    pub async fn remember_turn(
        &self,
        session: &str,
        user: &str,
        answer: &str,
    ) -> Result<(), RagError> {
        if !self.settings.ingest_conversations || user.trim().is_empty() || answer.trim().is_empty()
        {
            return Ok(());
        }
        let limit = self.settings.chunk_chars * 2;
        let text = truncate(&format!("User: {user}\nAssistant: {answer}"), limit).to_owned();
        let group = format!("{}{session}", super::CONVERSATION_PREFIX);
        let hash = sha256_hex(text.as_bytes());
        let mut metadata = serde_json::Map::new();
        metadata.insert("session".into(), session.into());
        metadata.insert("at".into(), chrono::Utc::now().to_rfc3339().into());
        let chunk = Chunk {
            id: chunk_id(&format!("{group}:{hash}")),
            source: group.clone(),
            group,
            hash,
            text,
            metadata,
            vector: Vec::new(),
        };
        self.embed_and_upsert(vec![chunk]).await
    }
}

enum FileOutcome {
    Unchanged,
    Stored(usize),
    Skipped(String),
}

/// The text that gets embedded for a chunk: a document's file name carries meaning too;
/// schema chunks name their table already.
fn embedding_text(chunk: &Chunk) -> String {
    match chunk.metadata.get("file").and_then(|f| f.as_str()) {
        Some(file) => format!("{file}\n{}", chunk.text),
        None => chunk.text.clone(),
    }
}

/// `text` cut to at most `max` bytes at a char boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    &text[..text.floor_char_boundary(max)]
}

/// Document files under `root` (or `root` itself when it is a file), with their path
/// relative to `root` (the file name for a single file). Hidden entries are skipped.
fn doc_files(root: &Path, skipped: &mut Vec<String>) -> Result<Vec<(PathBuf, String)>, RagError> {
    let io = |source| RagError::Io {
        path: root.to_owned(),
        source,
    };
    let meta = std::fs::metadata(root).map_err(io)?;
    if meta.is_file() {
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(vec![(root.to_owned(), name)]);
    }
    let mut out = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                skipped.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file()
                && path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| DOC_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                let relative = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((path, relative));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_text_names_columns_keys_and_comments() {
        let discovery: Discovery = serde_json::from_value(serde_json::json!({
            "dialect": "postgresql", "schema": "shop", "truncated": false,
            "tables": [{
                "schema": "shop", "name": "order_items", "kind": "table",
                "comment": "lines of an order",
                "columns": [
                    {"name": "order_id", "data_type": "integer", "nullable": false},
                    {"name": "price", "data_type": "numeric", "nullable": true, "comment": "EUR"}
                ],
                "primary_key": ["order_id"],
                "foreign_keys": [{"columns": ["order_id"], "references_table": "orders", "references_columns": ["id"]}]
            }]
        }))
        .unwrap();
        let text = table_text("pg", &discovery.dialect, &discovery.tables[0]);
        assert_eq!(
            text,
            "table shop.order_items (order items), connector pg, postgresql\nlines of an order\ncolumns: order_id integer primary key, references orders.id; price numeric, EUR"
        );
    }

    #[test]
    fn doc_files_walks_recursively_and_skips_hidden_and_other_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub/.git")).unwrap();
        std::fs::write(dir.path().join("a.md"), "# A").unwrap();
        std::fs::write(dir.path().join("sub/b.txt"), "b").unwrap();
        std::fs::write(dir.path().join("sub/c.png"), "c").unwrap();
        std::fs::write(dir.path().join("sub/.git/d.md"), "d").unwrap();
        let mut skipped = Vec::new();
        let files = doc_files(dir.path(), &mut skipped).unwrap();
        let names: Vec<&str> = files.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(names, ["a.md", "sub/b.txt"]);
        let single = doc_files(&dir.path().join("a.md"), &mut skipped).unwrap();
        assert_eq!(single[0].1, "a.md");
        assert!(doc_files(&dir.path().join("missing"), &mut skipped).is_err());
    }

    #[tokio::test]
    async fn tables_of_removed_connectors_are_dropped_and_configured_ones_kept() {
        use crate::rag::VectorStore;
        let config = crate::config::Config::parse(
            "runtime: {builtin_plugins: false}\nplugins:\n  kept: {builtin: sql_connector, enabled: false}\n",
            "test.yaml",
            |_| None,
        )
        .unwrap();
        let runtime = crate::runtime::Runtime::new(std::sync::Arc::new(config)).unwrap();
        let store = std::sync::Arc::new(crate::rag::EmbeddedStore::in_memory());
        let chunk = |group: &str| Chunk {
            id: chunk_id(group),
            source: format!("{group}/public.t"),
            group: group.to_owned(),
            hash: "h".into(),
            text: "t".into(),
            metadata: Default::default(),
            vector: vec![1.0, 0.0],
        };
        store
            .upsert(vec![chunk("schema:gone"), chunk("schema:kept")], "m")
            .await
            .unwrap();
        let settings = runtime.config().rag.clone();
        let rag = Rag::with_store(runtime, settings, store.clone());
        let report = rag.ingest_schemas().await.unwrap();
        assert_eq!(report.removed_connectors, ["gone"]);
        assert_eq!(store.groups("schema:").await.unwrap(), ["schema:kept"]);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("äbc", 1), "");
        assert_eq!(truncate("äbc", 2), "ä");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
