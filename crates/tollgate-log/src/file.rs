//! [`JsonLinesFile`]: records as JSON lines in a file, rotated by size and by day, old files
//! removed past a count.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use serde::Deserialize;
use tollgate_core::{ConfigError, ErrorKind, LlmError};

use crate::{
    record::CallRecord,
    sink::{Sink, WriteFuture},
};

/// A JSON-lines file's settings: the `file` sink of the configuration's `logs` section.
///
/// ```
/// use tollgate_log::FileConfig;
///
/// let config: FileConfig = serde_json::from_str(r#"{ "path": "logs/calls.jsonl", "max_bytes": 1048576, "keep": 3 }"#).unwrap();
/// assert!(config.daily);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FileConfig {
    /// The file written now; rotated files sit beside it, named after when they were rotated
    /// (`calls.20261205T120000.000Z.jsonl`).
    pub path: PathBuf,
    /// Rotates once the file holds this many bytes (default 100 MiB; `0` never).
    #[serde(default = "FileConfig::default_max_bytes")]
    pub max_bytes: u64,
    /// Rotates when a record is written on a later UTC day than the file's first (default true).
    #[serde(default = "yes")]
    pub daily: bool,
    /// Rotated files kept; older ones are removed (default 7).
    #[serde(default = "FileConfig::default_keep")]
    pub keep: usize,
}

fn yes() -> bool {
    true
}

impl FileConfig {
    /// A file at `path` with the default rotation and retention.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_bytes: Self::default_max_bytes(),
            daily: true,
            keep: Self::default_keep(),
        }
    }

    fn default_max_bytes() -> u64 {
        100 << 20
    }

    fn default_keep() -> usize {
        7
    }

    /// Checks the path names a file.
    ///
    /// # Errors
    ///
    /// A path with no file name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.path.file_name().is_none() || self.path.as_os_str().is_empty() {
            return Err(ConfigError::new("path", "must name a file"));
        }
        Ok(())
    }
}

/// A [`Sink`] writing each record as one line of JSON to a file, appended, and rotating it by
/// size and by day ([`FileConfig`]). Its writes run on Tokio's blocking threads.
///
/// A file moved away or removed under it (by `logrotate`, by an operator) is noticed at the
/// next batch, which goes to a new file at the path.
#[derive(Debug)]
pub struct JsonLinesFile {
    config: Arc<FileConfig>,
    state: Option<Box<Open>>,
    clock: fn() -> SystemTime,
}

impl JsonLinesFile {
    /// Opens (or creates) the file, and the folders above it.
    ///
    /// # Errors
    ///
    /// A path with no file name, or a file that cannot be opened.
    pub fn open(config: FileConfig) -> Result<Self, LlmError> {
        config
            .validate()
            .map_err(|error| LlmError::new(ErrorKind::InvalidRequest, error.to_string()))?;
        let config = Arc::new(config);
        let state = Open::new(config.clone())?;
        Ok(Self {
            config,
            state: Some(Box::new(state)),
            clock: SystemTime::now,
        })
    }

    /// Reads the day and the rotated files' names from `clock` instead of the system's time: for
    /// a test that sees a file rotate at midnight.
    #[must_use]
    pub fn with_clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.clock = clock;
        self
    }
}

/// The file being written, and what rotation needs to know of it.
#[derive(Debug)]
struct Open {
    config: Arc<FileConfig>,
    file: Option<File>,
    bytes: u64,
    /// The UTC day (since 1970) of its first record.
    day: Option<u64>,
    /// The time the last rotated file is named after: the next is named later.
    last_rotated: Option<SystemTime>,
}

impl Open {
    fn new(config: Arc<FileConfig>) -> Result<Self, LlmError> {
        let mut open = Self {
            config,
            file: None,
            bytes: 0,
            day: None,
            last_rotated: None,
        };
        open.reopen()?;
        Ok(open)
    }

    fn reopen(&mut self) -> Result<(), LlmError> {
        let path = &self.config.path;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| failed("cannot make the log's folder", &e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| failed("cannot open the log file", &e))?;
        let metadata = file
            .metadata()
            .map_err(|e| failed("cannot read the log file", &e))?;
        self.bytes = metadata.len();
        self.day = (self.bytes > 0)
            .then(|| day_of(metadata.modified().unwrap_or_else(|_| SystemTime::now())));
        self.file = Some(file);
        Ok(())
    }

    /// Appends `lines` (whole lines), rotating first when they belong in a new file.
    fn append(&mut self, lines: &[u8], now: SystemTime) -> Result<(), LlmError> {
        if self.file.is_none() || self.replaced() {
            self.reopen()?;
        }
        let today = day_of(now);
        let too_big = self.config.max_bytes > 0
            && self.bytes > 0
            && self.bytes + lines.len() as u64 > self.config.max_bytes;
        let new_day = self.config.daily && self.day.is_some_and(|day| day != today);
        if too_big || new_day {
            self.rotate(now)?;
        }
        let file = self.file.as_mut().expect("opened above");
        let written = file.write_all(lines);
        if let Err(error) = written {
            // What part of the batch made it is not known: the next batch starts a file anew.
            self.file = None;
            return Err(failed("cannot write the log file", &error));
        }
        self.bytes += lines.len() as u64;
        self.day.get_or_insert(today);
        Ok(())
    }

