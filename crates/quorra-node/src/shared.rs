//! State every connection and the HTTP API share: the store, the settings that CONFIG SET
//! can change at run time, the client registry, counters and metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::RwLock;
use quorra_origin::Origins;
use quorra_ring::NodeId;
use quorra_store::{Clock, RemovalObserver, Store, StoreConfig, Version};

use crate::auth_log::AuthLog;
use crate::clients::{ClientInfo, ClientRegistry};
use crate::cluster_node::ClusterNode;
use crate::config::Config;
use crate::evictions::EvictionFeed;
use crate::hot_cache::HotCache;
use crate::hot_keys::HotKeys;
use crate::log_limiter::LogLimiter;
use crate::lua::Scripts;
use crate::metrics::Metrics;
use crate::notifications::{Notifier, Removal};
use crate::pubsub::PubSub;
use crate::tracking::Tracking;

/// Settings CONFIG SET may change while the server runs.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Client password; `None` = no AUTH needed.
    pub requirepass: Option<String>,
    /// Idle timeout, seconds; 0 = never.
    pub timeout_secs: u64,
    /// Most simultaneous clients.
    pub maxclients: usize,
    /// Refuse non-loopback clients when there is no password.
    pub protected_mode: bool,
}

/// Counters INFO reports, cheap to bump from any connection.
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// Connections accepted since start.
    pub connections_received: AtomicU64,
    /// Connections refused (maxclients, protected mode).
    pub rejected_connections: AtomicU64,
    /// Commands executed (including failed ones), as Redis's `total_commands_processed`.
    pub commands_processed: AtomicU64,
    /// Commands refused before they ran (unknown, wrong arity, NOAUTH, OOM), as Redis's
    /// `rejected_calls`.
    pub rejected_calls: AtomicU64,
    /// Commands that ran and replied with an error, as Redis's `failed_calls`.
    pub failed_calls: AtomicU64,
    /// Bytes read from clients.
    pub net_input_bytes: AtomicU64,
    /// Bytes written to clients.
    pub net_output_bytes: AtomicU64,
    /// Keyspace reads of clients' commands that found their key, wherever they ran.
    pub keyspace_hits: AtomicU64,
    /// Keyspace reads of clients' commands that did not.
    pub keyspace_misses: AtomicU64,
    /// Commands run here for a peer's client (the peer counts them as its own).
    pub peer_commands_processed: AtomicU64,
}

impl ServerCounters {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a node is built from before its cluster machinery, which needs them: the store
/// (with copies, reporting its evictions to a feed) and the metrics.
pub struct NodeParts {
    /// The data.
    pub store: Arc<Store>,
    /// With copies: the store's evictions, waiting to be told to the other replicas.
    pub evictions: Option<Arc<EvictionFeed>>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The namespaces' origins, if any namespace is configured.
    pub origins: Option<Arc<Origins>>,
    /// Keyspace notifications, which the store's removals feed.
    pub notifier: Arc<Notifier>,
    /// The hot-key detector, which the store's accesses feed.
    pub hot_keys: Arc<HotKeys>,
    /// Pub/sub, whose mailboxes also carry client tracking's invalidations.
    pub pubsub: Arc<PubSub>,
    /// Client tracking, which the store's removals feed.
    pub tracking: Arc<Tracking>,
}

/// Where the store's own removals go: evictions to the feed that tells the keys' other
/// replicas (with copies), and both evictions and expirations to the keyspace
/// notifications.
struct Removals {
    evictions: Option<Arc<EvictionFeed>>,
    notifier: Arc<Notifier>,
    pubsub: Arc<PubSub>,
    tracking: Arc<Tracking>,
}

impl Removals {
    /// A tracked key removed: its clients' cached values are no longer valid.
    fn invalidate(&self, key: &[u8]) {
        if !self.tracking.is_idle() {
            let key = Bytes::copy_from_slice(key);
            let nodes = self.tracking.changed(&self.pubsub, [&key], None);
            self.tracking.queue(nodes);
        }
    }
}

impl RemovalObserver for Removals {
    fn on_evict(&self, key: &[u8], version: Version) {
        if let Some(feed) = &self.evictions {
            feed.on_evict(key, version);
        }
        self.notifier.queue_removal(key, Removal::Evicted);
        self.invalidate(key);
    }

