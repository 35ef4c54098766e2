//! The router's overhead on the success path, beside tower's `p2c` balancer over the same
//! services in the same group.
//!
//! Every variant calls the same `Bare` service (answers at once with an empty response), and each
//! call is one clone of the request, readiness, and the call's future polled once with a no-op
//! waker, so the figures are the routing's own cost, not an executor's. `direct` calls one
//! deployment with nothing in between: a variant's overhead is its time minus `direct`.
//! `floor_copy_and_mark` is `direct` plus what the issue itself requires of any router: a copy of
//! the request kept in case the call must move, and the answer marked with who served it.
//!
//! - `router_least_in_flight_3`: tollgate's router, 3 deployments, least in flight;
//! - `tower_p2c_pending_3`: tower's `Balance` (power of two choices) over the same 3 services,
//!   each wrapped in `PendingRequests` (its least-in-flight load);
//! - `router_latency_3` and `tower_p2c_peak_ewma_3`: the same for lowest latency (peak-EWMA);
//! - `router_least_in_flight_3_system` and `router_affinity_3`: a call with a system prompt (and
//!   for `_4k`, a 4 KB one) through the least-in-flight group, without affinity and with
//!   `affinity: prefix`; `hash_prefix_4k` is one hash of that prompt alone, what affinity is
//!   allowed to add.
//! - `router_least_in_flight_3_shared`: the first, with its health shared (a
//!   [`HealthBoard`](tollgate_router::HealthBoard) taken, as the facade takes one with a `redis`
//!   section);
//! - `router_least_in_flight_3_cooled_here` and `router_least_in_flight_3_cooled_shared`: one of
//!   the three deployments skipped for an hour, after its own 429 or as another process told
//!   the board; both over `Refusing`, a bare service that can be set to answer 429.
//!
//! Run: `cargo bench -p tollgate-router --bench router`.

use std::{
    future::Future,
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use criterion::{Criterion, criterion_group, criterion_main};
use tollgate_core::{ErrorKind, LlmError, LlmRequest, LlmResponse, Message};
use tollgate_router::{Affinity, CooldownReason, Deployment, Group, Notice, Router, Strategy};
use tower::{
    Service,
    balance::p2c::Balance,
    discover::ServiceList,
    load::{CompleteOnResponse, PeakEwma, PendingRequests},
};

/// A service that answers every request at once with an empty response.
#[derive(Clone, Copy)]
struct Bare;

impl Service<LlmRequest> for Bare {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = std::future::Ready<Result<LlmResponse, LlmError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: LlmRequest) -> Self::Future {
        std::future::ready(Ok(LlmResponse::default()))
    }
}

/// [`Bare`], or a 429 asking for an hour's pause when `refuse` is set.
#[derive(Clone, Copy)]
struct Refusing {
    refuse: bool,
}

impl Service<LlmRequest> for Refusing {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = std::future::Ready<Result<LlmResponse, LlmError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: LlmRequest) -> Self::Future {
        std::future::ready(if self.refuse {
            Err(LlmError::new(ErrorKind::RateLimited, "slow down")
                .with_retry_after(Duration::from_secs(3_600)))
        } else {
            Ok(LlmResponse::default())
        })
    }
}

/// The same shape as the router's `Served` extension.
#[derive(Clone)]
#[allow(dead_code)]
struct Mark {
    deployment: std::sync::Arc<str>,
    group: std::sync::Arc<str>,
    moves: u32,
    hedged: bool,
}

fn poll_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the benched service must answer at once"),
    }
}

fn one_call<S>(service: &mut S, request: &LlmRequest) -> LlmResponse
where
    S: Service<LlmRequest, Response = LlmResponse>,
    S::Error: std::fmt::Debug,
{
    poll_now(std::future::poll_fn(|cx| service.poll_ready(cx))).expect("ready");
    poll_now(service.call(request.clone())).expect("success")
}

fn router(strategy: Strategy) -> Router<Bare> {
    router_with(Group::new("default", ["d0", "d1", "d2"]).strategy(strategy))
}

fn router_with(group: Group) -> Router<Bare> {
    (0..3)
        .fold(Router::builder(), |builder, i| {
            builder.deployment(Deployment::new(format!("d{i}"), Bare).model("sim"))
        })
        .group(group)
        .build()
        .expect("valid router")
}

/// A call opening with `system`.
fn prompted(system: String) -> LlmRequest {
    LlmRequest::new(
        "",
        vec![
            Message::system(system),
            Message::user("What is a tollgate?"),
        ],
    )
}

/// Three deployments, least in flight, the third refusing every call when `refuse` is set.
fn refusing_router(refuse: bool) -> Router<Refusing> {
    (0..3)
        .fold(Router::builder(), |builder, i| {
            let service = Refusing {
                refuse: refuse && i == 2,
            };
            builder.deployment(Deployment::new(format!("d{i}"), service).model("sim"))
        })
        .group(Group::new("default", ["d0", "d1", "d2"]).strategy(Strategy::LeastInFlight))
        .build()
        .expect("valid router")
}

