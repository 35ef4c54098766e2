//! A deployment's health shared through Redis: what the router's [`HealthBoard`] hands out (its
//! cooldowns, with reason and end, and its providers' limit readings) is written to one hash,
//! and the hash is read back every [`POLL`], so every process with the same `redis` section
//! skips a deployment another found cooling down, within a poll and a round trip. It runs as a
//! task of its own, stopped with the stack: a call never waits on it.
//!
//! The hash, `<prefix>:{router}:health`, holds a field per deployment and kind:
//! `cool:<deployment>` = `<until ms> <reason> <origin>` and `limit:<deployment>` =
//! `<read ms> <permille left> <until ms> <origin>` (times in Unix milliseconds, the origin a
//! number drawn by each stack so it skips its own). A Lua script writes them, keeping whichever
//! of the old and new value leads with the later time, and keeps the hash until its latest
//! entry ends. A process that starts late reads what is current on its first look.
//!
//! While Redis does not answer, each process routes on what it knows itself: the outage is
//! logged once, at warn, and every failed read or write counted
//! (`tollgate.router.shared_failures`); when Redis answers again, the process writes everything
//! it knows that is still current (a Redis that restarted empty learns it back), and goes on.

#[cfg(feature = "redis")]
pub(super) use imp::{Shared, Sharing};
#[cfg(not(feature = "redis"))]
pub(super) use stub::{Shared, Sharing};

/// How often the shared hash is read.
#[cfg(feature = "redis")]
pub(super) const POLL: std::time::Duration = std::time::Duration::from_millis(250);

#[cfg(feature = "redis")]
mod imp {
    use std::{
        collections::HashMap,
        fmt,
        time::{Duration, SystemTime, UNIX_EPOCH},
    };

    use tokio::time::Instant;
    use tollgate_core::{
        redis::{RedisConfig, RedisConnection},
        telemetry::{Counter, ROUTER_SHARED_FAILURES},
    };
    use tollgate_router::{CooldownReason, HealthBoard, Notice};

    use super::POLL;

    /// Bound on each read or write: longer, and Redis is counted as not answering.
    const WITHIN: Duration = Duration::from_millis(500);

    /// Writes `field value` pairs (`ARGV[2..]`) into the hash `KEYS[1]`, keeping the old value
    /// where it leads with a later time, and keeps the hash for at least `ARGV[1]` ms.
    const WRITE: &str = r"
for i = 2, #ARGV, 2 do
  local old = tonumber(string.match(redis.call('HGET', KEYS[1], ARGV[i]) or '', '^%d+'))
  if not old or old < tonumber(string.match(ARGV[i + 1], '^%d+')) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
local keep = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < keep then
  redis.call('PEXPIRE', KEYS[1], keep)
end
return 0
";

    /// Where a router's health is shared: Redis, and the hash's key.
    pub(in crate::stack) struct Shared {
        connection: RedisConnection,
        key: String,
    }

    impl Shared {
        /// The `redis` section's hash, on `connection`.
        pub(in crate::stack) fn new(connection: RedisConnection, section: &RedisConfig) -> Self {
            Self {
                connection,
                key: section.router_health_key(),
            }
        }

        /// Shares `board` through the hash until the returned handle is dropped. Call it inside
        /// a Tokio runtime (the stack's Redis connection already needs one).
        pub(in crate::stack) fn start(self, board: HealthBoard) -> Sharing {
            use std::hash::BuildHasher;
            let origin = std::collections::hash_map::RandomState::new()
                .hash_one((std::process::id(), &self.key));
            let task = Task {
                shared: self,
                board,
                origin: format!("{origin:x}"),
                failing: false,
                behind: false,
                failures: Counter::new(ROUTER_SHARED_FAILURES, &[]),
            };
            Sharing(tokio::spawn(task.run()))
        }
    }

    /// The task sharing a router's health; it stops when this is dropped.
    pub(in crate::stack) struct Sharing(tokio::task::JoinHandle<()>);

    impl Drop for Sharing {
        fn drop(&mut self) {
            self.0.abort();
        }
    }

