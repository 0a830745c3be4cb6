//! Tool groups: named sets of tools (the original's "skills") an operator turns on and off at
//! runtime, from the CLI or the API. A tool in a group that is off is not offered to the
//! model, not listed over MCP and not callable; a tool in no group is always on (its grants
//! still decide whether it loads).
//!
//! The built-in groups cover the first-party tools; `agent.tool_groups` changes or adds to
//! them. Turning a group on or off is kept in `DATA_DIR/tool_groups.json`, never by rewriting
//! the operator's YAML, and every process on that data dir sees the change within a second
//! (the file is looked at again at most once a second, when a tool is resolved). Changes from
//! several processes are serialized by a lock file and written whole (a new file renamed into
//! place); a file that cannot be read leaves the last state read in force, so a damaged file
//! never turns back on what an operator turned off.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::tool_names::ToolOwner;
use crate::config::ToolGroupConfig;

/// The groups every host has: (name, description, tools).
const BUILT_IN: &[(&str, &str, &[&str])] = &[
    ("sql", "SQL queries and schemas", &["sql"]),
    ("data_quality", "Data quality checks", &["data_quality"]),
    ("pipelines", "Airflow and Spark", &["airflow", "spark"]),
    ("streaming", "Kafka topics, lag, schemas", &["kafka"]),
    (
        "catalog",
        "Data catalogs and lineage",
        &["catalog", "lineage"],
    ),
    (
        "filesystem",
        "Reading and writing granted folders",
        &["filesystem"],
    ),
    ("shell", "Running granted programs", &["shell"]),
    (
        "web",
        "Fetching pages and searching the web",
        &["web_fetch", "web_search"],
    ),
    ("memory", "The agent's persistent memory", &["memory"]),
    ("scheduling", "The agent's `cron` tool", &["cron"]),
];

/// A group as listed.
#[derive(Debug, Clone, Serialize)]
pub struct ToolGroup {
    pub name: String,
    pub description: String,
    pub tools: Vec<String>,
    pub enabled: bool,
    /// Turned on or off at runtime (otherwise the configured default holds).
    pub overridden: bool,
}

/// What `tool_groups.json` keeps: the groups an operator turned on or off.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Overrides {
    #[serde(default)]
    enabled: BTreeSet<String>,
    #[serde(default)]
    disabled: BTreeSet<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolGroupError {
    #[error("no tool group named `{0}` (see `databot tool groups`)")]
    Unknown(String),
    #[error("saving the tool groups to {path}: {source}")]
    Save {
        path: String,
        source: std::io::Error,
    },
}

pub struct ToolGroups {
    /// name -> (description, tools, enabled by default)
    groups: BTreeMap<String, ToolGroupConfig>,
    file: Option<PathBuf>,
    overrides: ArcSwap<Overrides>,
    /// The groups that are off now (defaults with the overrides applied).
    disabled: ArcSwap<Vec<String>>,
    /// When the file was last looked at (ms) and its modification time then.
    checked_at: AtomicI64,
    file_stamp: Mutex<Option<SystemTime>>,
    /// One change at a time in this process (the lock file orders processes).
    writing: Mutex<()>,
}

impl ToolGroups {
    /// The built-in groups with `configured` applied, and the overrides kept in `file`.
    pub fn new(configured: &BTreeMap<String, ToolGroupConfig>, file: Option<PathBuf>) -> Self {
        let mut groups: BTreeMap<String, ToolGroupConfig> = BUILT_IN
            .iter()
            .map(|(name, description, tools)| {
                (
                    (*name).to_owned(),
                    ToolGroupConfig {
                        description: (*description).to_owned(),
                        tools: tools.iter().map(|t| (*t).to_owned()).collect(),
                        enabled: true,
                    },
                )
            })
            .collect();
        for (name, group) in configured {
            groups.insert(name.clone(), group.clone());
        }
        let groups = Self {
            groups,
            file,
            overrides: ArcSwap::default(),
            disabled: ArcSwap::default(),
            checked_at: AtomicI64::new(0),
            file_stamp: Mutex::new(None),
            writing: Mutex::new(()),
        };
        // The configured defaults hold until (and unless) the file is read.
        groups.apply(Overrides::default());
        groups.reload();
        groups
    }

