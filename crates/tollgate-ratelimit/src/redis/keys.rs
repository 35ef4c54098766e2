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

/// A tier's field in a key's hash, named after its parameters.
pub(super) fn field(tier: &crate::quota::Tier) -> String {
    let dimension = match tier.dimension() {
        crate::quota::Dimension::Requests => 'r',
        crate::quota::Dimension::Tokens => 't',
        crate::quota::Dimension::Cost => 'c',
    };
    format!(
        "{dimension}:{}:{}",
        tier.interval_nanos(),
        tier.window_nanos()
    )
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
