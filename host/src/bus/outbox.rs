//! The replies of a replicated bus, in PostgreSQL (`databot_replies`): one row per inbound
//! message that was answered. The row is the message's processed record and its reply's
//! outbox at once. A turn writes it in the same statement as the turn's session writes, so
//! the two are saved together or not at all; a redelivered message whose row exists is not run
//! again. Once the row is saved, the replica waiting for the reply is told by a notification
//! on its channel that carries ids only (`Notification::Reply`): it reads the reply from the
//! row, which takes table privileges a mere `LISTEN` does not have. A lost notification (the
//! listener was reconnecting, the sender died right after the commit) is made up for by the
//! waiting replica reading its waiters' rows now and then (`replies::CATCH_UP_EVERY`).
//!
//! Rows no replica delivered are delivered by another once `stranded_after` old: the replica
//! that takes a reply to post to a chat leases its row while it posts, so only rows of a dead
//! replica come free. Times are the database's clock, the same for every replica.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};

use super::OutboundMessage;
use crate::events::TurnEvent;

/// Longest notification payload sent (PostgreSQL refuses 8,000 bytes and more).
pub const MAX_NOTIFICATION_BYTES: usize = 7_800;
/// How long a relay holds a stranded reply it is sending before another may take it.
const STRANDED_CLAIM_MS: i64 = 60_000;
/// Longest message id kept as it is; longer ones (and ids with characters PostgreSQL text
/// cannot hold) are replaced by their digest (`message_id`).
const MAX_MESSAGE_ID: usize = 128;
/// The database's clock in ms since the epoch.
const DB_NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

const SCHEMA: [&str; 3] = [
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
    "CREATE INDEX IF NOT EXISTS databot_replies_undelivered ON databot_replies (created_at)
        WHERE delivered_at IS NULL",
];

/// A message id as the bus keeps it: `id` when short and plain, else `sha256:` and its digest.
pub fn message_id(id: &str) -> String {
    if id.len() <= MAX_MESSAGE_ID && !id.contains('\0') {
        id.to_owned()
    } else {
        format!("sha256:{}", crate::digest::sha256_hex(id.as_bytes()))
    }
}

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
    /// A message was answered: read its row.
    Reply { request: String, message: String },
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
}

impl ReplyRecord {
    pub fn new(
        message_id: &str,
        session_key: &str,
        address: &ReplyAddress,
        reply: &OutboundMessage,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            message_id: message_id.to_owned(),
            session_key: session_key.to_owned(),
            address: address.clone(),
            reply: serde_json::to_string(reply)?,
        })
    }

    /// A `reply` CTE that inserts this record, for a PostgreSQL statement whose placeholders
    /// for it run from `$first` (4 of them; the session key is `$session`). Without
    /// `on_conflict_nothing` a message that already has a record fails the whole statement.
    pub fn insert_cte(first: usize, session: usize, on_conflict_nothing: bool) -> String {
        let p = |offset: usize| format!("${}", first + offset);
        let conflict = if on_conflict_nothing {
            " ON CONFLICT (message_id) DO NOTHING"
        } else {
            ""
        };
        format!(
            "reply AS (INSERT INTO databot_replies \
             (message_id, session_key, replica, request, reply, created_at) \
             VALUES ({}, ${session}, {}, {}, {}, {DB_NOW_MS}){conflict} RETURNING 1)",
            p(0),
            p(1),
            p(2),
            p(3),
        )
    }

    /// Bind this record's values for `insert_cte` (after the statement's own).
    pub fn bind<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        query
            .bind(self.message_id.clone())
            .bind(self.address.replica.clone())
            .bind(self.address.request.clone())
            .bind(self.reply.clone())
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
            ..OutboundMessage::default()
        };
        ReplyRecord::new(&self.message_id, &self.session_key, &self.address, &reply)
    }
}

/// A recorded reply, read back.
#[derive(Debug, Clone)]
pub struct StoredReply {
    pub message_id: String,
    pub session_key: String,
    pub address: ReplyAddress,
    pub reply: OutboundMessage,
    pub delivered: bool,
}

