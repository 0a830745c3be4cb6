//! `filesystem`: read_file, write_file, edit_file and list_dir inside the folders the operator
//! granted (`permissions.filesystem`, each `ro` by default). Nothing outside them exists for
//! this plugin: WASI resolves every path beneath a granted folder, `..` included.
//!
//! Config: `max_read_bytes` (default 262144).

use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use databot_sdk::prelude::*;

databot_sdk::manifest! {
    name: "filesystem",
    kind: "tool",
    description: "Read, write, edit and list files inside folders the operator granted.",
    capabilities: ["filesystem", "config"],
}

const DEFAULT_MAX_READ_BYTES: u64 = 256 * 1024;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    /// Path of the file, inside a granted folder (e.g. /workspace/notes.md).
    path: String,
    /// First line to return, counting from 1 (default 1).
    #[serde(default)]
    #[schemars(range(min = 1))]
    offset: Option<usize>,
    /// Most lines to return (default: all, up to the byte limit).
    #[serde(default)]
    #[schemars(range(min = 1))]
    limit: Option<usize>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WriteArgs {
    /// Path of the file, inside a folder granted for writing.
    path: String,
    /// The text to write.
    content: String,
    /// Add to the end instead of replacing the file.
    #[serde(default)]
    append: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct EditArgs {
    /// Path of the file, inside a folder granted for writing.
    path: String,
    /// Exact text to replace; it must occur exactly once in the file.
    old_text: String,
    /// Replacement text.
    new_text: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    /// Folder to list, inside a granted folder.
    path: String,
    /// Include names starting with a dot.
    #[serde(default)]
    include_hidden: bool,
}

#[derive(Serialize)]
struct FileText {
    path: String,
    content: String,
    /// Lines returned, and the total in the file (as far as it was read).
    lines: usize,
    total_lines: usize,
    truncated: bool,
}

#[derive(Serialize)]
struct Written {
    path: String,
    bytes: usize,
}

#[derive(Serialize)]
struct Entry {
    name: String,
    kind: &'static str,
    size: u64,
}

fn io_error(path: &str, action: &str, error: std::io::Error) -> PluginError {
    match error.kind() {
        ErrorKind::NotFound => PluginError::NotFound(format!(
            "{path} does not exist, or is outside the folders granted to this tool"
        )),
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
            PluginError::Denied(format!(
                "cannot {action} {path}: the folder is read-only for this tool (the operator grants writes with `mode: rw` under `permissions.filesystem`)"
            ))
        }
        _ => PluginError::Failed(format!("cannot {action} {path}: {error}")),
    }
}

fn read_text(path: &str, max: u64) -> Result<(String, bool), PluginError> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, "read", e))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, "read", e))?;
    let truncated = bytes.len() as u64 > max;
    bytes.truncate(max as usize);
    if bytes.contains(&0) {
        return Err(PluginError::InvalidInput(format!(
            "{path} is a binary file"
        )));
    }
    Ok((String::from_utf8_lossy(&bytes).into_owned(), truncated))
}

databot_sdk::tools! {
    /// Read a text file, optionally a range of lines.
    fn read_file(args: ReadArgs) -> Result<FileText, PluginError> {
        let max = databot_sdk::config_value::<u64>("max_read_bytes")?.unwrap_or(DEFAULT_MAX_READ_BYTES);
        let (text, cut) = read_text(&args.path, max)?;
        let all: Vec<&str> = text.lines().collect();
        let start = args.offset.unwrap_or(1).saturating_sub(1).min(all.len());
        let end = args.limit.map_or(all.len(), |l| (start + l).min(all.len()));
        Ok(FileText {
            path: args.path,
            content: all[start..end].join("\n"),
            lines: end - start,
            total_lines: all.len(),
            truncated: cut || end < all.len(),
        })
    }

    /// Create or replace a text file (parent folders are created), or append to it.
    fn write_file(args: WriteArgs) -> Result<Written, PluginError> {
        if let Some(parent) = Path::new(&args.path).parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| io_error(&args.path, "write", e))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(args.append)
            .truncate(!args.append)
            .open(&args.path)
            .map_err(|e| io_error(&args.path, "write", e))?;
        file.write_all(args.content.as_bytes()).map_err(|e| io_error(&args.path, "write", e))?;
        Ok(Written { path: args.path, bytes: args.content.len() })
    }

    /// Replace one exact, unique piece of text in a file.
    fn edit_file(args: EditArgs) -> Result<Written, PluginError> {
        if args.old_text.is_empty() {
            return Err(PluginError::InvalidInput("old_text must not be empty".into()));
        }
        let text = std::fs::read_to_string(&args.path).map_err(|e| io_error(&args.path, "read", e))?;
        match text.matches(&args.old_text).count() {
            1 => {}
            0 => return Err(PluginError::InvalidInput(format!("old_text does not occur in {}", args.path))),
            n => return Err(PluginError::InvalidInput(format!(
                "old_text occurs {n} times in {}; include more context so it is unique", args.path
            ))),
        }
        let edited = text.replacen(&args.old_text, &args.new_text, 1);
        std::fs::write(&args.path, &edited).map_err(|e| io_error(&args.path, "write", e))?;
        Ok(Written { path: args.path, bytes: edited.len() })
    }

    /// List a folder: names, kinds (file, dir) and sizes, sorted by name.
    fn list_dir(args: ListArgs) -> Result<Vec<Entry>, PluginError> {
        let entries = std::fs::read_dir(&args.path).map_err(|e| io_error(&args.path, "list", e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&args.path, "list", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && !args.include_hidden {
                continue;
            }
            let meta = entry.metadata().map_err(|e| io_error(&args.path, "list", e))?;
            out.push(Entry {
                name,
                kind: if meta.is_dir() { "dir" } else { "file" },
                size: if meta.is_dir() { 0 } else { meta.len() },
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
