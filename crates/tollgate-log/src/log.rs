//! [`CallLog`]: every call's record handed to every sink, off the call path.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tollgate_core::ConfigError;

use crate::{
    record::CallRecord,
    redact::Redactor,
    sink::{Batching, Sink, SinkQueue},
};

/// What goes to the redacting task.
enum Message {
    Record(Arc<CallRecord>),
    Flush(oneshot::Sender<()>),
}

/// Hands each call's record to every sink: [`record`](Self::record) never waits and never fails.
/// Each sink has a bounded queue and a task that writes it in batches; a record that finds a
/// sink's queue full, or whose batch that sink fails to write, is dropped for that sink and
/// counted ([`stats`](Self::stats), and `tollgate.log.dropped{sink}` through `metrics`).
///
/// A record's prompt and answer (kept only when asked for) are redacted by a task of the log's
/// own before any sink sees them, so a call never waits for the patterns either.
///
/// Clones share the sinks; the tasks end when the last clone is dropped, after writing what they
/// hold. [`flush`](Self::flush) writes everything recorded so far, as a shutdown's drain does.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::{Arc, Mutex};
/// use tollgate_log::{CallLog, CallRecord, Sink, WriteFuture};
///
/// struct Kept(Arc<Mutex<Vec<Arc<CallRecord>>>>);
/// impl Sink for Kept {
///     fn write<'a>(&'a mut self, batch: &'a [Arc<CallRecord>]) -> WriteFuture<'a> {
///         self.0.lock().unwrap().extend_from_slice(batch);
///         Box::pin(async { Ok(()) })
///     }
/// }
///
/// let kept = Arc::new(Mutex::new(Vec::new()));
/// let log = CallLog::builder().sink("memory", Kept(kept.clone())).build().unwrap();
/// log.record(CallRecord::new("req_1", std::time::SystemTime::now()));
/// log.flush().await;
/// assert_eq!(kept.lock().unwrap()[0].request_id.as_ref(), "req_1");
/// assert_eq!(log.stats()[0].written, 1);
/// # }
/// ```
#[derive(Clone)]
pub struct CallLog {
    inner: Arc<Inner>,
}

struct Inner {
    sinks: Arc<[SinkQueue]>,
    /// Records with bodies go through the redacting task first.
    redacting: mpsc::Sender<Message>,
}

impl std::fmt::Debug for CallLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallLog")
            .field("sinks", &self.stats())
            .finish()
    }
}

/// What one sink has done with the records given to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SinkStats {
    /// The sink's name.
    pub sink: String,
    /// Records written.
    pub written: u64,
    /// Records dropped: its queue was full, or their batch failed.
    pub dropped: u64,
    /// Records waiting now.
    pub queued: usize,
}

impl CallLog {
    /// A builder, with a queue of 65,536 records per sink, batches of up to 1,000, written at
    /// least every 200 ms.
    pub fn builder() -> CallLogBuilder {
        CallLogBuilder {
            sinks: Vec::new(),
            batching: Batching {
                queue: 65_536,
                batch: 1_000,
                interval: Duration::from_millis(200),
            },
            redactor: Redactor::default(),
        }
    }

    /// Hands `record` to every sink, or drops and counts it for each sink with no room.
    pub fn record(&self, record: CallRecord) {
        let record = Arc::new(record);
        if record.prompt.is_some() || record.answer.is_some() {
            if self
                .inner
                .redacting
                .try_send(Message::Record(record))
                .is_err()
            {
                for sink in &*self.inner.sinks {
                    sink.counts.dropped(&sink.name, 1);
                }
            }
            return;
        }
        for sink in &*self.inner.sinks {
            sink.offer(record.clone());
        }
    }

