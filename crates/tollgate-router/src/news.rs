//! What a deployment's state keeps for sharing its health with other processes
//! ([`HealthBoard`](crate::HealthBoard)): which changes are not handed out yet, what the others
//! already know, and who to wake when a cooldown grows. The call path touches it only when a
//! cooldown grows or a limit reading moves a step.

use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicU8, AtomicU64, Ordering::Relaxed},
};

use tokio::sync::Notify;
use tollgate_core::telemetry::{Counter, ROUTER_SHARED_NOTICES};

/// A cooldown grew.
pub(crate) const COOLED: u8 = 1;
/// A limit reading moved a step, or came after the last one lapsed.
pub(crate) const READ: u8 = 2;

/// What one deployment's state keeps for sharing: the changes not handed out yet, and the latest
/// of each kind the other processes know of (handed out or learned from them), so that nothing
/// learned goes back out as news.
#[derive(Debug, Default)]
pub(crate) struct News {
    pub(crate) pending: AtomicU8,
    /// The latest cooldown end known elsewhere (clock nanos).
    pub(crate) known_until: AtomicU64,
    /// When the latest limit reading known elsewhere was read (clock nanos, plus one: 0 for
    /// none, so a reading at the clock's origin is news too).
    pub(crate) known_read: AtomicU64,
    /// Set once a board is taken: who to wake when a cooldown grows.
    pub(crate) desk: OnceLock<Arc<Desk>>,
}

impl News {
    /// A cooldown grew: news, at once.
    pub(crate) fn cooled(&self) {
        self.pending.fetch_or(COOLED, Relaxed);
        if let Some(desk) = self.desk.get() {
            desk.bell.notify_one();
        }
    }

    /// A limit reading moved: news, for the next time the board is read (what is left of a
    /// limit is not urgent; a spent one is a cooldown).
    pub(crate) fn read_limits(&self) {
        if self.pending.load(Relaxed) & READ == 0 {
            self.pending.fetch_or(READ, Relaxed);
        }
    }
}

/// What every deployment's [`News`] of one router shares.
#[derive(Debug)]
pub(crate) struct Desk {
    pub(crate) bell: Notify,
    pub(crate) sent: AtomicU64,
    pub(crate) applied: AtomicU64,
    /// `sent` and `applied`, for a metrics recorder.
    pub(crate) recorded: [Counter; 2],
}

impl Desk {
    pub(crate) fn new() -> Arc<Self> {
        let way = |way: &str| Counter::new(ROUTER_SHARED_NOTICES, &[("way", way.to_owned())]);
        Arc::new(Self {
            bell: Notify::new(),
            sent: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            recorded: [way("sent"), way("applied")],
        })
    }
}
