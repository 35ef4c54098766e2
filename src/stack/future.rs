//! The response future of [`Stack`](super::Stack): the call inside its span, and what the span
//! learns from the answer.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tollgate_core::{ErrorKind, LlmError, LlmRequest, LlmResponse, Operation};
use tracing::{Span, field::Empty};

use super::BoxedProvider;
use crate::{call_metrics::Timed, recorder::Recording};

type Inner = <BoxedProvider as Service<LlmRequest>>::Future;
use tower_service::Service;

/// The span of one call through a stack, named after OpenTelemetry's convention for generative AI
/// (`chat {model}` as `otel.name`), with the request's attributes now and the answer's later.
/// Prompts and answers are never recorded.
pub(super) fn call_span(request: &LlmRequest) -> Span {
    // A span's name is fixed where it is written, so there is one call of the macro per name.
    macro_rules! span_named {
        ($name:literal) => {
            tracing::info_span!(
                $name,
                otel.name = Empty,
                gen_ai.operation.name = $name,
                gen_ai.request.model = &*request.model,
                gen_ai.provider.name = Empty,
                gen_ai.response.model = Empty,
                gen_ai.usage.input_tokens = Empty,
                gen_ai.usage.output_tokens = Empty,
                gen_ai.response.finish_reasons = Empty,
                error.type = Empty,
                tollgate.role = request.meta.role.as_deref(),
                tollgate.deployment = Empty,
                tollgate.cache = Empty,
            )
        };
    }
    let span = match request.meta.operation {
        Operation::Embeddings => span_named!("embeddings"),
        Operation::Completions => span_named!("text_completion"),
        _ => span_named!("chat"),
    };
    if !span.is_disabled() {
        span.record(
            "otel.name",
            format!("{} {}", request.meta.operation.as_str(), request.model),
        );
        if let Some(provider) = &request.provider {
            span.record("gen_ai.provider.name", &**provider);
        }
    }
    span
}

pin_project! {
    /// The future [`Stack`](super::Stack) returns.
    pub struct StackFuture {
        #[pin]
        state: State,
        span: Span,
        // The caller did not ask for a stream's usage: it is taken out of the answer's stream.
        quiet: bool,
        // The whole call's histograms and when it began, when a recorder takes them.
        timing: Option<(Arc<Timed>, u64)>,
        // The whole call's deadline, when it has one: boxed, as most calls have none.
        deadline: Option<(Instant, Pin<Box<Sleep>>)>,
        // The call's record, when one is kept.
        recording: Option<Box<Recording>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Called { #[pin] call: Inner },
        Failed { error: Option<LlmError> },
    }
}

impl std::fmt::Debug for StackFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackFuture").finish_non_exhaustive()
    }
}

impl StackFuture {
    pub(super) fn called(
        call: Inner,
        span: Span,
        quiet: bool,
        timing: Option<(Arc<Timed>, u64)>,
        deadline: Option<Instant>,
        recording: Option<Box<Recording>>,
    ) -> Self {
        Self {
            state: State::Called { call },
            span,
            quiet,
            timing,
            deadline: deadline.map(|at| (at, Box::pin(tokio::time::sleep_until(at)))),
            recording,
        }
    }

    pub(super) fn failed(error: LlmError, span: Span, recording: Option<Box<Recording>>) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
            span,
            quiet: false,
            timing: None,
            deadline: None,
            recording,
        }
    }
}

impl Future for StackFuture {
    type Output = Result<LlmResponse, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let result = match this.state.project() {
            StateProj::Called { call } => match call.poll(cx) {
                Poll::Ready(result) => result,
                Poll::Pending => {
                    let Some((_, sleep)) = this.deadline.as_mut() else {
                        return Poll::Pending;
                    };
                    ready!(sleep.as_mut().poll(cx));
                    // The call below is dropped with this future: what it used is settled as a
                    // call cut off.
                    Err(LlmError::new(
                        ErrorKind::Timeout,
                        "no answer within the call's deadline",
                    ))
                }
            },
            StateProj::Failed { error } => Err(error.take().expect("polled after completion")),
        };
        let deadline = this.deadline.take().map(|(at, _)| at);
        let mut recording = this.recording.take();
        if let Some(recording) = &recording {
            crate::recorder::answered(&recording.recorder, &result, recording.bodies);
        }
        let result = result.map(|mut response| {
            if let Some(stream) = response.take_stream() {
                let stream = match deadline {
                    Some(at) => stream.with_deadline(at),
                    None => stream,
                };
                let stream = if *this.quiet {
                    stream.without_usage()
                } else {
                    stream
                };
                // The record waits for the stream's end, and learns how it ended.
                let stream = match recording.take() {
                    Some(recording) => crate::recorder::follow(stream, *recording),
                    None => stream,
                };
                response = response.with_stream(stream);
            }
            response
        });
        if let Some((timed, started)) = this.timing.take() {
            let stream = result.as_ref().is_ok_and(LlmResponse::is_stream);
            timed.ended(timed.now().saturating_sub(started), stream);
        }
        if !this.span.is_disabled() {
            describe(this.span, &result);
        }
        Poll::Ready(result)
    }
}

/// What the span learns from the answer (a stream's usage is not known yet).
fn describe(span: &Span, result: &Result<LlmResponse, LlmError>) {
    match result {
        Ok(response) => {
            span.record("gen_ai.response.model", response.model.as_str());
            // Only a cache that looked marks the answer.
            match response
                .headers
                .get("x-cache")
                .map(|status| status.as_bytes())
            {
                Some(b"HIT") => span.record("tollgate.cache", "hit"),
                Some(_) => span.record("tollgate.cache", "miss"),
                None => span,
            };
            if !response.is_stream() {
                // As signed integers: OpenTelemetry has no unsigned ones, and an exporter would
                // write a u64 as text.
                let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                span.record(
                    "gen_ai.usage.input_tokens",
                    int(response.usage.input_tokens),
                );
                span.record(
                    "gen_ai.usage.output_tokens",
                    int(response.usage.output_tokens),
                );
                let reasons: Vec<&str> = response
                    .choices
                    .iter()
                    .filter_map(|choice| choice.finish_reason.as_ref().map(|r| r.as_str()))
                    .collect();
                span.record(
                    "gen_ai.response.finish_reasons",
                    tracing::field::debug(&reasons),
                );
            }
            if let Some(served) = response.extensions.get::<tollgate_router::Served>() {
                span.record("tollgate.deployment", &*served.deployment);
                if let Some(provider) = &served.provider {
                    span.record("gen_ai.provider.name", &**provider);
                }
            }
        }
        Err(error) => {
            span.record("error.type", error.kind().name());
        }
    }
}
