//! `Definition`: what a limiter limits (its scopes and their quotas), apart from where the counts
//! live. The in-process store and Redis are two stores of one definition.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tollgate_core::ConfigError;

use crate::{
    denial::{Denial, DenialDetail, DenialReason},
    quota::{Amounts, Dimension, Quota},
};

/// A named family of keys sharing a default quota (`user`, `org`, `provider`), as a cheap handle.
///
/// Get one from [`RateLimiter::scope`](crate::RateLimiter::scope). `Scope::default()` is the first
/// scope the limiter was built with, the only one of a
/// [`RateLimiter::new`](crate::RateLimiter::new).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Scope(pub(crate) u32);

/// Quotas resolved per (scope, key): a scope's default, or the key's override.
pub(crate) struct Quotas {
    /// Every quota, indexed by the `u32` a slot stores. It only grows, so an index a slot holds
    /// stays good while quotas change; a quota set at run time is kept once however many keys
    /// share it.
    pub(crate) all: QuotaList,
    /// Per scope: its default quota's index.
    pub(crate) defaults: Vec<u32>,
    /// Per scope: overrides by key. Read when a key is first tracked (and on every call of the
    /// Redis store), written when quotas are set at run time.
    pub(crate) overrides: Vec<RwLock<HashMap<Box<str>, u32>>>,
    /// The index of each quota in `all` by its tiers' text, so setting one finds its twin.
    interned: Mutex<HashMap<String, u32>>,
    /// Whether any quota counts tokens, and cost: a layer reserves them only then.
    counting: [AtomicBool; 2],
}

impl Quotas {
    pub(crate) fn resolve(&self, scope: u32, key: &str) -> u32 {
        let scope = scope as usize;
        self.overrides[scope]
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .copied()
            .unwrap_or(self.defaults[scope])
    }

    /// Whether `key` has a quota of its own in `scope`.
    pub(crate) fn has_own(&self, scope: u32, key: &str) -> bool {
        self.overrides[scope as usize]
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(key)
    }

    /// The index of `quota`, added unless an equal one is there.
    fn intern(&self, quota: Quota) -> u32 {
        let text = quota_text(&quota);
        let mut interned = self
            .interned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&index) = interned.get(&text)
            && self.all[index as usize] == quota
        {
            return index;
        }
        self.note_counts(&quota);
        let index = self.all.push(quota) as u32;
        interned.insert(text, index);
        index
    }

    fn from_list(
        list: Vec<Quota>,
        defaults: Vec<u32>,
        overrides: Vec<HashMap<Box<str>, u32>>,
    ) -> Self {
        let mut interned = HashMap::new();
        for (index, quota) in list.iter().enumerate() {
            interned.entry(quota_text(quota)).or_insert(index as u32);
        }
        let counts = |dimension| list.iter().any(|quota: &Quota| quota.counts(dimension));
        let counting = [
            AtomicBool::new(counts(Dimension::Tokens)),
            AtomicBool::new(counts(Dimension::Cost)),
        ];
        Self {
            all: QuotaList {
                built: list,
                added: boxcar::Vec::new(),
            },
            defaults,
            overrides: overrides.into_iter().map(RwLock::new).collect(),
            interned: Mutex::new(interned),
            counting,
        }
    }

    fn note_counts(&self, quota: &Quota) {
        for (flag, dimension) in self
            .counting
            .iter()
            .zip([Dimension::Tokens, Dimension::Cost])
        {
            if quota.counts(dimension) {
                flag.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Whether any quota counts `dimension` (requests: always).
    fn counts(&self, dimension: Dimension) -> bool {
        match dimension {
            Dimension::Requests => true,
            Dimension::Tokens => self.counting[0].load(Ordering::Relaxed),
            Dimension::Cost => self.counting[1].load(Ordering::Relaxed),
        }
    }

    #[cfg(feature = "redis")]
    fn overrides_now(&self) -> Vec<HashMap<Box<str>, u32>> {
        self.overrides
            .iter()
            .map(|map| {
                map.read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })
            .collect()
    }
}

/// Every quota by index: those the limiter was built with in a plain vector, where every call
/// finds them without an atomic load, then those set since, in an append-only one.
pub(crate) struct QuotaList {
    built: Vec<Quota>,
    added: boxcar::Vec<Quota>,
}

impl QuotaList {
    fn push(&self, quota: Quota) -> usize {
        self.built.len() + self.added.push(quota)
    }

    #[cfg(feature = "redis")]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &Quota)> {
        self.built
            .iter()
            .chain(self.added.iter().map(|(_, quota)| quota))
            .enumerate()
    }
}

impl std::ops::Index<usize> for QuotaList {
    type Output = Quota;

    fn index(&self, index: usize) -> &Quota {
        match self.built.get(index) {
            Some(quota) => quota,
            None => &self.added[index - self.built.len()],
        }
    }
}

/// A quota's tiers as text: two quotas with the same text are almost always equal.
fn quota_text(quota: &Quota) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    for tier in quota.tiers() {
        let _ = write!(text, "{tier};");
    }
    text
}