fn bench(c: &mut Criterion) {
    let request = LlmRequest::new("", vec![Message::user("What is a tollgate?")]);
    let mut group = c.benchmark_group("router_success_path");
    let deployment: std::sync::Arc<str> = "d0".into();
    let group_name: std::sync::Arc<str> = "default".into();

    let mut direct = Bare;
    group.bench_function("direct", |b| {
        b.iter(|| black_box(one_call(&mut direct, &request)))
    });

    // What any router must add to `direct` for what the issue asks: a copy of the request kept
    // for a move, and the answer marked with the deployment that served it (an extension of the
    // same size as `Served`).
    group.bench_function("floor_copy_and_mark", |b| {
        b.iter(|| {
            let kept = request.clone();
            let mut answer = one_call(&mut direct, &request);
            answer.extensions.insert(Mark {
                deployment: deployment.clone(),
                group: group_name.clone(),
                moves: 0,
                hedged: false,
            });
            drop(black_box(kept));
            black_box(answer)
        })
    });

    let mut least = router(Strategy::LeastInFlight);
    group.bench_function("router_least_in_flight_3", |b| {
        b.iter(|| black_box(one_call(&mut least, &request)))
    });

    // The same router with its health shared: the board is held, as the facade's task holds it.
    let mut shared = router(Strategy::LeastInFlight);
    let board = shared.health();
    group.bench_function("router_least_in_flight_3_shared", |b| {
        b.iter(|| black_box(one_call(&mut shared, &request)))
    });

    // One deployment skipped for an hour: after its own 429, or as another process found. Every
    // call reads the clock then, as after any cooldown.
    let mut here = refusing_router(true);
    // Ties are broken at random: call until one has gone to the refusing deployment.
    while here.stats()[2].cooling_for.is_none() {
        one_call(&mut here, &request);
    }
    group.bench_function("router_least_in_flight_3_cooled_here", |b| {
        b.iter(|| black_box(one_call(&mut here, &request)))
    });
    let mut told = refusing_router(false);
    let now = std::time::SystemTime::now();
    let notice = Notice::Cooldown {
        deployment: "d2".into(),
        reason: CooldownReason::RetryAfter,
        until: now + Duration::from_secs(3_600),
    };
    assert!(told.health().apply(&notice, now));
    group.bench_function("router_least_in_flight_3_cooled_shared", |b| {
        b.iter(|| black_box(one_call(&mut told, &request)))
    });
    drop(board);

    let mut pending = Balance::new(ServiceList::new(
        (0..3).map(|_| PendingRequests::new(Bare, CompleteOnResponse::default())),
    ));
    group.bench_function("tower_p2c_pending_3", |b| {
        b.iter(|| black_box(one_call(&mut pending, &request)))
    });

    let mut latency = router(Strategy::Latency);
    group.bench_function("router_latency_3", |b| {
        b.iter(|| black_box(one_call(&mut latency, &request)))
    });

    let mut ewma = Balance::new(ServiceList::new((0..3).map(|_| {
        PeakEwma::new(
            Bare,
            Duration::from_millis(100),
            10e9,
            CompleteOnResponse::default(),
        )
    })));
    group.bench_function("tower_p2c_peak_ewma_3", |b| {
        b.iter(|| black_box(one_call(&mut ewma, &request)))
    });

    // Affinity beside the same group without it, on calls that open with a system prompt: a
    // short one, and one of 4 KB (a prompt long enough for a provider to cache it).
    let short = prompted("You are a helpful assistant. Answer in one sentence.".to_owned());
    let long = prompted("Answer as the tollgate manual would. ".repeat(4096 / 37 + 1));
    let group_of = |affinity: bool| {
        let group = Group::new("default", ["d0", "d1", "d2"]).strategy(Strategy::LeastInFlight);
        if affinity {
            group.affinity(Affinity::Prefix)
        } else {
            group
        }
    };
    for (suffix, request) in [("", &short), ("_4k", &long)] {
        let mut plain = router_with(group_of(false));
        group.bench_function(format!("router_least_in_flight_3_system{suffix}"), |b| {
            b.iter(|| black_box(one_call(&mut plain, request)))
        });
        let mut sticky = router_with(group_of(true));
        group.bench_function(format!("router_affinity_3{suffix}"), |b| {
            b.iter(|| black_box(one_call(&mut sticky, request)))
        });
    }
    let text = match long.messages[0].content.as_ref() {
        Some(tollgate_core::Content::Text(text)) => text.clone(),
        _ => unreachable!("a text system prompt"),
    };
    let hasher = foldhash::fast::FixedState::with_seed(7);
    group.bench_function("hash_prefix_4k", |b| {
        b.iter(|| black_box(std::hash::BuildHasher::hash_one(&hasher, black_box(&text))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
