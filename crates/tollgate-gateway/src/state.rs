//! [`Gateway`]: what every request reads (the stack, the keys, the settings), swapped whole on a
//! reload.

use std::sync::{
    Arc, RwLock,
    atomic::{AtomicU64, Ordering},
};

use metrics_exporter_prometheus::PrometheusHandle;
use tollgate::{ConfigErrors, Stack};

use crate::{
    config::GatewayConfig,
    keys::{KeyTable, VirtualKey},
    logs::CallLogs,
    records::{QuotaTarget, Records, SpendSink},
    stored_responses::ResponseStore,
    upstream,
};

/// The gateway: a stack built from a [`GatewayConfig`], its keys, and its HTTP routes
/// ([`router`](Self::router)). Clones share everything.
///
/// ```
/// use tollgate_gateway::{Gateway, GatewayConfig, hash_key};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let yaml = format!(r#"
/// providers: {{ local: {{ kind: simulated }} }}
/// roles: {{ default: {{ provider: local, model: sim-small }} }}
/// keys: {{ demo: {{ hash: "{}", tenant: acme }} }}
/// "#, hash_key("tg-demo"));
/// let gateway = Gateway::new(GatewayConfig::from_yaml(&yaml).unwrap()).unwrap();
/// let app = gateway.router(); // an axum Router: serve it, or nest it in your own
/// # drop(app);
/// # }
/// ```
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

struct Shared {
    live: RwLock<Arc<Live>>,
    /// The database's keys and teams, once [`Gateway::open_records`] has read them.
    records: std::sync::OnceLock<Arc<Records>>,
    /// The call log, once [`Gateway::open_records`] has started it (with a `logs` section).
    logs: std::sync::OnceLock<Arc<CallLogs>>,
    /// Stored Responses API answers, once [`Gateway::open_records`] has opened a `database`
    /// section's database.
    responses: std::sync::OnceLock<Arc<ResponseStore>>,
    /// Where every stack built here sends its billed calls: the database's spend ledger.
    spend: Arc<SpendSink>,
    /// A wall clock of its own, for tests: the time it read at start, and when that was.
    wall: Option<(std::time::SystemTime, std::time::Instant)>,
    metrics: Option<PrometheusHandle>,
    /// Request ids made here: a random prefix for the process, then a count.
    id_prefix: u32,
    ids: AtomicU64,
}

/// One configuration's worth of state.
pub(crate) struct Live {
    pub(crate) stack: Stack,
    /// The rate limits the stack was built with (the keys' own under `principals`): what a
    /// record's key or team goes back to when its own limits are taken away.
    pub(crate) stack_limits: tollgate::Switch<tollgate::RateLimitingConfig>,
    pub(crate) keys: KeyTable,
    pub(crate) config: GatewayConfig,
    /// Which build of a configuration this is, counting from 0 in the process.
    pub(crate) build: u64,
    /// The digest of the key that opens `/ui`.
    pub(crate) admin: Option<crate::keys::Digest32>,
    /// The digest of the key `/metrics` and the detailed `/health` require, when they do.
    pub(crate) metrics_key: Option<crate::keys::Digest32>,
    /// Calls refused by a rate limit or a budget, per tenant: the tenants come from the keys,
    /// so the map is bounded by the configuration.
    pub(crate) denials: std::sync::Mutex<std::collections::BTreeMap<Arc<str>, u64>>,
    /// Answers kept for calls with an `Idempotency-Key`, when the section is on: the previous
    /// build's, with its answers and calls under way, while its store is the one asked for.
    pub(crate) idempotency: Option<Arc<crate::idempotency::Idempotency>>,
    /// The `passthrough` section's provider and client.
    pub(crate) passthrough: Option<crate::clients::Passthrough>,
    /// A client per Anthropic provider, for `/v1/messages/count_tokens`.
    pub(crate) counters: crate::clients::Counters,
}

impl Gateway {
    /// The gateway `config` describes (API keys read from the environment variables its
    /// providers name). With Redis in the configuration, call it inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// What cannot be set up: a provider's API key variable that is not set, a cache directory
    /// that cannot be opened, and every mistake [`Stack::from_config`] reports.
    pub fn new(config: GatewayConfig) -> Result<Self, ConfigErrors> {
        Self::with_metrics(config, None)
    }

