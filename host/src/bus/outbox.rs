//! The replies of a replicated bus, in PostgreSQL (`databot_replies`): one row per inbound
//! message that was answered. The row is the message's processed record and its reply's
//! outbox at once. A turn writes it in the same statement as the turn's session writes, with
//! a `pg_notify` to the replica that waits for the reply; PostgreSQL delivers a notification
//! only when its transaction commits, so a saved turn's reply is always announced and an
//! unsaved one never is. A redelivered message whose row exists is not run again.
//!
//! Rows a replica never took (it died before the reply came) are delivered by any other
//! replica once they are `stranded_after` old: claimed for a while, sent, then marked.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};

use super::OutboundMessage;
use crate::events::TurnEvent;
use crate::timing::now_ms;

/// Longest notification payload sent (PostgreSQL refuses 8,000 bytes and more).
pub const MAX_NOTIFICATION_BYTES: usize = 7_800;
/// How long a relay holds a stranded reply it is sending before another may take it.
const STRANDED_CLAIM_MS: i64 = 60_000;

const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS databot_replies (
        message_id TEXT PRIMARY KEY,
        session_key TEXT NOT NULL,
        replica TEXT NOT NULL,
        request TEXT NOT NULL,
        reply TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        claimed_until BIGINT,
        delivered_at BIGINT)",
    "CREATE INDEX IF NOT EXISTS databot_replies_age ON databot_replies (created_at)",
];

/// Where a reply goes: the replica that took the message in, and its request there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyAddress {
    pub replica: String,
    pub request: String,
}

/// The PostgreSQL notification channel a replica listens on (a hash of its name: channel
/// names are identifiers of at most 63 bytes).
pub fn notify_channel(replica: &str) -> String {
    let digest = crate::digest::sha256_hex(replica.as_bytes());
    format!("databot_reply_{}", &digest[..24])
}

/// What a replica hears on its channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notification {
    /// A message was answered; `reply` is absent when it did not fit the payload (read the
    /// row).
    Reply {
        request: String,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply: Option<OutboundMessage>,
    },
    /// Stream events of a turn in progress, in order.
    Events {
        request: String,
        events: Vec<TurnEvent>,
    },
}

/// A reply to record, with the turn or on its own.
#[derive(Debug, Clone)]
pub struct ReplyRecord {
    pub message_id: String,
    pub session_key: String,
    pub address: ReplyAddress,
    reply: String,
    notification: String,
}

impl ReplyRecord {
    pub fn new(
        message_id: &str,
        session_key: &str,
        address: &ReplyAddress,
        reply: &OutboundMessage,
    ) -> Result<Self, serde_json::Error> {
        let reply_json = serde_json::to_string(reply)?;
        let mut notification = Notification::Reply {
            request: address.request.clone(),
            message: message_id.to_owned(),
            reply: Some(reply.clone()),
        };
        let mut payload = serde_json::to_string(&notification)?;
        if payload.len() > MAX_NOTIFICATION_BYTES {
            if let Notification::Reply { reply, .. } = &mut notification {
                *reply = None;
            }
            payload = serde_json::to_string(&notification)?;
        }
        Ok(Self {
            message_id: message_id.to_owned(),
            session_key: session_key.to_owned(),
            address: address.clone(),
            reply: reply_json,
            notification: payload,
        })
    }

    /// The pieces of a PostgreSQL statement that records this reply: a `reply` CTE (insert)
    /// and the statement's final `SELECT`, which notifies the waiting replica when the row
    /// went in. Placeholders run from `$first` (7 of them); the session key is `$session`.
    pub fn statement_parts(
        first: usize,
        session: usize,
        on_conflict_nothing: bool,
    ) -> (String, String) {
        let p = |offset: usize| format!("${}", first + offset);
        let conflict = if on_conflict_nothing {
            " ON CONFLICT (message_id) DO NOTHING"
        } else {
            ""
        };
        (
            format!(
                "reply AS (INSERT INTO databot_replies \
                 (message_id, session_key, replica, request, reply, created_at) \
                 VALUES ({}, ${session}, {}, {}, {}, {}){conflict} RETURNING 1)",
                p(0),
                p(1),
                p(2),
                p(3),
                p(4),
            ),
            format!("SELECT COUNT(pg_notify({}, {})) FROM reply", p(5), p(6)),
        )
    }

