//! Prometheus metrics, served at `/metrics` on the admin port.
//!
//! Per-command counters and latency histograms are created once per command at start-up
//! and kept in a vector indexed like the command table, so recording a command is a few
//! atomic operations with no label lookup. Figures counted elsewhere (the accounting's
//! keyspace hits and misses; the store's evictions, expirations, memory, keys) are
//! copied in when `/metrics` is scraped rather than counted twice on the hot path.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `quorra_commands_total` | counter | `command`, `outcome` = ok / error / rejected |
//! | `quorra_command_duration_seconds` | histogram | `command` |
//! | `quorra_keyspace_hits_total`, `quorra_keyspace_misses_total` | counter | |
//! | `quorra_evicted_keys_total`, `quorra_expired_keys_total` | counter | |
//! | `quorra_used_memory_bytes`, `quorra_maxmemory_bytes` | gauge | |
//! | `quorra_keys` | gauge | |
//! | `quorra_connected_clients` | gauge | |
//! | `quorra_cpu_seconds_total`, `quorra_resident_memory_bytes` | counter, gauge | the process's CPU time and RSS |
//! | `quorra_degraded` | gauge | 1 while the node is degraded ([`crate::health`]) |
//! | `quorra_connections_total` | counter | |
//! | `quorra_auth_failures_total` | counter | |
//! | `quorra_evicted_clients_total`, `quorra_client_buffers_bytes` | counter, gauge | |
//! | `quorra_rpc_calls_total` | counter | `peer` (node id), `outcome` = ok / error |
//! | `quorra_rpc_duration_seconds` | histogram | `peer` |
//! | `quorra_cluster_members` | gauge | `state` = joining / up / leaving / down |
//! | `quorra_ring_changes_total`, `quorra_ring_nodes` | counter, gauge | |
//! | `quorra_replication_total` | counter | `event` = hint_stored / hint_replayed / hint_dropped / read_repair / quorum_failure / anti_entropy_key / anti_entropy_bucket / delta_sent / delta_resent_whole |
//! | `quorra_hints_pending` | gauge | |
//! | `quorra_hot_keys` | gauge | keys this node finds hot ([`crate::hot_keys`]) |
//! | `quorra_hot_key_transitions_total` | counter | `event` = turned_hot / cooled |
//! | `quorra_hot_cache_hits_total`, `quorra_hot_cache_bytes` | counter, gauge | GETs answered from hot-key copies ([`crate::hot_cache`]); the copies' accounted bytes |
//! | `quorra_gossip_packets_dropped_total` | counter | `reason` = forged / replayed / stale / malformed |
//! | `quorra_origin_loads_total`, `quorra_origin_load_errors_total`, `quorra_origin_misses_total` | counter | `namespace` |
//! | `quorra_origin_load_duration_seconds` | histogram | `namespace` |
//! | `quorra_singleflight_dedup_total` | counter | `namespace`: misses that waited for a load already running |
//! | `quorra_negative_cache_hits_total` | counter | `namespace` |
//! | `quorra_stale_served_total`, `quorra_origin_refreshes_total` | counter | `namespace`: reads of values in their stale window at the key's primary; background refreshes |
//! | `quorra_origin_up` | gauge | `origin`: 1 answering, 0 down or not checked yet |
//! | `quorra_origin_writes_total`, `quorra_origin_write_errors_total` | counter | `namespace`: write-through and write-behind writes to the origin |
//! | `quorra_write_behind_pending`, `quorra_write_behind_lag_seconds` | gauge | `namespace`: keys waiting for the origin on this node; age of the oldest |

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use parking_lot::Mutex;
use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use quorra_cluster::gossip_auth::GossipAuthStats;
use quorra_cluster::membership::{ClusterView, MemberState};
use quorra_cluster::replication::ReplicationStats;

use crate::hot_keys::Transitions;