    /// Every group with its state.
    pub fn list(&self) -> Vec<ToolGroup> {
        self.refresh();
        let overrides = self.overrides.load();
        self.groups
            .iter()
            .map(|(name, group)| ToolGroup {
                name: name.clone(),
                description: group.description.clone(),
                tools: group.tools.clone(),
                enabled: !self.disabled.load().contains(name),
                overridden: overrides.enabled.contains(name) || overrides.disabled.contains(name),
            })
            .collect()
    }

    /// Turn a group on or off, here and in the file.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), ToolGroupError> {
        if !self.groups.contains_key(name) {
            return Err(ToolGroupError::Unknown(name.to_owned()));
        }
        let save_error = |path: &std::path::Path, source| ToolGroupError::Save {
            path: path.display().to_string(),
            source,
        };
        let _one_at_a_time = self.writing.lock();
        // Other processes wait here until this change is written.
        let _file_lock = match &self.file {
            Some(file) => Some(lock_file(file).map_err(|e| save_error(file, e))?),
            None => None,
        };
        let mut overrides = match self.read_file() {
            Ok(Some(overrides)) => overrides,
            Ok(None) => Overrides::default(),
            Err(()) => Overrides::clone(&self.overrides.load()),
        };
        overrides.enabled.remove(name);
        overrides.disabled.remove(name);
        let default = self.groups.get(name).is_some_and(|g| g.enabled);
        if enabled != default {
            if enabled {
                overrides.enabled.insert(name.to_owned());
            } else {
                overrides.disabled.insert(name.to_owned());
            }
        }
        if let Some(file) = &self.file {
            write_atomically(file, &overrides).map_err(|e| save_error(file, e))?;
        }
        self.apply(overrides);
        Ok(())
    }

    /// Is this tool on (in no group that is off)?
    pub fn allows(&self, tool: &str, owner: ToolOwner<'_>) -> bool {
        self.refresh();
        let disabled = self.disabled.load();
        disabled.is_empty()
            || !disabled.iter().any(|name| {
                self.groups
                    .get(name)
                    .is_some_and(|group| turns_off(group, tool, owner))
            })
    }

    /// The group that turns this tool off, if one does.
    pub fn disabling_group(&self, tool: &str, owner: ToolOwner<'_>) -> Option<String> {
        self.refresh();
        self.disabled
            .load()
            .iter()
            .find(|name| {
                self.groups
                    .get(*name)
                    .is_some_and(|group| turns_off(group, tool, owner))
            })
            .cloned()
    }

    /// Look at the file again if a second has passed since the last look and it changed.
    fn refresh(&self) {
        if self.file.is_none() {
            return;
        }
        let now = chrono::Utc::now().timestamp_millis();
        let last = self.checked_at.load(Ordering::Relaxed);
        if now - last < 1000
            || self
                .checked_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let stamp = self
            .file
            .as_ref()
            .and_then(|f| std::fs::metadata(f).ok())
            .and_then(|m| m.modified().ok());
        if *self.file_stamp.lock() != stamp {
            self.reload();
        }
    }

    fn reload(&self) {
        let stamp = self
            .file
            .as_ref()
            .and_then(|f| std::fs::metadata(f).ok())
            .and_then(|m| m.modified().ok());
        *self.file_stamp.lock() = stamp;
        // An unreadable file keeps the last state read in force (see the module's header).
        if let Ok(overrides) = self.read_file() {
            self.apply(overrides.unwrap_or_default());
        }
    }

    /// The file's overrides: `Ok(None)` when there is no file, `Err` when it cannot be read
    /// or parsed (logged).
    fn read_file(&self) -> Result<Option<Overrides>, ()> {
        let Some(file) = &self.file else {
            return Ok(None);
        };
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                tracing::warn!(
                    "{}: cannot be read, keeping the tool groups as they were: {error}",
                    file.display()
                );
                return Err(());
            }
        };
        serde_json::from_str(&text).map(Some).map_err(|error| {
            tracing::warn!(
                "{}: does not parse, keeping the tool groups as they were: {error}",
                file.display()
            );
        })
    }

    fn apply(&self, overrides: Overrides) {
        let disabled: Vec<String> = self
            .groups
            .iter()
            .filter(|(name, group)| {
                overrides.disabled.contains(*name)
                    || (!group.enabled && !overrides.enabled.contains(*name))
            })
            .map(|(name, _)| name.clone())
            .collect();
        self.disabled.store(Arc::new(disabled));
        self.overrides.store(Arc::new(overrides));
    }
}

