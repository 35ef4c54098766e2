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

mod choice;
pub mod clock;
mod config;
mod error;
pub mod future;
mod json;
pub mod key;
mod models;
mod params;
mod presets;
mod pricing;
pub mod redis;
mod request;
mod response;
pub mod rng;
mod simulated;
mod snapshot;
pub mod stream;
pub mod telemetry;
mod tokens;
mod upstream;
mod usage;
mod wire;

pub use choice::{AssistantMessage, Choice, FunctionCall, REASONING_SIGNATURE, ToolCall};
pub use config::{ConfigError, duration, non_zero};
pub use error::{BilledUsage, BoxError, ErrorKind, Fault, LlmError, NoRetry, counted};
pub use json::SharedMap;
pub use key::{ByModel, ByPrincipal, ByProvider, ByRole, ByTenant, Global, Key, KeyExtractor};
pub use models::{
    DEFAULT_MAX_TOKENS, MAX_MODEL_ID, OutputCeiling, is_model_id, known_output_limit,
};
pub use params::{ExtraParams, MaxTokensName, NotAWholeNumber, Params, whole_number};
pub use presets::{Preset, Quirks, UnknownPreset};
pub use pricing::{
    AnsweredPrice, FoundPrice, InvalidPrice, LongContext, MediaPrice, MicroUsd, ModelPrice,
    PriceCatalog, PriceCeiling, PriceListing, PricingTable,
};
pub use request::{
    CacheControl, Content, JsonMap, LlmRequest, Message, Operation, Priority, RequestMeta, Role,
};
pub use response::{FinishReason, LlmResponse};
pub use simulated::{Outcome, SimulatedFuture, SimulatedProvider, SimulatedProviderBuilder};
pub use snapshot::{LimitWindow, RateLimitSnapshot};
pub use tokens::{CharEstimator, TokenEstimator, WordEstimator};
pub use upstream::{
    MAX_UPSTREAM_MESSAGE, UpstreamError, is_context_window, redact, upstream_summary,
};
pub use usage::Usage;

/// Defines `get_ref`, `get_mut` and `into_inner` in an `impl<S> Layered<S>` block whose inner
/// service is the field `inner: S`, so every layer's service has the same accessors.
#[doc(hidden)]
#[macro_export]
macro_rules! define_inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Unwraps the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

// The `http` types in our public API (status codes, header maps, extensions), re-exported so users
// need not pin a matching version themselves.
pub use http;