    /// [`new`](Self::new), serving `/metrics` from `metrics`: the handle of the Prometheus
    /// recorder the process installed. [`serve`](crate::serve) drains its histograms every few
    /// seconds; a server of one's own around [`router`](Self::router) calls the handle's
    /// `run_upkeep` itself, or the recorder keeps every sample until a scrape.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_metrics(
        config: GatewayConfig,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Self, ConfigErrors> {
        Self::make(config, metrics, None)
    }

    /// [`with_metrics`](Self::with_metrics), with calendar budgets counting their days, weeks
    /// and months from `start` as the process's clock advances, instead of from the system's
    /// time: for a test that starts a gateway a minute before a month ends and sees its budgets
    /// reset. (`tollgate serve --wall-clock RFC3339` does this.)
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_wall_clock(
        config: GatewayConfig,
        metrics: Option<PrometheusHandle>,
        start: std::time::SystemTime,
    ) -> Result<Self, ConfigErrors> {
        Self::make(config, metrics, Some((start, std::time::Instant::now())))
    }

    fn make(
        config: GatewayConfig,
        metrics: Option<PrometheusHandle>,
        wall: Option<(std::time::SystemTime, std::time::Instant)>,
    ) -> Result<Self, ConfigErrors> {
        let mut prefix = [0u8; 4];
        // Ids need only differ between processes most of the time; a fixed prefix will do.
        let _ = getrandom::fill(&mut prefix);
        let spend = Arc::new(SpendSink::default());
        Ok(Self {
            shared: Arc::new(Shared {
                live: RwLock::new(Arc::new(Live::build(config, &spend, wall_now(wall), None)?)),
                records: std::sync::OnceLock::new(),
                logs: std::sync::OnceLock::new(),
                responses: std::sync::OnceLock::new(),
                spend,
                wall,
                metrics,
                id_prefix: u32::from_le_bytes(prefix),
                ids: AtomicU64::new(0),
            }),
        })
    }

    /// Replaces the configuration: the new one is built whole first, and only then swapped in,
    /// so a bad one leaves the old serving. Calls in flight finish on the stack they began on.
    ///
    /// In-process rate-limit counts, the cost report and an in-memory cache start over with the
    /// new stack; with Redis they carry on. The listening address is read once, at start.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new); the old configuration stays.
    pub fn reload(&self, config: GatewayConfig) -> Result<(), ConfigErrors> {
        let live = Arc::new(Live::build(
            config,
            &self.shared.spend,
            wall_now(self.shared.wall),
            Some(&self.live()),
        )?);
        *self.shared.live.write().unwrap_or_else(|e| e.into_inner()) = live.clone();
        // The records' limits hold on the new stack at once, from memory, database or not; the
        // periods' spend is read back at the next read of the records.
        if let Some(records) = self.shared.records.get() {
            records.apply_loaded(&quota_target(&live), false);
        }
        Ok(())
    }

    /// Opens the records (keys, teams, the spend ledger and the audit log that `/admin/` and
    /// the live page work on): the `database` section's database, running its migrations, or
    /// without one a SQLite database in memory, which a restart forgets. Reads its keys and
    /// teams, and keeps reading them for as long as the gateway runs, so a key made, changed or
    /// revoked anywhere is served here within half a second; every billed call is added to the
    /// spend ledger from then on. With a `database` section, `POST /v1/responses` stores its
    /// answers there from then on. With a `logs` section, starts the call log: every call from
    /// then on leaves one record in each of its sinks. `tollgate serve` calls it before serving; call it once,
    /// inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// When the database cannot be opened or read at start.
    pub async fn open_records(&self) -> Result<(), tollgate_core::LlmError> {
        let config = self
            .live()
            .config
            .database
            .clone()
            .unwrap_or_else(tollgate_control::DatabaseConfig::in_memory);
        let records = Arc::new(Records::open(&config, &self.shared.spend).await?);
        self.sync_records(&records).await?;
        // Responses are kept only where they outlive the process: not in the in-memory stand-in.
        if !config.is_in_memory() {
            let store = ResponseStore::new(records.database().clone());
            let _ = self.shared.responses.set(Arc::new(store));
        }
        if let Some(logs) = &self.live().config.logs
            && self.shared.logs.get().is_none()
        {
            let started = CallLogs::start(logs, records.database())?;
            let _ = self.shared.logs.set(Arc::new(started));
        }
        if self.shared.records.set(records.clone()).is_ok() {
            tracing::info!(target: "tollgate::records", keys = records.len(), "keys read from the database");
            tokio::spawn(poll(records, self.clone()));
        }
        Ok(())
    }

