//! A deployment's health, shared between processes: the cooldowns this router decides and the
//! provider limit readings it takes, handed out as [`Notice`]s for other processes routing to the
//! same deployments, and theirs applied here. The call path only ever reads memory: it marks a
//! deployment whose cooldown grew or whose limit reading moved a step (a flag, and a wake-up for
//! a cooldown), and whoever holds the [`HealthBoard`] carries the news on its own time.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, SystemTime},
};

use crate::{
    news::{COOLED, Desk, READ},
    service::Router,
    state::{CooldownReason, DeploymentState, FULL, nanos},
    table::Table,
};

/// Two times this close are one: a time crosses processes in whole milliseconds, converted
/// between clocks on each side.
const SLACK: u64 = 5_000_000;

/// One thing a router learned about a deployment that other processes routing to it should know,
/// with times on the wall clock (processes share no monotonic clock). Deployments are known by
/// name, so the processes sharing must name them alike (the same configuration).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Notice {
    /// The deployment is skipped until `until`, for `reason`.
    Cooldown {
        /// The deployment's name.
        deployment: Arc<str>,
        /// Why.
        reason: CooldownReason,
        /// When it may be called again.
        until: SystemTime,
    },
    /// What its provider said is left of its tightest limit, as read at `read_at`: `left`, from
    /// 0 to 1, until `until`, when the limit resets. A deployment with little left gets less
    /// traffic ([`adaptive_below`](crate::RouterConfig::adaptive_below)).
    Limit {
        /// The deployment's name.
        deployment: Arc<str>,
        /// The share of the limit left, 0 to 1.
        left: f64,
        /// When the limit resets.
        until: SystemTime,
        /// When the provider said so.
        read_at: SystemTime,
    },
}

impl Notice {
    /// The deployment it is about.
    pub fn deployment(&self) -> &str {
        match self {
            Self::Cooldown { deployment, .. } | Self::Limit { deployment, .. } => deployment,
        }
    }
}

/// What a [`HealthBoard`] has done since its router was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BoardMetrics {
    /// Notices handed out ([`HealthBoard::changes`], [`HealthBoard::current`]).
    pub sent: u64,
    /// Notices from other processes that changed what this router knows.
    pub applied: u64,
}

/// What a router keeps for a board, whatever its services.
trait Deployments: Send + Sync {
    fn states(&self) -> &[Arc<DeploymentState>];
    fn now(&self) -> u64;
    fn needs_clock(&self);
}

impl<S: Send + Sync> Deployments for Table<S> {
    fn states(&self) -> &[Arc<DeploymentState>] {
        &self.states
    }

    fn now(&self) -> u64 {
        Table::now(self)
    }

    fn needs_clock(&self) {
        Table::needs_clock(self);
    }
}

/// A router's deployments' health, to share with other processes ([`Router::health`]): the
/// cooldowns it decides and the limit readings it takes go out as [`Notice`]s
/// ([`changes`](Self::changes)), and theirs come in ([`apply`](Self::apply)), the later
/// cooldown winning. Calls never wait on it: they read the router's memory, as ever.
///
/// The facade's stack carries notices through Redis when its configuration has a `redis`
/// section; anything else can carry them too:
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tollgate_core::{LlmRequest, Message, Outcome, SimulatedProvider};
/// use tollgate_router::{Deployment, Group, Router, Strategy};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// // Two processes' routers over the same two deployments.
/// let router = || {
///     let limited = SimulatedProvider::builder()
///         .script([Outcome::rate_limited(Duration::from_secs(30))])
///         .build();
///     let router = Router::builder()
///         .deployment(Deployment::new("limited", limited.clone()))
///         .deployment(Deployment::new("spare", SimulatedProvider::new()))
///         .group(Group::new("default", ["limited", "spare"]).strategy(Strategy::Priority))
///         .build()
///         .unwrap();
///     (router, limited)
/// };
/// let (first, _) = router();
/// let (second, limited) = router();
/// let ask = || LlmRequest::new("", vec![Message::user("hi")]);
///
/// // The first is told to come back in 30 s: news for the second.
/// first.clone().oneshot(ask()).await.unwrap();
/// let now = SystemTime::now();
/// let news = first.health().changes(now);
/// assert_eq!(news.len(), 1);
/// assert!(second.health().apply(&news[0], now));
///
/// second.clone().oneshot(ask()).await.unwrap();
/// assert_eq!(limited.calls(), 0); // the second never called it
/// assert!(second.health().changes(now).is_empty()); // nor passes it on
/// # }
/// ```
#[derive(Clone)]
pub struct HealthBoard {
    table: Arc<dyn Deployments>,
    desk: Arc<Desk>,
    by_name: Arc<HashMap<Arc<str>, usize>>,
}

impl fmt::Debug for HealthBoard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthBoard")
            .field("deployments", &self.by_name.len())
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync + 'static> Router<S> {
    /// The board its deployments' health is shared through with other processes. Every board
    /// of one router is the same board: take one, and let one task carry its news.
    pub fn health(&self) -> HealthBoard {
        let states = &self.table.states;
        let desk = match states.first() {
            Some(first) => first.news.desk.get_or_init(Desk::new).clone(),
            None => Desk::new(),
        };
        for state in states {
            state.news.desk.get_or_init(|| desk.clone());
        }
        HealthBoard {
            table: self.table.clone(),
            desk,
            by_name: Arc::new(
                states
                    .iter()
                    .enumerate()
                    .map(|(i, state)| (state.name.clone(), i))
                    .collect(),
            ),
        }
    }
}

