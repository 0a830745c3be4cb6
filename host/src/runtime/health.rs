//! Connector health: every connector checked in parallel, each answer cached for a while
//! (30 s by default) per plugin revision, so status pages and the CLI do not hammer the
//! services behind the connectors. A new revision is checked afresh. A check whose answer
//! differs from the connector's previous one is announced (`Runtime::health_changes`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::broadcast;

use super::Runtime;
use crate::contract::HealthStatus;

/// How long one health answer is reused.
pub const HEALTH_TTL: Duration = Duration::from_secs(30);

/// The health of one connector, as shown by the CLI and the gateway.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorHealth {
    pub name: String,
    /// `healthy`, `degraded`, `unreachable` or `not_configured`.
    pub status: String,
    pub message: String,
    /// Seconds since this answer was obtained.
    pub age_seconds: u64,
    pub operations: Vec<String>,
}

struct Cached {
    digest: String,
    at: Instant,
    status: String,
    message: String,
}

/// A connector's health changed.
#[derive(Debug, Clone)]
pub struct HealthChange {
    pub connector: String,
    pub status: String,
}

/// Health answers by connector name, and their changes as they are seen.
pub struct HealthCache {
    entries: Mutex<HashMap<String, Cached>>,
    changes: broadcast::Sender<HealthChange>,
}

impl Default for HealthCache {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
            changes: broadcast::channel(64).0,
        }
    }
}

fn status_name(status: HealthStatus) -> &'static str {
    match status {
        HealthStatus::Healthy => "healthy",
        HealthStatus::Degraded => "degraded",
        HealthStatus::Unreachable => "unreachable",
        HealthStatus::NotConfigured => "not_configured",
    }
}

impl Runtime {
    /// Connector health changes as checks see them (a slow reader misses some and should
    /// read `connectors_health` again).
    pub fn health_changes(&self) -> broadcast::Receiver<HealthChange> {
        self.inner.health.changes.subscribe()
    }

    /// Health of every loaded connector; answers younger than `max_age` are reused, the rest
    /// are checked concurrently.
    pub async fn connectors_health(&self, max_age: Duration) -> Vec<ConnectorHealth> {
        let connectors: Vec<_> = self
            .status()
            .into_iter()
            .filter(|s| s.kind.as_deref() == Some("connector") && s.digest.is_some())
            .collect();
        let checks = connectors.into_iter().map(|status| {
            let runtime = self.clone();
            async move {
                let digest = status.digest.clone().unwrap_or_default();
                let cache = &runtime.inner.health;
                let fresh = cache.entries.lock().get(&status.name).and_then(|c| {
                    (c.digest == digest && c.at.elapsed() < max_age)
                        .then(|| (c.status.clone(), c.message.clone(), c.at))
                });
                let (state, message, at) = match fresh {
                    Some(found) => found,
                    None => {
                        let (state, message) = match runtime.connector_health(&status.name).await {
                            Ok(health) => (status_name(health.status).to_owned(), health.message),
                            Err(error) => ("unreachable".to_owned(), error.to_string()),
                        };
                        let at = Instant::now();
                        let previous = cache.entries.lock().insert(
                            status.name.clone(),
                            Cached {
                                digest,
                                at,
                                status: state.clone(),
                                message: message.clone(),
                            },
                        );
                        if previous.is_some_and(|previous| previous.status != state) {
                            let _ = cache.changes.send(HealthChange {
                                connector: status.name.clone(),
                                status: state.clone(),
                            });
                        }
                        (state, message, at)
                    }
                };
                ConnectorHealth {
                    name: status.name,
                    status: state,
                    message,
                    age_seconds: at.elapsed().as_secs(),
                    operations: status.operations,
                }
            }
        });
        futures::future::join_all(checks).await
    }
}
