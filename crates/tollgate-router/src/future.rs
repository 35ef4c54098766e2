//! A routed call: picks a deployment, moves on when one fails, hedges when one is slow, and
//! gives up at the deadline or after `max_fallbacks` moves.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, atomic::Ordering::Relaxed},
    task::{Context, Poll},
    time::Duration,
};

use pin_project_lite::pin_project;
use tokio::{
    sync::futures::OwnedNotified,
    time::{Instant, Sleep},
};
use tollgate_core::{ErrorKind, LlmError, LlmRequest, LlmResponse, RateLimitSnapshot};
use tower_service::Service;

use crate::{
    affinity::PrefixSlot,
    attempt::{Attempt, Ended, Ticket},
    config::HedgeAfter,
    moves::Move,
    pick::{Skipped, Tried, View},
    served::{Deadline, Served},
    state::CooldownReason,
    table::{Counters, Table},
};

pin_project! {
    /// The response future of [`Router`](crate::Router).
    pub struct RouteFuture<S>
    where
        S: Service<LlmRequest>,
    {
        #[pin]
        first: Attempt<S>,
        // The hedge, boxed: most calls never make one, and every call would carry its size.
        second: Option<Pin<Box<Attempt<S>>>>,
        plan: Plan<S>,
    }

    impl<S> PinnedDrop for RouteFuture<S>
    where
        S: Service<LlmRequest>,
    {
        // A call dropped by its caller (or still running when the other won) gives its place
        // back and is counted as dropped.
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let table = &this.plan.table;
            if let Some(ticket) = this.first.ticket() {
                table.abandon(ticket);
            }
            if let Some(ticket) = this.second.as_ref().and_then(|a| a.ticket()) {
                table.abandon(ticket);
            }
        }
    }
}

impl<S: Service<LlmRequest>> fmt::Debug for RouteFuture<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteFuture")
            .field("attempts", &self.plan.attempts)
            .finish_non_exhaustive()
    }
}

/// Which of the asked-for group's lists the call is working through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chain {
    /// The group's own deployments, then its `fallbacks` (position of the next one).
    Fallbacks(usize),
    ContextWindow(usize),
    ContentPolicy(usize),
}

/// Everything about one call besides the calls in flight.
struct Plan<S> {
    table: Arc<Table<S>>,
    request: Option<LlmRequest>,
    origin: usize,
    group: usize,
    tried: Tried,
    attempts: u32,
    last_started: usize,
    /// Which attempt (0-based) each slot runs, for [`Served::moves`].
    running: [u32; 2],
    hedged: bool,
    /// The prompt prefix's hash, once a group with affinity has needed it.
    prefix: PrefixSlot,
    /// The running attempt's span: `deployment`, a child of the caller's.
    span: tracing::Span,
    // What only a call that fails, waits, hedges or has a deadline needs: boxed on first use, so
    // the future every call carries stays small.
    rare: Option<Box<Rare>>,
}

#[derive(Default)]
struct Rare {
    chain: Chain,
    skipped: Skipped,
    last_error: Option<LlmError>,
    trail: Vec<String>,
    hedge: Option<Pin<Box<Sleep>>>,
    deadline: Option<Pin<Box<Sleep>>>,
    waiting: Option<Pin<Box<OwnedNotified>>>,
    hedge_span: Option<tracing::Span>,
    /// A call refused before any attempt (an unknown group).
    refused: Option<LlmError>,
}

impl Default for Chain {
    fn default() -> Self {
        Self::Fallbacks(0)
    }
}

impl<S> Plan<S> {
    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }
}

/// What starting the next attempt came to.
enum Next {
    /// An attempt is running in the slot given.
    Started,
    Wait(Arc<tokio::sync::Notify>),
    Exhausted,
}

