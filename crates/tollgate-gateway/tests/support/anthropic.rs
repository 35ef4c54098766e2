//! An Anthropic-shaped upstream for the gateway's black-box tests: plain axum, no tollgate code.
//! `POST /v1/messages` records each call's headers and body exactly as they arrived, and answers
//! with the next scripted body, as given, byte for byte (a JSON message, or an event stream).

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};

/// One scripted answer: a whole message's JSON, or an event stream's text.
#[derive(Debug, Clone)]
pub enum AnthropicReply {
    Message(String),
    Events(String),
}

/// One call as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<AnthropicReply>>,
    received: Mutex<Vec<Received>>,
}

/// The running server.
#[derive(Clone)]
pub struct AnthropicUpstream {
    pub address: SocketAddr,
    script: Arc<Script>,
}

#[allow(dead_code)] // each test binary uses some
impl AnthropicUpstream {
    pub async fn start() -> Self {
        let script = Arc::new(Script::default());
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { address, script }
    }

    /// The base URL a provider section points at.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn push(&self, reply: AnthropicReply) {
        self.script.replies.lock().unwrap().push_back(reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.script.received.lock().unwrap().clone()
    }
}

async fn messages(State(script): State<Arc<Script>>, headers: HeaderMap, body: Bytes) -> Response {
    script
        .received
        .lock()
        .unwrap()
        .push(Received { headers, body });
    let reply = script.replies.lock().unwrap().pop_front();
    match reply {
        Some(AnthropicReply::Message(text)) => {
            ([("content-type", "application/json")], text).into_response()
        }
        Some(AnthropicReply::Events(text)) => {
            ([("content-type", "text/event-stream")], text).into_response()
        }
        None => (StatusCode::INTERNAL_SERVER_ERROR, "no reply scripted").into_response(),
    }
}
