//! What the limiter layer records through the `metrics` facade (feature `metrics`): admits
//! counted on a handle made when the layer is built; a denial or a wait, rarer, registers its
//! labelled series when it happens. A denial is also a `tracing` event in the call's span.

use std::time::Duration;

use tollgate_core::telemetry::{
    Counter, Histogram, LIMITER_ADMITS, LIMITER_DENIALS, LIMITER_OVERRUN_COST,
    LIMITER_OVERRUN_TOKENS, LIMITER_WAIT_DURATION, LIMITER_WAITS,
};

use crate::{
    Denial,
    quota::{Amounts, Dimension},
};

/// The limiter layer's handles.
#[derive(Debug, Default)]
pub(crate) struct Telemetry {
    admits: Counter,
    overrun_tokens: Counter,
    overrun_cost: Counter,
}

impl Telemetry {
    /// Registers the handles with the recorder installed now.
    pub(crate) fn register() -> Self {
        Self {
            admits: Counter::new(LIMITER_ADMITS, &[]),
            overrun_tokens: Counter::new(LIMITER_OVERRUN_TOKENS, &[]),
            overrun_cost: Counter::new(LIMITER_OVERRUN_COST, &[]),
        }
    }

    pub(crate) fn admitted(&self) {
        self.admits.increment(1);
    }

    /// A call that used more than it reserved (a provider that wrote past the `max_tokens` it was
    /// sent, or a prompt the estimate undercounted): what it used beyond, charged at settlement.
    pub(crate) fn overran(&self, reserved: &Amounts, actual: &Amounts) {
        let beyond = actual.saturating_sub(reserved);
        let (tokens, cost) = (beyond.get(Dimension::Tokens), beyond.get(Dimension::Cost));
        if tokens == 0 && cost == 0 {
            return;
        }
        tracing::debug!(
            target: "tollgate::ratelimit",
            tokens,
            cost_microdollars = cost,
            "a call used more than its reservation; the difference is charged"
        );
        self.overrun_tokens.increment(tokens);
        self.overrun_cost.increment(cost);
    }

    /// A refusal, by the scope that refused and the dimension of its tier (`none` when no tier
    /// was at fault: a queue, the key cap, Redis away).
    pub(crate) fn denied(&self, denial: &Denial) {
        let dimension = match denial.tier().map(|(_, tier)| tier.dimension()) {
            Some(Dimension::Requests) => "requests",
            Some(Dimension::Tokens) => "tokens",
            Some(Dimension::Cost) => "cost",
            None => "none",
        };
        // An event in the call's span, for a trace; the counter, for a dashboard.
        tracing::event!(
            target: "tollgate::ratelimit",
            tracing::Level::INFO,
            "tollgate.limiter.scope" = denial.scope(),
            "tollgate.limiter.dimension" = dimension,
            "rate limited"
        );
        if !cfg!(feature = "metrics") {
            return;
        }
        let labels = [
            ("scope", denial.scope().to_owned()),
            ("dimension", dimension.to_owned()),
        ];
        Counter::new(LIMITER_DENIALS, &labels).increment(1);
    }

    /// A call admitted after waiting `waited`.
    pub(crate) fn waited(&self, waited: Duration) {
        if !cfg!(feature = "metrics") || waited.is_zero() {
            return;
        }
        Counter::new(LIMITER_WAITS, &[]).increment(1);
        Histogram::new(LIMITER_WAIT_DURATION, &[]).record(waited.as_secs_f64());
    }
}
