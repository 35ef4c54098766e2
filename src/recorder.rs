//! [`CallRecorder`]: a call's [`CallRecord`] in the making, filled in by the stack's layers and the
//! caller, and handed to its hook once when the call is over.

use std::{
    sync::{Arc, Mutex},
    time::{Instant, SystemTime},
};

use tollgate_core::{LlmRequest, MicroUsd, Usage};
use tollgate_log::CallRecord;

/// A hook the stack calls with each call's record when the call is over: after the answer's last
/// event, every attempt billed. It runs on the task that finished the call: hand the record on
/// ([`CallLog::record`](crate::log::CallLog::record) does, without waiting).
pub type OnCall = Arc<dyn Fn(CallRecord) + Send + Sync>;

/// A call's record while the call runs: a request extension the stack's layers add to (the
/// router what answered, each billed attempt its usage, cost and time), which the caller may
/// add to as well ([`update`](Self::update)). The record goes to its hook once, when the last
/// clone is dropped: when the call, every attempt and the answer's stream are over.
///
/// [`StackBuilder::on_call`](crate::StackBuilder::on_call) makes one for every call; a caller
/// that knows more of a call (the gateway: its key's name, the HTTP status it answered with)
/// makes its own with [`new`](Self::new) and [`attach`](Self::attach)es it to the request, and
/// the stack fills in the same record.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use tollgate::{CallRecorder, LlmRequest, Message};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let kept = seen.clone();
/// let recorder = CallRecorder::new("req_1", Arc::new(move |record| kept.lock().unwrap().push(record)));
/// let mut request = LlmRequest::new("sim-small", vec![Message::user("hi")]);
/// recorder.attach(&mut request);
/// recorder.update(|record| record.status = Some(200));
/// drop((recorder, request));
/// assert_eq!(seen.lock().unwrap()[0].status, Some(200));
/// ```
#[derive(Clone)]
pub struct CallRecorder {
    slot: Arc<Slot>,
}

struct Slot {
    /// Taken when the slot is dropped, to go to the hook.
    record: Mutex<Option<CallRecord>>,
    started: Instant,
    hook: OnCall,
}

impl std::fmt::Debug for CallRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRecorder")
            .field("record", &*self.lock())
            .finish_non_exhaustive()
    }
}

impl CallRecorder {
    /// A record of call `request_id`, in now, for `hook`.
    pub fn new(request_id: impl Into<Arc<str>>, hook: OnCall) -> Self {
        Self {
            slot: Arc::new(Slot {
                record: Mutex::new(Some(CallRecord::new(request_id, SystemTime::now()))),
                started: Instant::now(),
                hook,
            }),
        }
    }

    /// Puts the recorder on `request`, where the stack finds it.
    pub fn attach(&self, request: &mut LlmRequest) {
        request.extensions.insert(self.clone());
    }

    /// The recorder `request` carries, if any.
    pub fn of(request: &LlmRequest) -> Option<&Self> {
        request.extensions.get::<Self>()
    }

    /// Changes the record.
    pub fn update(&self, change: impl FnOnce(&mut CallRecord)) {
        if let Some(record) = self.lock().as_mut() {
            change(record);
        }
    }

    /// How long since the call was in.
    pub fn elapsed(&self) -> std::time::Duration {
        self.slot.started.elapsed()
    }

    /// Adds one billed attempt: what it used and cost, and how long its provider took.
    pub(crate) fn billed(&self, usage: Usage, cost: Option<MicroUsd>) {
        let mut held = self.lock();
        let Some(record) = held.as_mut() else {
            return;
        };
        let sum = &mut record.usage;
        sum.input_tokens += usage.input_tokens;
        sum.output_tokens += usage.output_tokens;
        sum.cached_input_tokens += usage.cached_input_tokens;
        sum.cache_write_tokens += usage.cache_write_tokens;
        sum.reasoning_tokens += usage.reasoning_tokens;
        if let Some(cost) = cost {
            record.cost = Some(MicroUsd(record.cost.map_or(0, |c| c.0) + cost.0));
        }
    }

