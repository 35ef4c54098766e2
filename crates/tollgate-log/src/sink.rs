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

use std::sync::Mutex;

use tokio::sync::{Notify, oneshot};
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

/// A sink's queue, and what became of the records given to it.
///
/// A call pays a lock and a push: the sink's task is woken only when a batch is full or a flush
/// is asked for, and otherwise takes what waits at its interval. (A channel would wake the task
/// for every record: a wake-up across threads per call.)
pub(crate) struct SinkQueue {
    pub(crate) name: Arc<str>,
    shared: Arc<Shared>,
    pub(crate) counts: Arc<Counts>,
}

/// What a sink's queue and its task share.
struct Shared {
    waiting: Mutex<Waiting>,
    wake: Notify,
    batching: Batching,
}

#[derive(Default)]
struct Waiting {
    records: Vec<Arc<CallRecord>>,
    /// Who waits for what was queued before their flush to be written.
    flushes: Vec<oneshot::Sender<()>>,
    /// Every handle on the queue is gone: the task writes what is left and ends.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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
        let name: Arc<str> = name.into();
        let counts = Arc::new(Counts::new(&name));
        let shared = Arc::new(Shared {
            waiting: Mutex::default(),
            wake: Notify::new(),
            batching,
        });
        tokio::spawn(feed(name.clone(), sink, shared.clone(), counts.clone()));
        Self {
            name,
            shared,
            counts,
        }
    }

    /// Queues `record`, or drops and counts it when the queue is full.
    pub(crate) fn offer(&self, record: Arc<CallRecord>) {
        let batching = &self.shared.batching;
        let full = {
            let mut waiting = self.shared.lock();
            if waiting.records.len() >= batching.queue {
                drop(waiting);
                self.counts.dropped(&self.name, 1);
                return;
            }
            waiting.records.push(record);
            waiting.records.len() == batching.batch
        };
        if full {
            self.shared.wake.notify_one();
        }
    }

    /// Waits until every record queued before now is written or dropped, and the sink has made
    /// its writes durable.
    pub(crate) async fn flush(&self) {
        let (done, written) = oneshot::channel();
        self.shared.lock().flushes.push(done);
        self.shared.wake.notify_one();
        let _ = written.await;
    }

    pub(crate) fn queued(&self) -> usize {
        self.shared.lock().records.len()
    }
}

impl Drop for SinkQueue {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

/// Feeds `sink` what waits in its queue, a batch at a time, when woken or at its interval.
async fn feed(name: Arc<str>, mut sink: Box<dyn Sink>, shared: Arc<Shared>, counts: Arc<Counts>) {
    let batching = shared.batching;
    let mut tick = tokio::time::interval(batching.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut spare = Vec::new();
    loop {
        tokio::select! {
            () = shared.wake.notified() => {}
            _ = tick.tick() => {}
        }
        let (mut records, flushes, closed) = {
            let mut waiting = shared.lock();
            // The emptied vector goes back, so the queue keeps its room.
            let records = std::mem::replace(&mut waiting.records, std::mem::take(&mut spare));
            (
                records,
                std::mem::take(&mut waiting.flushes),
                waiting.closed,
            )
        };
        for batch in records.chunks(batching.batch) {
            write(&name, &mut *sink, batch, &counts).await;
        }
        records.clear();
        spare = records;
        if !flushes.is_empty() || closed {
            if let Err(error) = sink.close().await {
                tracing::warn!(target: "tollgate::log", sink = &*name, %error, "a sink could not make its records durable");
            }
            for done in flushes {
                let _ = done.send(());
            }
        }
        if closed {
            return;
        }
    }
}

async fn write(name: &str, sink: &mut dyn Sink, batch: &[Arc<CallRecord>], counts: &Counts) {
    let records = batch.len() as u64;
    match sink.write(batch).await {
        Ok(()) => counts.written(records),
        Err(error) => {
            tracing::debug!(target: "tollgate::log", sink = name, %error, records, "a batch of call records was not written");
            counts.dropped(name, records);
        }
    }
}