    struct Task {
        shared: Shared,
        board: HealthBoard,
        /// This stack's mark on what it writes, so it does not read its own back.
        origin: String,
        /// Whether Redis failed last time: the outage has been logged.
        failing: bool,
        /// Whether something went unwritten, or Redis may have lost it: write all that is
        /// current when it answers again.
        behind: bool,
        failures: Counter,
    }

    /// Why a read or write did not happen.
    enum Failure {
        Timeout,
        Redis(redis::RedisError),
    }

    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Self::Timeout => write!(f, "no answer within {WITHIN:?}"),
                Self::Redis(error) => write!(f, "{error}"),
            }
        }
    }

    impl Task {
        async fn run(mut self) {
            // The first look at once: a process starting late learns what is current.
            let mut look_at = Instant::now();
            loop {
                // Until the next look, or until a cooldown here is news.
                let look = tokio::time::timeout_at(look_at, self.board.changed())
                    .await
                    .is_err();
                if look {
                    let read = self.read().await;
                    self.outcome(read);
                    look_at = Instant::now() + POLL;
                }
                // While Redis does not answer, each look is the probe; news waits for it, and
                // then goes out whole.
                if self.failing {
                    continue;
                }
                let now = SystemTime::now();
                let notices = if self.behind {
                    self.board.current(now)
                } else {
                    self.board.changes(now)
                };
                if notices.is_empty() {
                    self.behind = false;
                } else {
                    let written = self.write(&notices, now).await;
                    if self.outcome(written) {
                        self.behind = false;
                    }
                }
            }
        }

        /// Notes how a call went: an outage is logged when it starts and when it ends, and every
        /// failure counted. Whether Redis answered.
        fn outcome(&mut self, result: Result<(), Failure>) -> bool {
            match result {
                Ok(()) => {
                    if self.failing {
                        self.failing = false;
                        tracing::info!(
                            target: "tollgate::router",
                            "Redis answers again: deployments' cooldowns are shared once more"
                        );
                    }
                    true
                }
                Err(failure) => {
                    self.failures.increment(1);
                    self.behind = true;
                    if !self.failing {
                        self.failing = true;
                        tracing::warn!(
                            target: "tollgate::router",
                            error = %failure,
                            "Redis does not answer: each process routes on the deployments' health it knows itself until it does"
                        );
                    }
                    false
                }
            }
        }

        async fn write(&self, notices: &[Notice], now: SystemTime) -> Result<(), Failure> {
            let keep = notices
                .iter()
                .map(|notice| match notice {
                    Notice::Cooldown { until, .. } | Notice::Limit { until, .. } => *until,
                    _ => now,
                })
                .max()
                .and_then(|until| until.duration_since(now).ok())
                .unwrap_or_default()
                + Duration::from_secs(1);
            let mut call = redis::cmd("EVAL");
            // Writes are rare (a cooldown, a reading that moved): the script goes whole, never
            // missing from a node that restarted.
            call.arg(WRITE)
                .arg(1)
                .arg(&self.shared.key)
                .arg(keep.as_millis() as u64);
            for notice in notices {
                if let Some((field, value)) = encode(notice, &self.origin) {
                    call.arg(field).arg(value);
                }
            }
            let mut connection = self.shared.connection.clone();
            match tokio::time::timeout(WITHIN, call.query_async::<i64>(&mut connection)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(Failure::Redis(error)),
                Err(_) => Err(Failure::Timeout),
            }
        }

        /// Reads the hash and applies what the other processes wrote.
        async fn read(&self) -> Result<(), Failure> {
            let mut connection = self.shared.connection.clone();
            let mut call = redis::cmd("HGETALL");
            call.arg(&self.shared.key);
            let answer = call.query_async::<HashMap<String, String>>(&mut connection);
            let entries = match tokio::time::timeout(WITHIN, answer).await {
                Ok(Ok(entries)) => entries,
                Ok(Err(error)) => return Err(Failure::Redis(error)),
                Err(_) => return Err(Failure::Timeout),
            };
            let now = SystemTime::now();
            for (field, value) in &entries {
                if let Some(notice) = decode(field, value, &self.origin) {
                    self.board.apply(&notice, now);
                }
            }
            Ok(())
        }
    }

    fn unix_ms(at: SystemTime) -> u64 {
        at.duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64)
    }

    /// A time read from the hash; one past what this system's clock can hold reads as the
    /// latest it can (a cooldown that far out is one that does not end).
    fn from_unix_ms(ms: u64) -> SystemTime {
        UNIX_EPOCH
            .checked_add(Duration::from_millis(ms))
            .unwrap_or_else(|| UNIX_EPOCH + Duration::from_secs(i32::MAX as u64))
    }

    /// A notice's field and value in the hash.
    fn encode(notice: &Notice, origin: &str) -> Option<(String, String)> {
        match notice {
            Notice::Cooldown {
                deployment,
                reason,
                until,
            } => Some((
                format!("cool:{deployment}"),
                format!("{} {} {origin}", unix_ms(*until), reason.as_str()),
            )),
            Notice::Limit {
                deployment,
                left,
                until,
                read_at,
            } => Some((
                format!("limit:{deployment}"),
                format!(
                    "{} {} {} {origin}",
                    unix_ms(*read_at),
                    (left.clamp(0.0, 1.0) * 1000.0).round() as u32,
                    unix_ms(*until)
                ),
            )),
            _ => None,
        }
    }

    /// The notice a field of the hash holds, unless this stack wrote it or it cannot be read.
    fn decode(field: &str, value: &str, origin: &str) -> Option<Notice> {
        let parts: Vec<&str> = value.split(' ').collect();
        if parts.last() == Some(&origin) {
            return None;
        }
        let number = |text: &str| text.parse::<u64>().ok();
        if let Some(deployment) = field.strip_prefix("cool:") {
            let [until, reason, _] = parts[..] else {
                return None;
            };
            let reason = CooldownReason::ALL
                .into_iter()
                .find(|known| known.as_str() == reason)?;
            return Some(Notice::Cooldown {
                deployment: deployment.into(),
                reason,
                until: from_unix_ms(number(until)?),
            });
        }
        let deployment = field.strip_prefix("limit:")?;
        let [read_at, left, until, _] = parts[..] else {
            return None;
        };
        Some(Notice::Limit {
            deployment: deployment.into(),
            left: number(left)?.min(1000) as f64 / 1000.0,
            until: from_unix_ms(number(until)?),
            read_at: from_unix_ms(number(read_at)?),
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn notices_cross_as_written_and_a_stacks_own_are_skipped() {
            let at = from_unix_ms(1_700_000_000_123);
            let notices = [
                Notice::Cooldown {
                    deployment: "openai/gpt-4o".into(),
                    reason: CooldownReason::QuotaExhausted,
                    until: at,
                },
                Notice::Limit {
                    deployment: "openai/gpt-4o".into(),
                    left: 0.125,
                    until: at + Duration::from_secs(60),
                    read_at: at,
                },
            ];
            let written: Vec<(String, String)> =
                notices.iter().filter_map(|n| encode(n, "a1")).collect();
            assert_eq!(
                written,
                [
                    (
                        "cool:openai/gpt-4o".to_owned(),
                        "1700000000123 quota_exhausted a1".to_owned()
                    ),
                    (
                        "limit:openai/gpt-4o".to_owned(),
                        "1700000000123 125 1700000060123 a1".to_owned()
                    ),
                ]
            );
            for ((field, value), notice) in written.iter().zip(&notices) {
                assert_eq!(decode(field, value, "b2").as_ref(), Some(notice));
                assert_eq!(decode(field, value, "a1"), None);
            }
            for (field, value) in [
                ("cool:x", "12 sleepy b2"),
                ("cool:x", "soon retry_after b2"),
                ("limit:x", "12 5 b2"),
                ("other:x", "12 retry_after b2"),
            ] {
                assert_eq!(decode(field, value, "a1"), None, "{field} {value}");
            }
        }
    }
}

#[cfg(not(feature = "redis"))]
mod stub {
    use tollgate_router::HealthBoard;

    /// Without Redis support there is nowhere to share a router's health.
    pub(in crate::stack) enum Shared {}

    impl Shared {
        pub(in crate::stack) fn start(self, _: HealthBoard) -> Sharing {
            match self {}
        }
    }

    /// Never made.
    pub(in crate::stack) struct Sharing;
}
