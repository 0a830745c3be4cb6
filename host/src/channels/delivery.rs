//! Replies to a channel: the answer split at the platform's limit, and, when the channel
//! streams, posted as soon as the first text or tool progress arrives and then edited at most
//! once per edit interval until the final text replaces it exactly. A platform that asks to
//! wait (HTTP 429, `Retry-After`) is waited for; an edit it refuses is skipped, since the next
//! one carries newer text.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::split::{first_part, prefix_within, split_message, units};
use super::status::{ChannelCounters, bump};
use crate::bus::Delivery;
use crate::contract::chat_channel::Outgoing;
use crate::events::TurnEvent;
use crate::runtime::{Runtime, SendFailure};

/// Longest wait for a platform's rate limit before a message is given up.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(120);
/// Wait before sending again when the plugin had no free call slot.
const BUSY_RETRY: Duration = Duration::from_millis(500);
/// Sends of one message tried at most, rate limits included.
const MAX_ATTEMPTS: usize = 5;
/// Used when a channel's `limits` cannot be read.
const FALLBACK_MAX_CHARS: usize = 3000;

/// Where a reply goes and how.
#[derive(Debug, Clone)]
pub struct ReplyTarget {
    pub channel: String,
    pub chat: String,
    pub thread: Option<String>,
    pub reply_context: Option<String>,
}

/// How one channel's replies are shaped.
#[derive(Debug, Clone, Copy)]
pub struct ReplyShape {
    pub max_chars: usize,
    /// `None`: the answer is sent once, whole.
    pub edit_interval: Option<Duration>,
}

impl ReplyShape {
    /// The channel's own limits (`limits`, read once per loaded revision and kept in
    /// `cache`), with the operator's edit interval when it is longer.
    pub async fn of(
        runtime: &Runtime,
        cache: &LimitsCache,
        channel: &str,
        stream: bool,
        edit_interval: Duration,
    ) -> Self {
        match cache.limits(runtime, channel).await {
            Ok(limits) => Self {
                max_chars: (limits.max_message_chars as usize).max(64),
                edit_interval: (stream && limits.min_edit_interval_ms > 0).then(|| {
                    edit_interval.max(Duration::from_millis(u64::from(
                        limits.min_edit_interval_ms,
                    )))
                }),
            },
            Err(error) => {
                tracing::warn!(channel, "reading the channel's limits failed: {error}");
                Self {
                    max_chars: FALLBACK_MAX_CHARS,
                    edit_interval: None,
                }
            }
        }
    }
}

/// Each channel's limits by the digest of the revision that gave them.
#[derive(Default)]
pub struct LimitsCache {
    known: parking_lot::Mutex<
        std::collections::HashMap<String, (String, crate::contract::chat_channel::ChannelLimits)>,
    >,
}

impl LimitsCache {
    async fn limits(
        &self,
        runtime: &Runtime,
        channel: &str,
    ) -> Result<crate::contract::chat_channel::ChannelLimits, crate::runtime::CallError> {
        let digest = runtime
            .plugin(channel)
            .map(|slot| slot.current().digest.clone())
            .unwrap_or_default();
        if let Some((known, limits)) = self.known.lock().get(channel)
            && *known == digest
        {
            return Ok(*limits);
        }
        let limits = runtime.channel_limits(channel).await?;
        self.known
            .lock()
            .insert(channel.to_owned(), (digest, limits));
        Ok(limits)
    }
}

/// Sends and edits of one reply, with the channel's counters.
pub struct Replier {
    pub runtime: Runtime,
    pub target: ReplyTarget,
    pub counters: Arc<ChannelCounters>,
}

impl Replier {
    fn outgoing(&self, text: String, finished: bool) -> Outgoing {
        Outgoing {
            chat: self.target.chat.clone(),
            thread: self.target.thread.clone(),
            text,
            reply_context: self.target.reply_context.clone(),
            finished,
        }
    }

    fn failed(&self, what: &str, error: &SendFailure) -> String {
        bump(&self.counters.send_failures);
        let message = format!("{what} in {}: {error}", self.target.chat);
        tracing::warn!(channel = %self.target.channel, "{message}");
        self.counters.error(message.clone());
        message
    }

