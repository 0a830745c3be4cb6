//! Replies of a replicated bus that the replica which took their message in never delivered
//! (it died after the turn was saved): any replica sends them to their chat once they are
//! `stranded_after` old, and marks them delivered. A reply for the API or the CLI has nobody
//! left to send to (the caller's connection died with its replica): it stays in the
//! conversation's history and is only marked. Records older than `keep` are forgotten.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Channels, SendError};
use crate::bus::outbox::Outbox;
use crate::config::HOST_CHANNELS;

/// How often the outbox is looked at.
const EVERY: Duration = Duration::from_secs(5);
/// Replies taken per look.
const BATCH: usize = 100;
/// How often old records are expired.
const EXPIRE_EVERY: Duration = Duration::from_secs(600);

pub async fn relay(
    channels: Arc<Channels>,
    outbox: Outbox,
    stranded_after: Duration,
    keep: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_expiry: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if last_expiry.is_none_or(|at| at.elapsed() >= EXPIRE_EVERY) {
            last_expiry = Some(tokio::time::Instant::now());
            match outbox.expire(keep).await {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(removed, "expired processed-message records"),
                Err(error) => tracing::warn!("expiring processed-message records: {error}"),
            }
        }
        let stranded = match outbox.claim_stranded(stranded_after, BATCH).await {
            Ok(stranded) => stranded,
            Err(error) => {
                tracing::warn!("reading stranded replies: {error}");
                continue;
            }
        };
        let mut delivered = Vec::new();
        for reply in stranded {
            let target = &reply.reply;
            if HOST_CHANNELS.contains(&target.channel.as_str()) {
                delivered.push(reply.message_id);
                continue;
            }
            match channels
                .send(
                    &target.channel,
                    &target.chat_id,
                    target.thread_id.as_deref(),
                    &target.content,
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(channel = %target.channel, message = %reply.message_id, "delivered a stranded reply");
                    delivered.push(reply.message_id);
                }
                Err(SendError::NoSuchChannel(channel)) => {
                    tracing::warn!(%channel, message = %reply.message_id, "a stranded reply's channel is not loaded here; left for a replica that has it");
                }
                Err(error) => {
                    // Its claim runs out and it is tried again.
                    tracing::warn!(channel = %target.channel, "delivering a stranded reply failed: {error}");
                }
            }
        }
        if !delivered.is_empty()
            && let Err(error) = outbox.mark_delivered(&delivered).await
        {
            tracing::warn!("marking stranded replies delivered: {error}");
        }
    }
}
