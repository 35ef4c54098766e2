//! A real HTTP server on a free loopback port that answers from a script and records what it got.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde_json::Value;

/// One scripted answer.
#[derive(Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: String,
    /// Never answer at all.
    pub(crate) stall: bool,
}

impl Reply {
    pub(crate) fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".to_owned())],
            body: body.to_string(),
            stall: false,
        }
    }

    #[allow(dead_code)] // each test binary compiles this module; not all of them add headers
    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    #[allow(dead_code)] // each test binary compiles this module; not all of them stall
    pub(crate) fn stall() -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body: String::new(),
            stall: true,
        }
    }
}

/// What the server received.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
    /// The body's bytes, as they came.
    #[allow(dead_code)] // read by the tests that hold bytes, not JSON
    pub(crate) raw: Bytes,
}

#[derive(Clone, Default)]
struct State {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

pub(crate) struct Server {
    pub(crate) url: String,
    state: State,
}

impl Server {
    pub(crate) async fn start() -> Self {
        let state = State::default();
        let handler_state = state.clone();
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = handler_state.clone();
            async move { answer(state, uri, headers, body).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    /// Queues `reply` as the answer to the next request.
    pub(crate) fn reply(&self, reply: Reply) {
        self.state.replies.lock().unwrap().push_back(reply);
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

async fn answer(state: State, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    state.seen.lock().unwrap().push(Seen {
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), ToString::to_string),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: body,
    });
    let reply = state.replies.lock().unwrap().pop_front();
    let Some(reply) = reply else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no reply scripted").into_response();
    };
    if reply.stall {
        std::future::pending::<()>().await;
    }
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}