/// The scopes, by name, and their quotas; fixed once built.
pub(crate) struct Definition {
    scopes: Vec<Arc<str>>,
    pub(crate) quotas: Quotas,
}

impl Definition {
    /// The definition of `scopes` with `overrides` (scope, key, quota).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when there is no scope, a scope name repeats, or an override names an
    /// unknown scope or repeats a key.
    pub(crate) fn new(
        scopes: Vec<(String, Quota)>,
        overrides: Vec<(String, String, Quota)>,
    ) -> Result<Self, ConfigError> {
        if scopes.is_empty() {
            return Err(ConfigError::new("scopes", "add at least one scope"));
        }
        let mut names: Vec<Arc<str>> = Vec::new();
        let mut all = Vec::new();
        for (i, (name, quota)) in scopes.into_iter().enumerate() {
            if names.iter().any(|n| **n == *name) {
                return Err(ConfigError::new(
                    format!("scopes[{i}].name"),
                    format!("scope {name:?} is defined twice"),
                ));
            }
            names.push(name.into());
            all.push(quota);
        }
        let defaults = (0..names.len() as u32).collect();
        let mut by_key = vec![HashMap::new(); names.len()];
        for (scope, key, quota) in overrides {
            let Some(index) = names.iter().position(|n| **n == *scope) else {
                return Err(ConfigError::new(
                    format!("overrides.{scope}"),
                    format!("no scope is named {scope:?}"),
                ));
            };
            if by_key[index].contains_key(key.as_str()) {
                return Err(ConfigError::new(
                    format!("overrides.{scope}.{key}"),
                    "the key is overridden twice",
                ));
            }
            by_key[index].insert(key.into_boxed_str(), all.len() as u32);
            all.push(quota);
        }
        Ok(Self {
            scopes: names,
            quotas: Quotas::from_list(all, defaults, by_key),
        })
    }

    /// Gives each key its quota in `scope` (`None`: back to the scope's default), returning
    /// those whose quota changed with their old and new indices, for the store to carry their
    /// counts over.
    pub(crate) fn set_quotas(
        &self,
        scope: Scope,
        changes: impl IntoIterator<Item = (String, Option<Quota>)>,
    ) -> Vec<(String, u32)> {
        let changes: Vec<(String, Option<u32>)> = changes
            .into_iter()
            .map(|(key, quota)| (key, quota.map(|q| self.quotas.intern(q))))
            .collect();
        let mut overrides = self.quotas.overrides[scope.0 as usize]
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let default = self.quotas.defaults[scope.0 as usize];
        let mut changed = Vec::new();
        for (key, index) in changes {
            let before = overrides.get(key.as_str()).copied().unwrap_or(default);
            match index {
                Some(index) => {
                    overrides.insert(key.as_str().into(), index);
                }
                None => {
                    overrides.remove(key.as_str());
                }
            }
            let after = index.unwrap_or(default);
            if before != after {
                changed.push((key, after));
            }
        }
        changed
    }

    /// The keys that have a quota of their own in `scope`.
    pub(crate) fn own_keys(&self, scope: Scope) -> Vec<String> {
        self.quotas.overrides[scope.0 as usize]
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .map(|key| key.to_string())
            .collect()
    }

    /// The handle of the scope named `name`.
    pub(crate) fn scope(&self, name: &str) -> Option<Scope> {
        self.scopes
            .iter()
            .position(|scope| &**scope == name)
            .map(|i| Scope(i as u32))
    }

