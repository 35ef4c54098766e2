//! [`Database`]: one pool over SQLite or PostgreSQL, migrated when opened; and
//! [`DatabaseConfig`], the configuration's `database` section.

use std::{borrow::Cow, fmt, time::Duration};

use serde::{Deserialize, Serialize};
use sqlx::{
    AnyPool,
    any::AnyPoolOptions,
    migrate::{Migration, MigrationType, Migrator},
};
use tollgate_core::{ConfigError, ErrorKind, LlmError, duration};

use crate::row::unavailable;

/// The schema, in order; each runs once per database (sqlx's `_sqlx_migrations` keeps count).
const MIGRATIONS: [(i64, &str, &str); 4] = [
    (1, "records", include_str!("../migrations/0001_records.sql")),
    (
        2,
        "audit order",
        include_str!("../migrations/0002_audit_order.sql"),
    ),
    (3, "calls", include_str!("../migrations/0003_calls.sql")),
    (
        4,
        "responses",
        include_str!("../migrations/0004_responses.sql"),
    ),
];

/// Where the control plane's records live: the configuration's `database` section.
///
/// ```
/// use tollgate_control::DatabaseConfig;
///
/// let file: DatabaseConfig = serde_json::from_str(r#"{ "url": "sqlite://tollgate.db" }"#).unwrap();
/// assert!(file.check().is_empty());
/// let shared: DatabaseConfig = serde_json::from_str(r#"{ "url_env": "DATABASE_URL" }"#).unwrap();
/// assert!(shared.check().is_empty());
/// let neither: DatabaseConfig = serde_json::from_str("{}").unwrap();
/// assert_eq!(neither.check()[0].path(), "database");
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://FILE` (created when missing) or `postgres://USER@HOST:PORT/DB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The environment variable holding the URL, for one with a password in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// Connections at most (default 8).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long an operation may wait for a connection or an answer (default 5 s).
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
}

/// The URL of [`DatabaseConfig::in_memory`].
const MEMORY: &str = "sqlite::memory:";

fn default_max_connections() -> u32 {
    8
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl fmt::Debug for DatabaseConfig {
    /// The URL is never shown: it may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("backend", &self.url.as_deref().map(Backend::of))
            .field("url_env", &self.url_env)
            .field("max_connections", &self.max_connections)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl DatabaseConfig {
    /// A configuration for `url`, every other setting at its default.
    pub fn url(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            url_env: None,
            max_connections: default_max_connections(),
            timeout: default_timeout(),
        }
    }

    /// A SQLite database in this process's memory, gone when it exits: what a gateway without
    /// a `database` section keeps its records in. One connection, kept for the process's life
    /// (each connection to `:memory:` is a database of its own).
    pub fn in_memory() -> Self {
        Self {
            url: Some(MEMORY.into()),
            url_env: None,
            max_connections: 1,
            timeout: default_timeout(),
        }
    }

    /// Whether this is [`in_memory`](Self::in_memory)'s database.
    pub fn is_in_memory(&self) -> bool {
        self.url.as_deref() == Some(MEMORY)
    }

    /// Every mistake, each with its path under `database`.
    pub fn check(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        match (&self.url, &self.url_env) {
            (Some(_), Some(_)) => errors.push(ConfigError::new(
                "database",
                "give `url` or `url_env`, not both",
            )),
            (None, None) => errors.push(ConfigError::new(
                "database",
                "give `url` (sqlite://FILE or postgres://...) or `url_env` (the variable that holds it)",
            )),
            (Some(url), None) => {
                if let Err(reason) = Backend::parse(url) {
                    errors.push(ConfigError::new("database.url", reason));
                }
            }
            (None, Some(var)) if var.trim().is_empty() => {
                errors.push(ConfigError::new("database.url_env", "must not be empty"));
            }
            (None, Some(_)) => {}
        }
        if self.max_connections == 0 {
            errors.push(ConfigError::new("database.max_connections", "must be > 0"));
        }
        if self.timeout.is_zero() {
            errors.push(ConfigError::new("database.timeout", "must be > 0"));
        }
        errors
    }

    /// The URL: `url`, or the value of `url_env` read through `env`.
    ///
    /// # Errors
    ///
    /// When `url_env` names a variable that is not set, or the URL is neither SQLite nor
    /// PostgreSQL.
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
        let url = match (&self.url, &self.url_env) {
            (Some(url), _) => url.clone(),
            (None, Some(var)) => env(var).ok_or_else(|| {
                ConfigError::new("database.url_env", format!("`{var}` is not set"))
            })?,
            (None, None) => return Err(self.check().remove(0)),
        };
        Backend::parse(&url).map_err(|reason| ConfigError::new("database.url", reason))?;
        Ok(url)
    }
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in this process.
    Sqlite,
    /// A PostgreSQL server, shared by every process that names it.
    Postgres,
}

