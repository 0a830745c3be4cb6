//! What each channel has done since the host started: requests, verification failures,
//! duplicates dropped, messages ignored or refused, replies sent and failed, and the last
//! event and error. `GET /api/v1/channels` and `databot channel list` show it.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;

#[derive(Default)]
pub struct ChannelCounters {
    pub requests: AtomicU64,
    pub verification_failures: AtomicU64,
    pub duplicates: AtomicU64,
    pub ignored: AtomicU64,
    pub refused: AtomicU64,
    pub accepted: AtomicU64,
    pub busy: AtomicU64,
    pub replies: AtomicU64,
    pub send_failures: AtomicU64,
    pub rate_limited: AtomicU64,
    last_event_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// One channel's status, as served.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ChannelStatus {
    pub name: String,
    /// `ready`, or why the channel cannot serve (`legacy contract`).
    pub state: String,
    pub requests: u64,
    pub verification_failures: u64,
    pub duplicates: u64,
    pub ignored: u64,
    pub refused: u64,
    pub accepted: u64,
    pub busy: u64,
    pub replies: u64,
    pub send_failures: u64,
    pub rate_limited: u64,
    /// Unix time (ms) of the last verified event; `None` before the first.
    pub last_event_ms: Option<u64>,
    pub last_error: Option<String>,
}

pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl ChannelCounters {
    pub fn event_seen(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_event_ms.store(now, Ordering::Relaxed);
    }

    pub fn error(&self, error: impl Into<String>) {
        *self.last_error.lock() = Some(error.into());
    }

    pub fn status(&self, name: &str, state: &str) -> ChannelStatus {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let last = get(&self.last_event_ms);
        ChannelStatus {
            name: name.to_owned(),
            state: state.to_owned(),
            requests: get(&self.requests),
            verification_failures: get(&self.verification_failures),
            duplicates: get(&self.duplicates),
            ignored: get(&self.ignored),
            refused: get(&self.refused),
            accepted: get(&self.accepted),
            busy: get(&self.busy),
            replies: get(&self.replies),
            send_failures: get(&self.send_failures),
            rate_limited: get(&self.rate_limited),
            last_event_ms: (last > 0).then_some(last),
            last_error: self.last_error.lock().clone(),
        }
    }
}