    /// Post `text`; waits out rate limits. The handle, or why it could not be sent.
    pub async fn send(&self, text: String, finished: bool) -> Result<String, String> {
        let mut waited = Duration::ZERO;
        let mut last = SendFailure::RateLimited(Duration::ZERO);
        for _ in 0..MAX_ATTEMPTS {
            match self
                .runtime
                .channel_send(&self.target.channel, self.outgoing(text.clone(), finished))
                .await
            {
                // A finished message must be posted: an empty handle says it was not.
                Ok(handle) if handle.is_empty() && finished => {
                    let error = crate::runtime::CallError::new(
                        crate::runtime::ErrorKind::Failed,
                        "the channel posted nothing for a finished message",
                    );
                    return Err(self.failed("sending a message", &SendFailure::Failed(error)));
                }
                Ok(handle) => {
                    // An empty handle: nothing was posted yet (see `flush`).
                    if !handle.is_empty() {
                        bump(&self.counters.replies);
                    }
                    return Ok(handle);
                }
                Err(SendFailure::RateLimited(wait)) if waited + wait <= MAX_RATE_LIMIT_WAIT => {
                    bump(&self.counters.rate_limited);
                    waited += wait;
                    last = SendFailure::RateLimited(wait);
                    tokio::time::sleep(wait).await;
                }
                // The plugin had no free call slot: the platform never saw the message, so
                // sending again is safe.
                Err(SendFailure::Failed(error))
                    if error.never_started && waited < MAX_RATE_LIMIT_WAIT =>
                {
                    waited += BUSY_RETRY;
                    last = SendFailure::Failed(error);
                    tokio::time::sleep(BUSY_RETRY).await;
                }
                Err(error) => return Err(self.failed("sending a message", &error)),
            }
        }
        // Every attempt was refused: report the last refusal as it was.
        Err(self.failed("sending a message", &last))
    }

    /// Edit a posted message: `Ok(true)` when it was edited, `Ok(false)` when the edit
    /// failed (counted and reported). With `persist`, rate limits are waited out (the final
    /// text must arrive); otherwise the edit is skipped and `Err(wait)` says for how long to
    /// hold off.
    pub async fn update(
        &self,
        handle: &str,
        text: String,
        finished: bool,
        persist: bool,
    ) -> Result<bool, Duration> {
        let mut waited = Duration::ZERO;
        for _ in 0..MAX_ATTEMPTS {
            match self
                .runtime
                .channel_update(
                    &self.target.channel,
                    handle.to_owned(),
                    self.outgoing(text.clone(), finished),
                )
                .await
            {
                Ok(()) => return Ok(true),
                Err(SendFailure::RateLimited(wait)) => {
                    bump(&self.counters.rate_limited);
                    if !persist {
                        return Err(wait);
                    }
                    if waited + wait > MAX_RATE_LIMIT_WAIT {
                        break;
                    }
                    waited += wait;
                    tokio::time::sleep(wait).await;
                }
                Err(error) => {
                    self.failed("editing a message", &error);
                    return Ok(false);
                }
            }
        }
        self.failed("editing a message", &SendFailure::RateLimited(waited));
        Ok(false)
    }

    /// Send a whole text as one or more messages; their handles, or why one failed (the
    /// parts after it are not sent: they would read out of order).
    pub async fn send_whole(&self, text: &str, max_chars: usize) -> Result<Vec<String>, String> {
        let mut handles = Vec::new();
        for part in split_message(text, max_chars) {
            handles.push(self.send(part, true).await?);
        }
        Ok(handles)
    }
}

/// Deliver the reply of one turn; the delivery is settled once its text went out.
pub async fn deliver(replier: Replier, delivery: Delivery, shape: ReplyShape) {
    let Delivery {
        reply,
        events,
        settle,
    } = delivery;
    let sent = match shape.edit_interval {
        Some(interval) => {
            let final_text = stream(&replier, events, shape.max_chars, interval).await;
            let (final_text, posted) = match final_text {
                Streamed::Finished { text, posted } => (text, posted),
                Streamed::Unfinished { posted } => match reply.await {
                    Ok(reply) => (reply.content, posted),
                    Err(_) => return,
                },
            };
            finish(&replier, &final_text, &posted, shape.max_chars).await
        }
        None => {
            drop(events);
            match reply.await {
                Ok(reply) => replier
                    .send_whole(&reply.content, shape.max_chars)
                    .await
                    .is_ok(),
                Err(_) => return,
            }
        }
    };
    if sent {
        settle.settled();
    }
}

enum Streamed {
    Finished {
        text: String,
        posted: Posted,
    },
    /// The events ended without the turn's last event (they were dropped).
    Unfinished {
        posted: Posted,
    },
}

/// The messages a streamed reply posted, in order, and the text each message that was
/// closed early (the stream ran past the limit) was finished with.
#[derive(Default)]
struct Posted {
    handles: Vec<String>,
    finished_with: std::collections::HashMap<String, String>,
}

/// The message being streamed: what has been generated, what is shown, and when it may next
/// be edited.
struct Live {
    text: String,
    status: Option<String>,
    /// Handles of the posted messages; an empty one stands for a message about to be posted.
    posted: Vec<String>,
    finished_with: std::collections::HashMap<String, String>,
    /// Byte offset in `text` where the current (last posted) message starts.
    start: usize,
    shown: String,
    next_edit: Instant,
    dirty: bool,
    /// The platform refused the first post: no more streaming, the final text is tried once.
    broken: bool,
}

impl Live {
    fn into_posted(self) -> Posted {
        Posted {
            handles: self.posted.into_iter().filter(|h| !h.is_empty()).collect(),
            finished_with: self.finished_with,
        }
    }