impl HealthBoard {
    /// Waits until a cooldown grows here (at once if one has since the last wait). A limit
    /// reading that moved wakes no one: it goes out with the next [`changes`](Self::changes).
    pub fn changed(&self) -> impl Future<Output = ()> + Send + '_ {
        self.desk.bell.notified()
    }

    /// What this router learned since the last call that the other processes do not know: each
    /// cooldown that grew (its latest end) and each limit reading that moved, with times as the
    /// wall clock reads `now`. What it was told by [`apply`](Self::apply) is not in it.
    pub fn changes(&self, now: SystemTime) -> Vec<Notice> {
        self.collect(now, false)
    }

    /// Everything this router knows now, learned here or told: each cooldown still running and
    /// each limit reading not yet reset. For a shared store that lost what it held (a Redis
    /// that restarted empty).
    pub fn current(&self, now: SystemTime) -> Vec<Notice> {
        self.collect(now, true)
    }

    fn collect(&self, wall: SystemTime, all: bool) -> Vec<Notice> {
        let now = self.table.now();
        let mut notices = Vec::new();
        for state in self.table.states() {
            let news = &state.news;
            let pending = news.pending.swap(0, Relaxed);
            if all || pending & COOLED != 0 {
                let (until, reason) = state.cooldown();
                let known = news.known_until.fetch_max(until, Relaxed);
                if until > now && (all || until > known) {
                    notices.push(Notice::Cooldown {
                        deployment: state.name.clone(),
                        reason,
                        until: to_wall(until, now, wall),
                    });
                }
            }
            if all || pending & READ != 0 {
                let (share, until, read_at) = state.limit_reading();
                let mark = read_at.saturating_add(1);
                let known = news.known_read.fetch_max(mark, Relaxed);
                if until > now && (all || mark > known) {
                    notices.push(Notice::Limit {
                        deployment: state.name.clone(),
                        left: f64::from(share) / f64::from(FULL),
                        until: to_wall(until, now, wall),
                        read_at: to_wall(read_at, now, wall),
                    });
                }
            }
        }
        let sent = notices.len() as u64;
        if sent > 0 {
            self.desk.sent.fetch_add(sent, Relaxed);
            self.desk.recorded[0].increment(sent);
        }
        notices
    }

    /// Applies what another process found, with times as the wall clock reads `now`: a cooldown
    /// when it ends later than the one known here (the later wins) and is not one a probe
    /// answered here has already ended (for failures, an open breaker or a refused key: the
    /// probe's answer is newer than what the other saw), a limit reading when it was
    /// read later than this router's own (or this router's has reset). Whether it changed
    /// anything; a notice that has run out, or names no deployment of this router, changes
    /// nothing. What it applies is not news: [`changes`](Self::changes) leaves it out.
    pub fn apply(&self, notice: &Notice, now: SystemTime) -> bool {
        let Some(&index) = self.by_name.get(notice.deployment()) else {
            return false;
        };
        let state = &self.table.states()[index];
        let clock = self.table.now();
        let applied = match notice {
            Notice::Cooldown { reason, until, .. } => {
                let until = to_clock(*until, clock, now);
                let (local, _) = state.cooldown();
                if until <= clock
                    || until <= local.saturating_add(SLACK)
                    || state.forgives(until, *reason, SLACK)
                {
                    return false;
                }
                // Known before it is set: a cooldown decided here meanwhile still compares with it.
                state.news.known_until.fetch_max(until, Relaxed);
                self.table.needs_clock();
                let applied = state.cool_as_told(until, *reason);
                if applied {
                    tracing::info!(
                        deployment = &*state.name,
                        reason = reason.as_str(),
                        seconds = Duration::from_nanos(until - clock).as_secs_f64(),
                        "deployment cooling down, as another process found"
                    );
                }
                applied
            }
            Notice::Limit {
                left,
                until,
                read_at,
                ..
            } => {
                let until = to_clock(*until, clock, now);
                let read_at = to_clock(*read_at, clock, now);
                let (_, own_until, own_at) = state.limit_reading();
                // A live reading of this router's own, read as late, stands.
                if until <= clock || (own_until > clock && read_at <= own_at.saturating_add(SLACK))
                {
                    return false;
                }
                state
                    .news
                    .known_read
                    .fetch_max(read_at.saturating_add(1), Relaxed);
                self.table.needs_clock();
                let share = (left.clamp(0.0, 1.0) * f64::from(FULL)).round() as u32;
                state.take_reading(share, until, read_at);
                true
            }
        };
        if applied {
            self.desk.applied.fetch_add(1, Relaxed);
            self.desk.recorded[1].increment(1);
        }
        applied
    }

    /// What it has done since the router was built.
    pub fn metrics(&self) -> BoardMetrics {
        BoardMetrics {
            sent: self.desk.sent.load(Relaxed),
            applied: self.desk.applied.load(Relaxed),
        }
    }
}

/// `at` on the router's clock (which reads `now`) as the wall clock (which reads `wall`) has it.
fn to_wall(at: u64, now: u64, wall: SystemTime) -> SystemTime {
    if at >= now {
        wall + Duration::from_nanos(at - now)
    } else {
        wall.checked_sub(Duration::from_nanos(now - at))
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// `at` on the wall clock (which reads `wall`) as the router's clock (which reads `now`) has it.
fn to_clock(at: SystemTime, now: u64, wall: SystemTime) -> u64 {
    match at.duration_since(wall) {
        Ok(ahead) => now.saturating_add(nanos(ahead)),
        Err(behind) => now.saturating_sub(nanos(behind.duration())),
    }
}
