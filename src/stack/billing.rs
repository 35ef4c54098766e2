//! Each provider's client, and what every call it makes is billed: the cost tracker's line and
//! the per-call metrics, whatever becomes of the call.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;
use tollgate_circuit_breaker::CircuitBreaker;
use tollgate_core::{
    AnsweredPrice, BilledUsage, LlmError, LlmRequest, LlmResponse, PriceCeiling, TokenEstimator,
    Usage, stream::StreamEnd,
};
use tollgate_health::Health;
use tollgate_retry::Retry;
use tower::util::Either;
use tower_service::Service;

use super::BoxedProvider;
use crate::{
    call_metrics::{ClientMetrics, Series},
    cost::{CostTracker, Labels, Route},
    recorder::CallRecorder,
};

/// A provider's client with its billing, statistics, breaker and retries, each when configured.
pub(super) type ProviderStack = Either<Retry<Guarded>, Guarded>;
type Guarded = Either<CircuitBreaker<Observed>, Observed>;
type Observed = Either<Health<Billed>, Billed>;

/// Each client's stack, by name (a provider's, or a target's with a key of its own): what the
/// router's deployments call, and what a request naming its provider goes to. The names come
/// from the configuration, so a fast hash needs no protection from keys chosen to collide.
pub(super) type Providers = HashMap<Arc<str>, ProviderStack, foldhash::fast::RandomState>;

/// A client whose every call the provider bills is added to the cost tracker: each answer, each
/// stream however it ends, and each call dropped while the provider was working on it (a hedge
/// that lost, a caller that left), which is counted with the prompt's estimate.
#[derive(Clone)]
pub(super) struct Billed {
    pub(super) client: BoxedProvider,
    pub(super) costs: CostTracker,
    /// The limiter's estimator, so an unfinished call is counted as the limiter counted it.
    pub(super) estimator: Arc<dyn TokenEstimator>,
    /// Per-call metrics, when a recorder takes them.
    pub(super) calls: Option<Arc<ClientMetrics>>,
}

impl Service<LlmRequest> for Billed {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = BilledFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.client.poll_ready(cx)
    }

    fn call(&mut self, request: LlmRequest) -> BilledFuture {
        let series = self.calls.as_ref().map(|calls| {
            calls.series(
                request.meta.operation,
                &request.model,
                request.meta.tenant.as_ref(),
            )
        });
        let started = series.as_ref().map(|series| series.now());
        // The call's record, when one is kept: each attempt adds its time, usage and cost.
        let recorder = CallRecorder::of(&request).cloned();
        let sent = recorder.as_ref().map(|_| std::time::Instant::now());
        let record = Record {
            recorder,
            series,
            costs: self.costs.clone(),
            labels: Labels {
                tenant: request.meta.tenant.clone(),
                principal: request.meta.principal.clone(),
                route: Route {
                    provider: request.provider.clone().unwrap_or_default(),
                    model: request.model.clone(),
                    role: request.meta.role.clone().unwrap_or_default(),
                },
            },
            // A stream's prompt is estimated now, in case it ends before the provider says; any
            // other call keeps its messages, to estimate them only if it is dropped.
            prompt: if request.meta.stream {
                Prompt::Estimated(self.estimator.estimate_prompt(&request))
            } else {
                Prompt::Kept(request.messages.clone())
            },
            estimator: self.estimator.clone(),
            stream: request.meta.stream,
            ceiling: request.extensions.get::<PriceCeiling>().is_some(),
        };
        BilledFuture {
            call: self.client.call(request),
            record: Some(record),
            started,
            sent,
        }
    }
}

/// What a call adds to the cost tracker once it is answered, or dropped.
struct Record {
    recorder: Option<CallRecorder>,
    series: Option<Arc<Series>>,
    costs: CostTracker,
    labels: Labels,
    prompt: Prompt,
    estimator: Arc<dyn TokenEstimator>,
    stream: bool,
    /// The call was reserved at a price ceiling: its answer says at what price it is settled.
    ceiling: bool,
}

/// The prompt, for a call that ends before the provider reported its size.
enum Prompt {
    Estimated(u64),
    Kept(Arc<[tollgate_core::Message]>),
}

