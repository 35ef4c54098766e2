//! The call log at the gateway: the `logs` section, its sinks (a JSON-lines file, the records'
//! database, OTLP logs), and the latest calls for the live page and `/admin/logs`.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use serde::Deserialize;
use tollgate::{
    CallRecorder, OnCall,
    log::{CallLog, CallRecord, FileConfig, JsonLinesFile, Redactor, Sink, SinkStats, WriteFuture},
};
use tollgate_control::Database;
use tollgate_core::{ConfigError, LlmError};

/// The `logs` section: one record per call, written to each of `sinks` off the call path.
///
/// ```yaml
/// logs:
///   sinks:
///     - { kind: file, path: logs/calls.jsonl, max_bytes: 104857600, keep: 7 }
///     - { kind: database, retention_days: 30 }
///     - { kind: otlp }            # to OTEL_EXPORTER_OTLP_ENDPOINT
///   log_bodies: false             # prompts and answers: off unless asked for
///   redact: ['ACCT-\d{6}']        # besides the built-in API-key and bearer-token patterns
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LogsConfig {
    /// Where records go; at least one.
    pub sinks: Vec<SinkConfig>,
    /// Keep each call's prompt and answer in its record (default false), capped at
    /// `max_body_bytes` each and redacted.
    pub log_bodies: bool,
    /// The most bytes of a prompt or an answer kept (default 16 KiB).
    pub max_body_bytes: usize,
    /// Patterns (regular expressions) cut out of prompts and answers, besides the built-in ones.
    pub redact: Vec<String>,
    /// Records waiting per sink at most (default 65,536); past it they are dropped and counted.
    pub queue: usize,
    /// Records written at once at most (default 1,000).
    pub batch: usize,
    /// How long a record may wait for its batch to fill (default 200 ms).
    #[serde(with = "tollgate_core::duration")]
    pub interval: Duration,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            sinks: Vec::new(),
            log_bodies: false,
            max_body_bytes: 16 << 10,
            redact: Vec::new(),
            queue: 65_536,
            batch: 1_000,
            interval: Duration::from_millis(200),
        }
    }
}

/// One sink of the `logs` section, by `kind`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SinkConfig {
    /// A JSON-lines file, rotated by size and by day.
    File(FileConfig),
    /// The records' database (the `database` section's), in the `tg_calls` table.
    Database(DatabaseSinkConfig),
    /// OTLP logs to a collector, over HTTP/protobuf.
    Otlp(OtlpSinkConfig),
}

impl SinkConfig {
    fn kind(&self) -> &'static str {
        match self {
            Self::File(_) => "file",
            Self::Database(_) => "database",
            Self::Otlp(_) => "otlp",
        }
    }
}

/// The database sink's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DatabaseSinkConfig {
    /// Days a record is kept (default 30; 0 keeps every record).
    pub retention_days: u32,
}

impl Default for DatabaseSinkConfig {
    fn default() -> Self {
        Self { retention_days: 30 }
    }
}

/// The OTLP sink's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct OtlpSinkConfig {
    /// The collector's logs endpoint (`http://collector:4318/v1/logs`); absent, the standard
    /// `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` variables say.
    pub endpoint: Option<String>,
}

impl LogsConfig {
    /// Every mistake, with its path under `logs`.
    pub(crate) fn check(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let at = |path: &str, reason: &str| ConfigError::new(format!("logs.{path}"), reason);
        if self.sinks.is_empty() {
            errors.push(at(
                "sinks",
                "name at least one sink (`{ kind: file, path: calls.jsonl }`, `{ kind: database }`, `{ kind: otlp }`), or leave the section out",
            ));
        }
        for (name, value) in [
            ("max_body_bytes", self.max_body_bytes),
            ("queue", self.queue),
            ("batch", self.batch),
        ] {
            if value == 0 {
                errors.push(at(name, "must be > 0"));
            }
        }
        if self.interval.is_zero() {
            errors.push(at("interval", "must be > 0"));
        }
        if let Err(error) = Redactor::new(&self.redact) {
            errors.push(at(error.path(), error.reason()));
        }
        for (index, sink) in self.sinks.iter().enumerate() {
            if self.sinks[..index].iter().any(|s| s.kind() == sink.kind()) {
                errors.push(at(
                    &format!("sinks[{index}]"),
                    &format!("a second `{}` sink: one of each kind", sink.kind()),
                ));
            }
            if let SinkConfig::File(file) = sink
                && let Err(error) = file.validate()
            {
                errors.push(at(
                    &format!("sinks[{index}].{}", error.path()),
                    error.reason(),
                ));
            }
        }
        errors
    }
}