const STORED_COLUMNS: &str = "message_id, session_key, replica, request, reply, delivered_at";

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
    /// one. True when it went in.
    pub async fn record(&self, record: &ReplyRecord) -> Result<bool, sqlx::Error> {
        let statement = format!(
            "WITH {} SELECT COUNT(*) FROM reply",
            ReplyRecord::insert_cte(2, 1, true)
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(statement)).bind(record.session_key.clone());
        let row = record.bind(query).fetch_one(&self.pool).await?;
        let inserted: i64 = row.try_get(0)?;
        Ok(inserted > 0)
    }

    /// The reply recorded for a message, if any.
    pub async fn reply_for(&self, message_id: &str) -> Result<Option<StoredReply>, sqlx::Error> {
        let statement =
            format!("SELECT {STORED_COLUMNS} FROM databot_replies WHERE message_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(statement))
            .bind(message_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| stored(&row)).transpose()
    }

    /// The replies recorded for any of these messages.
    pub async fn replies_for(
        &self,
        message_ids: &[String],
    ) -> Result<Vec<StoredReply>, sqlx::Error> {
        let mut found = Vec::new();
        for chunk in message_ids.chunks(500) {
            let statement = format!(
                "SELECT {STORED_COLUMNS} FROM databot_replies WHERE message_id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
            for id in chunk {
                query = query.bind(id.clone());
            }
            for row in query.fetch_all(&self.pool).await? {
                found.push(stored(&row)?);
            }
        }
        Ok(found)
    }

    /// Tell the replica at `address` that `message_id` has its reply (after the commit that
    /// saved it; best effort: a lost notification is made up by the waiter's catch-up).
    pub async fn announce(
        &self,
        address: &ReplyAddress,
        message_id: &str,
    ) -> Result<(), sqlx::Error> {
        let payload = serde_json::to_string(&Notification::Reply {
            request: address.request.clone(),
            message: message_id.to_owned(),
        })
        .map_err(|e| sqlx::Error::Protocol(format!("encoding a reply notification: {e}")))?;
        self.notify(&notify_channel(&address.replica), &payload)
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
            let statement = format!(
                "UPDATE databot_replies SET delivered_at = {DB_NOW_MS} \
                 WHERE delivered_at IS NULL AND message_id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
            for id in chunk {
                query = query.bind(id.clone());
            }
            query.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Take a reply to post to its chat, holding it for `lease` from the stranded-reply
    /// relay; false when it is delivered already or another replica holds it.
    pub async fn take_for_posting(
        &self,
        message_id: &str,
        lease: Duration,
    ) -> Result<bool, sqlx::Error> {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let statement = format!(
            "UPDATE databot_replies SET claimed_until = {DB_NOW_MS} + $1
             WHERE message_id = $2 AND delivered_at IS NULL
               AND (claimed_until IS NULL OR claimed_until < {DB_NOW_MS})
             RETURNING message_id"
        );
        let taken = sqlx::query(sqlx::AssertSqlSafe(statement))
            .bind(lease_ms)
            .bind(message_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(taken.is_some())
    }

    /// Take up to `limit` replies nobody delivered or holds within `after` of their saving
    /// (their replica died), for a while: deliver them, then `mark_delivered`. A relay that
    /// dies meanwhile lets them go again when the claim ends.
    pub async fn claim_stranded(
        &self,
        after: Duration,
        limit: usize,
    ) -> Result<Vec<StoredReply>, sqlx::Error> {
        let after_ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        let statement = format!(
            "UPDATE databot_replies SET claimed_until = {DB_NOW_MS} + $1 WHERE message_id IN (
                SELECT message_id FROM databot_replies
                WHERE delivered_at IS NULL AND created_at < {DB_NOW_MS} - $2
                  AND (claimed_until IS NULL OR claimed_until < {DB_NOW_MS})
                ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING {STORED_COLUMNS}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(statement))
            .bind(STRANDED_CLAIM_MS)
            .bind(after_ms)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stored).collect()
    }

    /// Forget records older than `keep` (a message redelivered after that would run again;
    /// the consumer refuses records that old).
    pub async fn expire(&self, keep: Duration) -> Result<u64, sqlx::Error> {
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let statement = format!("DELETE FROM databot_replies WHERE created_at < {DB_NOW_MS} - $1");
        let done = sqlx::query(sqlx::AssertSqlSafe(statement))
            .bind(keep_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// `$first, $first+1, ...`: `count` placeholders.
fn placeholders(first: usize, count: usize) -> String {
    (0..count)
        .map(|i| format!("${}", first + i))
        .collect::<Vec<_>>()
        .join(", ")
}

fn stored(row: &sqlx::any::AnyRow) -> Result<StoredReply, sqlx::Error> {
    let reply: String = row.try_get(4)?;
    let delivered: Option<i64> = row.try_get(5)?;
    Ok(StoredReply {
        message_id: row.try_get(0)?,
        session_key: row.try_get(1)?,
        address: ReplyAddress {
            replica: row.try_get(2)?,
            request: row.try_get(3)?,
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
    fn long_or_unstorable_message_ids_become_digests() {
        assert_eq!(message_id("slack:Ev123"), "slack:Ev123");
        let long = message_id(&"x".repeat(10_000));
        assert!(long.starts_with("sha256:") && long.len() < MAX_MESSAGE_ID);
        assert_ne!(long, message_id(&"x".repeat(10_001)));
        assert!(message_id("a\0b").starts_with("sha256:"));
    }

    #[test]
    fn a_reply_notification_names_ids_only() {
        let payload = serde_json::to_string(&Notification::Reply {
            request: "q".into(),
            message: "m".into(),
        })
        .expect("json");
        assert_eq!(payload, r#"{"kind":"reply","request":"q","message":"m"}"#);
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