    /// The records, once read.
    pub(crate) fn records(&self) -> Option<Arc<Records>> {
        self.shared.records.get().cloned()
    }

    /// Stored Responses API answers, with a `database` section once the records are open.
    pub(crate) fn response_store(&self) -> Option<&Arc<ResponseStore>> {
        self.shared.responses.get()
    }

    /// The call log, once started.
    pub(crate) fn call_logs(&self) -> Option<&Arc<CallLogs>> {
        self.shared.logs.get()
    }

    pub(crate) async fn sync_records(
        &self,
        records: &Records,
    ) -> Result<(), tollgate_core::LlmError> {
        let live = self.live();
        records.sync(quota_target(&live)).await
    }

    /// Who the key `presented` is, looked up as a call's key is (the file's keys, then the
    /// records'): its principal (a file key's name, a record key's id) and its tenant (team), or
    /// `None` for a key the gateway does not know. For routes of your own beside the gateway's.
    ///
    /// ```
    /// use tollgate_gateway::{Gateway, GatewayConfig, hash_key};
    ///
    /// let yaml = format!(r#"
    /// providers: {{ local: {{ kind: simulated }} }}
    /// roles: {{ default: {{ provider: local, model: sim-small }} }}
    /// keys: {{ demo: {{ hash: "{}", tenant: acme }} }}
    /// "#, hash_key("tg-demo"));
    /// let gateway = Gateway::new(GatewayConfig::from_yaml(&yaml).unwrap()).unwrap();
    /// let caller = gateway.identify("tg-demo").unwrap();
    /// assert_eq!((&*caller.principal, &*caller.tenant), ("demo", "acme"));
    /// assert!(gateway.identify("tg-nobody").is_none());
    /// ```
    pub fn identify(&self, presented: &str) -> Option<Caller> {
        let key = self.find_key(&self.live(), presented)?;
        Some(Caller {
            principal: key.name.clone(),
            tenant: key.tenant.clone(),
        })
    }

    /// The key `presented` is: the configuration file's, else the database's.
    pub(crate) fn find_key(&self, live: &Live, presented: &str) -> Option<Arc<VirtualKey>> {
        let digest = crate::keys::digest(presented);
        live.keys
            .find_digest(&digest)
            .or_else(|| self.shared.records.get()?.find(&digest))
    }

    /// Writes what the call log, the spend ledger and the keys' last use hold now: on shutdown,
    /// once calls have drained.
    ///
    /// # Errors
    ///
    /// When the database does not answer.
    pub async fn flush_records(&self) -> Result<(), tollgate_core::LlmError> {
        // The spend first: a call log whose sink is slow or dead must not hold up what bills.
        let spend = self.shared.spend.flush().await;
        if let Some(responses) = self.shared.responses.get() {
            let bound = self.live().config.gateway.drain_timeout;
            if tokio::time::timeout(bound, responses.flush())
                .await
                .is_err()
            {
                tracing::warn!(
                    target: "tollgate::responses",
                    "responses being stored were not written within the drain timeout"
                );
            }
        }
        if let Some(logs) = self.shared.logs.get() {
            let bound = self.live().config.gateway.drain_timeout;
            if tokio::time::timeout(bound, logs.flush()).await.is_err() {
                tracing::warn!(
                    target: "tollgate::log",
                    "the call log's sinks did not finish writing within the drain timeout: what they held is lost"
                );
            }
        }
        if let Some(records) = self.shared.records.get() {
            records.flush_used().await?;
        }
        spend
    }