use quorra_origin::Origins;
use quorra_origin::origins::{Health, NamespaceStats};
use quorra_resp::command::{COMMANDS, CommandId};
use quorra_ring::NodeId;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandOutcome {
    command: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandName {
    command: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerOutcome {
    peer: PeerLabel,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Peer {
    peer: PeerLabel,
}

/// A node id as a label value: a reference count, so that recording a call to a peer
/// allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct PeerLabel(NodeId);

impl EncodeLabelValue for PeerLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.0.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Event {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabel {
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabel {
    origin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: &'static str,
}

/// Figures the node counts outside the metrics, copied in at each scrape.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeFigures {
    /// GETs answered from a hot-key copy ([`crate::hot_cache`]).
    pub hot_cache_hits: u64,
    /// Accounted bytes of hot-key copies.
    pub hot_cache_bytes: u64,
    /// Keyspace hits of clients' commands.
    pub keyspace_hits: u64,
    /// Keyspace misses of clients' commands.
    pub keyspace_misses: u64,
    /// Wrong passwords since start.
    pub auth_failures: u64,
    /// Clients closed for client memory since start.
    pub evicted: u64,
    /// Bytes all clients' buffers hold now.
    pub buffered: u64,
    /// CPU seconds the process has used (user and system).
    pub cpu_seconds: f64,
    /// The process's resident set size, bytes.
    pub rss_bytes: u64,
    /// Whether the node is degraded ([`crate::health`]).
    pub degraded: bool,
}

/// Cluster figures copied in at each scrape, in cluster mode.
#[derive(Clone, Copy)]
pub struct ClusterFigures<'a> {
    /// The node's current view.
    pub view: &'a ClusterView,
    /// What replication did.
    pub replication: &'a ReplicationStats,
    /// Writes kept for unreachable replicas.
    pub hints_pending: usize,
    /// Gossip packets accepted and dropped.
    pub gossip: &'a GossipAuthStats,
}

/// Handles for one command, cloned out of the families at start-up.
struct CommandMetrics {
    ok: Counter,
    error: Counter,
    rejected: Counter,
    latency: Histogram,
}

/// Origin load buckets: 100 µs doubling up to ~6.5 s (past the longest sensible
/// origin timeout).
fn origin_load_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 17))
}

/// Latency buckets: 10 µs doubling up to ~0.33 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 16))
}

