//! `RateLimitConfig`'s shorthand scopes through the layer it builds.

use tollgate_core::{ErrorKind, LlmRequest, Message, SimulatedProvider};
use tollgate_ratelimit::{PRINCIPAL_SCOPE, RateLimitConfig};
use tower::{Layer, Service, ServiceExt};

fn request(principal: Option<&str>) -> LlmRequest {
    let mut request = LlmRequest::new("sim", vec![Message::user("hi")]).with_tenant("acme");
    request.meta.principal = principal.map(Into::into);
    request
}

#[tokio::test(start_paused = true)]
async fn principals_limit_only_the_principals_they_list() {
    let config: RateLimitConfig = serde_json::from_str(
        r#"{ "principals": { "alice": { "per_minute": 2 }, "bob": { "per_minute": 1 } } }"#,
    )
    .unwrap();
    let layer = config.build(None).unwrap();
    assert_eq!(
        layer.limiter().scope_names().collect::<Vec<_>>(),
        [PRINCIPAL_SCOPE]
    );
    let mut stack = layer.layer(SimulatedProvider::new());
    let mut outcomes = Vec::new();
    for principal in [
        Some("alice"),
        Some("bob"),
        Some("alice"),
        Some("bob"),
        Some("alice"),
        Some("carol"),
        None,
    ] {
        let result = stack.ready().await.unwrap().call(request(principal)).await;
        outcomes.push(result.map(|_| ()).map_err(|e| e.kind()));
    }
    let limited = Err(ErrorKind::RateLimited);
    assert_eq!(
        outcomes,
        [Ok(()), Ok(()), Ok(()), limited, limited, Ok(()), Ok(())]
    );
}
