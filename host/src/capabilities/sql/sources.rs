//! The SQL sources of `data.sql`: one lazily connected pool per source, credentials held here.
//! A source that is down does not stop the host; its calls fail with `unavailable` until it
//! is back, and the pool reconnects on its own.
//!
//! PostgreSQL and MySQL pools reach their server through the source's wire guard (one server
//! message may not exceed the byte cap); SQLite connections get the same cap as SQLite's own
//! length limit. Sessions are pinned on connect and cleared or checked on release (`session`).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use sqlx::ConnectOptions;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::policy::{SqlDialect, SqlPolicy};
use super::session::{self, MysqlSessions};
use super::wire_guard::{Protocol, Upstream, WireGuard};
use crate::config::{Config, SqlSourceConfig};

/// Room above the byte cap for the framing of a row whose JSON fits it (length headers,
/// binary numbers); also the floor under it, so that column descriptions always pass.
const MESSAGE_SLACK: usize = 64 * 1024;
const MESSAGE_FLOOR: usize = 1024 * 1024;

/// A URL host as a name to resolve (an IPv6 literal without its brackets).
fn bare_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

/// Largest single server message (or SQLite string, blob or row) a source accepts.
pub fn max_message(max_bytes: usize) -> usize {
    max_bytes.max(MESSAGE_FLOOR).saturating_add(MESSAGE_SLACK)
}

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
/// runtime) is made on first use. PostgreSQL and MySQL options name the server; the pool
/// connects to the wire guard started in front of it.
#[derive(Clone)]
enum PoolSpec {
    Postgres(PgPoolOptions, PgConnectOptions),
    Mysql(MySqlPoolOptions, MySqlConnectOptions),
    Sqlite(SqlitePoolOptions, SqliteConnectOptions),
}

/// A source's pool and the wire guard its connections go through (none for SQLite).
struct Connected {
    pool: SourcePool,
    _guard: Option<WireGuard>,
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
    /// The pool, or why it could not be made (the wire guard's socket could not be opened).
    pool: OnceLock<Result<Connected, String>>,
    /// PostgreSQL: the functions the search path makes callable with one argument, read by
    /// every new connection (`session::postgres_field_calls`); `None` before the first.
    field_calls: FieldCalls,
}

type FieldCalls = Arc<parking_lot::RwLock<Option<Arc<HashSet<String>>>>>;

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
            if let Some(Ok(connected)) = source.pool.get() {
                match &connected.pool {
                    SourcePool::Postgres(pool) => pool.close().await,
                    SourcePool::Mysql(pool) => pool.close().await,
                    SourcePool::Sqlite(pool) => pool.close().await,
                }
            }
        }
    }
}