impl<S> RouteFuture<S>
where
    S: Service<LlmRequest, Response = LlmResponse> + Clone,
    S::Error: Into<LlmError>,
{
    pub(crate) fn new(table: Arc<Table<S>>, request: LlmRequest) -> Self {
        let group = match &request.meta.role {
            Some(role) => table.by_name.get(role).copied(),
            None => table.default_group,
        };
        let refused = match (group, &request.meta.role) {
            (Some(_), _) => None,
            (None, Some(role)) => Some(LlmError::new(
                ErrorKind::InvalidRequest,
                format!("the router has no group named {role:?}"),
            )),
            (None, None) => Some(LlmError::new(
                ErrorKind::InvalidRequest,
                "the request names no role and the router has no default group",
            )),
        };
        let bound = request
            .extensions
            .get::<Deadline>()
            .map(|deadline| deadline.0);
        let bound = match (table.config.timeout, bound) {
            (Some(timeout), Some(at)) => Some(at.min(Instant::now() + timeout)),
            (Some(timeout), None) => Some(Instant::now() + timeout),
            (None, at) => at,
        };
        let group = group.unwrap_or_default();
        let rare = (refused.is_some() || bound.is_some()).then(|| {
            Box::new(Rare {
                refused,
                deadline: bound.map(|at| Box::pin(tokio::time::sleep_until(at))),
                ..Rare::default()
            })
        });
        Self {
            first: Attempt::Idle,
            second: None,
            plan: Plan {
                table,
                request: Some(request),
                origin: group,
                group,
                tried: Tried::default(),
                attempts: 0,
                last_started: 0,
                running: [0; 2],
                hedged: false,
                prefix: PrefixSlot::default(),
                span: tracing::Span::none(),
                rare,
            },
        }
    }
}

impl<S> Future for RouteFuture<S>
where
    S: Service<LlmRequest, Response = LlmResponse> + Clone,
    S::Error: Into<LlmError>,
{
    type Output = Result<LlmResponse, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let plan = &mut *this.plan;
        if let Some(error) = plan.rare.as_mut().and_then(|rare| rare.refused.take()) {
            return Poll::Ready(Err(error));
        }
        loop {
            // The calls in flight first: an answer wins, a failure decides where to go next.
            let polled = {
                let _entered = plan.span.enter();
                this.first.as_mut().poll_end(cx)
            };
            if let Poll::Ready(Some(ended)) = polled {
                let hedge_running = this.second.as_ref().is_some_and(|a| a.is_running());
                if let Some(result) = plan.ended(ended, 0, hedge_running) {
                    // The hedge, if any, lost: dropping it cancels it.
                    if let Some(second) = this.second.as_mut() {
                        plan.drop_attempt(second.as_mut());
                    }
                    return Poll::Ready(result);
                }
            }
            if let Some(second) = this.second.as_mut() {
                let polled = {
                    let span = plan.rare.as_ref().and_then(|rare| rare.hedge_span.as_ref());
                    let _entered = span.map(tracing::Span::enter);
                    second.as_mut().poll_end(cx)
                };
                if let Poll::Ready(Some(ended)) = polled
                    && let Some(result) = plan.ended(ended, 1, this.first.is_running())
                {
                    plan.drop_attempt(this.first.as_mut());
                    return Poll::Ready(result);
                }
            }
            let running =
                this.first.is_running() || this.second.as_ref().is_some_and(|a| a.is_running());
            if !running {
                if let Some(rare) = plan.rare.as_mut()
                    && let Some(waiting) = &mut rare.waiting
                {
                    if waiting.as_mut().poll(cx).is_pending() {
                        break;
                    }
                    rare.waiting = None;
                }
                match plan.next(cx, this.first.as_mut(), false) {
                    Next::Started => {
                        plan.running[0] = plan.attempts - 1;
                        plan.arm_hedge();
                        continue;
                    }
                    Next::Wait(room) => {
                        Counters::bump(&plan.table.counters.waits);
                        plan.rare().waiting = Some(Box::pin(room.notified_owned()));
                        continue;
                    }
                    Next::Exhausted => return Poll::Ready(Err(plan.give_up())),
                }
            }
            // One call running: is it time for a hedge?
            let hedge = plan.rare.as_mut().and_then(|rare| rare.hedge.as_mut());
            if let Some(timer) = hedge
                && timer.as_mut().poll(cx).is_ready()
            {
                plan.rare().hedge = None;
                plan.hedged = true;
                // The first call is the one running: the hedge takes the other slot.
                let slot = this.second.get_or_insert_with(|| Box::pin(Attempt::Idle));
                if let Next::Started = plan.next(cx, slot.as_mut(), true) {
                    Counters::bump(&plan.table.counters.hedges);
                    plan.table.counters.recorded_hedges.increment(1);
                    plan.running[1] = plan.attempts - 1;
                    continue;
                }
            }
            break;
        }
        let deadline = plan.rare.as_mut().and_then(|rare| rare.deadline.as_mut());
        if let Some(deadline) = deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            Counters::bump(&plan.table.counters.deadlines);
            return Poll::Ready(Err(plan.timed_out()));
        }
        Poll::Pending
    }
}

