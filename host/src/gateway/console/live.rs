//! `GET /api/v1/events`: what changed in the host, as server-sent events, for pages that stay
//! open. Each event names what to read again (`plugins`, `connectors`, `schedules`) with a
//! small detail; the pages re-read what they may see, so a missed event costs nothing but
//! freshness (a stream that falls behind gets `resync`). Schedule events name no job, so no
//! principal learns of another's jobs.
//!
//! Streams are bounded (`MAX_STREAMS` in all, `MAX_STREAMS_PER_PRINCIPAL` per principal: each
//! holds a connection), end when the gateway shuts down, and a stream opened with a console
//! session ends when the session does (expired, signed out, its key removed). While streams
//! are open, connector health is looked at every `HEALTH_LOOK_EVERY` host-wide (answers
//! cached for `runtime::HEALTH_TTL`), so a connector that changes health is announced
//! without anyone asking.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use http::StatusCode;
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::super::auth::{ApiKeys, Principal};
use super::super::{ApiError, GatewayState};
use crate::runtime::{HealthChange, RuntimeEvent};
use crate::schedules::metrics::RunEnded;

/// How often, host-wide, connector health is looked at while streams are open.
const HEALTH_LOOK_EVERY: Duration = Duration::from_secs(10);
/// How often a stream checks that its session still holds.
const SESSION_CHECK_EVERY: Duration = Duration::from_secs(10);
/// Streams open at once, in all and per principal.
const MAX_STREAMS: usize = 128;
const MAX_STREAMS_PER_PRINCIPAL: usize = 16;

/// The open streams by principal, and when health was last looked at for them.
#[derive(Default)]
pub struct ActivityStreams {
    open: Mutex<HashMap<String, usize>>,
    health_looked: Mutex<Option<Instant>>,
}

impl ActivityStreams {
    /// A place for one more stream of `principal`, if there is room.
    fn admit(self: &Arc<Self>, principal: &Principal) -> Option<StreamPlace> {
        let mut open = self.open.lock();
        let total: usize = open.values().sum();
        let mine = open.entry(principal.as_str().to_owned()).or_default();
        if total >= MAX_STREAMS || *mine >= MAX_STREAMS_PER_PRINCIPAL {
            return None;
        }
        *mine += 1;
        Some(StreamPlace {
            streams: self.clone(),
            principal: principal.as_str().to_owned(),
        })
    }

    /// Whether it is this stream's turn to look at connector health (once per
    /// `HEALTH_LOOK_EVERY` over every stream).
    fn health_turn(&self) -> bool {
        let mut looked = self.health_looked.lock();
        let now = Instant::now();
        if looked.is_some_and(|at| now.duration_since(at) < HEALTH_LOOK_EVERY) {
            return false;
        }
        *looked = Some(now);
        true
    }
}

/// A stream's place; given back when the stream ends.
struct StreamPlace {
    streams: Arc<ActivityStreams>,
    principal: String,
}

impl Drop for StreamPlace {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock();
        if let Some(count) = open.get_mut(&self.principal) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.principal);
            }
        }
    }
}

pub async fn events(
    State(state): State<Arc<GatewayState>>,
    Extension(principal): Extension<Principal>,
    headers: http::HeaderMap,
) -> Response {
    let Some(place) = state.activity.admit(&principal) else {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!(
                "at most {MAX_STREAMS_PER_PRINCIPAL} activity streams per key and {MAX_STREAMS} in all; close one"
            ),
        )
        .into_response();
    };
    // Opened with the console's session (no key): it ends with the session.
    let session_cookie = (!state.keys.is_empty() && ApiKeys::presented(&headers).is_none())
        .then(|| super::session::cookie(&headers, super::session::COOKIE))
        .flatten()
        .map(str::to_owned);
    let feed = Feed {
        runtime_events: state.runtime.subscribe(),
        health_changes: state.runtime.health_changes(),
        runs: state.schedules.as_ref().map(|s| s.metrics.watch()),
        tick: tokio::time::interval(SESSION_CHECK_EVERY.min(HEALTH_LOOK_EVERY)),
        session_cookie,
        state,
        _place: place,
    };
    Sse::new(activity(feed))
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
    health_changes: broadcast::Receiver<HealthChange>,
    /// None without schedules (or once their sender is gone).
    runs: Option<broadcast::Receiver<RunEnded>>,
    tick: tokio::time::Interval,
    /// The console session's cookie the stream was opened with, checked on every tick.
    session_cookie: Option<String>,
    _place: StreamPlace,
}

