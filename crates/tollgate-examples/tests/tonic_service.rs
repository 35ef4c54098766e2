//! The `tonic_service` example's gRPC service, called over a real connection on a free port.

#[path = "../examples/tonic_service.rs"]
#[allow(dead_code)]
mod example;

use example::proto::{CompleteRequest, chat_client::ChatClient};
use tollgate::SimulatedProvider;

#[tokio::test]
async fn calls_go_through_the_stack_and_its_errors_become_grpc_statuses() {
    let provider = SimulatedProvider::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(example::service(provider.clone()))
            .serve_with_incoming(incoming),
    );
    let mut client = ChatClient::connect(url).await.unwrap();
    let ask = |tenant: &str, prompt: &str| CompleteRequest {
        tenant: tenant.into(),
        model: "sim".into(),
        prompt: prompt.into(),
    };
    for prompt in ["one", "two", "three"] {
        let reply = client
            .complete(ask("acme", prompt))
            .await
            .unwrap()
            .into_inner();
        assert!(!reply.cached);
        assert!(reply.output_tokens > 0);
    }
    let status = client.complete(ask("acme", "four")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    let wait: u64 = status
        .metadata()
        .get("retry-after-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 19_000 && wait <= 20_000, "{wait}");
    let cached = client
        .complete(ask("acme", "one"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        cached.cached,
        "a repeated question is a cache hit, even past the limit"
    );
    let status = client.complete(ask("", "one")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(provider.calls(), 3);
}