    /// Billed calls the spend ledger had no room for.
    pub(crate) fn ledger_dropped(&self) -> u64 {
        self.shared.spend.dropped()
    }

    /// The stack serving calls now.
    pub fn stack(&self) -> Stack {
        self.live().stack.clone()
    }

    pub(crate) fn live(&self) -> Arc<Live> {
        self.shared
            .live
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn metrics(&self) -> Option<&PrometheusHandle> {
        self.shared.metrics.as_ref()
    }

    /// A new request id.
    pub(crate) fn next_id(&self) -> String {
        let n = self.shared.ids.fetch_add(1, Ordering::Relaxed);
        format!("req_{:08x}{n:08x}", self.shared.id_prefix)
    }
}

/// Who a key is ([`Gateway::identify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Caller {
    /// Its principal in limits, the ledger and logs: a file key's name, a record key's id.
    pub principal: Arc<str>,
    /// The tenant (team) its calls are made for.
    pub tenant: Arc<str>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let live = self.live();
        f.debug_struct("Gateway")
            .field("stack", &live.stack)
            .field("keys", &live.keys.len())
            .finish_non_exhaustive()
    }
}

impl Live {
    fn build(
        config: GatewayConfig,
        spend: &Arc<SpendSink>,
        wall_time: Option<std::time::SystemTime>,
        previous: Option<&Self>,
    ) -> Result<Self, ConfigErrors> {
        let stack_config = config.stack_config();
        let spend = spend.clone();
        let mut builder = Stack::builder(&stack_config)
            .wrap_clients(|_, client| upstream::timed(client))
            .on_billed(move |call| spend.billed(call));
        if let Some(now) = wall_time {
            builder = builder.wall_time(now);
        }
        if let Some(logs) = config.logs.as_ref().filter(|logs| logs.log_bodies) {
            builder = builder.record_bodies(logs.max_body_bytes);
        }
        let stack = builder.build()?;
        let passthrough = crate::clients::Passthrough::build(&config)?;
        let counters = crate::clients::counters(&config)?;
        let idempotency = crate::idempotency::Idempotency::build(
            config.idempotency.get(),
            config.stack.redis.as_ref(),
            previous.and_then(|live| live.idempotency.as_ref()),
        )?;
        let digest = |hash: Option<&String>| {
            hash.map(|hash| crate::keys::parse_hash(hash).expect("checked when read"))
        };
        let admin = digest(config.gateway.admin_key_hash.as_ref());
        let metrics_key = digest(config.gateway.metrics_key_hash.as_ref());
        static BUILDS: AtomicU64 = AtomicU64::new(0);
        Ok(Self {
            build: BUILDS.fetch_add(1, Ordering::Relaxed),
            stack,
            stack_limits: stack_config.rate_limiting,
            keys: config.key_table(),
            config,
            admin,
            metrics_key,
            denials: std::sync::Mutex::default(),
            idempotency,
            passthrough,
            counters,
        })
    }
}

/// The time a gateway's own wall clock reads now, when it has one.
fn wall_now(
    wall: Option<(std::time::SystemTime, std::time::Instant)>,
) -> Option<std::time::SystemTime> {
    wall.map(|(start, at)| start + at.elapsed())
}

/// What the records' quotas are given to on `live`'s stack.
fn quota_target(live: &Live) -> QuotaTarget<'_> {
    QuotaTarget {
        limiter: live.stack.limiter(),
        file: &live.stack_limits,
        build: live.build,
    }
}

/// Keeps `records` in step with the database for as long as the gateway runs: a failed read is
/// logged and tried again at the next poll, while the keys already read keep working.
async fn poll(records: Arc<Records>, gateway: Gateway) {
    let mut failing = false;
    let mut ticks = tokio::time::interval(crate::records::POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let result = match gateway.sync_records(&records).await {
            Ok(()) => records.flush_used().await,
            Err(error) => Err(error),
        };
        match result {
            Ok(()) if failing => {
                failing = false;
                tracing::info!(target: "tollgate::records", "the database answers again");
            }
            Ok(()) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(
                    target: "tollgate::records",
                    error = %error,
                    "the database does not answer: the keys already read keep working"
                );
            }
            Err(_) => {}
        }
    }
}