    /// The names of the scopes, in the order they were added.
    pub(crate) fn scope_names(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().map(|s| &**s)
    }

    /// The name of `scope`.
    pub(crate) fn scope_name(&self, scope: Scope) -> &str {
        &self.scopes[scope.0 as usize]
    }

    /// How many scopes there are.
    pub(crate) fn len(&self) -> usize {
        self.scopes.len()
    }

    /// Whether `scope` is one of these.
    pub(crate) fn owns(&self, scope: Scope) -> bool {
        (scope.0 as usize) < self.scopes.len()
    }

    /// The quota `key` is limited by in `scope`: its override, or the scope's default.
    pub(crate) fn quota_of(&self, scope: Scope, key: &str) -> &Quota {
        &self.quotas.all[self.quotas.resolve(scope.0, key) as usize]
    }

    /// Every quota: the scopes' defaults, then the overrides.
    #[cfg(feature = "redis")]
    pub(crate) fn all_quotas(&self) -> impl Iterator<Item = &Quota> {
        self.quotas.all.iter().map(|(_, quota)| quota)
    }

    /// Whether any quota (a scope's default or an override, given at build or since) counts
    /// `dimension`.
    pub(crate) fn counts(&self, dimension: Dimension) -> bool {
        self.quotas.counts(dimension)
    }

    /// The same scopes and overrides with every tier scaled to `share` of its limit and burst
    /// (at least one unit each): a process's part of a shared quota.
    #[cfg(feature = "redis")]
    pub(crate) fn scaled(&self, share: f64) -> Result<Self, ConfigError> {
        let scale = |quota: &Quota| scaled(quota, share);
        let quotas = &self.quotas;
        let all = quotas
            .all
            .iter()
            .map(|(_, quota)| scale(quota))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            scopes: self.scopes.clone(),
            quotas: Quotas::from_list(all, quotas.defaults.clone(), quotas.overrides_now()),
        })
    }

    /// A denial of `key` in `scope` for `reason`, naming no tier.
    pub(crate) fn denial(
        &self,
        scope: Scope,
        key: &str,
        reason: DenialReason,
        retry_after: Option<Duration>,
    ) -> Denial {
        Denial(Box::new(DenialDetail {
            reason,
            scope: self.scopes[scope.0 as usize].clone(),
            key: key.into(),
            tier: None,
            needed: 0,
            retry_after,
            waited: Duration::ZERO,
            period: None,
        }))
    }

    /// A denial of `key` in `scope`, naming tier `tier` of its quota when one refused, traced.
    pub(crate) fn make_denial(
        &self,
        scope: Scope,
        key: &str,
        reason: DenialReason,
        tier: Option<usize>,
        amounts: &Amounts,
        retry_after: Option<Duration>,
    ) -> Denial {
        let mut denial = self.denial(scope, key, reason, retry_after);
        if let Some(index) = tier {
            let tier = self.quota_of(scope, key).tiers()[index].clone();
            denial.0.needed = amounts.get(tier.dimension());
            denial.0.tier = Some((index, tier));
        }
        tracing::debug!(
            target: "tollgate::ratelimit",
            scope = &*denial.0.scope,
            key = &*denial.0.key,
            tier = tier,
            retry_after_ms = retry_after.map(|d| d.as_millis() as u64),
            reason = ?reason,
            "rate limit denied a call"
        );
        denial
    }
}

/// `quota` with every tier scaled to `share` of its limit and burst (at least one unit each).
#[cfg(feature = "redis")]
pub(crate) fn scaled(quota: &Quota, share: f64) -> Result<Quota, ConfigError> {
    use crate::quota::Tier;
    // An open scope's default before any key has a quota: no call reaches it, at any share.
    if quota.tiers().is_empty() {
        return Ok(quota.clone());
    }
    let part = |n: u64| ((n as f64 * share).ceil() as u64).max(1);
    Quota::new(quota.tiers().iter().map(|tier| {
        match tier.calendar_period() {
            // A calendar budget stays one: a share of it per period.
            Some(calendar) => {
                Tier::calendar(tier.dimension(), part(tier.limit()), calendar.clone())
            }
            None => Tier::new(tier.dimension(), part(tier.limit()), tier.period())
                .with_burst(part(tier.burst())),
        }
    }))
}
