//! Active checks: the `HealthCheck` trait and the built-in checks.

use std::{future::Future, pin::Pin, time::Duration};

use tollgate_core::{LlmError, LlmRequest, LlmResponse, Message, counted, duration};
use tower_service::Service;

use crate::{stats::HealthStats, status::Status};

/// What one run of a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// The check's verdict.
    pub status: Status,
    /// A short human-readable explanation.
    pub message: String,
}

impl CheckOutcome {
    /// All is well.
    pub fn healthy(message: impl Into<String>) -> Self {
        Self {
            status: Status::Healthy,
            message: message.into(),
        }
    }

    /// Working, but not well.
    pub fn degraded(message: impl Into<String>) -> Self {
        Self {
            status: Status::Degraded,
            message: message.into(),
        }
    }

    /// Not working.
    pub fn unhealthy(message: impl Into<String>) -> Self {
        Self {
            status: Status::Unhealthy,
            message: message.into(),
        }
    }
}

/// The future a check returns.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = CheckOutcome> + Send + 'a>>;

/// An active health check, run by a [`HealthRegistry`](crate::HealthRegistry) at its interval and
/// under its timeout.
///
/// Checks are not on any call's path, so the future is boxed. A closure works through [`check_fn`].
pub trait HealthCheck: Send + Sync + 'static {
    /// The check's name in reports (`openai`, `redis`, ...).
    fn name(&self) -> &str;

    /// Runs the check once.
    fn check(&self) -> CheckFuture<'_>;
}

/// A check from a name and an async closure.
///
/// ```
/// use tollgate_health::{CheckOutcome, check_fn};
///
/// let disk = check_fn("disk", || async { CheckOutcome::healthy("42% used") });
/// ```
pub fn check_fn<F, Fut>(name: impl Into<String>, run: F) -> FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CheckOutcome> + Send + 'static,
{
    FnCheck {
        name: name.into(),
        run,
    }
}

/// A check made by [`check_fn`].
#[derive(Debug, Clone)]
pub struct FnCheck<F> {
    name: String,
    run: F,
}

impl<F, Fut> HealthCheck for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CheckOutcome> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin((self.run)())
    }
}

/// Sends a cheap request (one token of output by default) through any `Service<LlmRequest>`: a
/// provider client, or a whole stack.
#[derive(Debug, Clone)]
pub struct ProviderCheck<S> {
    name: String,
    service: S,
    request: LlmRequest,
}

impl<S> ProviderCheck<S> {
    /// Checks `service` by asking `model` for one token.
    pub fn new(name: impl Into<String>, model: &str, service: S) -> Self {
        let request = LlmRequest::new(model, vec![Message::user("ping")]).with_max_tokens(1);
        Self {
            name: name.into(),
            service,
            request,
        }
    }

    /// Sends `request` instead of the default one.
    #[must_use]
    pub fn with_request(mut self, request: LlmRequest) -> Self {
        self.request = request;
        self
    }
}

impl<S> HealthCheck for ProviderCheck<S>
where
    S: Service<LlmRequest, Response = LlmResponse> + Clone + Send + Sync + 'static,
    S::Error: Into<LlmError>,
    S::Future: Send,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        let mut service = self.service.clone();
        let request = self.request.clone();
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            let result = tollgate_core::future::call_when_ready(&mut service, request).await;
            match result {
                Ok(_) => CheckOutcome::healthy(format!(
                    "answered in {}",
                    duration::format(round_ms(started.elapsed()))
                )),
                Err(error) => CheckOutcome::unhealthy(error.to_string()),
            }
        })
    }
}

fn round_ms(elapsed: Duration) -> Duration {
    Duration::from_millis(elapsed.as_millis() as u64)
}

/// A component's status from the passive statistics a [`HealthLayer`](crate::HealthLayer) keeps.
#[derive(Debug, Clone)]
pub struct StatsCheck {
    name: String,
    stats: HealthStats,
    component: String,
}

impl StatsCheck {
    /// Reports `component`'s status from `stats` under `name`.
    pub fn new(name: impl Into<String>, stats: HealthStats, component: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            stats,
            component: component.into(),
        }
    }
}

impl HealthCheck for StatsCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        let outcome = match self.stats.component_snapshot(&self.component) {
            None => CheckOutcome::healthy("no calls yet"),
            Some(snapshot) => CheckOutcome {
                status: snapshot.status,
                message: format!(
                    "{} in window, {:.1}% failed, p95 {:.0} ms, {} in a row",
                    counted(snapshot.window.calls, "call"),
                    snapshot.window.error_rate,
                    snapshot.window.latency_ms.p95,
                    counted(snapshot.consecutive_failures, "failure")
                ),
            },
        };
        Box::pin(std::future::ready(outcome))
    }
}

