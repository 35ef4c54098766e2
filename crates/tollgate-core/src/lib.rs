//! Core types of [tollgate](https://docs.rs/tollgate): the request, response and error every layer
//! speaks, the keys layers keep state under, token estimates, prices, a clock you can fake, and a
//! simulated provider.
//!
//! Every tollgate layer wraps a `Service<LlmRequest, Response = LlmResponse>` whose error converts
//! into [`LlmError`], and returns [`LlmError`] itself, so a caller matches on an [`ErrorKind`]
//! whatever the stack looks like.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tollgate_core::{ErrorKind, LlmRequest, Message, Outcome, SimulatedProvider};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let provider = SimulatedProvider::builder()
//!     .latency(Duration::from_millis(120))
//!     .script([Outcome::Success, Outcome::Overloaded])
//!     .build();
//!
//! let mut stack = ServiceBuilder::new()
//!     .map_request(|req: LlmRequest| req.with_tenant("acme"))
//!     .service(provider.clone());
//!
//! let req = LlmRequest::new("sim-small", vec![Message::user("Say hi")]);
//! let answer = stack.ready().await.unwrap().call(req.clone()).await.unwrap();
//! assert_eq!(answer.model, "sim-small");
//!
//! let err = stack.ready().await.unwrap().call(req).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Overloaded);
//! assert!(err.is_retryable());
//! assert_eq!(provider.calls(), 2);
//! # }
//! ```

pub mod clock;
mod config;
mod error;
mod key;
mod pricing;
mod request;
mod response;
pub mod rng;
mod simulated;
mod tokens;

pub use config::{ConfigError, duration, non_zero};
pub use error::{BoxError, ErrorKind, LlmError};
pub use key::{ByModel, ByPrincipal, ByProvider, ByRole, ByTenant, Global, Key, KeyExtractor};
pub use pricing::{InvalidPrice, MicroUsd, ModelPrice, PricingTable};
pub use request::{
    CacheControl, Content, JsonMap, LlmRequest, Message, Params, Priority, RequestMeta, Role,
};
pub use response::{FinishReason, LlmResponse, Usage};
pub use simulated::{Outcome, SimulatedFuture, SimulatedProvider, SimulatedProviderBuilder};
pub use tokens::{CharEstimator, TokenEstimator};

// The `http` types in our public API (status codes, header maps, extensions), re-exported so users
// need not pin a matching version themselves.
pub use http;