    /// Bind this record's values for `statement_parts` (after the statement's own).
    pub fn bind<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        query
            .bind(self.message_id.clone())
            .bind(self.address.replica.clone())
            .bind(self.address.request.clone())
            .bind(self.reply.clone())
            .bind(now_ms())
            .bind(notify_channel(&self.address.replica))
            .bind(self.notification.clone())
    }
}

/// What a turn needs to record its reply with its session writes: the message it answers
/// and where the reply goes.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyReceipt {
    pub message_id: String,
    pub session_key: String,
    pub address: ReplyAddress,
    channel: String,
    chat_id: String,
    thread_id: Option<String>,
}

impl ReplyReceipt {
    /// The receipt of a message submitted through a replicated bus (`None` otherwise).
    pub fn of(message: &super::InboundMessage) -> Option<Self> {
        let address = message.reply_to.clone()?;
        Some(Self {
            message_id: message.id.clone(),
            session_key: message.session_key(),
            address,
            channel: message.channel.clone(),
            chat_id: message.chat_id.clone(),
            thread_id: message.thread_id.clone(),
        })
    }

    /// The reply `content` (`failed`: it says why the turn failed), to record.
    pub fn record(&self, content: &str, failed: bool) -> Result<ReplyRecord, serde_json::Error> {
        let reply = OutboundMessage {
            channel: self.channel.clone(),
            chat_id: self.chat_id.clone(),
            content: content.to_owned(),
            thread_id: self.thread_id.clone(),
            failed,
            recorded: true,
        };
        ReplyRecord::new(&self.message_id, &self.session_key, &self.address, &reply)
    }
}

/// A recorded reply, read back.
#[derive(Debug, Clone)]
pub struct StoredReply {
    pub message_id: String,
    pub address: ReplyAddress,
    pub reply: OutboundMessage,
    pub delivered: bool,
}

/// The replies table.
#[derive(Clone)]
pub struct Outbox {
    pool: AnyPool,
}

impl Outbox {
    /// Create the table if missing (PostgreSQL only).
    pub async fn open(pool: AnyPool) -> anyhow::Result<Self> {
        for statement in SCHEMA {
            sqlx::query(statement).execute(&pool).await?;
        }
        Ok(Self { pool })
    }

    /// Record a reply that no turn recorded (a failed turn), unless the message already has
    /// one; notify its replica when this one went in. True when it went in.
    pub async fn record(&self, record: &ReplyRecord) -> Result<bool, sqlx::Error> {
        let (cte, select) = ReplyRecord::statement_parts(2, 1, true);
        let statement = format!("WITH {cte} {select}");
        let query = sqlx::query(sqlx::AssertSqlSafe(statement)).bind(record.session_key.clone());
        let row = record.bind(query).fetch_one(&self.pool).await?;
        let inserted: i64 = row.try_get(0)?;
        Ok(inserted > 0)
    }

