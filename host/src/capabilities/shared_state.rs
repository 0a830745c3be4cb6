//! `state` capability kept in the PostgreSQL session store (`databot_plugin_state`), for
//! replicas of the Kafka bus: every replica's instance of a plugin sees the same keys.
//!
//! The limits are those of the file store: `MAX_KEY_BYTES`, `MAX_VALUE_BYTES`, and at most
//! `MAX_LIVE_BYTES` of keys and values per plugin, checked in the statement that writes (two
//! replicas writing at the same instant may each pass the check once). A change is one
//! statement: applied whole or not at all.

use sqlx::{AnyPool, Row};

use super::state::{MAX_KEY_BYTES, MAX_LIVE_BYTES};
use crate::contract::GuestError;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS databot_plugin_state (
    plugin TEXT NOT NULL,
    state_key TEXT NOT NULL,
    state_value BYTEA NOT NULL,
    PRIMARY KEY (plugin, state_key))";

pub struct SharedStateStore {
    pool: AnyPool,
    schema: tokio::sync::OnceCell<()>,
}

fn unavailable(error: sqlx::Error) -> GuestError {
    GuestError::Unavailable(format!("the shared state store cannot be reached: {error}"))
}

impl SharedStateStore {
    /// A store on `url` (PostgreSQL), connected on first use.
    pub fn connect_lazy(url: &str) -> Result<Self, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(4)
            .connect_lazy(url)?;
        Ok(Self {
            pool,
            schema: tokio::sync::OnceCell::new(),
        })
    }

    async fn ready(&self) -> Result<&AnyPool, GuestError> {
        self.schema
            .get_or_try_init(|| async {
                sqlx::query(SCHEMA)
                    .execute(&self.pool)
                    .await
                    .map(|_| ())
                    .map_err(unavailable)
            })
            .await?;
        Ok(&self.pool)
    }

    pub async fn get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, GuestError> {
        let pool = self.ready().await?;
        let row = sqlx::query(
            "SELECT state_value FROM databot_plugin_state WHERE plugin = $1 AND state_key = $2",
        )
        .bind(plugin)
        .bind(key)
        .fetch_optional(pool)
        .await
        .map_err(unavailable)?;
        row.map(|row| row.try_get::<Vec<u8>, _>(0).map_err(unavailable))
            .transpose()
    }

    pub async fn keys(&self, plugin: &str, prefix: &str) -> Result<Vec<String>, GuestError> {
        let pool = self.ready().await?;
        // Prefix matched exactly (no LIKE patterns): the keys from `prefix` up to the first
        // key that no longer starts with it, in byte order whatever the database's collation.
        let rows = sqlx::query(
            "SELECT state_key FROM databot_plugin_state
             WHERE plugin = $1 AND state_key COLLATE \"C\" >= $2
             ORDER BY state_key COLLATE \"C\"",
        )
        .bind(plugin)
        .bind(prefix)
        .fetch_all(pool)
        .await
        .map_err(unavailable)?;
        let mut keys = Vec::new();
        for row in rows {
            let key: String = row.try_get(0).map_err(unavailable)?;
            if !key.starts_with(prefix) {
                break;
            }
            keys.push(key);
        }
        Ok(keys)
    }

    pub async fn set(&self, plugin: &str, key: String, value: Vec<u8>) -> Result<(), GuestError> {
        super::state::check_entry(&key, &value)?;
        if key.contains('\0') {
            return Err(GuestError::InvalidInput(
                "a state key may not contain NUL when state is shared by replicas".into(),
            ));
        }
        let pool = self.ready().await?;
        let size = i64::try_from(key.len() + value.len()).unwrap_or(i64::MAX);
        // The plugin's live bytes without this key, plus the new entry, within the limit.
        let written = sqlx::query(
            "INSERT INTO databot_plugin_state (plugin, state_key, state_value)
             SELECT $1, $2, $3 WHERE
               (SELECT COALESCE(SUM(OCTET_LENGTH(state_key) + OCTET_LENGTH(state_value)), 0)
                  FROM databot_plugin_state WHERE plugin = $1 AND state_key <> $2) + $4 <= $5
             ON CONFLICT (plugin, state_key) DO UPDATE SET state_value = excluded.state_value",
        )
        .bind(plugin)
        .bind(key.as_str())
        .bind(value)
        .bind(size)
        .bind(i64::try_from(MAX_LIVE_BYTES).unwrap_or(i64::MAX))
        .execute(pool)
        .await
        .map_err(unavailable)?;
        if written.rows_affected() == 0 {
            return Err(GuestError::InvalidInput(format!(
                "state is full: the plugin's keys and values would pass {MAX_LIVE_BYTES} bytes; delete keys first"
            )));
        }
        Ok(())
    }

    pub async fn delete(&self, plugin: &str, key: &str) -> Result<(), GuestError> {
        if key.len() > MAX_KEY_BYTES {
            return Ok(());
        }
        let pool = self.ready().await?;
        sqlx::query("DELETE FROM databot_plugin_state WHERE plugin = $1 AND state_key = $2")
            .bind(plugin)
            .bind(key)
            .execute(pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
