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

use std::{convert::Infallible, net::SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;

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

async fn serve(listen: SocketAddr, origin: String) {
    let client = reqwest::Client::new();
    let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
    println!("forward listening on http://{listen}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (client, origin) = (client.clone(), origin.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let client = client.clone();
                let url = format!("{origin}{}", request.uri().path());
                async move {
                    let body = request.into_body().collect().await.map(|b| b.to_bytes());
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