    /// The reply recorded for a message, if any.
    pub async fn reply_for(&self, message_id: &str) -> Result<Option<StoredReply>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT message_id, replica, request, reply, delivered_at FROM databot_replies WHERE message_id = $1",
        )
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| stored(&row)).transpose()
    }

    /// Announce a recorded reply (again) to `address`: the message was delivered again, and
    /// whoever waits for it now (the same request, or the request of a resubmission) is told.
    pub async fn renotify(
        &self,
        stored: &StoredReply,
        address: &ReplyAddress,
    ) -> Result<(), sqlx::Error> {
        let record = ReplyRecord::new(&stored.message_id, "", address, &stored.reply)
            .map_err(|e| sqlx::Error::Protocol(format!("encoding a reply notification: {e}")))?;
        self.notify(&notify_channel(&address.replica), &record.notification)
            .await
    }

    /// Send stream events to the replica waiting for them, in payloads that fit.
    pub async fn publish_events(
        &self,
        address: &ReplyAddress,
        events: Vec<TurnEvent>,
    ) -> Result<(), sqlx::Error> {
        let channel = notify_channel(&address.replica);
        for payload in event_payloads(&address.request, events) {
            self.notify(&channel, &payload).await?;
        }
        Ok(())
    }

    async fn notify(&self, channel: &str, payload: &str) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT COUNT(pg_notify($1, $2))")
            .bind(channel)
            .bind(payload)
            .fetch_one(&self.pool)
            .await?;
        Ok(())
    }

    /// Mark replies delivered (their replica handed them on).
    pub async fn mark_delivered(&self, message_ids: &[String]) -> Result<(), sqlx::Error> {
        for chunk in message_ids.chunks(500) {
            let placeholders: Vec<String> =
                (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let statement = format!(
                "UPDATE databot_replies SET delivered_at = $1 WHERE delivered_at IS NULL AND message_id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(statement)).bind(now_ms());
            for id in chunk {
                query = query.bind(id.clone());
            }
            query.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Take up to `limit` replies nobody delivered within `after` (their replica died), for
    /// a while: deliver them, then `mark_delivered`. A relay that dies meanwhile lets them
    /// go again when the claim ends.
    pub async fn claim_stranded(
        &self,
        after: Duration,
        limit: usize,
    ) -> Result<Vec<StoredReply>, sqlx::Error> {
        let now = now_ms();
        let before = now.saturating_sub(i64::try_from(after.as_millis()).unwrap_or(i64::MAX));
        let rows = sqlx::query(
            "UPDATE databot_replies SET claimed_until = $1 WHERE message_id IN (
                SELECT message_id FROM databot_replies
                WHERE delivered_at IS NULL AND created_at < $2
                  AND (claimed_until IS NULL OR claimed_until < $3)
                ORDER BY created_at LIMIT $4 FOR UPDATE SKIP LOCKED)
             RETURNING message_id, replica, request, reply, delivered_at",
        )
        .bind(now + STRANDED_CLAIM_MS)
        .bind(before)
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored).collect()
    }

    /// Forget records older than `keep` (a message redelivered after that would run again).
    pub async fn expire(&self, keep: Duration) -> Result<u64, sqlx::Error> {
        let before = now_ms().saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        let done = sqlx::query("DELETE FROM databot_replies WHERE created_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

fn stored(row: &sqlx::any::AnyRow) -> Result<StoredReply, sqlx::Error> {
    let reply: String = row.try_get(3)?;
    let delivered: Option<i64> = row.try_get(4)?;
    Ok(StoredReply {
        message_id: row.try_get(0)?,
        address: ReplyAddress {
            replica: row.try_get(1)?,
            request: row.try_get(2)?,
        },
        reply: serde_json::from_str(&reply)
            .map_err(|e| sqlx::Error::Protocol(format!("a stored reply does not parse: {e}")))?,
        delivered: delivered.is_some(),
    })
}

/// The events as notification payloads of at most `MAX_NOTIFICATION_BYTES`, in order. Text
/// too long for one payload is split (deltas) or cut (tool output, with a marker); the
/// turn's final text always arrives whole with its reply.
pub fn event_payloads(request: &str, events: Vec<TurnEvent>) -> Vec<String> {
    let budget = MAX_NOTIFICATION_BYTES.saturating_sub(request.len() + 64);
    let mut payloads = Vec::new();
    let mut batch: Vec<TurnEvent> = Vec::new();
    let mut batch_size = 0;
    let mut push = |event: TurnEvent, payloads: &mut Vec<String>| {
        let size = serde_json::to_string(&event).map_or(usize::MAX, |text| text.len() + 1);
        if batch_size + size > budget && !batch.is_empty() {
            payloads.push(encode_events(request, std::mem::take(&mut batch)));
            batch_size = 0;
        }
        if size <= budget {
            batch_size += size;
            batch.push(event);
        }
    };
    // JSON escaping can grow text up to six times (`\u0000`); pieces of a sixth of the budget
    // always fit.
    let piece = (budget / 6).max(1);
    for event in events {
        let oversized = event.size() > piece;
        match event {
            TurnEvent::Delta { text } if oversized => {
                for part in split_at_chars(&text, piece) {
                    push(
                        TurnEvent::Delta {
                            text: part.to_owned(),
                        },
                        &mut payloads,
                    );
                }
            }
            TurnEvent::ToolResult { name, ok, output } if oversized => {
                let cut = split_at_chars(&output, piece).next().unwrap_or("");
                push(
                    TurnEvent::ToolResult {
                        name,
                        ok,
                        output: format!("{cut} …"),
                    },
                    &mut payloads,
                );
            }
            TurnEvent::ToolStart { name, .. } if oversized => {
                let name = split_at_chars(&name, piece).next().unwrap_or("").to_owned();
                push(
                    TurnEvent::ToolStart {
                        name,
                        arguments: serde_json::Value::String("…".into()),
                    },
                    &mut payloads,
                );
            }
            event => push(event, &mut payloads),
        }
    }
    if !batch.is_empty() {
        payloads.push(encode_events(request, batch));
    }
    payloads
}

fn encode_events(request: &str, events: Vec<TurnEvent>) -> String {
    serde_json::to_string(&Notification::Events {
        request: request.to_owned(),
        events,
    })
    .unwrap_or_default()
}

/// `text` in pieces of at most `max` bytes, cut at character boundaries.
fn split_at_chars(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut cut = rest.len().min(max);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_channels_are_short_identifiers_per_replica() {
        let a = notify_channel("databot-0");
        assert_eq!(a, notify_channel("databot-0"));
        assert_ne!(a, notify_channel("databot-1"));
        assert!(a.len() <= 63 && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }

    #[test]
    fn a_reply_too_big_to_notify_is_announced_without_its_text() {
        let address = ReplyAddress {
            replica: "r".into(),
            request: "q".into(),
        };
        let small = OutboundMessage {
            content: "hello".into(),
            ..OutboundMessage::default()
        };
        let record = ReplyRecord::new("m", "s", &address, &small).expect("record");
        let heard: Notification = serde_json::from_str(&record.notification).expect("json");
        assert!(
            matches!(heard, Notification::Reply { reply: Some(ref r), .. } if r.content == "hello")
        );
        let big = OutboundMessage {
            content: "x".repeat(20_000),
            ..OutboundMessage::default()
        };
        let record = ReplyRecord::new("m", "s", &address, &big).expect("record");
        assert!(record.notification.len() <= MAX_NOTIFICATION_BYTES);
        let heard: Notification = serde_json::from_str(&record.notification).expect("json");
        assert!(
            matches!(heard, Notification::Reply { reply: None, ref message, .. } if message == "m")
        );
    }

    #[test]
    fn events_are_packed_into_payloads_that_fit_and_keep_their_order() {
        let mut events = Vec::new();
        for n in 0..500 {
            events.push(TurnEvent::Delta {
                text: format!("piece {n} "),
            });
        }
        events.push(TurnEvent::Delta {
            text: "é\u{0}".repeat(5_000),
        });
        events.push(TurnEvent::ToolResult {
            name: "t".into(),
            ok: true,
            output: "\"".repeat(50_000),
        });
        let payloads = event_payloads("request-1", events);
        let mut text = String::new();
        let mut results = 0;
        for payload in &payloads {
            assert!(payload.len() <= MAX_NOTIFICATION_BYTES, "{}", payload.len());
            let Notification::Events { request, events } =
                serde_json::from_str(payload).expect("json")
            else {
                panic!("events expected");
            };
            assert_eq!(request, "request-1");
            for event in events {
                match event {
                    TurnEvent::Delta { text: piece } => text.push_str(&piece),
                    TurnEvent::ToolResult { output, .. } => {
                        results += 1;
                        assert!(output.ends_with(" …"));
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        let expected: String =
            (0..500).map(|n| format!("piece {n} ")).collect::<String>() + &"é\u{0}".repeat(5_000);
        assert_eq!(text, expected, "deltas arrive whole and in order");
        assert_eq!(results, 1);
    }
}