    /// Adds time an attempt spent waiting on its provider.
    pub(crate) fn waited(&self, took: std::time::Duration) {
        self.update(|record| record.upstream += took);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<CallRecord>> {
        self.slot
            .record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let held = self
            .record
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(mut record) = held.take() {
            record.latency = self.started.elapsed();
            (self.hook)(record);
        }
    }
}

/// A call's record while the stack works on it.
pub(crate) struct Recording {
    pub(crate) recorder: CallRecorder,
    /// Prompts and answers are kept, up to this many bytes each.
    pub(crate) bodies: Option<usize>,
}

/// What the record learns of a request once the stack has resolved it: who, what for, and (when
/// bodies are kept) its prompt.
pub(crate) fn asked(recorder: &CallRecorder, request: &LlmRequest, bodies: Option<usize>) {
    let prompt = bodies.map(|max| tollgate_log::capped(transcript(request), max));
    recorder.update(|record| {
        record.key_id.clone_from(&request.meta.principal);
        record.team.clone_from(&request.meta.tenant);
        record.role.clone_from(&request.meta.role);
        record.operation = std::borrow::Cow::Borrowed(request.meta.operation.as_str());
        record.stream = request.meta.stream;
        if !request.model.is_empty() {
            record.model = Some(request.model.clone());
        }
        if request.provider.is_some() {
            record.provider.clone_from(&request.provider);
        }
        if prompt.is_some() {
            record.prompt = prompt;
        }
    });
}

/// The request's messages as text, a line per message (`user: …`), their text parts only: plain
/// text, so the redaction patterns see a key as it was written (in JSON a newline before it
/// would be `\n`, and no word boundary would precede it).
fn transcript(request: &LlmRequest) -> String {
    let mut text = String::new();
    for message in request.messages.iter() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(message.role.as_str());
        text.push_str(": ");
        for (i, piece) in message.texts().enumerate() {
            if i > 0 {
                text.push('\n');
            }
            text.push_str(piece);
        }
    }
    text
}

/// What the record learns when the stack answers: what answered, whether the cache did, how it
/// failed, and tollgate's own time so far.
pub(crate) fn answered(
    recorder: &CallRecorder,
    result: &Result<tollgate_core::LlmResponse, tollgate_core::LlmError>,
    bodies: Option<usize>,
) {
    let elapsed = recorder.elapsed();
    recorder.update(|record| {
        record.overhead = elapsed.saturating_sub(record.upstream);
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                record.error = Some(error.kind());
                return;
            }
        };
        // Most answers name the model asked for: no new name is made for those.
        if !response.model.is_empty() && record.model.as_deref() != Some(response.model.as_str()) {
            record.model = Some(response.model.as_str().into());
        }
        record.cache = match response.headers.get("x-cache").map(|v| v.as_bytes()) {
            Some(b"HIT") => Some(tollgate_log::CacheStatus::Hit),
            Some(_) => Some(tollgate_log::CacheStatus::Miss),
            None => None,
        };
        if let Some(served) = response.extensions.get::<tollgate_router::Served>() {
            record.deployment = Some(served.deployment.clone());
            if served.provider.is_some() {
                record.provider.clone_from(&served.provider);
            }
            record.moves = served.moves;
            record.hedged = served.hedged;
        }
        if response.is_stream() {
            // The router reads a stream's first event before it answers.
            record.time_to_first_token = Some(elapsed);
        } else if let Some(max) = bodies {
            record.answer = Some(tollgate_log::capped(response.content().to_owned(), max));
        }
    });
}

/// `stream`, with its record kept open until it ends, told how it ended (and, when bodies are
/// kept, what it said).
pub(crate) fn follow(
    stream: tollgate_core::stream::LlmStream,
    recording: Recording,
) -> tollgate_core::stream::LlmStream {
    let Recording { recorder, bodies } = recording;
    let stream = match bodies {
        Some(max) => {
            let recorder = recorder.clone();
            stream.on_end(move |answer, _| {
                let text = tollgate_log::capped(answer.content().to_owned(), max);
                recorder.update(|record| record.answer = Some(text));
            })
        }
        None => stream,
    };
    tollgate_core::stream::LlmStream::new(Followed {
        events: stream,
        recorder,
        ended: false,
    })
}

/// A stream whose record learns how it ended; the record is held until the stream is dropped.
struct Followed {
    events: tollgate_core::stream::LlmStream,
    recorder: CallRecorder,
    ended: bool,
}

impl futures_core::Stream for Followed {
    type Item = Result<tollgate_core::stream::StreamEvent, tollgate_core::LlmError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let item = std::task::ready!(std::pin::Pin::new(&mut self.events).poll_next(cx));
        match &item {
            Some(Err(error)) => {
                let kind = error.kind();
                self.recorder.update(|record| record.error = Some(kind));
                self.ended = true;
            }
            None => self.ended = true,
            Some(Ok(_)) => {}
        }
        std::task::Poll::Ready(item)
    }
}

impl Drop for Followed {
    fn drop(&mut self) {
        if !self.ended {
            self.recorder.update(|record| record.dropped = true);
        }
    }
}