    /// Waits until every record given so far is written (or dropped) by every sink, and each
    /// sink has made its writes durable.
    pub async fn flush(&self) {
        let (done, redacted) = oneshot::channel();
        if self
            .inner
            .redacting
            .send(Message::Flush(done))
            .await
            .is_ok()
        {
            let _ = redacted.await;
        }
        for sink in &*self.inner.sinks {
            sink.flush().await;
        }
    }

    /// Each sink's counts, in the order they were given.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.inner
            .sinks
            .iter()
            .map(|sink| SinkStats {
                sink: sink.name.to_string(),
                written: sink.counts.written.load(Ordering::Relaxed),
                dropped: sink.counts.dropped.load(Ordering::Relaxed),
                queued: sink.queued(),
            })
            .collect()
    }
}

/// Builds a [`CallLog`]; see [`CallLog::builder`].
#[must_use]
pub struct CallLogBuilder {
    sinks: Vec<(String, Box<dyn Sink>)>,
    batching: Batching,
    redactor: Redactor,
}

impl std::fmt::Debug for CallLogBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallLogBuilder")
            .field(
                "sinks",
                &self.sinks.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("batching", &self.batching)
            .finish_non_exhaustive()
    }
}

impl CallLogBuilder {
    /// Adds `sink`, under `name` (its label in the counts).
    pub fn sink(mut self, name: impl Into<String>, sink: impl Sink) -> Self {
        self.sinks.push((name.into(), Box::new(sink)));
        self
    }

    /// Records waiting per sink at most (default 65,536).
    pub fn queue(mut self, records: usize) -> Self {
        self.batching.queue = records;
        self
    }

    /// Records written at once at most (default 1,000).
    pub fn batch(mut self, records: usize) -> Self {
        self.batching.batch = records;
        self
    }

    /// How long a record may wait for its batch to fill (default 200 ms).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.batching.interval = interval;
        self
    }

    /// What cuts secrets out of prompts and answers (default: the built-in patterns).
    pub fn redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// The log, its tasks started (call it inside a Tokio runtime).
    ///
    /// # Errors
    ///
    /// A zero queue, batch or interval, or two sinks of one name.
    pub fn build(self) -> Result<CallLog, ConfigError> {
        let Batching {
            queue,
            batch,
            interval,
        } = self.batching;
        if queue == 0 {
            return Err(ConfigError::new("queue", "must be > 0"));
        }
        if batch == 0 {
            return Err(ConfigError::new("batch", "must be > 0"));
        }
        if interval.is_zero() {
            return Err(ConfigError::new("interval", "must be > 0"));
        }
        for (index, (name, _)) in self.sinks.iter().enumerate() {
            if self.sinks[..index].iter().any(|(other, _)| other == name) {
                return Err(ConfigError::new(
                    format!("sinks[{index}]"),
                    format!("a second sink named {name:?}"),
                ));
            }
        }
        let sinks: Arc<[SinkQueue]> = self
            .sinks
            .into_iter()
            .map(|(name, sink)| SinkQueue::start(&name, sink, self.batching))
            .collect();
        let (sender, receiver) = mpsc::channel(queue);
        tokio::spawn(redact(receiver, self.redactor, sinks.clone()));
        Ok(CallLog {
            inner: Arc::new(Inner {
                sinks,
                redacting: sender,
            }),
        })
    }
}

/// Redacts each record's bodies, then hands it to every sink.
async fn redact(
    mut receiver: mpsc::Receiver<Message>,
    redactor: Redactor,
    sinks: Arc<[SinkQueue]>,
) {
    while let Some(message) = receiver.recv().await {
        match message {
            Message::Record(record) => {
                let mut record = Arc::unwrap_or_clone(record);
                for body in [&mut record.prompt, &mut record.answer]
                    .into_iter()
                    .flatten()
                {
                    if let std::borrow::Cow::Owned(redacted) = redactor.redact(body) {
                        *body = redacted;
                    }
                }
                let record = Arc::new(record);
                for sink in &*sinks {
                    sink.offer(record.clone());
                }
            }
            Message::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}
