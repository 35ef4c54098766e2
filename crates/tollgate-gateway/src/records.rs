//! The control plane's records in the gateway (in the `database` section's database, or without
//! one in a SQLite database in memory): keys and teams read from the database into memory and read again within a poll of any change, their limits given to the
//! limiter, when keys were last used written in batches, and every billed call added to the spend
//! ledger. No call waits on the database: lookups are in memory, writes are off the call path.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, OnceLock, RwLock, atomic::Ordering},
    time::{Duration, SystemTime},
};

use tollgate::{
    BilledCall, Switch,
    ratelimit::{BudgetConfig, Limiter, PRINCIPAL_SCOPE, Quota, TENANT_SCOPE},
};
use tollgate_control::{
    Database, DatabaseConfig, KeyRecord, Ledger, LedgerConfig, SpendEntry, TeamRecord, parse_hash,
};
use tollgate_core::{LlmError, MicroUsd};

use crate::keys::{KeyTable, VirtualKey};

/// The stack the records' quotas are given to: its limiter, the limits its file gave, and which
/// build of the configuration it is (a reload makes a new one, which needs them all again).
pub(crate) struct QuotaTarget<'a> {
    pub(crate) limiter: Option<&'a Limiter>,
    pub(crate) file: &'a Switch<tollgate::RateLimitingConfig>,
    pub(crate) build: u64,
}

/// How often the records' version is read: a change made on any process is served here within it.
pub(crate) const POLL: Duration = Duration::from_millis(500);

/// What the gateway holds of the database.
pub(crate) struct Records {
    database: Database,
    /// The spend ledger billed calls go to (also in the gateway's `SpendSink`).
    ledger: Ledger,
    /// The keys of the records, live ones only (a rotated key's old secret during its grace).
    keys: RwLock<Arc<KeyTable>>,
    state: Mutex<Loaded>,
    /// Key tables replaced since the last batch of last uses: a call that found its key in one
    /// just before stamps it there, and the batch takes it.
    retired: Mutex<Vec<Arc<KeyTable>>>,
    /// Last uses a failed batch could not write, for the next one (a call's own goes on its
    /// key: see `VirtualKey::used`).
    used: Mutex<HashMap<Arc<str>, u64>>,
    /// One read of the records at a time (the poll's, an admin change's): a slower read never
    /// puts back an older snapshot.
    syncing: tokio::sync::Mutex<()>,
    /// The budgets of the records' keys (by id, scope `principal`) and teams (scope `tenant`)
    /// that degrade, read on the call path.
    degrading: RwLock<Arc<Degrading>>,
}

/// The records last read, and what was made of them.
#[derive(Default)]
struct Loaded {
    version: Option<i64>,
    keys: Vec<KeyRecord>,
    teams: Vec<TeamRecord>,
    /// When the key table must be made again though nothing changed: a key expires, or a rotated
    /// key's grace ends.
    next_deadline: Option<SystemTime>,
    /// The build of the configuration the records' quotas were last given to.
    applied_to: Option<u64>,
    /// The keys given a quota there, by scope: those to take it back from when their limits go.
    applied: BTreeMap<&'static str, Vec<String>>,
    /// The build whose periods' spend was read back from the ledger (tried until it is).
    restored: Option<u64>,
}