    fn view(&self) -> String {
        let body = self.text[self.start..].trim_start();
        match &self.status {
            Some(status) if body.is_empty() => status.clone(),
            Some(status) => format!("{body}\n\n{status}"),
            None => body.to_owned(),
        }
    }
}

async fn stream(
    replier: &Replier,
    mut events: crate::events::EventReceiver,
    max_chars: usize,
    interval: Duration,
) -> Streamed {
    let mut live = Live {
        text: String::new(),
        status: None,
        posted: Vec::new(),
        finished_with: std::collections::HashMap::new(),
        start: 0,
        shown: String::new(),
        next_edit: Instant::now(),
        dirty: false,
        broken: false,
    };
    loop {
        let event = if live.dirty && !live.broken {
            tokio::select! {
                event = events.recv() => event,
                () = tokio::time::sleep_until(live.next_edit) => {
                    flush(replier, &mut live, max_chars, interval).await;
                    continue;
                }
            }
        } else {
            events.recv().await
        };
        let Some(event) = event else {
            return Streamed::Unfinished {
                posted: live.into_posted(),
            };
        };
        match event {
            TurnEvent::Delta { text } => live.text.push_str(&text),
            TurnEvent::ToolStart { name, .. } => {
                if !live.text.is_empty() && !live.text.ends_with("\n\n") {
                    live.text.push_str("\n\n");
                }
                live.status = Some(format!("_Running `{name}`…_"));
            }
            TurnEvent::ToolResult { name, ok, .. } => {
                live.status = (!ok).then(|| format!("_`{name}` failed; going on…_"));
            }
            TurnEvent::Done { content, .. } => {
                return Streamed::Finished {
                    text: content,
                    posted: live.into_posted(),
                };
            }
            TurnEvent::Error { message } => {
                return Streamed::Finished {
                    text: message,
                    posted: live.into_posted(),
                };
            }
        }
        live.dirty = live.view() != live.shown;
        // The first text goes out at once; later ones at the edit interval.
        if live.dirty
            && !live.broken
            && (live.posted.is_empty() || Instant::now() >= live.next_edit)
        {
            flush(replier, &mut live, max_chars, interval).await;
        }
    }
}

/// Show the live text now: post it, or edit the current message; past the platform's
/// limit, close the current message at a split point and go on in a new one.
async fn flush(replier: &Replier, live: &mut Live, max_chars: usize, interval: Duration) {
    live.dirty = false;
    let mut view = live.view();
    if units(&view) > max_chars
        && let Some(handle) = live.posted.last().cloned()
    {
        let current = &live.text[live.start..];
        let (first, cut) = first_part(current, max_chars);
        if cut < current.len() {
            if replier.update(&handle, first.clone(), true, true).await == Ok(true) {
                live.finished_with.insert(handle, first);
            }
            live.start += cut;
            live.posted.push(String::new());
            view = live.view();
        }
    }
    let view = prefix_within(&view, max_chars).to_owned();
    if view.trim().is_empty() {
        return;
    }
    match live.posted.last().cloned() {
        Some(handle) if !handle.is_empty() => {
            if let Err(wait) = replier.update(&handle, view.clone(), false, false).await {
                live.next_edit = Instant::now() + wait.max(interval);
                live.dirty = true;
                return;
            }
        }
        _ => {
            live.posted.pop_if(|h| h.is_empty());
            match replier.send(view.clone(), false).await {
                // The plugin cannot show this message until it is finished (a slash
                // command's reply address): no streaming; the final text goes whole.
                Ok(handle) if handle.is_empty() => {
                    live.broken = true;
                    return;
                }
                Ok(handle) => live.posted.push(handle),
                Err(_) => {
                    live.broken = true;
                    return;
                }
            }
        }
    }
    live.shown = view;
    live.next_edit = Instant::now() + interval;
}

/// Replace what was streamed with the exact final text: the posted messages are edited to
/// its parts in order (a message already finished with exactly its part is left alone, so
/// each gets one finished version when the stream and the answer agree), and parts beyond
/// them are posted.
/// Bring the posted messages to the final text; false when a part could not be posted.
async fn finish(replier: &Replier, text: &str, posted: &Posted, max_chars: usize) -> bool {
    let parts = split_message(text, max_chars);
    for (index, part) in parts.iter().enumerate() {
        match posted.handles.get(index) {
            Some(handle) if posted.finished_with.get(handle) == Some(part) => {}
            Some(handle) => {
                let _ = replier.update(handle, part.clone(), true, true).await;
            }
            None => {
                if replier.send(part.clone(), true).await.is_err() {
                    return false;
                }
            }
        }
    }
    // Streamed text that ran longer than the answer: the extra messages say so.
    for handle in posted.handles.iter().skip(parts.len()) {
        let _ = replier
            .update(handle, "_(continued above)_".to_owned(), true, true)
            .await;
    }
    true
}