/// Does `group` name `tool` (by its name, or its plugin's)? Unlike the lists that grant
/// (`names_tool`), a plugin the operator did not configure is matched too: turning a tool
/// off must hold whoever provides it.
fn turns_off(group: &ToolGroupConfig, tool: &str, owner: ToolOwner<'_>) -> bool {
    group.tools.iter().any(|listed| {
        listed == tool || matches!(owner, ToolOwner::Plugin { name, .. } if listed == name)
    })
}

/// The exclusive lock beside `file`, held until the returned handle is dropped.
fn lock_file(file: &std::path::Path) -> std::io::Result<std::fs::File> {
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(file.with_extension("json.lock"))?;
    lock.lock()?;
    Ok(lock)
}

/// Write the file whole: a new file of this process's own, on disk before it is renamed into
/// place (a crash leaves the old file or the new one, never an empty one).
fn write_atomically(file: &std::path::Path, overrides: &Overrides) -> std::io::Result<()> {
    use std::io::Write as _;
    let text = serde_json::to_string_pretty(overrides).map_err(std::io::Error::other)?;
    let temporary = file.with_extension(format!("json.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&temporary).and_then(|mut out| {
        out.write_all(text.as_bytes())?;
        out.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&temporary, file));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    renamed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell() -> ToolOwner<'static> {
        ToolOwner::Plugin {
            name: "shell",
            configured: true,
        }
    }

    #[test]
    fn groups_turn_off_their_tools_and_the_change_is_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("tool_groups.json");
        let groups = ToolGroups::new(&BTreeMap::new(), Some(file.clone()));
        assert!(groups.allows("shell_run", shell()));
        groups.set_enabled("shell", false).expect("off");
        assert!(!groups.allows("shell_run", shell()));
        assert_eq!(
            groups.disabling_group("shell_run", shell()).as_deref(),
            Some("shell")
        );
        assert!(groups.allows("memory", ToolOwner::Host));
        // Another process on the same data dir reads the same state.
        let other = ToolGroups::new(&BTreeMap::new(), Some(file.clone()));
        assert!(!other.allows("shell_run", shell()));
        // A damaged file leaves the last state read in force.
        std::fs::write(&file, "{not json").expect("damaged");
        other.reload();
        assert!(
            !other.allows("shell_run", shell()),
            "still off after a damaged read"
        );
        groups.set_enabled("shell", false).expect("rewritten");
        groups.set_enabled("shell", true).expect("on");
        let text = std::fs::read_to_string(&file).expect("file");
        assert!(!text.contains("shell"), "back to the default: {text}");
        assert!(matches!(
            groups.set_enabled("nope", true),
            Err(ToolGroupError::Unknown(_))
        ));
    }

    #[test]
    fn configured_groups_add_and_change_defaults() {
        let mut configured = BTreeMap::new();
        configured.insert(
            "risky".to_owned(),
            ToolGroupConfig {
                description: "off until asked".into(),
                tools: vec!["echo".into()],
                enabled: false,
            },
        );
        let groups = ToolGroups::new(&configured, None);
        let echo = ToolOwner::Plugin {
            name: "echo",
            configured: true,
        };
        assert!(!groups.allows("echo", echo));
        groups.set_enabled("risky", true).expect("on");
        assert!(groups.allows("echo", echo));
        assert!(
            groups
                .list()
                .iter()
                .any(|g| g.name == "risky" && g.overridden)
        );
    }
}
