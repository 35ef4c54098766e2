//! The fallback breaker: a small breaker in front of Redis: after enough failures in a row, stop calling it (and pay no
//! timeout per call), let one call probe it now and then, and go back when a probe answers.

use std::{
    fmt,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tollgate_core::telemetry::{Counter, LIMITER_BACKEND_SWITCHES};

/// Where a [`RedisRateLimiter`](super::RedisRateLimiter) decides now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// In Redis, shared with every process.
    Redis,
    /// By the failure policy, while Redis is left alone after failing.
    Fallback,
}

pub(super) struct FallbackBreaker {
    down: AtomicBool,
    failures: AtomicU32,
    probing: AtomicBool,
    next_probe: Mutex<Instant>,
    threshold: u32,
    probe_interval: Duration,
    to_fallback: AtomicU64,
    to_redis: AtomicU64,
    /// The same switches, for a metrics recorder.
    recorded: [Counter; 2],
}

/// Whether a call may go to Redis.
pub(super) enum Gate<'a> {
    /// Redis is up: go.
    Try,
    /// Redis is down and this call is the probe.
    Probe(ProbeGuard<'a>),
    /// Redis is down: do not call it.
    Skip,
}

/// Ends a probe even when its call is dropped mid-flight, so a later call can probe again.
pub(super) struct ProbeGuard<'a>(&'a FallbackBreaker);

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        self.0.probing.store(false, Ordering::Release);
    }
}

impl FallbackBreaker {
    pub(super) fn new(threshold: u32, probe_interval: Duration) -> Self {
        Self {
            down: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            probing: AtomicBool::new(false),
            next_probe: Mutex::new(Instant::now()),
            threshold,
            probe_interval,
            to_fallback: AtomicU64::new(0),
            to_redis: AtomicU64::new(0),
            recorded: ["fallback", "redis"]
                .map(|to| Counter::new(LIMITER_BACKEND_SWITCHES, &[("to", to.to_owned())])),
        }
    }

    pub(super) fn backend(&self) -> Backend {
        if self.down.load(Ordering::Acquire) {
            Backend::Fallback
        } else {
            Backend::Redis
        }
    }

    pub(super) fn switches(&self) -> (u64, u64) {
        (
            self.to_fallback.load(Ordering::Relaxed),
            self.to_redis.load(Ordering::Relaxed),
        )
    }

    pub(super) fn gate(&self) -> Gate<'_> {
        if !self.down.load(Ordering::Acquire) {
            return Gate::Try;
        }
        if Instant::now() < *self.next_probe.lock().expect("never poisoned") {
            return Gate::Skip;
        }
        match self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Gate::Probe(ProbeGuard(self)),
            Err(_) => Gate::Skip,
        }
    }

    pub(super) fn succeeded(&self, probe: Option<ProbeGuard<'_>>) {
        self.failures.store(0, Ordering::Relaxed);
        if probe.is_some() && self.down.swap(false, Ordering::AcqRel) {
            self.to_redis.fetch_add(1, Ordering::Relaxed);
            self.recorded[1].increment(1);
            tracing::info!(
                target: "tollgate::ratelimit",
                "Redis answers again; rate limits are shared through it once more"
            );
        }
    }

    pub(super) fn failed(&self, probe: Option<ProbeGuard<'_>>, failure: &impl fmt::Display) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if probe.is_some() {
            *self.next_probe.lock().expect("never poisoned") = Instant::now() + self.probe_interval;
            tracing::debug!(target: "tollgate::ratelimit", error = %failure, "Redis probe failed");
            return;
        }
        if failures >= self.threshold && !self.down.load(Ordering::Acquire) {
            *self.next_probe.lock().expect("never poisoned") = Instant::now() + self.probe_interval;
            if !self.down.swap(true, Ordering::AcqRel) {
                self.to_fallback.fetch_add(1, Ordering::Relaxed);
                self.recorded[0].increment(1);
                tracing::warn!(
                    target: "tollgate::ratelimit",
                    error = %failure,
                    failures,
                    "Redis failed {failures} times in a row; the failure policy decides until a probe gets an answer"
                );
            }
        } else {
            tracing::debug!(target: "tollgate::ratelimit", error = %failure, "Redis call failed");
        }
    }
}
