//! Sessions and memory in SQL (sqlx): SQLite by default (WAL), PostgreSQL when configured.
//!
//! A session is keyed `channel:chat_id` and holds every message of the conversation, tool
//! calls and results included, plus its token usage. A conversation opened by a client of the
//! gateway is bound to its owner (the API key's principal) in `databot_conversations`. Memory
//! is a key-value table per scope (see `memory_tool`) the agent writes through the `memory`
//! tool. One writer per session at a time (`lock`).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

use crate::contract::chat::{ChatMessage, Usage};

pub struct SessionStore {
    pool: AnyPool,
    /// SQLite (one connection; statements sent together) rather than PostgreSQL.
    sqlite: bool,
    locks: Arc<WriterLocks>,
    /// Size of `locks` at which `lock` next drops the entries nobody holds.
    sweep_locks_at: std::sync::atomic::AtomicUsize,
    /// Owners of conversations seen lately. A conversation's owner never changes once bound,
    /// so a remembered one is always right; bounded by `REMEMBERED_OWNERS`.
    owners: parking_lot::Mutex<HashMap<String, String>>,
    /// Channel events claimed so far (every `EVENT_SWEEP_EVERY`th sweeps expired ones).
    event_claims: std::sync::atomic::AtomicU64,
}

/// Claims between two sweeps of expired channel events.
const EVENT_SWEEP_EVERY: u64 = 256;

/// Conversation owners kept in memory at most (then forgotten all at once, and read again).
const REMEMBERED_OWNERS: usize = 16 * 1024;

/// The one-writer lock of each session that has a writer or a waiter; an entry leaves the map
/// with its last holder, so idle conversations cost nothing here.
type WriterLocks = parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

/// Entries in `WriterLocks` past which `lock` drops those nobody holds.
const STALE_LOCK_SWEEP: usize = 4096;

/// The right to write one session; dropping it lets the next writer in.
pub struct SessionWriter {
    locks: Arc<WriterLocks>,
    session_key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for SessionWriter {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.locks.lock();
        // Only the map holds it now: nobody writes or waits (a waiter clones it under this
        // same map lock, so none can appear between the check and the removal).
        if locks
            .get(&self.session_key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.session_key);
        }
    }
}

const SCHEMA: [&str; 10] = [
    "CREATE TABLE IF NOT EXISTS databot_routes (
        session_key TEXT PRIMARY KEY,
        specialist TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS databot_messages (
        session_key TEXT NOT NULL,
        seq BIGINT NOT NULL,
        message TEXT NOT NULL,
        PRIMARY KEY (session_key, seq))",
    "CREATE TABLE IF NOT EXISTS databot_usage (
        session_key TEXT PRIMARY KEY,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        total_tokens BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS databot_memories (
        scope TEXT NOT NULL,
        memory_key TEXT NOT NULL,
        memory_value TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (scope, memory_key))",
    "CREATE TABLE IF NOT EXISTS databot_conversations (
        session_key TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS databot_channel_events (
        channel TEXT NOT NULL,
        event_id TEXT NOT NULL,
        seen_at BIGINT NOT NULL,
        PRIMARY KEY (channel, event_id))",
    "CREATE INDEX IF NOT EXISTS databot_channel_events_age ON databot_channel_events (channel, seen_at)",
    "CREATE TABLE IF NOT EXISTS databot_turns (
        session_key TEXT NOT NULL,
        first_seq BIGINT NOT NULL,
        messages BIGINT NOT NULL,
        started_at BIGINT NOT NULL,
        duration_ms BIGINT NOT NULL,
        specialist TEXT,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        iterations BIGINT NOT NULL,
        tool_calls BIGINT NOT NULL,
        trace_id TEXT,
        PRIMARY KEY (session_key, first_seq))",
    "CREATE INDEX IF NOT EXISTS databot_turns_started ON databot_turns (started_at)",
    "CREATE INDEX IF NOT EXISTS databot_conversations_owner ON databot_conversations (owner)",
];