/// The `quantile` (0 to 1) of the command latencies counted between two readings of
/// [`Metrics::latency_buckets`], in seconds, interpolated within its bucket as
/// Prometheus's `histogram_quantile` does; `None` when no command ran in between.
pub fn latency_quantile(before: &[(f64, u64)], after: &[(f64, u64)], quantile: f64) -> Option<f64> {
    let counted = |bound: f64| {
        before
            .iter()
            .find(|(known, _)| *known == bound)
            .map_or(0, |(_, count)| *count)
    };
    let deltas: Vec<(f64, u64)> = after
        .iter()
        .map(|&(bound, count)| (bound, count.saturating_sub(counted(bound))))
        .collect();
    let total = deltas.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = quantile * total as f64;
    let (mut lower, mut below) = (0.0, 0);
    for (upper, count) in deltas {
        if count as f64 >= rank {
            if upper.is_infinite() {
                return Some(lower);
            }
            let share = (rank - below as f64) / (count - below).max(1) as f64;
            return Some(lower + (upper - lower) * share);
        }
        (lower, below) = (upper, count);
    }
    Some(lower)
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    /// The command latency family alone, for [`Metrics::latency_buckets`].
    latencies: Registry,
    per_command: Vec<CommandMetrics>,
    hits: Counter,
    misses: Counter,
    evictions: Counter,
    expirations: Counter,
    /// Used bytes (store accounting).
    pub used_memory: Gauge,
    /// `maxmemory`.
    pub maxmemory: Gauge,
    keys: Gauge,
    cpu_seconds: Counter<f64, AtomicU64>,
    resident_memory: Gauge,
    degraded: Gauge,
    /// Connected clients.
    pub connected_clients: Gauge,
    /// Connections accepted.
    pub connections: Counter,
    auth_failures: Counter,
    evicted_clients: Counter,
    client_buffers: Gauge,
    rpc_calls: Family<PeerOutcome, Counter>,
    rpc_durations: Family<Peer, Histogram>,
    members: Family<State, Gauge>,
    ring_changes: Counter,
    ring_nodes: Gauge,
    replication: Family<Event, Counter>,
    gossip_dropped: Family<Reason, Counter>,
    hints_pending: Gauge,
    hot_keys: Gauge,
    hot_key_transitions: Family<Event, Counter>,
    hot_cache_hits: Counter,
    hot_cache_bytes: Gauge,
    origin_loads: Family<NamespaceLabel, Counter>,
    origin_load_errors: Family<NamespaceLabel, Counter>,
    origin_misses: Family<NamespaceLabel, Counter>,
    origin_load_durations: Family<NamespaceLabel, Histogram>,
    singleflight_dedup: Family<NamespaceLabel, Counter>,
    negative_hits: Family<NamespaceLabel, Counter>,
    stale_served: Family<NamespaceLabel, Counter>,
    refreshes: Family<NamespaceLabel, Counter>,
    origin_writes: Family<NamespaceLabel, Counter>,
    origin_write_errors: Family<NamespaceLabel, Counter>,
    write_behind_pending: Family<NamespaceLabel, Gauge>,
    write_behind_lag: Family<NamespaceLabel, Gauge<f64, AtomicU64>>,
    origin_up: Family<OriginLabel, Gauge>,
    /// Serialises scrapes, which bring the copied counters up to date.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("quorra");
        let commands = Family::<CommandOutcome, Counter>::default();
        registry.register("commands", "Commands by name and outcome", commands.clone());
        let durations = Family::<CommandName, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "command_duration_seconds",
            "Time to execute a command, excluding network I/O",
            durations.clone(),
        );
        let mut latencies = Registry::default();
        latencies.register("latency", "", durations.clone());
        let per_command = COMMANDS
            .iter()
            .map(|spec| {
                let counter = |outcome| {
                    commands
                        .get_or_create(&CommandOutcome {
                            command: spec.name,
                            outcome,
                        })
                        .clone()
                };
                CommandMetrics {
                    ok: counter("ok"),
                    error: counter("error"),
                    rejected: counter("rejected"),
                    latency: durations
                        .get_or_create(&CommandName { command: spec.name })
                        .clone(),
                }
            })
            .collect();
        let metrics = Metrics {
            per_command,
            hits: Counter::default(),
            misses: Counter::default(),
            evictions: Counter::default(),
            expirations: Counter::default(),
            used_memory: Gauge::default(),
            maxmemory: Gauge::default(),
            keys: Gauge::default(),
            cpu_seconds: Counter::default(),
            resident_memory: Gauge::default(),
            degraded: Gauge::default(),
            connected_clients: Gauge::default(),
            connections: Counter::default(),
            auth_failures: Counter::default(),
            evicted_clients: Counter::default(),
            client_buffers: Gauge::default(),
            rpc_calls: Family::default(),
            rpc_durations: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            members: Family::default(),
            ring_changes: Counter::default(),
            ring_nodes: Gauge::default(),
            replication: Family::default(),
            gossip_dropped: Family::default(),
            hints_pending: Gauge::default(),
            hot_keys: Gauge::default(),
            hot_key_transitions: Family::default(),
            hot_cache_hits: Counter::default(),
            hot_cache_bytes: Gauge::default(),
            origin_loads: Family::default(),
            origin_load_errors: Family::default(),
            origin_misses: Family::default(),
            origin_load_durations: Family::new_with_constructor(
                origin_load_histogram as fn() -> Histogram,
            ),
            singleflight_dedup: Family::default(),
            negative_hits: Family::default(),
            stale_served: Family::default(),
            refreshes: Family::default(),
            origin_writes: Family::default(),
            origin_write_errors: Family::default(),
            write_behind_pending: Family::default(),
            write_behind_lag: Family::default(),
            origin_up: Family::default(),
            scrape: Mutex::new(()),
            registry,
            latencies,
        };
        let mut metrics = metrics;
        let registry = &mut metrics.registry;
        registry.register(
            "keyspace_hits",
            "Reads that found their key",
            metrics.hits.clone(),
        );
        registry.register(
            "keyspace_misses",
            "Reads that found no key",
            metrics.misses.clone(),
        );
        registry.register(
            "evicted_keys",
            "Keys evicted to stay under maxmemory",
            metrics.evictions.clone(),
        );
        registry.register(
            "expired_keys",
            "Keys removed because their TTL passed",
            metrics.expirations.clone(),
        );
        registry.register(
            "used_memory_bytes",
            "Accounted bytes of data",
            metrics.used_memory.clone(),
        );
        registry.register(
            "maxmemory_bytes",
            "Memory limit for data, 0 = unlimited",
            metrics.maxmemory.clone(),
        );
        registry.register("keys", "Keys stored", metrics.keys.clone());
        registry.register(
            "connected_clients",
            "Client connections open",
            metrics.connected_clients.clone(),
        );
        registry.register(
            "connections",
            "Client connections accepted",
            metrics.connections.clone(),
        );
        registry.register(
            "auth_failures",
            "Wrong passwords given to AUTH or HELLO",
            metrics.auth_failures.clone(),
        );
        registry.register(
            "evicted_clients",
            "Clients closed because all clients' buffers passed maxmemory-clients",
            metrics.evicted_clients.clone(),
        );
        registry.register(
            "client_buffers_bytes",
            "Bytes all clients' buffers hold",
            metrics.client_buffers.clone(),
        );
        registry.register(
            "rpc_calls",
            "Calls to other nodes by peer and outcome",
            metrics.rpc_calls.clone(),
        );
        registry.register(
            "rpc_duration_seconds",
            "Time from sending a call to another node to its answer",
            metrics.rpc_durations.clone(),
        );
        registry.register(
            "cpu_seconds",
            "CPU time the process has used, user and system",
            metrics.cpu_seconds.clone(),
        );
        registry.register(
            "resident_memory_bytes",
            "Resident set size of the process",
            metrics.resident_memory.clone(),
        );
        registry.register(
            "degraded",
            "1 while the node is degraded (memory or CPU above its threshold), else 0",
            metrics.degraded.clone(),
        );
        registry.register(
            "cluster_members",
            "Known cluster members by state",
            metrics.members.clone(),
        );
        registry.register(
            "ring_changes",
            "Times the ring changed since start",
            metrics.ring_changes.clone(),
        );
        registry.register(
            "ring_nodes",
            "Nodes in the ring",
            metrics.ring_nodes.clone(),
        );
        registry.register(
            "replication",
            "What replication did: hints stored, replayed and dropped, read repairs, quorum failures, anti-entropy, deltas sent and deltas sent again whole",
            metrics.replication.clone(),
        );
        registry.register(
            "gossip_packets_dropped",
            "Gossip packets dropped: without a valid tag under the cluster secret, replayed, outside the replay window, or malformed",
            metrics.gossip_dropped.clone(),
        );
        registry.register(
            "hints_pending",
            "Writes kept for unreachable replicas",
            metrics.hints_pending.clone(),
        );
        registry.register(
            "hot_keys",
            "Keys this node finds hot: over both hot-key thresholds in the last window",
            metrics.hot_keys.clone(),
        );
        registry.register(
            "hot_key_transitions",
            "Keys that turned hot, and hot keys that cooled down, on this node",
            metrics.hot_key_transitions.clone(),
        );
        registry.register(
            "hot_cache_hits",
            "GETs answered from this node's copies of the cluster's hot keys",
            metrics.hot_cache_hits.clone(),
        );
        registry.register(
            "hot_cache_bytes",
            "Accounted bytes of this node's copies of the cluster's hot keys",
            metrics.hot_cache_bytes.clone(),
        );
        registry.register(
            "origin_loads",
            "Loads from a namespace's origin",
            metrics.origin_loads.clone(),
        );
        registry.register(
            "origin_load_errors",
            "Loads that failed or timed out",
            metrics.origin_load_errors.clone(),
        );
        registry.register(
            "origin_misses",
            "Loads that found no row",
            metrics.origin_misses.clone(),
        );
        registry.register(
            "origin_load_duration_seconds",
            "Time of a load from the origin",
            metrics.origin_load_durations.clone(),
        );
        registry.register(
            "singleflight_dedup",
            "Misses that waited for a load already running instead of starting one",
            metrics.singleflight_dedup.clone(),
        );
        registry.register(
            "negative_cache_hits",
            "Misses answered from the negative cache without a load",
            metrics.negative_hits.clone(),
        );
        registry.register(
            "stale_served",
            "Reads at the key's primary that found a value in its stale window",
            metrics.stale_served.clone(),
        );
        registry.register(
            "origin_refreshes",
            "Background reloads of values in their stale window",
            metrics.refreshes.clone(),
        );
        registry.register(
            "origin_writes",
            "Writes to the origin by write-through and write-behind",
            metrics.origin_writes.clone(),
        );
        registry.register(
            "origin_write_errors",
            "Writes to the origin that failed or timed out",
            metrics.origin_write_errors.clone(),
        );
        registry.register(
            "write_behind_pending",
            "Keys whose writes wait for the origin on this node",
            metrics.write_behind_pending.clone(),
        );
        registry.register(
            "write_behind_lag_seconds",
            "Age of the oldest write waiting for the origin on this node",
            metrics.write_behind_lag.clone(),
        );
        registry.register(
            "origin_up",
            "1 if the origin answered its last check or load, 0 otherwise",
            metrics.origin_up.clone(),
        );
        metrics
    }

    /// Records a call to the node `peer`.
    pub fn rpc_done(&self, peer: &NodeId, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        let peer = PeerLabel(peer.clone());
        self.rpc_calls
            .get_or_create(&PeerOutcome {
                peer: peer.clone(),
                outcome,
            })
            .inc();
        self.rpc_durations
            .get_or_create(&Peer { peer })
            .observe(took.as_secs_f64());
    }

    /// Records a load from the origin of namespace `namespace` that took `took`.
    pub fn origin_load(&self, namespace: &str, took: Duration) {
        self.origin_load_durations
            .get_or_create(&NamespaceLabel {
                namespace: namespace.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records a command that ran.
    pub fn command_done(&self, id: CommandId, ok: bool, took: Duration) {
        let command = &self.per_command[id.index()];
        if ok { &command.ok } else { &command.error }.inc();
        command.latency.observe(took.as_secs_f64());
    }

    /// The command latency histogram summed over every command: each bucket's upper
    /// bound in seconds with its cumulative count, `+Inf` last. prometheus-client keeps
    /// bucket counts private, so they are read back from the family's own exposition
    /// (about 1,700 lines, once per stats period).
    pub fn latency_buckets(&self) -> Vec<(f64, u64)> {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.latencies).is_err() {
            return Vec::new();
        }
        let mut buckets: Vec<(f64, u64)> = Vec::new();
        for line in text.lines().filter(|line| line.contains("_bucket{")) {
            let bound = line
                .split("le=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .and_then(|le| match le {
                    "+Inf" => Some(f64::INFINITY),
                    le => le.parse().ok(),
                });
            let count = line.rsplit(' ').next().and_then(|count| count.parse().ok());
            let (Some(bound), Some(count)) = (bound, count) else {
                continue;
            };
            match buckets.iter_mut().find(|(known, _)| *known == bound) {
                Some(bucket) => bucket.1 += count,
                None => buckets.push((bound, count)),
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }

    /// Records the end of a hot-key window: what changed, and how many keys are hot.
    pub fn hot_key_window_ended(&self, transitions: &Transitions, hot_now: usize) {
        for (event, keys) in [
            ("turned_hot", &transitions.turned_hot),
            ("cooled", &transitions.cooled),
        ] {
            self.hot_key_transitions
                .get_or_create(&Event { event })
                .inc_by(keys.len() as u64);
        }
        self.hot_keys.set(hot_now as i64);
    }

    /// Records a command refused before it ran (arity, NOAUTH).
    pub fn command_rejected(&self, id: CommandId) {
        self.per_command[id.index()].rejected.inc();
    }

    /// The text exposition, after copying in the store's figures, the node's, the
    /// namespaces' and, in cluster mode, the view's.
    pub fn render(
        &self,
        store: &quorra_store::Store,
        figures: NodeFigures,
        origins: Option<&Origins>,
        cluster: Option<ClusterFigures<'_>>,
    ) -> String {
        let _scrape = self.scrape.lock();
        let stats = store.stats();
        let catch_up = |counter: &Counter, value: u64| {
            counter.inc_by(value.saturating_sub(counter.get()));
        };
        catch_up(&self.hits, figures.keyspace_hits);
        catch_up(&self.misses, figures.keyspace_misses);
        catch_up(&self.evictions, stats.total.evictions);
        catch_up(&self.expirations, stats.total.expirations);
        self.used_memory.set(store.used_memory() as i64);
        self.maxmemory.set(store.maxmemory() as i64);
        self.keys.set(stats.total.entries as i64);
        catch_up(&self.auth_failures, figures.auth_failures);
        catch_up(&self.evicted_clients, figures.evicted);
        self.client_buffers.set(figures.buffered as i64);
        self.cpu_seconds
            .inc_by((figures.cpu_seconds - self.cpu_seconds.get()).max(0.0));
        self.resident_memory.set(figures.rss_bytes as i64);
        self.degraded.set(i64::from(figures.degraded));
        catch_up(&self.hot_cache_hits, figures.hot_cache_hits);
        self.hot_cache_bytes.set(figures.hot_cache_bytes as i64);
        if let Some(origins) = origins {
            for (index, namespace) in origins.catalog().namespaces().iter().enumerate() {
                let stats = origins.stats(index);
                let label = NamespaceLabel {
                    namespace: namespace.name.clone(),
                };
                for (family, counter) in [
                    (&self.origin_loads, &stats.loads),
                    (&self.origin_load_errors, &stats.load_errors),
                    (&self.origin_misses, &stats.origin_misses),
                    (&self.singleflight_dedup, &stats.singleflight_dedup),
                    (&self.negative_hits, &stats.negative_hits),
                    (&self.stale_served, &stats.stale_served),
                    (&self.refreshes, &stats.refreshes),
                    (&self.origin_writes, &stats.origin_writes),
                    (&self.origin_write_errors, &stats.origin_write_errors),
                ] {
                    catch_up(&family.get_or_create(&label), NamespaceStats::get(counter));
                }
                if let Some(queue) = origins.write_behind(index) {
                    let lag_ms = queue.lag_ms(store.now_ms());
                    self.write_behind_pending
                        .get_or_create(&label)
                        .set(queue.depth() as i64);
                    self.write_behind_lag
                        .get_or_create(&label)
                        .set(lag_ms as f64 / 1000.0);
                }
            }
            for (origin, health) in origins.health() {
                let label = OriginLabel {
                    origin: origin.to_owned(),
                };
                self.origin_up
                    .get_or_create(&label)
                    .set(i64::from(health == Health::Up));
            }
        }
        if let Some(cluster) = cluster {
            let (view, stats) = (cluster.view, cluster.replication);
            let load = |counter: &std::sync::atomic::AtomicU64| {
                counter.load(std::sync::atomic::Ordering::Relaxed)
            };
            for (event, value) in [
                ("hint_stored", load(&stats.hints_stored)),
                ("hint_replayed", load(&stats.hints_replayed)),
                ("hint_dropped", load(&stats.hints_dropped)),
                ("read_repair", load(&stats.read_repairs)),
                ("quorum_failure", load(&stats.quorum_failures)),
                ("anti_entropy_bucket", load(&stats.anti_entropy_buckets)),
                ("anti_entropy_key", load(&stats.anti_entropy_keys)),
                ("delta_sent", load(&stats.deltas_sent)),
                ("delta_resent_whole", load(&stats.deltas_resent_whole)),
            ] {
                catch_up(&self.replication.get_or_create(&Event { event }), value);
            }
            self.hints_pending.set(cluster.hints_pending as i64);
            let gossip = cluster.gossip;
            for (reason, value) in [
                ("forged", load(&gossip.forged)),
                ("replayed", load(&gossip.replayed)),
                ("stale", load(&gossip.stale)),
                ("malformed", load(&gossip.malformed)),
            ] {
                catch_up(
                    &self.gossip_dropped.get_or_create(&Reason { reason }),
                    value,
                );
            }
            catch_up(&self.ring_changes, view.ring_version);
            self.ring_nodes.set(view.ring.len() as i64);
            for state in [
                MemberState::Joining,
                MemberState::Up,
                MemberState::Leaving,
                MemberState::Down,
            ] {
                let count = view.members.iter().filter(|m| m.state == state).count();
                self.members
                    .get_or_create(&State {
                        state: state.as_str(),
                    })
                    .set(count as i64);
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}
