//! Redis key names: `<prefix>:{<scope>:<key>}`, one hash per key with a field per tier, escaped so
//! a key can never forge another's hash tag.

use super::RedisRateLimiter;
use crate::limiter::Scope;

impl RedisRateLimiter {
    /// The Redis name of `key` in `scope` when its call names `tag_key` in the hash tag scope.
    pub(super) fn tagged_key(&self, scope: Scope, key: &str, tag_key: &str) -> String {
        match self.inner.hash_tag {
            Some(tag) => self.redis_key(&[(scope, key), (tag, tag_key)], scope, key),
            None => self.redis_key(&[(scope, key)], scope, key),
        }
    }

    /// Whether every key of a call is stored under one hash tag, so one Cluster slot: a call of
    /// one key, or one that names a key of the hash-tag scope.
    pub(super) fn one_slot(&self, keys: &[(Scope, impl AsRef<str>)]) -> bool {
        keys.len() < 2
            || self
                .inner
                .hash_tag
                .is_some_and(|tag| keys.iter().any(|(scope, _)| *scope == tag))
            || keys
                .iter()
                .all(|(scope, key)| *scope == keys[0].0 && key.as_ref() == keys[0].1.as_ref())
    }

    /// `<prefix>:{<scope>:<key>}`, or with a hash tag scope, `<prefix>:{<tag scope>:<its key>}:<scope>:<key>`.
    pub(super) fn redis_key(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        scope: Scope,
        key: &str,
    ) -> String {
        let definition = &self.inner.definition;
        let own = format!("{}:{}", escape(definition.scope_name(scope)), escape(key));
        let tag = self.inner.hash_tag.and_then(|tag_scope| {
            keys.iter().find(|(s, _)| *s == tag_scope).map(|(s, k)| {
                format!(
                    "{}:{}",
                    escape(definition.scope_name(*s)),
                    escape(k.as_ref())
                )
            })
        });
        match tag {
            Some(tag) if tag != own => format!("{}:{{{tag}}}:{own}", self.inner.prefix),
            _ => format!("{}:{{{own}}}", self.inner.prefix),
        }
    }
}

/// A tier's field in a key's hash, named after its parameters: `r:<interval>:<window>`; for a
/// calendar tier, after its period `period` and its calendar: `C:<period index>:<calendar id>`,
/// so that a new limit on the same calendar keeps what the period has spent.
pub(super) fn field(tier: &crate::quota::Tier, period: Option<u64>) -> Field {
    let dimension = match tier.dimension() {
        crate::quota::Dimension::Requests => b'r',
        crate::quota::Dimension::Tokens => b't',
        crate::quota::Dimension::Cost => b'c',
    };
    match period {
        Some(index) => Field {
            dimension: dimension.to_ascii_uppercase(),
            interval: index,
            window: tier.calendar_period().map_or(0, calendar_id),
        },
        None => Field {
            dimension,
            interval: tier.interval_nanos(),
            window: tier.window_nanos(),
        },
    }
}

/// A calendar's name in Redis: the FNV-1a hash of its period and time zone, the same in every
/// process and release (a calendar's index alone would let a Paris day share a UTC day's count).
fn calendar_id(calendar: &crate::Calendar) -> u64 {
    let period = match calendar.period() {
        crate::Period::Day => "day",
        crate::Period::Week => "week",
        crate::Period::Month => "month",
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in period
        .bytes()
        .chain([b'/'])
        .chain(calendar.zone_name().bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A field's name, written straight into the command (no string is built for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Field {
    dimension: u8,
    interval: u64,
    window: u64,
}

impl redis::ToRedisArgs for Field {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        let (mut interval, mut window) = (itoa::Buffer::new(), itoa::Buffer::new());
        let (interval, window) = (interval.format(self.interval), window.format(self.window));
        // `r:` + two u64s and a colon: at most 43 bytes.
        let mut name = [0_u8; 48];
        let mut at = 0;
        for part in [
            &[self.dimension, b':'][..],
            interval.as_bytes(),
            b":",
            window.as_bytes(),
        ] {
            name[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        out.write_arg(&name[..at]);
    }
}

/// Keeps `{`, `}` (hash tags) and `:` (our separator) out of key parts.
fn escape(part: &str) -> std::borrow::Cow<'_, str> {
    if !part.contains(['{', '}', ':', '%']) {
        return part.into();
    }
    let mut out = String::with_capacity(part.len() + 8);
    for c in part.chars() {
        match c {
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            ':' => out.push_str("%3A"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use redis::ToRedisArgs;

    use super::{Field, field};
    use crate::quota::{Quota, Tier};

    /// A tier as a quota holds it (its schedule worked out).
    fn held(tier: Tier) -> Tier {
        Quota::new([tier]).unwrap().tiers()[0].clone()
    }

    #[test]
    fn a_field_is_written_as_its_dimension_interval_and_window() {
        let hour = Duration::from_secs(3_600);
        let written = |field: Field| String::from_utf8(field.to_redis_args().concat()).unwrap();
        assert_eq!(
            written(field(&held(Tier::requests(60, hour)), None)),
            "r:60000000000:3600000000000"
        );
        assert_eq!(
            written(field(
                &held(Tier::tokens(1_000, Duration::from_secs(1))),
                None
            )),
            "t:1000000:1000000000"
        );
        let widest = Field {
            dimension: b'c',
            interval: u64::MAX,
            window: u64::MAX,
        };
        assert_eq!(
            written(widest),
            format!("c:{}:{}", u64::MAX, u64::MAX),
            "the longest name fits its buffer"
        );
    }
}