/// What a saved turn was, beside its messages: when it ran, how long, who answered, what it
/// cost, and the trace that shows it (the console's conversation view).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TurnRecord {
    /// Milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    pub duration_ms: i64,
    /// The specialist that answered (`None` with the router off).
    pub specialist: Option<String>,
    pub iterations: u32,
    pub tool_calls: u32,
    /// The W3C trace id of the turn's span, when spans were recorded.
    pub trace_id: Option<String>,
}

impl SessionStore {
    /// Connect (`sqlite://path`, `postgres://...`) and create the tables if missing.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        install_default_drivers();
        let url = if let Some(path) = url.strip_prefix("sqlite://") {
            if let Some(parent) = std::path::Path::new(path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            format!("sqlite://{path}?mode=rwc")
        } else {
            url.to_owned()
        };
        let sqlite = url.starts_with("sqlite:");
        let mut options = AnyPoolOptions::new().max_connections(if sqlite { 1 } else { 8 });
        if sqlite {
            // WAL with synchronous=NORMAL on every connection: never corrupt, and a commit
            // costs no fsync (the last commits may be lost on power failure, not on a crash).
            options = options.after_connect(|connection, _| {
                Box::pin(async move {
                    sqlx::Executor::execute(&mut *connection, "PRAGMA journal_mode=WAL").await?;
                    sqlx::Executor::execute(&mut *connection, "PRAGMA synchronous=NORMAL").await?;
                    Ok(())
                })
            });
        }
        let pool = options
            .connect(&url)
            .await
            .with_context(|| format!("connecting to the session store {}", redact_url(&url)))?;
        for statement in SCHEMA {
            sqlx::query(statement).execute(&pool).await?;
        }
        adopt_unscoped_memories(&pool, sqlite)
            .await
            .context("moving the memories of `databot_memory` into the global scope")?;
        Ok(Self {
            pool,
            sqlite,
            locks: Arc::default(),
            sweep_locks_at: std::sync::atomic::AtomicUsize::new(STALE_LOCK_SWEEP),
            owners: parking_lot::Mutex::default(),
            event_claims: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The database, for other tables that live beside the sessions (schedules).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// SQLite (one process, one connection) rather than PostgreSQL.
    pub fn is_sqlite(&self) -> bool {
        self.sqlite
    }

    /// Is the store reachable?
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Hold this while reading, running and writing a turn: one writer per session.
    pub async fn lock(&self, session_key: &str) -> SessionWriter {
        let lock = {
            let mut locks = self.locks.lock();
            // A writer cancelled while it waited may have left its entry behind. Swept when the
            // map reaches twice its size after the last sweep, so many live writers do not
            // make every `lock` scan the map.
            let sweep_at = self
                .sweep_locks_at
                .load(std::sync::atomic::Ordering::Relaxed);
            if locks.len() >= sweep_at {
                locks.retain(|_, lock| Arc::strong_count(lock) > 1);
                self.sweep_locks_at.store(
                    (locks.len() * 2).max(STALE_LOCK_SWEEP),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            locks.entry(session_key.to_owned()).or_default().clone()
        };
        let mut writer = SessionWriter {
            locks: self.locks.clone(),
            session_key: session_key.to_owned(),
            guard: None,
        };
        // Cancelled while waiting: the writer's drop still tidies the map.
        writer.guard = Some(lock.lock_owned().await);
        writer
    }

    /// Sessions with a writer or a waiter right now.
    pub fn locked_sessions(&self) -> usize {
        self.locks.lock().len()
    }

    pub async fn history(&self, session_key: &str) -> anyhow::Result<Vec<ChatMessage>> {
        let rows =
            sqlx::query("SELECT message FROM databot_messages WHERE session_key = $1 ORDER BY seq")
                .bind(session_key)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                let text: String = row.try_get(0)?;
                serde_json::from_str(&text).context("a stored message is not valid JSON")
            })
            .collect()
    }

    /// The newest messages of a session that `admit` takes, offered newest first until it
    /// refuses one; returned oldest first. Reads no further than that, so a long
    /// conversation costs a turn what fits its context, not its whole history.
    pub async fn recent_history(
        &self,
        session_key: &str,
        mut admit: impl FnMut(&ChatMessage) -> bool,
    ) -> anyhow::Result<Vec<ChatMessage>> {
        use futures::TryStreamExt;
        let mut rows = sqlx::query(
            "SELECT message FROM databot_messages WHERE session_key = $1 ORDER BY seq DESC",
        )
        .bind(session_key)
        .fetch(&self.pool);
        let mut messages = Vec::new();
        while let Some(row) = rows.try_next().await? {
            let text: String = row.try_get(0)?;
            let message: ChatMessage =
                serde_json::from_str(&text).context("a stored message is not valid JSON")?;
            if !admit(&message) {
                break;
            }
            messages.push(message);
        }
        messages.reverse();
        Ok(messages)
    }

    /// Append a turn's messages, add its usage and keep its `turn` record, atomically, in one
    /// round trip to the database; with `reply` (the processed record of the message the turn
    /// answered, PostgreSQL only) in the same statement: all are saved or none. A message
    /// already answered (by another replica) makes the whole write fail. Once started, the
    /// write finishes (or rolls back) even if the caller stops waiting, so a turn is saved
    /// whole or not at all.
    pub async fn append_turn(
        &self,
        session_key: &str,
        messages: &[ChatMessage],
        usage: Usage,
        turn: &TurnRecord,
        reply: Option<&crate::bus::outbox::ReplyRecord>,
    ) -> anyhow::Result<()> {
        if reply.is_some() && self.sqlite {
            anyhow::bail!("replies of a replicated bus are recorded in PostgreSQL only");
        }
        let statement = append_statement(messages.len(), self.sqlite, reply.is_some());
        // A turn record needs the turn's messages (it names their first sequence number).
        let with_turn = !messages.is_empty();
        let reply = reply.cloned();
        let turn = turn.clone();
        let mut values = Vec::with_capacity(messages.len());
        for message in messages {
            values.push(serde_json::to_string(message)?);
        }
        let pool = self.pool.clone();
        let session_key = session_key.to_owned();
        let sqlite = self.sqlite;
        let write = tokio::spawn(async move {
            let mut connection = pool.acquire().await?;
            // Built from placeholders and numbers only; every value is bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(statement))
                .bind(session_key)
                .bind(usage.prompt_tokens as i64)
                .bind(usage.completion_tokens as i64)
                .bind(usage.total_tokens as i64);
            for value in values {
                query = query.bind(value);
            }
            if with_turn {
                query = query
                    .bind(turn.started_at_ms)
                    .bind(turn.duration_ms)
                    .bind(turn.specialist)
                    .bind(i64::from(turn.iterations))
                    .bind(i64::from(turn.tool_calls))
                    .bind(turn.trace_id);
            }
            if let Some(reply) = &reply {
                query = reply.bind(query);
            }
            let written = query.execute(&mut *connection).await;
            if written.is_err() && sqlite {
                // A statement after BEGIN failed: end the transaction on this connection
                // before it goes back to the pool.
                let _ = sqlx::query("ROLLBACK").execute(&mut *connection).await;
            }
            written.map(|_| ())
        });
        write
            .await
            .context("the session write was interrupted")?
            .context("saving the turn")
    }

    pub async fn usage(&self, session_key: &str) -> anyhow::Result<Usage> {
        let row = sqlx::query(
            "SELECT prompt_tokens, completion_tokens, total_tokens FROM databot_usage WHERE session_key = $1",
        )
        .bind(session_key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => Usage::default(),
            Some(row) => Usage {
                prompt_tokens: row.try_get::<i64, _>(0)? as u64,
                completion_tokens: row.try_get::<i64, _>(1)? as u64,
                total_tokens: row.try_get::<i64, _>(2)? as u64,
            },
        })
    }

    /// The specialist currently handling a conversation.
    pub async fn route(&self, session_key: &str) -> anyhow::Result<Option<String>> {
        self.text_of(
            "SELECT specialist FROM databot_routes WHERE session_key = $1",
            session_key,
        )
        .await
    }

    pub async fn set_route(&self, session_key: &str, specialist: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO databot_routes (session_key, specialist) VALUES ($1, $2)
             ON CONFLICT (session_key) DO UPDATE SET specialist = excluded.specialist",
        )
        .bind(session_key)
        .bind(specialist)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Remember `key` in the memory scope `scope` (see `memory_tool::scope_key`).
    pub async fn remember(&self, scope: &str, key: &str, value: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO databot_memories (scope, memory_key, memory_value, updated_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (scope, memory_key) DO UPDATE SET
               memory_value = excluded.memory_value, updated_at = excluded.updated_at",
        )
        .bind(scope)
        .bind(key)
        .bind(value)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn forget(&self, scope: &str, key: &str) -> anyhow::Result<bool> {
        let result =
            sqlx::query("DELETE FROM databot_memories WHERE scope = $1 AND memory_key = $2")
                .bind(scope)
                .bind(key)
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected() > 0)
    }

    /// The most recently updated memories of `scope`, newest first.
    pub async fn memories(
        &self,
        scope: &str,
        limit: usize,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT memory_key, memory_value FROM databot_memories WHERE scope = $1
             ORDER BY updated_at DESC, memory_key LIMIT $2",
        )
        .bind(scope)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// Record that `channel` delivered the event `event_id`; false when it was recorded
    /// before (a retry or a replay), within `keep` (older records are swept now and then).
    /// Stored with the sessions, so a restart, or another host on the same database, still
    /// knows it.
    pub async fn claim_event(
        &self,
        channel: &str,
        event_id: &str,
        keep: std::time::Duration,
    ) -> anyhow::Result<bool> {
        let now = now_ms();
        let claimed = sqlx::query(
            "INSERT INTO databot_channel_events (channel, event_id, seen_at) VALUES ($1, $2, $3)
             ON CONFLICT (channel, event_id) DO NOTHING",
        )
        .bind(channel)
        .bind(event_id)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        let claims = self
            .event_claims
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if claims.is_multiple_of(EVENT_SWEEP_EVERY) {
            let horizon = now.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
            // Best effort: the claim stands whether or not old records could be swept now.
            if let Err(error) = sqlx::query(
                "DELETE FROM databot_channel_events WHERE channel = $1 AND seen_at < $2",
            )
            .bind(channel)
            .bind(horizon)
            .execute(&self.pool)
            .await
            {
                tracing::warn!(channel, "sweeping old channel events failed: {error}");
            }
        }
        Ok(claimed)
    }

    /// Forget a claimed event (it could not be handed on, so the platform's retry must be
    /// processed).
    pub async fn release_event(&self, channel: &str, event_id: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM databot_channel_events WHERE channel = $1 AND event_id = $2")
            .bind(channel)
            .bind(event_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The conversations with saved turns, most recently active first: those `owner` owns
    /// (every conversation when `None`), whose key or messages contain `search` (any case),
    /// after `after` in that order (the last one of the previous page), `limit` at most.
    pub async fn conversations(
        &self,
        filter: &ConversationFilter<'_>,
    ) -> anyhow::Result<Vec<ConversationSummary>> {
        let mut conditions = Vec::new();
        let mut next = 1;
        let mut placeholder = || {
            let p = format!("${next}");
            next += 1;
            p
        };
        let owner = filter.owner.map(|_| placeholder());
        if let Some(owner) = &owner {
            conditions.push(format!("c.owner = {owner}"));
        }
        let pattern = filter.search.map(like_pattern);
        if pattern.is_some() {
            let p = placeholder();
            // An owner's search reads that owner's messages only (through the owner index).
            let searched = match &owner {
                Some(owner) => format!(
                    "SELECT m.session_key FROM databot_conversations o \
                     JOIN databot_messages m ON m.session_key = o.session_key \
                     WHERE o.owner = {owner} AND LOWER(m.message) LIKE {p} ESCAPE '!'"
                ),
                None => format!(
                    "SELECT session_key FROM databot_messages WHERE LOWER(message) LIKE {p} ESCAPE '!'"
                ),
            };
            conditions.push(format!(
                "(LOWER(t.session_key) LIKE {p} ESCAPE '!' OR t.session_key IN ({searched}))"
            ));
        }
        // Strictly after the previous page's last: older, or as old with a smaller key.
        let having = filter
            .after
            .map(|_| {
                let (at, key) = (placeholder(), placeholder());
                format!(
                    " HAVING MAX(t.started_at) < {at} OR (MAX(t.started_at) = {at} AND t.session_key < {key})"
                )
            })
            .unwrap_or_default();
        let limit = placeholder();
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        // Built from fixed fragments and placeholders only; every value is bound.
        let statement = format!(
            "SELECT t.session_key, MAX(c.owner), COUNT(*), MIN(t.started_at), MAX(t.started_at), \
             CAST(SUM(t.prompt_tokens) AS BIGINT), CAST(SUM(t.completion_tokens) AS BIGINT), CAST(SUM(t.tool_calls) AS BIGINT) \
             FROM databot_turns t LEFT JOIN databot_conversations c ON c.session_key = t.session_key\
             {filter_sql} GROUP BY t.session_key{having} ORDER BY MAX(t.started_at) DESC, t.session_key DESC LIMIT {limit}"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
        if let Some(owner) = filter.owner {
            query = query.bind(owner.to_owned());
        }
        if let Some(pattern) = pattern {
            query = query.bind(pattern);
        }
        if let Some((at, key)) = filter.after {
            query = query.bind(at).bind(key.to_owned());
        }
        let rows = query
            .bind(filter.limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ConversationSummary {
                    session_key: row.try_get(0)?,
                    owner: row.try_get(1)?,
                    turns: row.try_get(2)?,
                    started_at_ms: row.try_get(3)?,
                    last_active_ms: row.try_get(4)?,
                    prompt_tokens: row.try_get(5)?,
                    completion_tokens: row.try_get(6)?,
                    tool_calls: row.try_get(7)?,
                })
            })
            .collect()
    }

    /// The owner a conversation is bound to (`None`: a channel's conversation, bound to no
    /// gateway principal, or no such conversation).
    pub async fn conversation_owner(&self, session_key: &str) -> anyhow::Result<Option<String>> {
        self.text_of(
            "SELECT owner FROM databot_conversations WHERE session_key = $1",
            session_key,
        )
        .await
    }

    /// The one text column `statement` selects for the session `$1`, if there is a row.
    async fn text_of(
        &self,
        statement: &'static str,
        session_key: &str,
    ) -> anyhow::Result<Option<String>> {
        let row = sqlx::query(statement)
            .bind(session_key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }

    /// The newest `limit` turns of a conversation (oldest first) and their messages, each
    /// with its sequence number; empty when the conversation has none.
    pub async fn conversation_turns(
        &self,
        session_key: &str,
        limit: usize,
    ) -> anyhow::Result<(Vec<StoredTurn>, Vec<(i64, ChatMessage)>)> {
        let rows = sqlx::query(
            "SELECT first_seq, messages, started_at, duration_ms, specialist, prompt_tokens, \
             completion_tokens, iterations, tool_calls, trace_id FROM databot_turns \
             WHERE session_key = $1 ORDER BY first_seq DESC LIMIT $2",
        )
        .bind(session_key)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut turns = rows
            .iter()
            .map(|row| {
                Ok(StoredTurn {
                    first_seq: row.try_get(0)?,
                    messages: row.try_get(1)?,
                    prompt_tokens: row.try_get(5)?,
                    completion_tokens: row.try_get(6)?,
                    record: TurnRecord {
                        started_at_ms: row.try_get(2)?,
                        duration_ms: row.try_get(3)?,
                        specialist: row.try_get(4)?,
                        iterations: u32::try_from(row.try_get::<i64, _>(7)?).unwrap_or(u32::MAX),
                        tool_calls: u32::try_from(row.try_get::<i64, _>(8)?).unwrap_or(u32::MAX),
                        trace_id: row.try_get(9)?,
                    },
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        turns.reverse();
        let Some(first) = turns.first().map(|turn| turn.first_seq) else {
            return Ok((turns, Vec::new()));
        };
        let rows = sqlx::query(
            "SELECT seq, message FROM databot_messages WHERE session_key = $1 AND seq >= $2 ORDER BY seq",
        )
        .bind(session_key)
        .bind(first)
        .fetch_all(&self.pool)
        .await?;
        let messages = rows
            .iter()
            .map(|row| {
                let text: String = row.try_get(1)?;
                let message =
                    serde_json::from_str(&text).context("a stored message is not valid JSON")?;
                Ok((row.try_get(0)?, message))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok((turns, messages))
    }

    /// Turns saved since `since_ms`, and what they had in common: for the console's overview.
    pub async fn turn_totals(&self, since_ms: i64) -> anyhow::Result<TurnTotals> {
        let row = sqlx::query(
            "SELECT COUNT(*), COUNT(DISTINCT session_key), CAST(COALESCE(SUM(tool_calls), 0) AS BIGINT), \
             CAST(COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS BIGINT), COALESCE(MAX(duration_ms), 0) \
             FROM databot_turns WHERE started_at >= $1",
        )
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(TurnTotals {
            turns: row.try_get(0)?,
            conversations: row.try_get(1)?,
            tool_calls: row.try_get(2)?,
            tokens: row.try_get(3)?,
            slowest_ms: row.try_get(4)?,
        })
    }

    /// Bind the conversation `session_key` to `owner` unless it is bound already. Returns the
    /// owner it is bound to: `owner`, or whoever claimed it first.
    pub async fn claim_conversation(
        &self,
        session_key: &str,
        owner: &str,
    ) -> anyhow::Result<String> {
        if let Some(bound) = self.owners.lock().get(session_key) {
            return Ok(bound.clone());
        }
        let inserted = sqlx::query(
            "INSERT INTO databot_conversations (session_key, owner, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (session_key) DO NOTHING RETURNING owner",
        )
        .bind(session_key)
        .bind(owner)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        let bound: String = match inserted {
            Some(row) => row.try_get(0)?,
            // Bound before (or by a concurrent claim): read the one binding.
            None => sqlx::query("SELECT owner FROM databot_conversations WHERE session_key = $1")
                .bind(session_key)
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        };
        let mut owners = self.owners.lock();
        if owners.len() >= REMEMBERED_OWNERS {
            owners.clear();
        }
        owners.insert(session_key.to_owned(), bound.clone());
        Ok(bound)
    }
}

/// The statement that saves a turn: `$1` the session, `$2`..`$4` the usage, `$5`.. the
/// messages (numbered after the session's last), then (with messages) the turn record's
/// `TURN_VALUES` values, then the reply record's values when `with_reply`. PostgreSQL runs it
/// as one statement (the inserts are data-modifying CTEs, which all see the session's last
/// sequence number from before); SQLite, which has none, as one transaction of statements
/// sent together.
fn append_statement(messages: usize, sqlite: bool, with_reply: bool) -> String {
    let usage = "INSERT INTO databot_usage (session_key, prompt_tokens, completion_tokens, total_tokens) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (session_key) DO UPDATE SET \
           prompt_tokens = databot_usage.prompt_tokens + excluded.prompt_tokens, \
           completion_tokens = databot_usage.completion_tokens + excluded.completion_tokens, \
           total_tokens = databot_usage.total_tokens + excluded.total_tokens";
    let mut ctes = Vec::new();
    let mut next = messages + 5;
    if messages > 0 {
        let rows: Vec<String> = (0..messages)
            .map(|index| format!("({}, ${})", index + 1, index + 5))
            .collect();
        let last = "last AS (SELECT COALESCE(MAX(seq), 0) AS seq FROM databot_messages WHERE session_key = $1)";
        let insert = format!(
            "INSERT INTO databot_messages (session_key, seq, message) \
             SELECT $1, last.seq + numbered.column1, numbered.column2 FROM last, (VALUES {}) AS numbered",
            rows.join(", ")
        );
        let p = |offset: usize| format!("${}", next + offset);
        let turn = format!(
            "INSERT INTO databot_turns (session_key, first_seq, messages, started_at, duration_ms, \
             specialist, prompt_tokens, completion_tokens, iterations, tool_calls, trace_id) \
             SELECT $1, last.seq + 1, {messages}, {}, {}, {}, $2, $3, {}, {}, {} FROM last",
            p(0),
            p(1),
            p(2),
            p(3),
            p(4),
            p(5),
        );
        next += TURN_VALUES;
        if sqlite {
            return format!(
                "BEGIN IMMEDIATE; WITH {last} {turn}; WITH {last} {insert}; {usage}; COMMIT"
            );
        }
        ctes.push(last.to_owned());
        ctes.push(format!("inserted AS ({insert} RETURNING 1)"));
        ctes.push(format!("turn AS ({turn} RETURNING 1)"));
    }
    if with_reply {
        ctes.push(crate::bus::outbox::ReplyRecord::insert_cte(next, 1, false));
    }
    if ctes.is_empty() {
        usage.to_owned()
    } else {
        format!("WITH {} {usage}", ctes.join(", "))
    }
}

/// Which conversations `SessionStore::conversations` lists.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter<'a> {
    /// Only this owner's (`None`: everyone's, channels' included).
    pub owner: Option<&'a str>,
    /// Text the key or a message contains, in any case.
    pub search: Option<&'a str>,
    /// The last conversation of the previous page (its last activity, in milliseconds since
    /// the epoch, and its key): the next page starts after it.
    pub after: Option<(i64, &'a str)>,
    pub limit: usize,
}

/// One conversation in a list.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConversationSummary {
    pub session_key: String,
    /// The gateway principal it is bound to; `None` for a channel's conversation.
    pub owner: Option<String>,
    pub turns: i64,
    pub started_at_ms: i64,
    pub last_active_ms: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub tool_calls: i64,
}

/// A saved turn as the conversation view shows it: its record and where its messages are.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredTurn {
    /// Sequence number of its first message (the user's).
    pub first_seq: i64,
    pub messages: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    #[serde(flatten)]
    pub record: TurnRecord,
}

/// Turns saved in a period.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TurnTotals {
    pub turns: i64,
    pub conversations: i64,
    pub tool_calls: i64,
    pub tokens: i64,
    pub slowest_ms: i64,
}

/// `text` as a case-insensitive `LIKE` pattern matching it anywhere (`!` escapes `%`, `_`
/// and itself: an escape every dialect takes alike, whatever its string settings).
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '!') {
            pattern.push('!');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Values a turn record binds in `append_statement`.
const TURN_VALUES: usize = 6;

use crate::timing::now_ms;

/// Memories of a store from before scopes (table `databot_memory`, one namespace for all) are
/// what every conversation saw: they move to the global scope, and the old table goes.
async fn adopt_unscoped_memories(pool: &AnyPool, sqlite: bool) -> anyhow::Result<()> {
    let exists = if sqlite {
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'databot_memory'"
    } else {
        "SELECT COUNT(*) FROM information_schema.tables
         WHERE table_name = 'databot_memory' AND table_schema = current_schema()"
    };
    let count: i64 = sqlx::query(exists).fetch_one(pool).await?.try_get(0)?;
    if count == 0 {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    // `WHERE true` keeps SQLite from reading `ON CONFLICT` as a join constraint.
    sqlx::query(
        "INSERT INTO databot_memories (scope, memory_key, memory_value, updated_at)
         SELECT 'global', memory_key, memory_value, updated_at FROM databot_memory WHERE true
         ON CONFLICT (scope, memory_key) DO NOTHING",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query("DROP TABLE IF EXISTS databot_memory")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// A connection URL without its password, for messages.
/// Forget a conversation, within the caller's transaction: its messages, turn records, usage,
/// specialist, owner, and the memories of its `conversation` scope.
pub async fn delete_conversation_in(
    connection: &mut sqlx::AnyConnection,
    session_key: &str,
) -> anyhow::Result<()> {
    for table in [
        "databot_messages",
        "databot_turns",
        "databot_usage",
        "databot_routes",
        "databot_conversations",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE session_key = $1"
        )))
        .bind(session_key)
        .execute(&mut *connection)
        .await?;
    }
    let memories = super::memory_tool::scope_key(
        crate::config::MemoryScope::Conversation,
        &super::Conversation::local(session_key),
    );
    sqlx::query("DELETE FROM databot_memories WHERE scope = $1")
        .bind(memories)
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// A database URL fit to show: no user information (`user:password@`) and no query string
/// (which can carry `password=`).
pub fn redact_url(url: &str) -> String {
    // User information first (a password may hold `?` or `/`), then the query.
    let (scheme, rest) = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => (Some(&url[..scheme]), &url[at + 1..]),
        (Some(scheme), _) => (Some(&url[..scheme]), &url[scheme + 3..]),
        _ => (None, url),
    };
    let rest = rest.split_once('?').map_or(rest, |(base, _)| base);
    match scheme {
        Some(scheme) if url.rfind('@').is_some_and(|at| at > scheme.len()) => {
            format!("{scheme}://…@{rest}")
        }
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_have_no_credentials() {
        assert_eq!(
            redact_url("postgres://u:pa?ss@db:5432/x?password=S"),
            "postgres://…@db:5432/x"
        );
        assert_eq!(redact_url("postgres://db/x?password=S"), "postgres://db/x");
        assert_eq!(redact_url("sqlite:///tmp/s.db"), "sqlite:///tmp/s.db");
    }

    #[tokio::test]
    async fn a_deleted_conversation_starts_again_from_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = SessionStore::connect(&url).await.unwrap();
        let turn = [
            ChatMessage::text(crate::contract::chat::Role::User, "hi"),
            ChatMessage::text(crate::contract::chat::Role::Assistant, "hello"),
        ];
        let record = TurnRecord::default();
        let save = || store.append_turn("schedule:x", &turn, Usage::default(), &record, None);
        save().await.unwrap();
        let mut connection = store.pool().acquire().await.unwrap();
        delete_conversation_in(&mut connection, "schedule:x")
            .await
            .unwrap();
        drop(connection);
        // A conversation of the same key (a job made again) saves its first turn anew.
        save().await.unwrap();
        let (turns, messages) = store.conversation_turns("schedule:x", 10).await.unwrap();
        assert_eq!((turns.len(), messages.len()), (1, 2));
        assert_eq!(turns[0].first_seq, 1);
    }

    #[tokio::test]
    async fn writer_locks_leave_with_their_last_holder() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Arc::new(SessionStore::connect(&url).await.unwrap());
        for i in 0..100 {
            let _writer = store.lock(&format!("api:{i}")).await;
        }
        assert_eq!(store.locked_sessions(), 0);
        // A waiter keeps the entry until it has written too.
        let first = store.lock("api:x").await;
        let waiting = tokio::spawn({
            let store = store.clone();
            async move {
                let _writer = store.lock("api:x").await;
            }
        });
        tokio::task::yield_now().await;
        drop(first);
        assert!(store.locked_sessions() <= 1);
        waiting.await.unwrap();
        assert_eq!(store.locked_sessions(), 0);
        // One cancelled while waiting is gone too, here or by the next sweep.
        let held = store.lock("api:y").await;
        let cancelled =
            tokio::time::timeout(std::time::Duration::from_millis(10), store.lock("api:y")).await;
        assert!(cancelled.is_err());
        drop(held);
        assert_eq!(store.locked_sessions(), 0);
    }
}
