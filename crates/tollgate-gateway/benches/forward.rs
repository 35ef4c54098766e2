//! The floor for `benches/gateway/run.sh`: the HTTP stack the gateway stands on (hyper's server,
//! reqwest's client, the same runtime) forwarding each request's body to the upstream and its
//! answer back, with nothing parsed, checked or counted. Not a criterion bench: the script runs
//! it as a server beside the gateway, so the gateway's cost over its own HTTP stack is measured in
//! the same run.
//!
//! ```text
//! cargo bench -p tollgate-gateway --bench forward -- <listen address> <upstream origin>
//! ```
//!
//! Each request goes to the same path on the upstream (`/v1/chat/completions`, `/v1/messages`).
//!
//! With `FORWARD_WORK=<key>` it also does, per call, the least that the gateway's measured
//! configuration must do, with the libraries the gateway keeps and nothing more: the bearer key's
//! SHA-256 looked up, the body read as JSON for its model and prompt, a tenant's request, token
//! and spend counters checked and moved, a SHA-256 cache key looked up in (and the answer stored
//! into) an 8 MiB moka cache, the answer read as JSON for its usage, and a JSON line per call
//! gathered in memory and written to a file every 100 ms by a thread of its own. What the gateway
//! does beyond this is what its abstractions cost; up to this is what the issue's features cost
//! on this HTTP stack.

use std::{
    convert::Infallible,
    io::Write,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn main() {
    // `cargo bench` passes `--bench`; the addresses are the arguments that are not flags.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let [listen, upstream] = &args[..] else {
        eprintln!("usage: forward <listen address> <upstream origin>");
        return;
    };
    let listen: SocketAddr = listen.parse().expect("a socket address");
    let origin = upstream.trim_end_matches('/').to_owned();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(serve(listen, origin));
}

/// An answer given before the call goes upstream.
enum Early {
    Refused(StatusCode),
    Hit(Bytes),
}

impl Early {
    fn response(self) -> Response<Full<Bytes>> {
        match self {
            Self::Refused(status) => Response::builder()
                .status(status)
                .body(Full::default())
                .expect("a response"),
            Self::Hit(answer) => Response::new(Full::new(answer)),
        }
    }
}

/// The per-call work of `FORWARD_WORK`, shared by every connection.
struct Work {
    key: [u8; 32],
    calls: AtomicU64,
    tokens: AtomicU64,
    micro_dollars: AtomicU64,
    cache: moka::sync::Cache<[u8; 32], Bytes>,
    log: Arc<Mutex<Vec<u8>>>,
}

impl Work {
    fn new(key: &str) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        let path = std::env::temp_dir().join(format!("forward-{}.jsonl", std::process::id()));
        // The lines gathered meanwhile, written every 100 ms: no call waits on the file or wakes
        // its writer.
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(&path).expect("a log file");
            let _ = std::fs::remove_file(&path);
            loop {
                std::thread::sleep(std::time::Duration::from_millis(100));
                let batch = std::mem::take(&mut *lines.lock().expect("the log's lock"));
                let _ = file.write_all(&batch);
            }
        });
        Self {
            key: Sha256::digest(key.as_bytes()).into(),
            calls: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            micro_dollars: AtomicU64::new(0),
            cache: moka::sync::Cache::builder()
                .max_capacity(8 << 20)
                .weigher(|_, answer: &Bytes| u32::try_from(answer.len() + 64).unwrap_or(u32::MAX))
                .build(),
            log,
        }
    }

    /// Before the call: the key, the limits, the cache. `Err` is the answer to give at once.
    fn before(&self, authorization: Option<&[u8]>, body: &[u8]) -> Result<[u8; 32], Early> {
        let refuse = |status| Err(Early::Refused(status));
        let Some(key) = authorization.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return refuse(StatusCode::UNAUTHORIZED);
        };
        if <[u8; 32]>::from(Sha256::digest(key)) != self.key {
            return refuse(StatusCode::UNAUTHORIZED);
        }
        let Ok(request) = serde_json::from_slice::<Value>(body) else {
            return refuse(StatusCode::BAD_REQUEST);
        };
        let prompt: usize = request["messages"].as_array().map_or(0, |messages| {
            messages
                .iter()
                .map(|m| m["content"].as_str().map_or(0, str::len))
                .sum()
        });
        if request["model"].as_str().is_none() {
            return refuse(StatusCode::BAD_REQUEST);
        }
        if self.calls.fetch_add(1, Relaxed) >= u64::MAX / 2
            || self.tokens.fetch_add(prompt as u64 / 4, Relaxed) >= u64::MAX / 2
            || self.micro_dollars.load(Relaxed) >= u64::MAX / 2
        {
            return refuse(StatusCode::TOO_MANY_REQUESTS);
        }
        let key: [u8; 32] = Sha256::new()
            .chain_update(self.key)
            .chain_update(body)
            .finalize()
            .into();
        if let Some(answer) = self.cache.get(&key) {
            return Err(Early::Hit(answer));
        }
        Ok(key)
    }

    /// After the call: the spend, the cache, the log line.
    fn after(&self, key: [u8; 32], answer: &Bytes) {
        let answer_json = serde_json::from_slice::<Value>(answer).unwrap_or_default();
        let usage = &answer_json["usage"];
        let (input, output) = (
            usage["prompt_tokens"].as_u64().unwrap_or(0),
            usage["completion_tokens"].as_u64().unwrap_or(0),
        );
        self.micro_dollars
            .fetch_add((input * 15 + output * 60) / 100, Relaxed);
        // A copy: the body's bytes may share the client's whole read buffer.
        self.cache.insert(key, Bytes::copy_from_slice(answer));
        let mut line = serde_json::to_vec(&serde_json::json!({
            "model": answer_json["model"], "input_tokens": input, "output_tokens": output,
            "status": 200, "cache": "miss",
        }))
        .expect("a line");
        line.push(b'\n');
        self.log
            .lock()
            .expect("the log's lock")
            .extend_from_slice(&line);
    }
}

async fn serve(listen: SocketAddr, origin: String) {
    let work = std::env::var("FORWARD_WORK")
        .ok()
        .map(|key| Arc::new(Work::new(&key)));
    let client = reqwest::Client::new();
    let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
    println!("forward listening on http://{listen}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (client, origin, work) = (client.clone(), origin.clone(), work.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let (client, work) = (client.clone(), work.clone());
                let url = format!("{origin}{}", request.uri().path());
                async move {
                    // OpenAI's bearer key, or Anthropic's `x-api-key` (API=anthropic).
                    let headers = request.headers();
                    let authorization = headers
                        .get("authorization")
                        .map(|h| h.as_bytes().to_vec())
                        .or_else(|| {
                            let key = headers.get("x-api-key")?.as_bytes();
                            Some([b"Bearer ".as_slice(), key].concat())
                        });
                    let body = request.into_body().collect().await.map(|b| b.to_bytes());
                    let key = match (&work, &body) {
                        (Some(work), Ok(body)) => match work.before(authorization.as_deref(), body)
                        {
                            Ok(key) => Some(key),
                            Err(early) => return Ok(early.response()),
                        },
                        _ => None,
                    };
                    let answer = match body {
                        Ok(body) => client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await
                            .ok(),
                        Err(_) => None,
                    };
                    let bytes = match answer {
                        Some(answer) => answer.bytes().await.unwrap_or_default(),
                        None => Bytes::new(),
                    };
                    if let (Some(work), Some(key)) = (&work, key) {
                        work.after(key, &bytes);
                    }
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(bytes))
                            .expect("a response"),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