impl Prompt {
    fn estimate(self, model: &Arc<str>, estimator: &dyn TokenEstimator) -> u64 {
        match self {
            Self::Estimated(tokens) => tokens,
            Self::Kept(messages) => {
                estimator.estimate_prompt(&LlmRequest::new(model.clone(), messages))
            }
        }
    }
}

impl Record {
    fn answered(self, response: &mut LlmResponse) {
        // Which model answered, for a budget that reserved at the dearest that might have.
        if self.ceiling {
            let route = &self.labels.route;
            if let Some(price) = self.costs.price(&route.provider, &route.model) {
                response.extensions.insert(AnsweredPrice(price));
            }
        }
        let Self {
            recorder,
            series,
            costs,
            labels,
            prompt,
            estimator,
            stream,
            ..
        } = self;
        let charge = move |labels: Labels, usage: Usage, incomplete: bool| {
            if let Some(series) = &series {
                series.billed(&labels.route.model, usage);
            }
            let cost = costs.record(labels, usage, incomplete);
            if let Some(recorder) = &recorder {
                recorder.billed(usage, cost);
            }
        };
        if !response.is_stream() {
            charge(labels, response.usage, false);
            return;
        }
        // A stream's usage is known at its end. One the caller drops, or that fails midway, is
        // billed all the same: it counts with what the provider reported by then, estimated
        // where it reported nothing by the limiter's estimator, so both count it alike. (A
        // service that streams unasked has no estimate: it counts what it reported.)
        response.on_stream_end(move |answer, end| match end {
            StreamEnd::Complete => charge(labels, answer.usage, false),
            _ if stream => {
                let read = estimator.estimate_answer(answer);
                let prompt = prompt.estimate(&labels.route.model, &*estimator);
                let usage = answer.usage.of_unfinished_stream(prompt, read);
                charge(labels, usage, true);
            }
            _ => charge(labels, answer.usage, true),
        });
    }

    /// The call failed, but the provider billed `usage` for it.
    fn billed_failure(self, usage: Usage) {
        if let Some(series) = &self.series {
            series.billed(&self.labels.route.model, usage);
        }
        let cost = self.costs.record(self.labels, usage, false);
        if let Some(recorder) = &self.recorder {
            recorder.billed(usage, cost);
        }
    }

    /// The call was dropped before its answer: the provider read the prompt all the same.
    fn dropped(self) {
        let prompt = self
            .prompt
            .estimate(&self.labels.route.model, &*self.estimator);
        let usage = Usage::default().of_unfinished_stream(prompt, 0);
        if let Some(series) = &self.series {
            series.billed(&self.labels.route.model, usage);
        }
        let cost = self.costs.record(self.labels, usage, true);
        if let Some(recorder) = &self.recorder {
            recorder.billed(usage, cost);
        }
    }
}

pin_project! {
    /// A billed call.
    pub(super) struct BilledFuture {
        #[pin]
        call: <BoxedProvider as Service<LlmRequest>>::Future,
        record: Option<Record>,
        // When the call was sent, when it is timed.
        started: Option<u64>,
        // When the call was sent, when its record is kept.
        sent: Option<std::time::Instant>,
    }

    impl PinnedDrop for BilledFuture {
        fn drop(this: Pin<&mut Self>) {
            if let Some(record) = this.project().record.take() {
                record.dropped();
            }
        }
    }
}

impl Future for BilledFuture {
    type Output = Result<LlmResponse, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.call.poll(cx));
        let record = this.record.take();
        if let (Some(sent), Some(recorder)) = (
            this.sent.take(),
            record.as_ref().and_then(|r| r.recorder.as_ref()),
        ) {
            recorder.waited(sent.elapsed());
        }
        let series = record.as_ref().and_then(|record| record.series.as_ref());
        if let (Some(series), Some(started)) = (series, this.started.take()) {
            let took = series.now().saturating_sub(started);
            match &result {
                Ok(_) => series.answered(took),
                Err(error) => series.failed(error.kind(), took),
            }
        }
        match result {
            Ok(mut response) => {
                if let Some(record) = record {
                    record.answered(&mut response);
                }
                Poll::Ready(Ok(response))
            }
            // A failed call is not billed, unless the provider says it billed it.
            Err(error) => {
                if let (Some(record), Some(usage)) = (record, BilledUsage::of(&error)) {
                    record.billed_failure(usage);
                }
                Poll::Ready(Err(error))
            }
        }
    }
}