/// The records' budgets that degrade, by scope (`principal`, `tenant`) and name.
type Degrading = HashMap<(&'static str, String), Arc<[BudgetConfig]>>;

/// Where billed calls go: the ledger, once the database is open.
#[derive(Default)]
pub(crate) struct SpendSink(OnceLock<Ledger>);

impl SpendSink {
    /// Adds a billed call to the ledger, under its key (the principal) and team (the tenant).
    pub(crate) fn billed(&self, call: &BilledCall) {
        let Some(ledger) = self.0.get() else {
            return;
        };
        let name = |name: &Option<Arc<str>>| name.clone().unwrap_or_else(|| Arc::from(""));
        ledger.record(SpendEntry::new(
            SystemTime::now(),
            name(&call.principal),
            name(&call.tenant),
            call.model.clone(),
            call.provider.clone(),
            call.usage,
            call.cost.unwrap_or(MicroUsd(0)),
        ));
    }

    /// Writes what the ledger holds now.
    pub(crate) async fn flush(&self) -> Result<(), LlmError> {
        match self.0.get() {
            Some(ledger) => ledger.flush().await,
            None => Ok(()),
        }
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.0.get().map_or(0, Ledger::dropped)
    }
}

impl Records {
    /// Opens the database (running its migrations), reads the records, and starts the ledger
    /// writing to `sink`.
    pub(crate) async fn open(config: &DatabaseConfig, sink: &SpendSink) -> Result<Self, LlmError> {
        let database = Database::open(config).await?;
        let ledger = Ledger::start(database.clone(), LedgerConfig::default());
        let _ = sink.0.set(ledger.clone());
        Ok(Self {
            database,
            ledger,
            keys: RwLock::default(),
            state: Mutex::default(),
            retired: Mutex::default(),
            used: Mutex::default(),
            syncing: tokio::sync::Mutex::new(()),
            degrading: RwLock::default(),
        })
    }

    /// The records' key whose digest is `presented`, if any; noted as used.
    pub(crate) fn find(&self, presented: &crate::keys::Digest32) -> Option<Arc<VirtualKey>> {
        let found = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .find_digest(presented)?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs().max(1));
        found.used.store(now, Ordering::Relaxed);
        Some(found)
    }

    /// The budgets of the record key (`principal`) or team (`tenant`) `name` that degrade.
    pub(crate) fn degrading(&self, scope: &'static str, name: &str) -> Option<Arc<[BudgetConfig]>> {
        let degrading = self
            .degrading
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if degrading.is_empty() {
            return None;
        }
        degrading.get(&(scope, name.to_owned())).cloned()
    }

    /// What the records in memory make of `target` now, with no database: a key table made
    /// again when `remake` or a key's deadline (its expiry, a rotation's grace) has passed, and
    /// the records' quotas for a build of the configuration that has not got them (a reload's).
    /// Returns whether that build's periods' spend is still to be read back from the ledger.
    pub(crate) fn apply_loaded(&self, target: &QuotaTarget<'_>, remake: bool) -> bool {
        let now = SystemTime::now();
        let mut state = lock(&self.state);
        if remake || state.next_deadline.is_some_and(|at| at <= now) {
            let (table, next_deadline) = key_table(&state.keys, now);
            let replaced = std::mem::replace(
                &mut *self
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Arc::new(table),
            );
            lock(&self.retired).push(replaced);
            state.next_deadline = next_deadline;
            *self
                .degrading
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Arc::new(degrading_of(&state));
            apply_quotas(&mut state, target, now);
        } else if state.applied_to != Some(target.build) {
            apply_quotas(&mut state, target, now);
        }
        state.restored != Some(target.build)
    }

    /// Reads the records again if they changed, and gives `target`'s limiter their quotas and
    /// (once per build) each budget's spend this period from the ledger.
    pub(crate) async fn sync(&self, target: QuotaTarget<'_>) -> Result<(), LlmError> {
        let _turn = self.syncing.lock().await;
        // What memory holds first: a reload or a deadline needs no database, and must not wait
        // for one that is down.
        self.apply_loaded(&target, false);
        let version = self.database.records_version().await?;
        let stale = lock(&self.state).version != Some(version);
        if stale {
            let (keys, teams) = (self.database.keys().await?, self.database.teams().await?);
            let mut state = lock(&self.state);
            state.version = Some(version);
            state.keys = keys;
            state.teams = teams;
        }
        if self.apply_loaded(&target, stale) {
            if let Some(limiter) = target.limiter {
                // A limiter just built in this process knows nothing of the periods' spend: the
                // ledger does, once what it holds is written.
                self.ledger.flush().await?;
                let restored = crate::restore::period_spend(&self.database, limiter).await?;
                if restored > 0 {
                    tracing::info!(target: "tollgate::records", budgets = restored, "budgets' spend this period read from the ledger");
                }
            }
            lock(&self.state).restored = Some(target.build);
        }
        Ok(())
    }

    /// Writes when keys were last used, as one batch.
    pub(crate) async fn flush_used(&self) -> Result<(), LlmError> {
        let table = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let retired = std::mem::take(&mut *lock(&self.retired));
        let mut used = std::mem::take(&mut *lock(&self.used));
        for (id, at) in retired.iter().chain([&table]).flat_map(|t| taken_uses(t)) {
            let held = used.entry(id).or_default();
            *held = (*held).max(at);
        }
        if used.is_empty() {
            return Ok(());
        }
        let batch: Vec<(String, SystemTime)> = used
            .iter()
            .map(|(id, at)| {
                (
                    id.to_string(),
                    SystemTime::UNIX_EPOCH + Duration::from_secs(*at),
                )
            })
            .collect();
        let written = self.database.touch_keys(&batch).await;
        if written.is_err() {
            // Kept for the next batch.
            let mut held = lock(&self.used);
            for (id, at) in used {
                let slot = held.entry(id).or_default();
                *slot = (*slot).max(at);
            }
        }
        written
    }

    pub(crate) fn database(&self) -> &Database {
        &self.database
    }

    pub(crate) fn len(&self) -> usize {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// The last uses the keys of `table` hold, each taken (the key's stamp back to 0).
fn taken_uses(table: &KeyTable) -> Vec<(Arc<str>, u64)> {
    table
        .keys()
        .filter_map(|key| match key.used.swap(0, Ordering::Relaxed) {
            0 => None,
            at => Some((key.name.clone(), at)),
        })
        .collect()
}

/// The records' budgets that degrade, by scope and name.
fn degrading_of(state: &Loaded) -> Degrading {
    let keys = state
        .keys
        .iter()
        .filter_map(|key| Some(((PRINCIPAL_SCOPE, key.id.clone()), key.limits.as_ref()?)));
    let teams = state
        .teams
        .iter()
        .filter_map(|team| Some(((TENANT_SCOPE, team.name.clone()), team.limits.as_ref()?)));
    keys.chain(teams)
        .map(|(at, limits)| (at, degrading(&limits.budgets)))
        .filter(|(_, budgets)| !budgets.is_empty())
        .collect()
}

/// The budgets of `budgets` that degrade, if any.
pub(crate) fn degrading(budgets: &[BudgetConfig]) -> Arc<[BudgetConfig]> {
    budgets
        .iter()
        .filter(|budget| budget.degrade.is_some())
        .cloned()
        .collect()
}

/// The live keys of `keys` by digest (a rotated key's old secret too, during its grace), and the
/// first instant after `now` at which that changes.
fn key_table(keys: &[KeyRecord], now: SystemTime) -> (KeyTable, Option<SystemTime>) {
    let mut table = KeyTable::default();
    let mut next: Option<SystemTime> = None;
    let mut soonest = |at: SystemTime| {
        if at > now && next.is_none_or(|n| at < n) {
            next = Some(at);
        }
    };
    for key in keys.iter().filter(|key| key.is_live(now)) {
        if let Some(at) = key.expires_at {
            soonest(at);
        }
        let tenant = table.tenant(&key.team);
        let label: Arc<str> = key.name.as_str().into();
        let made = |until: Option<SystemTime>| VirtualKey {
            name: key.id.as_str().into(),
            label: Some(label.clone()),
            tenant: tenant.clone(),
            until: until.map_or(0, |at| {
                at.duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(1, |d| d.as_millis().try_into().unwrap_or(u64::MAX).max(1))
            }),
            roles: key.roles.clone(),
            models: key.models.clone(),
            admin: key.admin,
            used: std::sync::atomic::AtomicU64::new(0),
        };
        if let Ok(digest) = parse_hash(&key.hash) {
            table.insert(digest, made(key.expires_at));
        }
        let grace = key.previous_until.filter(|until| *until > now);
        if let (Some(until), Some(previous)) = (grace, &key.previous_hash) {
            soonest(until);
            if let Ok(digest) = parse_hash(previous) {
                let ends = key.expires_at.map_or(until, |expires| expires.min(until));
                table.insert(digest, made(Some(ends)));
            }
        }
    }
    (table, next)
}

/// Gives `live`'s limiter the records' quotas: each live key's own limits under its id in the
/// `principal` scope, each team's under its name in the `tenant` scope. A key or team that no
/// longer has limits goes back to what the configuration file gives it, if anything.
fn apply_quotas(state: &mut Loaded, target: &QuotaTarget<'_>, now: SystemTime) {
    let Some(limiter) = target.limiter else {
        return;
    };
    let fresh = state.applied_to != Some(target.build);
    let keys = state
        .keys
        .iter()
        .filter(|key| key.is_live(now))
        .filter_map(|key| Some((key.id.clone(), key.limits.as_ref()?)));
    let teams = state
        .teams
        .iter()
        .filter_map(|team| Some((team.name.clone(), team.limits.as_ref()?)));
    let wanted: [(&'static str, Vec<(String, &tollgate::Limits)>); 2] = [
        (PRINCIPAL_SCOPE, keys.collect()),
        (TENANT_SCOPE, teams.collect()),
    ];
    for (scope_name, wanted) in wanted {
        let Some(scope) = limiter.scope(scope_name) else {
            if !wanted.is_empty() {
                tracing::warn!(
                    target: "tollgate::records",
                    scope = scope_name,
                    "records have limits this gateway's limiter cannot keep (a Redis Cluster without redis.hash_tag_scope): they are not enforced"
                );
            }
            continue;
        };
        let before = if fresh {
            Vec::new()
        } else {
            state.applied.remove(scope_name).unwrap_or_default()
        };
        let mut changes: Vec<(String, Option<Quota>)> = Vec::new();
        let mut given = Vec::new();
        for (key, limits) in wanted {
            match limits.quota(&format!("{scope_name}.{key}.limits")) {
                Ok(quota) => {
                    given.push(key.clone());
                    changes.push((key, Some(quota)));
                }
                Err(mistakes) => tracing::warn!(
                    target: "tollgate::records",
                    key = %key,
                    reason = %mistakes[0],
                    "a record's limits cannot be used; its file limits (if any) apply"
                ),
            }
        }
        for key in before.into_iter().filter(|key| !given.contains(key)) {
            let from_file = file_quota(target.file, scope_name, &key);
            changes.push((key, from_file));
        }
        set(limiter, scope, changes);
        state.applied.insert(scope_name, given);
    }
    state.applied_to = Some(target.build);
}

fn set(
    limiter: &Limiter,
    scope: tollgate::ratelimit::Scope,
    changes: Vec<(String, Option<Quota>)>,
) {
    if let Err(error) = limiter.set_quotas(scope, changes) {
        tracing::warn!(target: "tollgate::records", reason = %error, "records' limits not given to the limiter");
    }
}

/// What the configuration file gives `key` in `scope`, when anything.
fn file_quota(
    file: &Switch<tollgate::RateLimitingConfig>,
    scope: &str,
    key: &str,
) -> Option<Quota> {
    let Switch::On(limiting) = file else {
        return None;
    };
    let entries = match scope {
        TENANT_SCOPE => &limiting.tenants,
        _ => &limiting.principals,
    };
    entries.get(key).and_then(|limits| limits.quota(key).ok())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