fn activity(feed: Feed) -> impl Stream<Item = Result<Event, Infallible>> {
    let hello = futures::stream::once(async { Ok(event("hello", json!({}))) });
    let changes = futures::stream::unfold(feed, |mut feed| async move {
        let next = feed.next().await?;
        Some((Ok(next), feed))
    });
    hello.chain(changes)
}

impl Feed {
    /// Whether the stream may go on: the gateway serves and its session (if any) holds.
    fn may_go_on(&self) -> bool {
        !self.state.shutdown.is_cancelled()
            && self.session_cookie.as_deref().is_none_or(|cookie| {
                self.state
                    .console
                    .verify(cookie, &self.state.keys)
                    .is_some()
            })
    }

    /// The next change; None when the stream must end.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if !self.may_go_on() {
                return None;
            }
            let mut runs_closed = false;
            let shutdown = self.state.shutdown.clone();
            tokio::select! {
                () = shutdown.cancelled() => return None,
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
                    Err(RecvError::Lagged(_)) => Some(event("resync", json!({}))),
                    Err(RecvError::Closed) => None,
                },
                changed = self.health_changes.recv() => match changed {
                    Ok(HealthChange { connector, status }) => return Some(event(
                        "connectors",
                        json!({ "connector": connector, "status": status }),
                    )),
                    Err(RecvError::Lagged(_)) => return Some(event("resync", json!({}))),
                    Err(RecvError::Closed) => return None,
                },
                ended = next_run(&mut self.runs) => match ended {
                    Ok(ended) => return Some(event("schedules", json!({ "outcome": ended.outcome }))),
                    Err(RecvError::Lagged(_)) => return Some(event("resync", json!({}))),
                    Err(RecvError::Closed) => runs_closed = true,
                },
                _ = self.tick.tick() => {
                    if self.state.activity.health_turn() {
                        // A change comes back through `health_changes`.
                        self.state
                            .runtime
                            .connectors_health(crate::runtime::HEALTH_TTL)
                            .await;
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_bounded_per_principal_and_given_back() {
        let streams = Arc::new(ActivityStreams::default());
        let principal = Principal::local();
        let places: Vec<StreamPlace> = (0..MAX_STREAMS_PER_PRINCIPAL)
            .map(|_| streams.admit(&principal).expect("room"))
            .collect();
        assert!(streams.admit(&principal).is_none(), "the principal's cap");
        drop(places);
        assert!(streams.open.lock().is_empty(), "every place given back");
        assert!(streams.admit(&principal).is_some());
    }

    #[test]
    fn streams_are_bounded_in_all() {
        let streams = Arc::new(ActivityStreams::default());
        let names: Vec<String> = (0..MAX_STREAMS / MAX_STREAMS_PER_PRINCIPAL + 1)
            .map(|n| format!("a key of the test number {n:04}"))
            .collect();
        let keys = crate::gateway::auth::ApiKeys::new(names.iter().map(String::as_str));
        let principals: Vec<Principal> = names
            .iter()
            .map(|n| keys.identify(n).expect("a key"))
            .collect();
        let mut places = Vec::new();
        for principal in &principals[..principals.len() - 1] {
            for _ in 0..MAX_STREAMS_PER_PRINCIPAL {
                places.push(streams.admit(principal).expect("room"));
            }
        }
        assert_eq!(places.len(), MAX_STREAMS);
        let fresh = principals.last().expect("one more key");
        assert!(streams.admit(fresh).is_none(), "the cap over all keys");
        places.pop();
        assert!(
            streams.admit(fresh).is_some(),
            "a place given back is taken again"
        );
    }

    #[test]
    fn health_is_looked_at_once_per_interval_over_all_streams() {
        let streams = ActivityStreams::default();
        assert!(streams.health_turn());
        assert!(
            !streams.health_turn(),
            "another stream's tick within the interval"
        );
    }
}