/// The latest records kept in memory, for the live page and `/admin/logs/{id}`.
const RECENT: usize = 100;

/// The gateway's call log: its sinks, and the latest calls.
pub(crate) struct CallLogs {
    log: CallLog,
    hook: OnCall,
    recent: Arc<Mutex<VecDeque<Arc<CallRecord>>>>,
    /// Whether the database holds the records (a `database` sink).
    pub(crate) in_database: bool,
}

impl CallLogs {
    /// Starts the sinks `config` names (the database sink on `database`).
    pub(crate) fn start(config: &LogsConfig, database: &Database) -> Result<Self, LlmError> {
        let redactor = Redactor::new(&config.redact)
            .map_err(|e| LlmError::new(tollgate_core::ErrorKind::InvalidRequest, e.to_string()))?;
        let recent = Arc::new(Mutex::new(VecDeque::with_capacity(RECENT)));
        let mut builder = CallLog::builder()
            .queue(config.queue)
            .batch(config.batch)
            .interval(config.interval)
            .redactor(redactor)
            .sink("recent", Recent(recent.clone()));
        let mut in_database = false;
        for sink in &config.sinks {
            builder = match sink {
                SinkConfig::File(file) => builder.sink("file", JsonLinesFile::open(file.clone())?),
                SinkConfig::Database(settings) => {
                    in_database = true;
                    builder.sink("database", DatabaseSink::new(database.clone(), settings))
                }
                SinkConfig::Otlp(settings) => builder.sink(
                    "otlp",
                    crate::otel::OtlpLogs::new(settings.endpoint.as_deref())?,
                ),
            };
        }
        let log = builder
            .build()
            .map_err(|e| LlmError::new(tollgate_core::ErrorKind::InvalidRequest, e.to_string()))?;
        let into = log.clone();
        Ok(Self {
            hook: Arc::new(move |record| into.record(record)),
            log,
            recent,
            in_database,
        })
    }

    /// A recorder for the call `request_id`, whose record goes to every sink when it is over.
    pub(crate) fn recorder(&self, request_id: &str) -> CallRecorder {
        CallRecorder::new(request_id, self.hook.clone())
    }

    /// The latest `n` records, newest first.
    pub(crate) fn recent(&self, n: usize) -> Vec<Arc<CallRecord>> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().rev().take(n).cloned().collect()
    }

    /// Writes everything recorded so far, in every sink.
    pub(crate) async fn flush(&self) {
        self.log.flush().await;
    }

    /// What each sink (the in-memory one aside) has done.
    pub(crate) fn stats(&self) -> Vec<SinkStats> {
        let mut stats = self.log.stats();
        stats.retain(|sink| sink.sink != "recent");
        stats
    }
}

/// Keeps the latest records in memory.
struct Recent(Arc<Mutex<VecDeque<Arc<CallRecord>>>>);

impl Sink for Recent {
    fn write<'a>(&'a mut self, batch: &'a [Arc<CallRecord>]) -> WriteFuture<'a> {
        let mut recent = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for record in batch.iter().rev().take(RECENT).rev() {
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(record.clone());
        }
        Box::pin(async { Ok(()) })
    }
}

/// Writes records to the database's call table, and removes those past their retention once an
/// hour.
struct DatabaseSink {
    database: Database,
    retention: Option<Duration>,
    pruned: Option<Instant>,
}

/// How often records past their retention are removed.
const PRUNE_EVERY: Duration = Duration::from_secs(3_600);

impl DatabaseSink {
    fn new(database: Database, settings: &DatabaseSinkConfig) -> Self {
        Self {
            database,
            retention: (settings.retention_days > 0)
                .then(|| Duration::from_secs(u64::from(settings.retention_days) * 86_400)),
            pruned: None,
        }
    }
}

impl Sink for DatabaseSink {
    fn write<'a>(&'a mut self, batch: &'a [Arc<CallRecord>]) -> WriteFuture<'a> {
        Box::pin(async move {
            self.database.write_calls(batch).await?;
            let due = self.pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
            if let (Some(retention), true) = (self.retention, due) {
                self.pruned = Some(Instant::now());
                let before = SystemTime::now() - retention;
                match self.database.prune_calls(before).await {
                    Ok(0) => {}
                    Ok(removed) => {
                        tracing::info!(target: "tollgate::log", removed, "call records past their retention removed")
                    }
                    Err(error) => {
                        tracing::warn!(target: "tollgate::log", %error, "call records past their retention could not be removed")
                    }
                }
            }
            Ok(())
        })
    }
}
