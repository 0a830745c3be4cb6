//! Hot loading: watch the plugins folder and load, swap or unload components as files come,
//! change and go. Events are debounced per file; compiles happen off the event thread. With
//! `runtime.rescan_seconds` the folder is also listed periodically and files whose size or
//! modification time changed (or that appeared or went) go through the same path: file
//! events do not reach a replica from writes made on another machine.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use notify::{RecursiveMode, Watcher};

use super::Runtime;

/// Quiet time after the last event for a file before it is (re)loaded.
const DEBOUNCE: Duration = Duration::from_millis(40);

/// Keeps the watcher alive; dropping it stops hot loading.
pub struct HotLoader {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
    rescan: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for HotLoader {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(rescan) = &self.rescan {
            rescan.abort();
        }
    }
}

impl Runtime {
    /// Start watching the plugins folder (created if missing).
    pub fn watch(&self) -> anyhow::Result<HotLoader> {
        let folder = self.plugins_dir();
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
        let rescan = match self.config().runtime.rescan_seconds {
            0 => None,
            seconds => Some(tokio::spawn(rescan(
                folder.clone(),
                Duration::from_secs(seconds),
                sender.clone(),
            ))),
        };
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) => {
                    for path in event.paths {
                        // A signature added, changed or removed reloads its component.
                        let path = crate::signature::signed_file(&path).unwrap_or(path);
                        if path.extension().is_some_and(|e| e == "wasm") {
                            let _ = sender.send(path);
                        }
                    }
                }
                Err(error) => tracing::warn!("plugin folder watch error: {error}"),
            })
            .context("starting the plugin folder watcher")?;
        watcher
            .watch(&folder, RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {}", folder.display()))?;
        tracing::info!(folder = %folder.display(), "watching for plugin changes");
        let runtime = self.clone();
        let task = tokio::spawn(async move {
            let mut pending: HashMap<PathBuf, tokio::time::Instant> = HashMap::new();
            loop {
                let next_due = pending.values().min().copied();
                tokio::select! {
                    path = receiver.recv() => match path {
                        Some(path) => { pending.insert(path, tokio::time::Instant::now() + DEBOUNCE); }
                        None => break,
                    },
                    () = async { if let Some(due) = next_due { tokio::time::sleep_until(due).await } else { std::future::pending().await } } => {
                        let now = tokio::time::Instant::now();
                        let due: Vec<PathBuf> = pending.iter().filter(|(_, at)| **at <= now).map(|(p, _)| p.clone()).collect();
                        for path in due {
                            pending.remove(&path);
                            // One file at a time, so an older revision never lands after a newer one.
                            if path.is_file() {
                                // Errors are recorded in status and logged by load_file.
                                let _ = runtime.load_file(&path).await;
                            } else {
                                runtime.unload_file(&path);
                            }
                        }
                    }
                }
            }
        });
        Ok(HotLoader {
            _watcher: watcher,
            task,
            rescan,
        })
    }
}

/// What a listing knows of a file: its size and modification time, and its signature's.
type Stamp = (
    u64,
    Option<std::time::SystemTime>,
    Option<std::time::SystemTime>,
);
type Seen = HashMap<PathBuf, Stamp>;

/// The folder's plugin files; `None` when it cannot be read (a network volume's blip must
/// not look like every plugin removed).
fn list_plugins(folder: &std::path::Path) -> Option<Seen> {
    let entries = std::fs::read_dir(folder).ok()?;
    let listed = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "wasm"))
        .filter_map(|path| {
            // Followed through symlinks: a ConfigMap's files are links into a swapped folder.
            let metadata = std::fs::metadata(&path).ok()?;
            let signed = std::fs::metadata(crate::signature::signature_path(&path))
                .and_then(|m| m.modified())
                .ok();
            metadata
                .is_file()
                .then(|| (path, (metadata.len(), metadata.modified().ok(), signed)))
        })
        .collect();
    Some(listed)
}

/// Every `every`, send the files that appeared, changed or went since the last listing.
async fn rescan(
    folder: PathBuf,
    every: Duration,
    changed: tokio::sync::mpsc::UnboundedSender<PathBuf>,
) {
    // Empty at first: the first look offers every file, so one swapped while the host was
    // loading is not missed (an unchanged file loads as a no-op, by its digest).
    let mut seen = Seen::new();
    loop {
        tokio::time::sleep(every).await;
        let listed = folder.clone();
        let Ok(Some(now)) = tokio::task::spawn_blocking(move || list_plugins(&listed)).await else {
            tracing::warn!(folder = %folder.display(), "the plugins folder cannot be listed; trying again later");
            continue;
        };
        for (path, stamp) in &now {
            if seen.get(path) != Some(stamp) && changed.send(path.clone()).is_err() {
                return;
            }
        }
        for path in seen.keys().filter(|path| !now.contains_key(*path)) {
            if changed.send(path.clone()).is_err() {
                return;
            }
        }
        seen = now;
    }
}