    fn on_expire(&self, key: &[u8]) {
        self.notifier.queue_removal(key, Removal::Expired);
        self.invalidate(key);
    }
}

impl NodeParts {
    /// The store and metrics of a node configured by `config`, whose cluster id is
    /// `node_id` (`None` for a single node), reading time from `clock`.
    pub fn new(config: &Config, node_id: Option<&NodeId>, clock: Arc<dyn Clock>) -> NodeParts {
        let replicated = config
            .cluster
            .as_ref()
            .is_some_and(|cluster| cluster.consistency.replicas > 1);
        // With copies, the store's evictions are told to the keys' other replicas.
        let evictions = replicated.then(|| Arc::new(EvictionFeed::default()));
        let store = Store::new(
            StoreConfig {
                shards: config.shards,
                maxmemory: config.maxmemory,
                policy: config.maxmemory_policy,
                max_string_len: config.proto_max_bulk_len,
                node_id: node_id.map_or(0, numeric_node_id),
                // Tombstones only matter when replicas exchange writes; a single node
                // (or a cluster without copies) frees a deleted key's memory at once.
                tombstone_grace_ms: if replicated { TOMBSTONE_GRACE_MS } else { 0 },
            },
            clock,
        );
        let notifier = Arc::new(Notifier::new(config.notify_keyspace_events));
        let hot_keys = Arc::new(HotKeys::new(
            config.hot_key_thresholds,
            config.hot_key_max_pinned,
        ));
        let pubsub = Arc::new(PubSub::new(config.client_output_buffer_limit_pubsub));
        let tracking = Arc::new(Tracking::new(config.tracking_table_max_keys));
        let store = store
            .with_removal_observer(Arc::new(Removals {
                evictions: evictions.clone(),
                notifier: notifier.clone(),
                pubsub: pubsub.clone(),
                tracking: tracking.clone(),
            }))
            .with_observer(hot_keys.clone());
        NodeParts {
            notifier,
            hot_keys,
            pubsub,
            tracking,
            store: Arc::new(store),
            evictions,
            metrics: Arc::new(Metrics::new()),
            origins: (!config.namespaces.is_empty())
                .then(|| Arc::new(Origins::open(config.namespaces.clone()))),
        }
    }
}

/// Everything a node's tasks share. Held in an `Arc`.
pub struct Shared {
    /// The data.
    pub store: Arc<Store>,
    /// The configuration the node started with.
    pub config: Config,
    /// What CONFIG SET can change.
    pub settings: RwLock<RuntimeSettings>,
    /// Connected clients.
    pub clients: ClientRegistry,
    /// INFO counters.
    pub counters: ServerCounters,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Random id of this run, as Redis's `run_id`.
    pub run_id: String,
    /// When the node started, for uptime.
    pub started: Instant,
    /// The RESP address actually bound (the configured port may be 0).
    pub resp_addr: SocketAddr,
    /// Cluster mode: membership, the ring view and peer RPC. `None` for a single node.
    pub cluster: Option<Arc<ClusterNode>>,
    /// The client record of commands that peers run here for their clients.
    pub peer_client: Arc<ClientInfo>,
    /// Failed authentication: counts and the recent failures ACL LOG shows.
    pub auth_log: AuthLog,
    /// Limits the log lines about requests that look like another protocol (HTTP sent
    /// to the RESP port).
    pub cross_protocol_log: LogLimiter,
    /// With copies: the store's evictions, waiting to be told to the other replicas.
    pub evictions: Option<Arc<EvictionFeed>>,
    /// The namespaces' origins, if any namespace is configured ([`crate::read_through`]).
    pub origins: Option<Arc<Origins>>,
    /// Lua scripts: the cache, and the one running now.
    pub scripts: Arc<Scripts>,
    /// Pub/sub subscriptions, and the relay of messages to the other nodes.
    pub pubsub: Arc<PubSub>,
    /// Client tracking: who cached which keys ([`crate::tracking`]).
    pub tracking: Arc<Tracking>,
    /// Keyspace notifications (`notify-keyspace-events`).
    pub notifier: Arc<Notifier>,
    /// The latest health sample ([`crate::cluster_tasks::measure`]).
    pub health: parking_lot::Mutex<crate::health::Sample>,
    /// Which keys take an outsized share of this node's load.
    pub hot_keys: Arc<HotKeys>,
    /// This node's copies of the cluster's hot keys.
    pub hot_cache: HotCache,
    /// Cancelled by `QUORRA LEAVE`: the process then leaves its cluster and stops, as
    /// on SIGTERM.
    pub leave_requested: tokio_util::sync::CancellationToken,
}

impl Shared {
    /// The shared state of a node listening on `resp_addr`, built from `parts`, in
    /// cluster mode if `cluster` is given.
    pub fn new(
        config: Config,
        resp_addr: SocketAddr,
        parts: NodeParts,
        cluster: Option<Arc<ClusterNode>>,
    ) -> Self {
        let settings = RuntimeSettings {
            requirepass: config.requirepass.clone(),
            timeout_secs: config.timeout.map_or(0, |timeout| timeout.as_secs()),
            maxclients: config.maxclients,
            protected_mode: config.protected_mode,
        };
        let hot_cache = match &cluster {
            // On a single node every key is local already.
            None => HotCache::new(0, Duration::ZERO),
            Some(node) => HotCache::new(config.hot_cache_max_memory, node.timeout),
        };
        let clients = ClientRegistry::default();
        let peer_client = clients.unlisted(resp_addr, resp_addr);
        parts.metrics.maxmemory.set(parts.store.maxmemory() as i64);
        Shared {
            store: parts.store,
            cluster,
            peer_client,
            settings: RwLock::new(settings),
            clients,
            counters: ServerCounters::default(),
            metrics: parts.metrics,
            run_id: random_run_id(),
            started: Instant::now(),
            resp_addr,
            auth_log: AuthLog::default(),
            cross_protocol_log: LogLimiter::new(10_000),
            evictions: parts.evictions,
            origins: parts.origins,
            scripts: Arc::new(Scripts::new(
                config.max_scripts,
                config.busy_reply_threshold,
                config.lua_max_memory,
            )),
            pubsub: parts.pubsub,
            tracking: parts.tracking,
            notifier: parts.notifier,
            health: parking_lot::Mutex::default(),
            hot_keys: parts.hot_keys,
            // On a single node every key is local already.
            hot_cache,
            leave_requested: tokio_util::sync::CancellationToken::new(),
            config,
        }
    }
}

/// 40 hex characters, as Redis's run id; unique enough to tell restarts apart.
fn random_run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    let mut state = nanos ^ u64::from(std::process::id()).rotate_left(32);
    (0..5)
        .map(|_| {
            // splitmix64: a well-mixed sequence from one seed.
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            format!("{:08x}", (z ^ (z >> 31)) as u32)
        })
        .collect()
}

/// How long a replicated delete keeps its tombstone, ms: long enough for hints, read
/// repair and a partition of up to this length to carry the delete to every replica
/// instead of the old value coming back.
pub const TOMBSTONE_GRACE_MS: u64 = 10 * 60 * 1000;

/// The numeric id a node stamps into its versions (the tie-break between two writes in
/// the same millisecond): xxh3 of its id, so every node derives the same number.
pub fn numeric_node_id(id: &NodeId) -> u64 {
    quorra_ring::key_hash(id.as_str().as_bytes())
}
