//! The `axum_per_route` example's app, driven end to end over HTTP on a free port.

#[path = "../examples/axum_per_route.rs"]
#[allow(dead_code)]
mod example;

use std::collections::HashMap;

use tollgate::SimulatedProvider;

async fn start() -> (String, SimulatedProvider) {
    let provider = SimulatedProvider::new();
    let tenants = HashMap::from([
        ("key-acme".to_owned(), "acme".to_owned()),
        ("key-globex".to_owned(), "globex".to_owned()),
    ]);
    let app = example::app(provider.clone(), tenants, example::prometheus());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, provider)
}

#[tokio::test]
async fn the_strict_route_limits_and_caches_while_the_relaxed_route_keeps_answering() {
    let (url, provider) = start().await;
    for prompt in ["one", "two", "three"] {
        let (status, _, cache, _) = example::send(&url, "strict", "key-acme", prompt).await;
        assert_eq!((status, cache.as_deref()), (200, Some("MISS")), "{prompt}");
    }
    let (status, retry_after, _, body) = example::send(&url, "strict", "key-acme", "four").await;
    assert_eq!(status, 429, "{body}");
    // Three a minute refill one every 20 s.
    assert_eq!(retry_after.as_deref(), Some("20"));
    assert!(body.contains("rate limited"), "{body}");

    // A repeated question is a hit: it costs no quota, so it is answered even now.
    let (status, _, cache, _) = example::send(&url, "strict", "key-acme", "one").await;
    assert_eq!((status, cache.as_deref()), (200, Some("HIT")));
    // Another tenant has its own quota.
    let (status, _, _, _) = example::send(&url, "strict", "key-globex", "four").await;
    assert_eq!(status, 200);
    // The relaxed route has no limit.
    for prompt in ["four", "five", "six", "seven"] {
        let (status, _, cache, body) = example::send(&url, "relaxed", "key-acme", prompt).await;
        assert_eq!((status, cache), (200, None), "{body}");
    }
    assert_eq!(provider.calls(), 3 + 1 + 4);
}

#[tokio::test]
async fn an_unknown_key_is_401_before_any_upstream_call() {
    let (url, provider) = start().await;
    let (status, _, _, body) = example::send(&url, "relaxed", "key-nobody", "hi").await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("unknown API key"), "{body}");
    assert_eq!(provider.calls(), 0);
}

#[tokio::test]
async fn metrics_shows_what_the_layers_recorded() {
    let (url, _) = start().await;
    for _ in 0..2 {
        example::send(&url, "strict", "key-globex", "the same question").await;
    }
    let text = get(&format!("{url}/metrics")).await;
    // Both tests of this file share one recorder, so the counts are at least these.
    let count = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert!(count("tollgate_cache_hits") >= 1.0);
    assert!(count("tollgate_cache_misses") >= 1.0);
    assert!(count("tollgate_limiter_admits") >= 1.0);
}

/// A GET over a plain TCP connection (this test has no HTTP client of its own).
async fn get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    stream
        .write_all(
            format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}
