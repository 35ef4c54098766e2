//! One record per LLM call for [tollgate](https://docs.rs/tollgate): who called, which model
//! answered, what it cost, how long it took and whether the cache answered ([`CallRecord`]),
//! handed by a [`CallLog`] to any number of [`Sink`]s off the call path.
//!
//! Each sink has a bounded queue and a task that writes it in batches; a full queue or a sink
//! that fails never slows or fails a call: its records are dropped and counted, per sink
//! ([`CallLog::stats`], `tollgate.log.dropped{sink}`). Prompts and answers are kept only when
//! asked for, capped, and redacted ([`Redactor`]) before any sink sees them.
//!
//! [`JsonLinesFile`] writes a JSON-lines file rotated by size and by day; the gateway adds its
//! database table and OTLP logs.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use tollgate_log::{CallLog, CallRecord, FileConfig, JsonLinesFile};
//!
//! # let dir = std::env::temp_dir().join(format!("tollgate-log-doc-{}", std::process::id()));
//! let path = dir.join("calls.jsonl");
//! let file = JsonLinesFile::open(FileConfig::new(&path)).unwrap();
//! let log = CallLog::builder().sink("file", file).build().unwrap();
//!
//! let mut record = CallRecord::new("req_1", std::time::SystemTime::now());
//! record.model = Some("gpt-4o-mini".into());
//! log.record(record);
//! log.flush().await; // as a shutdown's drain does
//!
//! let line = std::fs::read_to_string(&path).unwrap();
//! let back: CallRecord = serde_json::from_str(line.trim_end()).unwrap();
//! assert_eq!(back.model.as_deref(), Some("gpt-4o-mini"));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # }
//! ```

mod file;
mod log;
mod record;
mod redact;
mod sink;

pub use file::{FileConfig, JsonLinesFile};
pub use log::{CallLog, CallLogBuilder, SinkStats};
pub use record::{CacheStatus, CallRecord};
pub use redact::{REDACTED, RedactHook, Redactor, capped};
pub use sink::{Sink, WriteFuture};

/// Times as RFC 3339, as records write them: for a sink of one's own that stores them as text.
pub fn format_time(at: std::time::SystemTime) -> String {
    record::rfc3339::format(at)
}

/// An RFC 3339 time (`2026-12-05T12:00:00Z`), to the millisecond, as records read them back: for
/// a query over records by time.
///
/// # Errors
///
/// Text that is no RFC 3339 time, or a time before 1970, said in words.
pub fn parse_time(text: &str) -> Result<std::time::SystemTime, String> {
    record::rfc3339::parse(text)
}