    /// Whether the path no longer names the file held open.
    #[cfg(unix)]
    fn replaced(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let (Some(file), Ok(at_path)) = (&self.file, std::fs::metadata(&self.config.path)) else {
            return true;
        };
        file.metadata()
            .is_ok_and(|held| (held.dev(), held.ino()) != (at_path.dev(), at_path.ino()))
    }

    #[cfg(not(unix))]
    fn replaced(&self) -> bool {
        !self.config.path.exists()
    }

    fn rotate(&mut self, now: SystemTime) -> Result<(), LlmError> {
        if let Some(file) = self.file.take() {
            let _ = file.sync_all();
        }
        let path = &self.config.path;
        let (stem, extension) = split_name(path);
        // Named after when it was rotated, to the millisecond, so names sort as the files were
        // written: never before the last one's, and a name already taken moves on a millisecond.
        let mut at = match self.last_rotated {
            Some(last) if last >= now => last + std::time::Duration::from_millis(1),
            _ => now,
        };
        let mut target = path.with_file_name(format!("{stem}.{}{extension}", stamp(at)));
        while target.exists() {
            at += std::time::Duration::from_millis(1);
            target = path.with_file_name(format!("{stem}.{}{extension}", stamp(at)));
        }
        std::fs::rename(path, &target).map_err(|e| failed("cannot rotate the log file", &e))?;
        self.last_rotated = Some(at);
        self.prune();
        self.reopen()
    }

    /// Removes rotated files past `keep`, oldest first.
    fn prune(&self) {
        let path = &self.config.path;
        let (stem, extension) = split_name(path);
        let folder = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let Ok(entries) = std::fs::read_dir(&folder) else {
            return;
        };
        let prefix = format!("{stem}.");
        // Rotated names sort as the files were written.
        let mut rotated: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                name.starts_with(&prefix)
                    && name.ends_with(&extension)
                    && name.len() > prefix.len() + extension.len()
            })
            .map(|entry| entry.path())
            .collect();
        rotated.sort();
        let excess = rotated.len().saturating_sub(self.config.keep);
        for old in rotated.into_iter().take(excess) {
            if let Err(error) = std::fs::remove_file(&old) {
                tracing::warn!(target: "tollgate::log", path = %old.display(), %error, "a rotated log file could not be removed");
            }
        }
    }
}

/// `20261205T120000.250Z`.
fn stamp(at: SystemTime) -> String {
    let millis = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let at = jiff::Timestamp::from_millisecond(millis).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    at.strftime("%Y%m%dT%H%M%S%.3fZ").to_string()
}

/// `calls.jsonl` as (`calls`, `.jsonl`).
fn split_name(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let extension = path
        .extension()
        .map_or_else(String::new, |e| format!(".{}", e.to_string_lossy()));
    (stem, extension)
}

fn day_of(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

fn failed(what: &str, error: &std::io::Error) -> LlmError {
    LlmError::new(ErrorKind::Unavailable, format!("{what}: {error}"))
}

impl Sink for JsonLinesFile {
    fn write<'a>(&'a mut self, batch: &'a [Arc<CallRecord>]) -> WriteFuture<'a> {
        // Written out on a blocking thread too: a batch's JSON is a millisecond of work that
        // must not hold up the calls on the runtime's threads.
        let batch = batch.to_vec();
        let state = self.state.take();
        let config = self.config.clone();
        let now = (self.clock)();
        Box::pin(async move {
            // A writer lost to a panic is made again.
            let mut state = match state {
                Some(state) => state,
                None => Box::new(Open::new(config)?),
            };
            let done = tokio::task::spawn_blocking(move || {
                let mut lines = Vec::with_capacity(batch.len() * 512);
                for record in &batch {
                    // A record is plain data: it always serializes.
                    let _ = serde_json::to_writer(&mut lines, &**record);
                    lines.push(b'\n');
                }
                let result = state.append(&lines, now);
                (state, result)
            })
            .await;
            match done {
                Ok((state, result)) => {
                    self.state = Some(state);
                    result
                }
                Err(_) => Err(LlmError::new(
                    ErrorKind::Internal,
                    "the log file's writer failed",
                )),
            }
        })
    }

    fn close(&mut self) -> WriteFuture<'_> {
        Box::pin(async move {
            if let Some(file) = self.state.as_ref().and_then(|state| state.file.as_ref()) {
                file.sync_data()
                    .map_err(|e| failed("cannot make the log file durable", &e))?;
            }
            Ok(())
        })
    }
}
