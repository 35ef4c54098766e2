//! A leading call's answer on its way to the caller, copied as it goes and kept once its body is
//! over, if it went whole.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use axum::{body::Body, response::Response};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, StatusCode};
use http_body::{Body as _, Frame, SizeHint};

use super::Lead;
use crate::sse::StreamEnd;

/// The header a replay names the first call by.
const ORIGINAL: HeaderName = HeaderName::from_static("x-tollgate-original-request-id");

/// `response`, kept for `lead`'s key once its body has gone to the caller whole; a failure is
/// not kept (and `lead`, dropped, lets the next call with the key run).
pub(super) fn watch(lead: Lead, response: Response) -> Response {
    if !response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    // What describes the answer; not what describes this one delivery of it (its id and the
    // gateway's time on it: a replay has its own), which hyper writes itself.
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        match name.as_str() {
            crate::call::REQUEST_ID => {
                headers.insert(ORIGINAL, value.clone());
            }
            crate::call::OVERHEAD => {}
            _ => {
                headers.append(name.clone(), value.clone());
            }
        }
    }
    let mut tap = Tap {
        inner: body,
        lead: Some(lead),
        kept: Vec::new(),
        size: 0,
        status: parts.status,
        headers,
        end: parts.extensions.get::<StreamEnd>().cloned(),
    };
    if tap.inner.is_end_stream() {
        // Nobody polls a body that is over before it starts.
        tap.finish();
    }
    Response::from_parts(parts, Body::new(tap))
}

struct Tap {
    inner: Body,
    /// Taken when the answer is kept, or given up (too large, failed, cut).
    lead: Option<Lead>,
    kept: Vec<Bytes>,
    size: usize,
    status: StatusCode,
    headers: HeaderMap,
    /// A stream's: set when it ended well.
    end: Option<StreamEnd>,
}

impl Tap {
    fn copy(&mut self, data: &Bytes) {
        let Some(lead) = &self.lead else { return };
        self.size += data.len();
        if self.size > lead.max_entry_bytes {
            metrics::counter!("tollgate_idempotency_not_kept_total", "reason" => "too_large")
                .increment(1);
            tracing::debug!(target: "tollgate::idempotency", bytes = self.size, "an answer too large to keep: its retry runs again");
            self.lead = None;
            self.kept = Vec::new();
            return;
        }
        self.kept.push(data.clone());
    }

    /// The body is over: keeps the answer, unless it was a stream that did not end well.
    fn finish(&mut self) {
        let Some(lead) = self.lead.take() else { return };
        if self.end.as_ref().is_some_and(|end| !end.is_whole()) {
            metrics::counter!("tollgate_idempotency_not_kept_total", "reason" => "failed")
                .increment(1);
            return;
        }
        let body = match self.kept.len() {
            1 => self.kept.pop().expect("one"),
            _ => {
                let mut body = BytesMut::with_capacity(self.size);
                for piece in self.kept.drain(..) {
                    body.extend_from_slice(&piece);
                }
                body.freeze()
            }
        };
        lead.keep(self.status, std::mem::take(&mut self.headers), body);
    }
}

impl http_body::Body for Tap {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.copy(data);
                }
                // hyper stops at a body that says it is over, without polling it again.
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            // Cut: not kept.
            Some(Err(_)) => this.lead = None,
            None => this.finish(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
