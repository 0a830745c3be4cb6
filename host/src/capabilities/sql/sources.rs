//! The SQL sources of `data.sql`: one lazily connected pool per source, credentials held here.
//! A source that is down does not stop the host; its calls fail with `unavailable` until it
//! is back, and the pool reconnects on its own.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{ConnectOptions, Executor};

use super::policy::{SqlDialect, SqlPolicy};
use crate::config::{Config, SqlSourceConfig};

/// The pool of one source, by driver.
#[derive(Clone)]
pub enum SourcePool {
    Postgres(PgPool),
    Mysql(MySqlPool),
    Sqlite(SqlitePool),
}

/// Caps applied to every call on a source.
#[derive(Debug, Clone, Copy)]
pub struct SourceLimits {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// How to build a source's pool; kept so the pool (whose upkeep tasks need the async
/// runtime) is made on first use.
#[derive(Clone)]
enum PoolSpec {
    Postgres(PgPoolOptions, PgConnectOptions),
    Mysql(MySqlPoolOptions, MySqlConnectOptions),
    Sqlite(SqlitePoolOptions, SqliteConnectOptions),
}

/// One named source.
pub struct SqlSource {
    pub name: String,
    pub dialect: SqlDialect,
    pub writable: bool,
    pub limits: SourceLimits,
    /// The host's SQL policy (shared by every source).
    pub policy: Arc<SqlPolicy>,
    spec: PoolSpec,
    pool: OnceLock<SourcePool>,
}

/// Every configured source, by name.
#[derive(Default)]
pub struct SqlSources {
    sources: BTreeMap<String, Arc<SqlSource>>,
    policy: Arc<SqlPolicy>,
}

impl SqlSources {
    /// Build the pools (without connecting) for every source in `data.sql`.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let policy =
            Arc::new(SqlPolicy::from_config(&config.data.sql_policy).map_err(anyhow::Error::msg)?);
        let mut sources = BTreeMap::new();
        for (name, source) in &config.data.sql {
            let built = SqlSource::new(name, source, &config.base_dir, policy.clone())
                .with_context(|| format!("data.sql.{name}"))?;
            sources.insert(name.clone(), Arc::new(built));
        }
        Ok(Self { sources, policy })
    }

    /// The SQL policy every source checks statements with.
    pub fn policy(&self) -> &SqlPolicy {
        &self.policy
    }

