//! [`Gateway`]: what every request reads (the stack, the keys, the settings), swapped whole on a
//! reload.

use std::sync::{
    Arc, RwLock,
    atomic::{AtomicU64, Ordering},
};

use metrics_exporter_prometheus::PrometheusHandle;
use tollgate::{ConfigErrors, Stack};

use crate::{config::GatewayConfig, keys::KeyTable, upstream};

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
    metrics: Option<PrometheusHandle>,
    /// Request ids made here: a random prefix for the process, then a count.
    id_prefix: u32,
    ids: AtomicU64,
}

/// One configuration's worth of state.
pub(crate) struct Live {
    pub(crate) stack: Stack,
    pub(crate) keys: KeyTable,
    pub(crate) config: GatewayConfig,
    /// The digest of the key that opens `/ui`.
    pub(crate) admin: Option<crate::keys::Digest32>,
    /// The digest of the key `/metrics` and the detailed `/health` require, when they do.
    pub(crate) metrics_key: Option<crate::keys::Digest32>,
    /// Calls refused by a rate limit or a budget, per tenant: the tenants come from the keys,
    /// so the map is bounded by the configuration.
    pub(crate) denials: std::sync::Mutex<std::collections::BTreeMap<Arc<str>, u64>>,
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
    /// recorder the process installed.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_metrics(
        config: GatewayConfig,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Self, ConfigErrors> {
        let mut prefix = [0u8; 4];
        // Ids need only differ between processes most of the time; a fixed prefix will do.
        let _ = getrandom::fill(&mut prefix);
        Ok(Self {
            shared: Arc::new(Shared {
                live: RwLock::new(Arc::new(Live::build(config)?)),
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
        let live = Arc::new(Live::build(config)?);
        *self.shared.live.write().unwrap_or_else(|e| e.into_inner()) = live;
        Ok(())
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
    fn build(config: GatewayConfig) -> Result<Self, ConfigErrors> {
        let stack_config = config.stack_config();
        let stack = Stack::builder(&stack_config)
            .wrap_clients(|_, client| upstream::timed(client))
            .build()?;
        let digest = |hash: Option<&String>| {
            hash.map(|hash| crate::keys::parse_hash(hash).expect("checked when read"))
        };
        let admin = digest(config.gateway.admin_key_hash.as_ref());
        let metrics_key = digest(config.gateway.metrics_key_hash.as_ref());
        Ok(Self {
            stack,
            keys: config.key_table(),
            config,
            admin,
            metrics_key,
            denials: std::sync::Mutex::default(),
        })
    }
}