impl Backend {
    fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err("expected a sqlite:// or postgres:// URL".into())
        }
    }

    fn of(url: &str) -> Option<Self> {
        Self::parse(url).ok()
    }
}

/// The control plane's database: keys, teams, spend and the audit log, over SQLite or
/// PostgreSQL, migrated to the current schema when opened. Clones share one pool.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tollgate_control::{Database, DatabaseConfig};
///
/// let dir = std::env::temp_dir().join(format!("tollgate-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let url = format!("sqlite://{}", dir.join("tollgate.db").display());
/// let database = Database::open(&DatabaseConfig::url(url)).await.unwrap();
/// assert_eq!(database.backend(), tollgate_control::Backend::Sqlite);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # }
/// ```
#[derive(Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Connects to the database `config` names (`url_env` read from the process environment)
    /// and brings its schema up to date.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` for a configuration mistake; `Unavailable` when the database cannot be
    /// reached or migrated, in words that never include the URL.
    pub async fn open(config: &DatabaseConfig) -> Result<Self, LlmError> {
        if let Some(mistake) = config.check().into_iter().next() {
            return Err(LlmError::new(
                ErrorKind::InvalidRequest,
                mistake.to_string(),
            ));
        }
        let url = config
            .resolve(|var| std::env::var(var).ok())
            .map_err(|e| LlmError::new(ErrorKind::InvalidRequest, e.to_string()))?;
        let backend = Backend::parse(&url).expect("checked");
        sqlx::any::install_default_drivers();
        let memory = url == MEMORY;
        let url = match backend {
            // Created when missing.
            Backend::Sqlite if !url.contains("mode=") && !memory => {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}mode=rwc")
            }
            _ => url,
        };
        let mut options = AnyPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.timeout);
        if memory {
            // The one connection is the database: it is never closed for idling or age.
            options = options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        let pool = options
            .connect(&url)
            .await
            .map_err(|e| unavailable("cannot reach the database", &e))?;
        let database = Self { pool, backend };
        if backend == Backend::Sqlite && !memory {
            // Readers do not wait on the ledger's writer, and a writer waits for another.
            for pragma in ["PRAGMA journal_mode = WAL", "PRAGMA busy_timeout = 5000"] {
                sqlx::query(pragma)
                    .execute(&database.pool)
                    .await
                    .map_err(|e| unavailable("cannot set up the SQLite file", &e))?;
            }
        }
        database.migrate().await?;
        Ok(database)
    }

    /// Brings the schema up to date; running it again changes nothing.
    ///
    /// # Errors
    ///
    /// `Unavailable` when a migration cannot run.
    pub async fn migrate(&self) -> Result<(), LlmError> {
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    false,
                )
            })
            .collect();
        let migrator = Migrator {
            migrations: Cow::Owned(migrations),
            ..Migrator::DEFAULT
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| unavailable("cannot bring the database's schema up to date", &e))
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, LlmError> {
        self.pool
            .begin()
            .await
            .map_err(|e| unavailable("cannot start a transaction", &e))
    }

    pub(crate) async fn commit(
        &self,
        tx: sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<(), LlmError> {
        tx.commit()
            .await
            .map_err(|e| unavailable("cannot commit the change", &e))
    }

    /// A number that moves whenever a key or a team changes: a process that polls it learns of
    /// a change made by any other within one poll.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn records_version(&self) -> Result<i64, LlmError> {
        let row = sqlx::query("SELECT value FROM tg_meta WHERE name = 'records_version'")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| unavailable("cannot read the records' version", &e))?;
        crate::row::get(&row, "value")
    }

    /// Closes every connection; operations after it fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
