//! What `databot plugin list` and the status endpoints show about loaded and refused plugins.

use std::path::Path;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::{BreakerState, PluginSlot};

#[derive(Debug, Clone, Serialize)]
pub struct ToolInfo {
    pub name: String,
    pub plugin: String,
    /// A built-in or a plugin with a `plugins.NAME` section (not a file that named itself).
    pub configured: bool,
    pub description: String,
    pub input_schema: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    pub name: String,
    pub kind: Option<String>,
    pub version: Option<String>,
    /// The manifest's description (the author's words: shown as text, never markup).
    pub description: Option<String>,
    pub source: String,
    pub digest: Option<String>,
    /// The trusted key that signed it (`runtime.trusted_keys`), when it is signed.
    pub signer: Option<crate::signature::Signer>,
    /// `ready`, `degraded` (a newer revision was refused; the old one serves) or `refused`.
    pub state: String,
    pub breaker: Option<BreakerState>,
    pub operations: Vec<String>,
    pub revisions: u64,
    pub calls: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    /// The limits every call runs under.
    pub budgets: Option<crate::config::Budgets>,
    /// What it was granted (`PluginGrants::summary`: never a secret's value).
    pub capabilities: Vec<String>,
    /// Mean time of its calls so far, admission to result.
    pub mean_latency_ms: Option<f64>,
}

impl PluginStatus {
    pub(super) fn of_slot(slot: &PluginSlot) -> Self {
        let revision = slot.current();
        let last_error = slot.last_error.lock().clone();
        Self {
            name: slot.name.clone(),
            kind: Some(revision.manifest.kind.as_str().to_owned()),
            version: Some(revision.manifest.version.clone()),
            description: Some(revision.manifest.description.clone()),
            source: revision.source.to_string(),
            digest: Some(revision.digest.clone()),
            signer: revision.signer.clone(),
            state: if last_error.is_some() {
                "degraded"
            } else {
                "ready"
            }
            .to_owned(),
            breaker: Some(slot.breaker.state()),
            operations: revision.operations.iter().map(|o| o.name.clone()).collect(),
            revisions: slot.revisions.load(Ordering::Relaxed),
            calls: slot.calls.load(Ordering::Relaxed),
            failures: slot.failures.load(Ordering::Relaxed),
            last_error,
            budgets: Some(slot.budgets.clone()),
            capabilities: slot.grants.summary(),
            mean_latency_ms: None,
        }
    }

    pub(super) fn rejected(path: &Path, reason: &str) -> Self {
        Self {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            kind: None,
            version: None,
            description: None,
            source: path.display().to_string(),
            digest: None,
            signer: None,
            state: "refused".to_owned(),
            breaker: None,
            operations: Vec::new(),
            revisions: 0,
            calls: 0,
            failures: 0,
            last_error: Some(reason.to_owned()),
            budgets: None,
            capabilities: Vec::new(),
            mean_latency_ms: None,
        }
    }
}
