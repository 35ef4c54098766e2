//! What each calendar budget's current period has spent, read back from the spend ledger into a
//! limiter kept in this process when it is built (at start, and on a reload), so neither forgets
//! it. A limiter in Redis keeps its own across restarts and is left alone.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::SystemTime,
};

use tollgate::ratelimit::{
    Calendar, DEFAULT_TENANT, Dimension, Limiter, PRINCIPAL_SCOPE, Scope, TENANT_SCOPE,
};
use tollgate_control::{Database, GroupBy};
use tollgate_core::LlmError;

/// Restores every calendar cost budget of the `tenant` scope (from the ledger's teams) and the
/// `principal` scope (from its keys) in `limiter`; returns how many budgets were given a spend.
///
/// The ledger adds spend up per UTC day, so a period that starts inside a UTC day (a month in
/// `Europe/Paris` begins at 23:00 UTC) is given that whole day's spend too: never less than it
/// spent, so the cap still holds.
pub(crate) async fn period_spend(
    database: &Database,
    limiter: &Limiter,
) -> Result<usize, LlmError> {
    if !matches!(limiter, Limiter::Local(_)) {
        return Ok(0);
    }
    let now = SystemTime::now();
    let mut restored = 0;
    for (name, group_by) in [
        (TENANT_SCOPE, GroupBy::Team),
        (PRINCIPAL_SCOPE, GroupBy::Key),
    ] {
        let Some(scope) = limiter.scope(name) else {
            continue;
        };
        let mut ledgers = Ledgers {
            database,
            group_by,
            read: BTreeMap::new(),
        };
        let mut keys: BTreeSet<String> = limiter.own_quota_keys(scope).into_iter().collect();
        // Tenants with a `default` entry are every tenant: those that spent in its periods.
        if name == TENANT_SCOPE && keys.contains(DEFAULT_TENANT) {
            for calendar in budgets(limiter, scope, DEFAULT_TENANT) {
                let day = first_day(&calendar, now);
                keys.extend(ledgers.of(&day).await?.keys().cloned());
            }
        }
        for key in keys {
            for calendar in budgets(limiter, scope, &key) {
                let day = first_day(&calendar, now);
                let spent = ledgers.of(&day).await?.get(&key).copied().unwrap_or(0);
                if spent > 0 {
                    limiter.restore_period_spend(scope, &key, (Dimension::Cost, &calendar), spent);
                    restored += 1;
                }
            }
        }
    }
    Ok(restored)
}

/// The calendars of `key`'s cost budgets in `scope`.
fn budgets(limiter: &Limiter, scope: Scope, key: &str) -> Vec<Calendar> {
    limiter
        .status_now(scope, key)
        .map(|status| {
            status
                .tiers
                .iter()
                .filter(|t| t.tier.dimension() == Dimension::Cost)
                .filter_map(|t| t.tier.calendar_period().cloned())
                .collect()
        })
        .unwrap_or_default()
}

/// The UTC day the period `now` falls in begins on (`2026-12-01`).
pub(crate) fn first_day(calendar: &Calendar, now: SystemTime) -> String {
    utc_day(calendar.starts_at(now))
}

/// The UTC day `at` falls in (`2026-12-01`), as the ledger names its days.
pub(crate) fn utc_day(at: SystemTime) -> String {
    let at = jiff::Timestamp::try_from(at).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    jiff::tz::TimeZone::UTC.to_datetime(at).date().to_string()
}

/// The ledger's spend since each day asked for, per group, read once a day.
struct Ledgers<'a> {
    database: &'a Database,
    group_by: GroupBy,
    read: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Ledgers<'_> {
    async fn of(&mut self, day: &str) -> Result<&BTreeMap<String, u64>, LlmError> {
        if !self.read.contains_key(day) {
            let report = self.database.spend(self.group_by, Some(day), None).await?;
            let spent = report
                .groups
                .into_iter()
                .map(|(group, totals)| (group, totals.cost_micros))
                .collect();
            self.read.insert(day.to_owned(), spent);
        }
        Ok(&self.read[day])
    }
}