/// The file of a `sqlite://` source URL, relative to the config's folder.
pub(crate) fn sqlite_file(url: &str, base_dir: &Path) -> Option<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| base_dir.join(path))
}

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
        let field_calls = FieldCalls::default();
        let (dialect, spec) = match scheme {
            "postgres" | "postgresql" => {
                let options = PgConnectOptions::from_str(url)
                    .map_err(|e| anyhow::anyhow!("the PostgreSQL URL is not valid: {e}"))?
                    .application_name("databot")
                    .options(session::POSTGRES_STARTUP);
                let known = field_calls.clone();
                let pool = PgPoolOptions::new()
                    .max_connections(config.pool_size.max(1))
                    .acquire_timeout(acquire_timeout)
                    .after_connect(move |conn, _meta| {
                        let known = known.clone();
                        Box::pin(async move {
                            let names = session::postgres_field_calls(conn).await?;
                            *known.write() = Some(Arc::new(names));
                            Ok(())
                        })
                    })
                    .after_release(|conn, _meta| Box::pin(session::postgres_on_release(conn)));
                (SqlDialect::Postgres, PoolSpec::Postgres(pool, options))
            }
            "mysql" | "mariadb" => {
                let url = url.replacen("mariadb:", "mysql:", 1);
                let options = MySqlConnectOptions::from_str(&url)
                    .map_err(|e| anyhow::anyhow!("the MySQL URL is not valid: {e}"))?;
                let sessions = MysqlSessions::new();
                let on_release = sessions.clone();
                let pool = MySqlPoolOptions::new()
                    .max_connections(config.pool_size.max(1))
                    .acquire_timeout(acquire_timeout)
                    .after_connect(move |conn, _meta| {
                        let sessions = sessions.clone();
                        Box::pin(async move { sessions.on_connect(conn, timeout_ms).await })
                    })
                    .after_release(move |conn, _meta| {
                        let sessions = on_release.clone();
                        Box::pin(async move { sessions.on_release(conn).await })
                    });
                (SqlDialect::Mysql, PoolSpec::Mysql(pool, options))
            }
            "sqlite" => {
                let Some(file) = sqlite_file(url, base_dir) else {
                    anyhow::bail!(
                        "a SQLite source needs a file: `sqlite://path/to/file.db` (in-memory databases would be empty)"
                    );
                };
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
                let length_limit = i32::try_from(max_message(limits.max_bytes)).unwrap_or(i32::MAX);
                let pool = SqlitePoolOptions::new()
                    .max_connections(config.pool_size.max(1))
                    .acquire_timeout(acquire_timeout)
                    .after_connect(move |conn, _meta| {
                        Box::pin(async move {
                            let mut handle = conn.lock_handle().await?;
                            let db = handle.as_raw_handle();
                            // SAFETY: `db` is the open connection sqlx holds locked for us
                            // until `handle` drops; sqlite3_limit only reads and sets a field.
                            unsafe {
                                libsqlite3_sys::sqlite3_limit(
                                    db.as_ptr(),
                                    libsqlite3_sys::SQLITE_LIMIT_LENGTH,
                                    length_limit,
                                );
                            }
                            Ok(())
                        })
                    });
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
            field_calls,
        })
    }

    /// The functions this source's search path makes callable with one argument (PostgreSQL;
    /// empty for the other dialects). Known once a connection has opened; before that, one is
    /// opened to read them.
    pub async fn field_calls(&self) -> Result<Arc<HashSet<String>>, sqlx::Error> {
        if self.dialect != SqlDialect::Postgres {
            return Ok(Arc::default());
        }
        if let Some(known) = self.field_calls.read().clone() {
            return Ok(known);
        }
        match self.pool() {
            Ok(SourcePool::Postgres(pool)) => drop(pool.acquire().await?),
            Ok(_) => {}
            Err(message) => return Err(sqlx::Error::Configuration(message.into())),
        }
        self.field_calls
            .read()
            .clone()
            .ok_or_else(|| sqlx::Error::Protocol("the source's functions could not be read".into()))
    }

    /// The pool, made (without connecting) on first use, with the wire guard in front of a
    /// PostgreSQL or MySQL server. Call from within the async runtime.
    pub fn pool(&self) -> Result<&SourcePool, String> {
        self.pool
            .get_or_init(|| self.connect_lazily())
            .as_ref()
            .map(|connected| &connected.pool)
            .map_err(Clone::clone)
    }

    fn connect_lazily(&self) -> Result<Connected, String> {
        let max_message = max_message(self.limits.max_bytes);
        let guard_failed =
            |e: std::io::Error| format!("the wire guard of this source cannot start: {e}");
        Ok(match self.spec.clone() {
            PoolSpec::Postgres(pool, options) => {
                let port = options.get_port();
                let upstream = match options.get_socket() {
                    Some(directory) => Upstream::Unix(directory.join(format!(".s.PGSQL.{port}"))),
                    None if options.get_host().starts_with('/') => Upstream::Unix(
                        Path::new(options.get_host()).join(format!(".s.PGSQL.{port}")),
                    ),
                    None => Upstream::Tcp {
                        host: bare_host(options.get_host()),
                        port,
                    },
                };
                let guard = WireGuard::start(
                    Protocol::Postgres,
                    upstream,
                    max_message,
                    &self.name,
                    &format!(".s.PGSQL.{port}"),
                )
                .map_err(guard_failed)?;
                let options = options.socket(guard.directory());
                Connected {
                    pool: SourcePool::Postgres(pool.connect_lazy_with(options)),
                    _guard: Some(guard),
                }
            }
            PoolSpec::Mysql(pool, options) => {
                let upstream = match options.get_socket() {
                    Some(path) => Upstream::Unix(path.clone()),
                    None => Upstream::Tcp {
                        host: bare_host(options.get_host()),
                        port: options.get_port(),
                    },
                };
                let guard = WireGuard::start(
                    Protocol::Mysql,
                    upstream,
                    max_message,
                    &self.name,
                    "mysql.sock",
                )
                .map_err(guard_failed)?;
                let options = options.socket(guard.socket());
                Connected {
                    pool: SourcePool::Mysql(pool.connect_lazy_with(options)),
                    _guard: Some(guard),
                }
            }
            PoolSpec::Sqlite(pool, options) => Connected {
                pool: SourcePool::Sqlite(pool.connect_lazy_with(options)),
                _guard: None,
            },
        })
    }

    pub fn dialect_name(&self) -> &'static str {
        self.dialect.name()
    }
}