/// Pings Redis with `PING`, through the same connection type the rate limiter and the cache
/// store use (so a user and password in the URL work as they do there): one server, every master
/// of a Redis Cluster (healthy only when all answer), or the master Sentinel names.
///
/// The connection is made on the first check, inside the runtime that runs it, and reconnects by
/// itself; a Redis that does not answer is unhealthy until it answers again.
#[cfg(feature = "redis")]
pub struct RedisCheck {
    name: String,
    target: tollgate_core::redis::RedisTarget,
    /// Where the target points, without a user or password, for messages.
    shown: String,
    connection: std::sync::OnceLock<Result<tollgate_core::redis::RedisConnection, String>>,
}

#[cfg(feature = "redis")]
impl std::fmt::Debug for RedisCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCheck")
            .field("name", &self.name)
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "redis")]
impl RedisCheck {
    /// Pings the server at `target`: a Redis URL (`redis://user:secret@host:6379/0`) or a bare
    /// `host:port`.
    pub fn new(name: impl Into<String>, target: impl Into<String>) -> Self {
        let target = target.into();
        let url = if target.contains("://") {
            target
        } else {
            format!("redis://{target}/")
        };
        Self::on(name, tollgate_core::redis::RedisTarget::Server(url))
    }

    /// Pings `target`: a cluster, a Sentinel-named master, or a connection shared with the
    /// limiter and the cache.
    pub fn on(name: impl Into<String>, target: tollgate_core::redis::RedisTarget) -> Self {
        use tollgate_core::redis::RedisTarget;
        let shown = match &target {
            RedisTarget::Server(url) => tollgate_core::redis::shown(url),
            RedisTarget::Cluster(nodes) => format!(
                "the cluster at {}",
                nodes
                    .iter()
                    .map(|node| tollgate_core::redis::shown(node))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            RedisTarget::Sentinel(sentinel) => {
                format!("the master Sentinel names {:?}", sentinel.master_name)
            }
            _ => "the shared Redis connection".to_owned(),
        };
        Self {
            name: name.into(),
            shown,
            target,
            connection: std::sync::OnceLock::new(),
        }
    }

    async fn ping(&self) -> Result<String, String> {
        let connection = self.connection.get_or_init(|| {
            tollgate_core::redis::RedisConnection::open(
                &self.target,
                Duration::from_secs(1),
                Duration::from_secs(1),
            )
            .map_err(|error| error.to_string())
        });
        let connection = connection.clone()?;
        // Each master on its own: one that does not answer makes the whole check fail, with its
        // address.
        let masters = connection.masters().await.map_err(|e| e.to_string())?;
        let mut reply = String::new();
        for master in &masters {
            reply = connection
                .query_on::<String>(master, &redis::cmd("PING"))
                .await
                .map_err(|error| {
                    if masters.len() > 1 {
                        format!("master {master}: {error}")
                    } else {
                        error.to_string()
                    }
                })?;
        }
        Ok(reply)
    }
}

#[cfg(feature = "redis")]
impl HealthCheck for RedisCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            match self.ping().await {
                Ok(reply) if reply == "PONG" => CheckOutcome::healthy("PONG"),
                Ok(reply) => CheckOutcome::unhealthy(format!("unexpected reply {reply:?} to PING")),
                Err(error) => CheckOutcome::unhealthy(format!("{}: {error}", self.shown)),
            }
        })
    }
}

#[cfg(all(test, feature = "redis"))]
mod tests {
    #[test]
    fn a_password_in_the_url_is_never_shown() {
        let check = super::RedisCheck::new("r", "redis://app:hunter2@cache.internal:6380/0");
        assert_eq!(check.shown, "cache.internal:6380");
        assert!(!format!("{check:?}").contains("hunter2"));
        // A URL this build of redis-rs cannot use (TLS is not compiled in) is not echoed either.
        let tls = super::RedisCheck::new("r", "rediss://app:hunter2@cache.internal:6380/0");
        assert_eq!(tls.shown, "an invalid Redis URL");
        assert!(!format!("{tls:?}").contains("hunter2"));
        assert_eq!(
            super::RedisCheck::new("r", "127.0.0.1:6379").shown,
            "127.0.0.1:6379"
        );
    }
}
