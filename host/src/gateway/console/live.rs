//! `GET /api/v1/events`: what changed in the host, as server-sent events, for pages that stay
//! open. Each event names what to read again (`plugins`, `connectors`, `schedules`) with a
//! small JSON detail; the pages re-read the state, so a missed event costs nothing but
//! freshness (a stream that falls behind gets `resync`). While a stream is open, connector
//! health is checked on the cached cadence, so a connector that changes health is announced
//! without anyone asking.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde_json::json;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::super::GatewayState;
use crate::runtime::RuntimeEvent;
use crate::schedules::metrics::RunEnded;

/// How often an open stream has connector health looked at (answers are cached for
/// `runtime::HEALTH_TTL`, shared by every stream and status page).
const HEALTH_LOOK_EVERY: Duration = Duration::from_secs(10);

pub async fn events(State(state): State<Arc<GatewayState>>) -> Response {
    Sse::new(activity(state))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn event(name: &str, detail: serde_json::Value) -> Event {
    Event::default().event(name).data(detail.to_string())
}

/// What one stream follows.
struct Feed {
    state: Arc<GatewayState>,
    runtime_events: broadcast::Receiver<RuntimeEvent>,
    /// None without schedules (or once their sender is gone).
    runs: Option<broadcast::Receiver<RunEnded>>,
    health: tokio::time::Interval,
}

fn activity(state: Arc<GatewayState>) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut health = tokio::time::interval(HEALTH_LOOK_EVERY);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let feed = Feed {
        runtime_events: state.runtime.subscribe(),
        runs: state.schedules.as_ref().map(|s| s.metrics.watch()),
        state,
        health,
    };
    let hello = futures::stream::once(async { Ok(event("hello", json!({}))) });
    let changes = futures::stream::unfold(feed, |mut feed| async move {
        let next = feed.next().await?;
        Some((Ok(next), feed))
    });
    hello.chain(changes)
}

impl Feed {
    /// The next change; None when the runtime is gone.
    async fn next(&mut self) -> Option<Event> {
        loop {
            let mut runs_closed = false;
            tokio::select! {
                received = self.runtime_events.recv() => return match received {
                    Ok(RuntimeEvent::Loaded { plugin, digest }) => Some(event(
                        "plugins",
                        json!({ "plugin": plugin, "change": "loaded", "digest": digest }),
                    )),
                    Ok(RuntimeEvent::Removed { plugin }) => Some(event(
                        "plugins",
                        json!({ "plugin": plugin, "change": "removed" }),
                    )),
                    Ok(RuntimeEvent::Rejected { source, reason }) => Some(event(
                        "plugins",
                        json!({ "source": source, "change": "refused", "reason": reason }),
                    )),
                    Ok(RuntimeEvent::HealthChanged { connector, status }) => Some(event(
                        "connectors",
                        json!({ "connector": connector, "status": status }),
                    )),
                    Err(RecvError::Lagged(_)) => Some(event("resync", json!({}))),
                    Err(RecvError::Closed) => None,
                },
                ended = next_run(&mut self.runs) => match ended {
                    Ok(ended) => return Some(event(
                        "schedules",
                        json!({ "job": ended.job, "outcome": ended.outcome }),
                    )),
                    Err(RecvError::Lagged(_)) => return Some(event("resync", json!({}))),
                    Err(RecvError::Closed) => runs_closed = true,
                },
                _ = self.health.tick() => {
                    // A change comes back through `runtime_events`.
                    self.state
                        .runtime
                        .connectors_health(crate::runtime::HEALTH_TTL)
                        .await;
                }
            }
            if runs_closed {
                self.runs = None;
            }
        }
    }
}

async fn next_run(runs: &mut Option<broadcast::Receiver<RunEnded>>) -> Result<RunEnded, RecvError> {
    match runs {
        Some(runs) => runs.recv().await,
        None => std::future::pending().await,
    }
}