    pub fn get(&self, name: &str) -> Option<Arc<SqlSource>> {
        self.sources.get(name).cloned()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    /// Close every pool (at shutdown).
    pub async fn close(&self) {
        for source in self.sources.values() {
            match source.pool.get() {
                Some(SourcePool::Postgres(pool)) => pool.close().await,
                Some(SourcePool::Mysql(pool)) => pool.close().await,
                Some(SourcePool::Sqlite(pool)) => pool.close().await,
                None => {}
            }
        }
    }
}

/// MySQL/MariaDB sql_mode flags that change how statements are tokenised or parsed (the
/// combination modes imply ANSI_QUOTES).
const MYSQL_LEXICAL_MODES: &[&str] = &[
    "ANSI_QUOTES",
    "NO_BACKSLASH_ESCAPES",
    "ANSI",
    "ORACLE",
    "MSSQL",
    "DB2",
    "MAXDB",
    "POSTGRESQL",
];

/// Remove `MYSQL_LEXICAL_MODES` from the session's sql_mode, keeping the rest.
const MYSQL_PIN_SQL_MODE: &str = "SET SESSION sql_mode = TRIM(BOTH ',' FROM \
    REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE( \
    CONCAT(',', @@SESSION.sql_mode, ','), \
    ',ANSI_QUOTES,', ','), ',NO_BACKSLASH_ESCAPES,', ','), ',ANSI,', ','), \
    ',ORACLE,', ','), ',MSSQL,', ','), ',DB2,', ','), ',MAXDB,', ','), \
    ',POSTGRESQL,', ','), ',,', ','))";

impl SqlSource {
    fn new(
        name: &str,
        config: &SqlSourceConfig,
        base_dir: &Path,
        policy: Arc<SqlPolicy>,
    ) -> anyhow::Result<Self> {
        let url = config.url.expose();
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or_default();
        let limits = SourceLimits {
            max_rows: usize::try_from(config.max_rows)
                .unwrap_or(usize::MAX)
                .max(1),
            max_bytes: usize::try_from(config.max_bytes)
                .unwrap_or(usize::MAX)
                .max(1),
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
        };
        let acquire_timeout = Duration::from_millis(config.connect_timeout_ms.max(1));
        let timeout_ms = config.timeout_ms.max(1);
        let (dialect, spec) = match scheme {
            "postgres" | "postgresql" => {
                let options = PgConnectOptions::from_str(url)
                    .map_err(|e| anyhow::anyhow!("the PostgreSQL URL is not valid: {e}"))?
                    .application_name("databot");
                let pool = PgPoolOptions::new()
                    .max_connections(config.pool_size.max(1))
                    .acquire_timeout(acquire_timeout)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // The lexical pass reads '...' without backslash escapes; a
                            // server, database or role default of `off` would make the
                            // server end strings elsewhere. Statements cannot SET it back.
                            conn.execute("SET SESSION standard_conforming_strings = on")
                                .await?;
                            Ok(())
                        })
                    });
                (SqlDialect::Postgres, PoolSpec::Postgres(pool, options))
            }
            "mysql" | "mariadb" => {
                let url = url.replacen("mariadb:", "mysql:", 1);
                let options = MySqlConnectOptions::from_str(&url)
                    .map_err(|e| anyhow::anyhow!("the MySQL URL is not valid: {e}"))?;
                let pool = MySqlPoolOptions::new()
                    .max_connections(config.pool_size.max(1))
                    .acquire_timeout(acquire_timeout)
                    .after_connect(move |conn, _meta| {
                        Box::pin(async move {
                            // MariaDB names it max_statement_time (seconds), MySQL
                            // max_execution_time (milliseconds, SELECT only).
                            let mariadb = format!(
                                "SET SESSION max_statement_time = {}",
                                timeout_ms as f64 / 1000.0
                            );
                            if conn.execute(sqlx::AssertSqlSafe(mariadb)).await.is_err() {
                                let mysql =
                                    format!("SET SESSION max_execution_time = {timeout_ms}");
                                conn.execute(sqlx::AssertSqlSafe(mysql)).await?;
                            }
                            // The lexical pass reads "..." as strings and backslashes as
                            // escapes; modes that change either (or the Oracle parser) are
                            // removed from the session, and the result is verified.
                            conn.execute(MYSQL_PIN_SQL_MODE).await?;
                            let mode: String = sqlx::query_scalar("SELECT @@SESSION.sql_mode")
                                .fetch_one(&mut *conn)
                                .await?;
                            if let Some(flag) = mode
                                .split(',')
                                .find(|flag| MYSQL_LEXICAL_MODES.contains(flag))
                            {
                                return Err(sqlx::Error::Configuration(
                                    format!("sql_mode {flag} could not be turned off").into(),
                                ));
                            }
                            Ok(())
                        })
                    });
                (SqlDialect::Mysql, PoolSpec::Mysql(pool, options))
            }
            "sqlite" => {
                let path = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:");
                let path = path.split('?').next().unwrap_or_default();
                if path.is_empty() || path == ":memory:" {
                    anyhow::bail!(
                        "a SQLite source needs a file: `sqlite://path/to/file.db` (in-memory databases would be empty)"
                    );
                }
                let file = base_dir.join(path);
                let mut options = SqliteConnectOptions::new()
                    .filename(&file)
                    .read_only(!config.writable)
                    .create_if_missing(false);
                if config.writable {
                    options = options.journal_mode(SqliteJournalMode::Wal);
                }
                let options = options
                    .busy_timeout(Duration::from_secs(5))
                    .pragma("query_only", if config.writable { "0" } else { "1" })
                    .disable_statement_logging();
                let pool = SqlitePoolOptions::new()
                    .max_connections(config.pool_size.max(1))
                    .acquire_timeout(acquire_timeout);
                (SqlDialect::Sqlite, PoolSpec::Sqlite(pool, options))
            }
            other => anyhow::bail!(
                "unsupported database URL scheme `{other}`: use postgres://, mysql:// (MySQL and MariaDB) or sqlite://"
            ),
        };
        Ok(Self {
            name: name.to_owned(),
            dialect,
            writable: config.writable,
            limits,
            policy,
            spec,
            pool: OnceLock::new(),
        })
    }

    /// The pool, made (without connecting) on first use. Call from within the async runtime.
    pub fn pool(&self) -> &SourcePool {
        self.pool.get_or_init(|| match self.spec.clone() {
            PoolSpec::Postgres(pool, options) => {
                SourcePool::Postgres(pool.connect_lazy_with(options))
            }
            PoolSpec::Mysql(pool, options) => SourcePool::Mysql(pool.connect_lazy_with(options)),
            PoolSpec::Sqlite(pool, options) => SourcePool::Sqlite(pool.connect_lazy_with(options)),
        })
    }

    pub fn dialect_name(&self) -> &'static str {
        self.dialect.name()
    }
}