impl<S> Plan<S>
where
    S: Service<LlmRequest, Response = LlmResponse> + Clone,
    S::Error: Into<LlmError>,
{
    /// Starts a call to the best deployment that can take it, moving through the groups the
    /// call may go to.
    fn next(&mut self, cx: &mut Context<'_>, slot: Pin<&mut Attempt<S>>, hedge: bool) -> Next {
        if self.attempts > self.table.config.max_fallbacks || self.request.is_none() {
            return Next::Exhausted;
        }
        let now = self.table.now_if_needed();
        loop {
            let table = &*self.table;
            let group = &table.groups[self.group];
            let view = View {
                states: &table.states,
                tried: &self.tried,
                now,
                below: table.config.adaptive_below,
                rng: &table.rng,
                cooldowns: group.can_move,
            };
            let request = self.request.as_ref().expect("checked above");
            let picked = group
                .affinity
                .as_ref()
                .and_then(|homes| homes.route(&view, &mut self.prefix, request, &group.members))
                .unwrap_or_else(|| view.pick(group.config.strategy, &group.members));
            match picked {
                // Filled up since it was looked at: look again.
                Ok(index) if !table.states[index].try_enter() => {}
                Ok(index) => {
                    self.launch(index, now, cx, slot, hedge);
                    return Next::Started;
                }
                Err(skipped) => {
                    let room = group.room.clone().filter(|_| skipped.full);
                    self.rare().skipped.merge(skipped);
                    if let Some(room) = room {
                        return Next::Wait(room);
                    }
                    if !self.advance() {
                        return Next::Exhausted;
                    }
                }
            }
        }
    }

    /// Sends the call to deployment `index`, whose place is taken, in `slot`.
    fn launch(
        &mut self,
        index: usize,
        now: u64,
        cx: &mut Context<'_>,
        mut slot: Pin<&mut Attempt<S>>,
        hedge: bool,
    ) {
        let table = &*self.table;
        let target = &table.targets[index];
        self.tried.insert(index);
        self.last_started = index;
        self.attempts += 1;
        if self.attempts > 1 && !hedge {
            Counters::bump(&table.counters.moves);
            table.counters.recorded_moves.increment(1);
        }
        // The last call this one may make takes the request instead of a copy.
        let last = self.attempts > table.config.max_fallbacks;
        let mut request = if last {
            self.request.take().expect("checked by next")
        } else {
            self.request.clone().expect("checked by next")
        };
        if let Some(provider) = &target.provider {
            request.provider = Some(provider.clone());
        }
        if let Some(model) = &target.model {
            request.model = model.clone();
        }
        if !last && self.can_go_elsewhere(now) {
            // A failure here moves at once (after the group's own few retries, if it asks for
            // them): the caller should not wait on this deployment's backoff when another can
            // answer. The last place left runs its retry policy in full.
            let here = table.groups[self.group].config.retries_before_move;
            request.meta.retry_cap = Some(request.meta.retry_cap.map_or(here, |cap| cap.min(here)));
        }
        table.states[index].serves(request.meta.operation);
        let ticket = Ticket { index, sent: now };
        let span = tracing::info_span!(
            "deployment",
            tollgate.deployment = &*table.states[index].name,
            gen_ai.provider.name = request.provider.as_deref(),
            gen_ai.request.model = &*request.model,
        );
        {
            let _entered = span.enter();
            slot.set(Attempt::start(target.service.clone(), request, ticket, cx));
        }
        if hedge {
            self.rare().hedge_span = Some(span);
        } else {
            self.span = span;
        }
    }

    /// Whether a failure of the attempt just started could move: to a deployment of this group
    /// or of a group later in the chain that this call has not tried, that is not cooling down
    /// or out on its trial, and that has room (or a line to wait in).
    #[inline]
    fn can_go_elsewhere(&self, now: u64) -> bool {
        let table = &*self.table;
        let group = &table.groups[self.group];
        // Until some deployment has been cooled (or timed) none is cooling: a first attempt in a
        // group of several has the others. The common case, decided without a look at them.
        if self.attempts == 1 && group.members.len() > 1 && !table.clocked.load(Relaxed) {
            return true;
        }
        self.elsewhere_after_a_look(now)
    }

    #[inline(never)]
    fn elsewhere_after_a_look(&self, now: u64) -> bool {
        let table = &*self.table;
        let open = |group: usize| {
            let waits = table.groups[group].room.is_some();
            table.groups[group].members.iter().any(|&index| {
                let state = &table.states[index];
                !self.tried.contains(index)
                    && state.cooling_until(now).is_none()
                    && !state.trial_out()
                    && (waits || !state.is_full())
            })
        };
        if open(self.group) {
            return true;
        }
        let origin = &table.groups[self.origin];
        let (rest, at) = match self
            .rare
            .as_ref()
            .map_or(Chain::default(), |rare| rare.chain)
        {
            Chain::Fallbacks(at) => (&origin.fallbacks, at),
            Chain::ContextWindow(at) => (&origin.context_window, at),
            Chain::ContentPolicy(at) => (&origin.content_policy, at),
        };
        rest.get(at..)
            .unwrap_or_default()
            .iter()
            .any(|&group| open(group))
    }

    /// Drops a running attempt that lost, giving its place back.
    fn drop_attempt(&self, attempt: Pin<&mut Attempt<S>>) {
        if attempt.is_running() {
            let ticket = attempt.end();
            self.table.abandon(ticket);
        }
    }

    /// Moves to the next group of the chain; false when there is none.
    fn advance(&mut self) -> bool {
        let table = self.table.clone();
        let origin = &table.groups[self.origin];
        let (list, position) = match &mut self.rare().chain {
            Chain::Fallbacks(at) => (&origin.fallbacks, at),
            Chain::ContextWindow(at) => (&origin.context_window, at),
            Chain::ContentPolicy(at) => (&origin.content_policy, at),
        };
        match list.get(*position) {
            Some(&group) => {
                *position += 1;
                self.group = group;
                true
            }
            None => false,
        }
    }

    /// Switches to one of the group's special chains; false when it has none.
    fn switch(&mut self, chain: Chain) -> bool {
        let rare = self.rare();
        if std::mem::discriminant(&rare.chain) == std::mem::discriminant(&chain) {
            return true;
        }
        rare.chain = chain;
        self.advance()
    }

    /// Starts the hedge timer for the call just started, when its group hedges.
    fn arm_hedge(&mut self) {
        if self.hedged {
            return;
        }
        let table = &*self.table;
        let after = match table.groups[self.group].config.hedge_after {
            None => return,
            Some(HedgeAfter::After(after)) => after,
            Some(HedgeAfter::P95) => {
                // The deployment just started is the one whose percentile counts.
                match table.states[self.last_started].p95() {
                    Some(p95) => p95,
                    None => return,
                }
            }
        };
        self.rare().hedge = Some(Box::pin(tokio::time::sleep(after)));
    }

    /// Learns from an ended call. `Some` is the call's result; `None` means go on.
    fn ended(
        &mut self,
        (result, ticket): Ended,
        slot: usize,
        other_running: bool,
    ) -> Option<Result<LlmResponse, LlmError>> {
        // The call has ended: its place is free whatever it came to.
        self.table.states[ticket.index].leave();
        match result {
            Ok(mut response) => {
                let table = &*self.table;
                let state = &*table.states[ticket.index];
                state.answered();
                let tracks = state.tracks_latency();
                let snapshot = response.extensions.get::<RateLimitSnapshot>();
                if tracks || snapshot.is_some() {
                    let now = table.now();
                    if tracks {
                        state.observe_latency(now, now.saturating_sub(ticket.sent));
                    }
                    if let Some(snapshot) = snapshot {
                        table.needs_clock();
                        state.observe_limits(now, snapshot, table.config.cooldown.duration);
                    }
                }
                let hedged = self.hedged && other_running;
                if hedged && slot == 1 {
                    Counters::bump(&table.counters.hedge_wins);
                }
                response.extensions.insert(Served {
                    deployment: state.name.clone(),
                    provider: table.targets[ticket.index].provider.clone(),
                    group: table.groups[self.group].name.clone(),
                    moves: self.running[slot],
                    hedged: slot == 1 && hedged,
                });
                Some(Ok(response))
            }
            Err(error) => {
                self.table.needs_clock();
                let now = self.table.now();
                self.cool_down(&ticket, &error, now);
                let name = &self.table.states[ticket.index].name;
                let tried = format!("{name} ({})", error.kind().name());
                self.rare().trail.push(tried);
                let on_status = &self.table.groups[self.group].config.fallback_on_status;
                let go = Move::after(&error, on_status);
                let moved = match go {
                    Move::Stop => false,
                    Move::Next => true,
                    Move::ContextWindow => self.switch(Chain::ContextWindow(0)),
                    Move::ContentPolicy => self.switch(Chain::ContentPolicy(0)),
                };
                if !moved && !other_running {
                    return Some(Err(self.note(error)));
                }
                if !moved && go == Move::Stop {
                    // The request itself is wrong: the other call would fail alike.
                    return Some(Err(error));
                }
                self.rare().last_error = Some(error);
                None
            }
        }
    }

    /// Cools the deployment down for what its failure says.
    fn cool_down(&self, ticket: &Ticket, error: &LlmError, now: u64) {
        let state = &self.table.states[ticket.index];
        let cooldown = &self.table.config.cooldown;
        if let Some(snapshot) = error.extensions().get::<RateLimitSnapshot>() {
            state.observe_limits(now, snapshot, cooldown.duration);
        }
        let hint = error.retry_after();
        match error.kind() {
            ErrorKind::RateLimited => {
                let (for_, reason) = match hint {
                    Some(after) => (after, CooldownReason::RetryAfter),
                    None => (cooldown.duration, CooldownReason::RateLimited),
                };
                state.cool(now, for_, reason);
            }
            ErrorKind::CircuitOpen => {
                if let Some(after) = hint {
                    state.cool(now, after, CooldownReason::BreakerOpen);
                }
            }
            ErrorKind::Auth => {
                state.cool(now, cooldown.auth, CooldownReason::Auth);
            }
            ErrorKind::Overloaded
            | ErrorKind::Server
            | ErrorKind::Timeout
            | ErrorKind::Connect
            | ErrorKind::Unavailable => {
                if let Some(after) = hint {
                    state.cool(now, after, CooldownReason::RetryAfter);
                }
                if state.failed(now, cooldown.failures, cooldown.window) {
                    state.cool(now, cooldown.duration, CooldownReason::Failures);
                }
                if error.kind() == ErrorKind::Timeout && state.tracks_latency() {
                    state.observe_latency(now, now.saturating_sub(ticket.sent));
                }
            }
            _ => {}
        }
    }

    /// The error for a call that ran out of deployments.
    fn give_up(&mut self) -> LlmError {
        match self.rare().last_error.take() {
            Some(error) => self.note(error),
            None => {
                Counters::bump(&self.table.counters.none_available);
                self.none_available()
            }
        }
    }

    fn note(&self, error: LlmError) -> LlmError {
        let trail = self.rare.as_ref().map_or(&[][..], |rare| &rare.trail[..]);
        if trail.len() < 2 {
            return error;
        }
        error.with_note(format_args!("tried {}", trail.join(", ")))
    }

    /// Nothing could take the call: every deployment cooling down or full. A cooldown's error
    /// says what the provider (or the breaker) said, and when to come back.
    fn none_available(&self) -> LlmError {
        let table = &*self.table;
        let group = &table.groups[self.origin].name;
        let skipped = self
            .rare
            .as_ref()
            .map(|rare| rare.skipped)
            .unwrap_or_default();
        let Some((until, reason)) = skipped.cooling else {
            return LlmError::new(
                ErrorKind::Overloaded,
                format!("every deployment of {group:?} is at its max_in_flight"),
            );
        };
        let wait = Duration::from_nanos(until.saturating_sub(table.now()));
        let (kind, why) = match reason {
            CooldownReason::RetryAfter | CooldownReason::RateLimited => {
                (ErrorKind::RateLimited, "its provider asked for a pause")
            }
            CooldownReason::QuotaExhausted => (
                ErrorKind::RateLimited,
                "its provider's rate limit has nothing left",
            ),
            CooldownReason::BreakerOpen => (ErrorKind::CircuitOpen, "its circuit breaker is open"),
            CooldownReason::Auth => (ErrorKind::Auth, "its provider refused its key"),
            CooldownReason::Failures => (ErrorKind::Unavailable, "it kept failing"),
        };
        let full = if skipped.full {
            " (the others are at their max_in_flight)"
        } else {
            ""
        };
        LlmError::new(
            kind,
            format!(
                "no deployment of {group:?} can take a call now{full}: the first free again is \
                 cooling down because {why}"
            ),
        )
        .with_retry_after(wait)
    }

    fn timed_out(&mut self) -> LlmError {
        let error = LlmError::new(
            ErrorKind::Timeout,
            format!(
                "no deployment answered within the call's deadline ({} sent)",
                tollgate_core::counted(u64::from(self.attempts), "call")
            ),
        );
        match self.rare().last_error.take() {
            Some(last) => error.with_note(format_args!("last error: {}", last.message())),
            None => error,
        }
    }
}
