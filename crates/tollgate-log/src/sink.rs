//! [`Sink`]: where records go, a batch at a time, and the task that feeds one.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};
use tollgate_core::{
    LlmError,
    telemetry::{Counter, LOG_DROPPED, LOG_WRITTEN},
};

use crate::record::CallRecord;

/// What [`Sink::write`] returns.
pub type WriteFuture<'a> = Pin<Box<dyn Future<Output = Result<(), LlmError>> + Send + 'a>>;

/// Where records are kept: a file, a database table, a collector. Each sink is fed by a task of
/// its own, one batch at a time and in order, so a write may take its time: the calls never wait
/// for it. A batch that fails is dropped and counted, never retried: a sink that is down must not
/// hold the records that follow.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use tollgate_log::{CallRecord, Sink, WriteFuture};
///
/// /// Keeps each record's id, for a test.
/// struct Ids(Arc<Mutex<Vec<String>>>);
///
/// impl Sink for Ids {
///     fn write<'a>(&'a mut self, batch: &'a [Arc<CallRecord>]) -> WriteFuture<'a> {
///         let ids = batch.iter().map(|record| record.request_id.to_string());
///         self.0.lock().unwrap().extend(ids);
///         Box::pin(async { Ok(()) })
///     }
/// }
/// ```
pub trait Sink: Send + 'static {
    /// Writes `batch`, oldest first.
    ///
    /// # Errors
    ///
    /// When the batch was not kept; it is then counted as dropped.
    fn write<'a>(&'a mut self, batch: &'a [Arc<CallRecord>]) -> WriteFuture<'a>;

    /// Makes what was written durable, before the process exits (default: nothing to do).
    fn close(&mut self) -> WriteFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}

/// How a sink's task batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Batching {
    /// Records waiting at most; past it a record is dropped and counted.
    pub(crate) queue: usize,
    /// Records written at once at most.
    pub(crate) batch: usize,
    /// How long a record may wait for its batch to fill.
    pub(crate) interval: Duration,
}

pub(crate) enum Message {
    Record(Arc<CallRecord>),
    Flush(oneshot::Sender<()>),
}

/// A sink's queue, and what became of the records given to it.
pub(crate) struct SinkQueue {
    pub(crate) name: Arc<str>,
    sender: mpsc::Sender<Message>,
    pub(crate) counts: Arc<Counts>,
}

/// Records a sink wrote and dropped.
#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) written: AtomicU64,
    pub(crate) dropped: AtomicU64,
    written_metric: Counter,
    dropped_metric: Counter,
}

impl Counts {
    fn new(name: &str) -> Self {
        let labels = [("sink", name.to_owned())];
        Self {
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            written_metric: Counter::new(LOG_WRITTEN, &labels),
            dropped_metric: Counter::new(LOG_DROPPED, &labels),
        }
    }

    pub(crate) fn dropped(&self, name: &str, records: u64) {
        let before = self.dropped.fetch_add(records, Ordering::Relaxed);
        self.dropped_metric.increment(records);
        // Said once per doubling, so a dead sink does not flood the log.
        if (before + records).ilog2() != before.checked_ilog2().unwrap_or(u32::MAX) {
            tracing::warn!(
                target: "tollgate::log",
                sink = name,
                dropped = before + records,
                "call records dropped: the sink's queue is full or its writes fail"
            );
        }
    }

    fn written(&self, records: u64) {
        self.written.fetch_add(records, Ordering::Relaxed);
        self.written_metric.increment(records);
    }
}

impl SinkQueue {
    /// Starts `sink`'s task (inside a Tokio runtime).
    pub(crate) fn start(name: &str, sink: Box<dyn Sink>, batching: Batching) -> Self {
        let (sender, receiver) = mpsc::channel(batching.queue.max(1));
        let name: Arc<str> = name.into();
        let counts = Arc::new(Counts::new(&name));
        tokio::spawn(feed(name.clone(), sink, receiver, batching, counts.clone()));
        Self {
            name,
            sender,
            counts,
        }
    }

    /// Queues `record`, or drops and counts it when the queue is full.
    pub(crate) fn offer(&self, record: Arc<CallRecord>) {
        if self.sender.try_send(Message::Record(record)).is_err() {
            self.counts.dropped(&self.name, 1);
        }
    }

    /// Waits until every record queued before now is written or dropped.
    pub(crate) async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }

    pub(crate) fn queued(&self) -> usize {
        self.sender.max_capacity() - self.sender.capacity()
    }
}

/// Feeds `sink` from `receiver` a batch at a time until every sender is gone.
async fn feed(
    name: Arc<str>,
    mut sink: Box<dyn Sink>,
    mut receiver: mpsc::Receiver<Message>,
    batching: Batching,
    counts: Arc<Counts>,
) {
    let mut batch: Vec<Arc<CallRecord>> = Vec::with_capacity(batching.batch);
    let mut tick = tokio::time::interval(batching.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = receiver.recv() => {
                // What else is waiting is taken at once, up to a batch: a sink whose writes are
                // slow (or time out) must not be fed one record per write.
                let mut next = message;
                loop {
                    match next {
                        Some(Message::Record(record)) => {
                            batch.push(record);
                            if batch.len() >= batching.batch {
                                write(&name, &mut *sink, &mut batch, &counts).await;
                                break;
                            }
                        }
                        Some(Message::Flush(done)) => {
                            write(&name, &mut *sink, &mut batch, &counts).await;
                            if let Err(error) = sink.close().await {
                                tracing::warn!(target: "tollgate::log", sink = &*name, %error, "a sink could not make its records durable");
                            }
                            let _ = done.send(());
                            break;
                        }
                        None => {
                            write(&name, &mut *sink, &mut batch, &counts).await;
                            let _ = sink.close().await;
                            return;
                        }
                    }
                    match receiver.try_recv() {
                        Ok(message) => next = Some(message),
                        Err(_) => break,
                    }
                }
            },
            _ = tick.tick() => write(&name, &mut *sink, &mut batch, &counts).await,
        }
    }
}

async fn write(name: &str, sink: &mut dyn Sink, batch: &mut Vec<Arc<CallRecord>>, counts: &Counts) {
    if batch.is_empty() {
        return;
    }
    let records = batch.len() as u64;
    match sink.write(batch).await {
        Ok(()) => counts.written(records),
        Err(error) => {
            tracing::debug!(target: "tollgate::log", sink = name, %error, records, "a batch of call records was not written");
            counts.dropped(name, records);
        }
    }
    batch.clear();
}
