//! A node's background tasks: anti-entropy passes, measuring the node's health and
//! publishing its figures in gossip, delivering hints to replicas that came back,
//! marking the node `up` once it has joined, and raising the keyspace events of keys
//! the store expired or evicted. The server spawns them in cluster mode (measuring and
//! raising also on a single node); each runs until its stop token is cancelled.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use quorra_cluster::antientropy::{self, BucketEntry};
use quorra_cluster::membership::{ClusterView, Degraded, MemberState, MemberStats};
use quorra_cluster::message::{Request, Response};
use quorra_cluster::rpc::BoxFuture;
use quorra_ring::NodeId;
use quorra_store::{Version, VersionedEntry};
use tokio_util::sync::CancellationToken;

use crate::cluster_node::ClusterNode;
use crate::executor::{Cx, announce_prefixes, invalidate_at, read_following};
use crate::health;
use crate::hot_cache::REFRESH_INTERVAL;
use crate::hot_keys;
use crate::shared::Shared;

/// How often a node measures its health and rates and publishes them in gossip: the
/// dashboard refreshes about once a second.
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// How often hints for returned replicas are replayed.
pub const HINT_REPLAY_INTERVAL: Duration = Duration::from_secs(1);

/// The other node of an anti-entropy exchange, reached through the peer client.
struct AntiEntropyPeer<'a> {
    node: &'a ClusterNode,
    peer: NodeId,
    copies: u32,
}

impl AntiEntropyPeer<'_> {
    fn call(&self, request: Request) -> BoxFuture<Result<Response, String>> {
        let view = self.node.view();
        let call = self.node.peers.call(&view, &self.peer, &request);
        Box::pin(async move { call.await.map_err(|error| error.to_string()) })
    }
}

impl antientropy::Peer for AntiEntropyPeer<'_> {
    fn digest(&self) -> BoxFuture<Result<Vec<u64>, String>> {
        let call = self.call(Request::Digest {
            copies: self.copies,
        });
        Box::pin(async move {
            match call.await? {
                Response::Digest(digest) => Ok(digest),
                other => Err(format!("unexpected answer {other:?}")),
            }
        })
    }

    fn bucket_versions(&self, buckets: Vec<usize>) -> BoxFuture<Result<Vec<BucketEntry>, String>> {
        let call = self.call(Request::BucketVersions {
            copies: self.copies,
            buckets: buckets.into_iter().map(|bucket| bucket as u32).collect(),
        });
        Box::pin(async move {
            match call.await? {
                Response::Versions(versions) => Ok(versions
                    .into_iter()
                    .map(|(bucket, key, hlc, node)| (bucket as usize, key, Version { hlc, node }))
                    .collect()),
                other => Err(format!("unexpected answer {other:?}")),
            }
        })
    }

    fn read(&self, keys: Vec<Bytes>) -> BoxFuture<Result<Vec<Option<VersionedEntry>>, String>> {
        // Replication's own read: it must not promote what it compares.
        let read = self
            .node
            .replicator
            .replicas()
            .read(&self.peer, keys, false);
        Box::pin(async move { read.await.map_err(|error| error.to_string()) })
    }

    fn apply(&self, entries: Vec<(Bytes, VersionedEntry)>) -> BoxFuture<Result<usize, String>> {
        let apply = self
            .node
            .replicator
            .replicas()
            .apply(&self.peer, entries, false);
        Box::pin(async move {
            let outcomes = apply.await.map_err(|error| error.to_string())?;
            // A refusal (the peer evicted the key for memory, or is out of memory) is
            // not an error of the exchange: that entry is simply not copied.
            Ok(outcomes.iter().filter(|outcome| outcome.is_ok()).count())
        })
    }
}

/// One anti-entropy exchange with `peer` under `view`, for keys kept in `copies` copies:
/// the keys that differ go whichever way is newer.
pub(crate) async fn sync_with_peer(
    shared: &Shared,
    node: &ClusterNode,
    view: &ClusterView,
    peer: &NodeId,
    copies: usize,
) -> Result<antientropy::SyncReport, String> {
    let remote = AntiEntropyPeer {
        node,
        peer: peer.clone(),
        copies: copies as u32,
    };
    antientropy::sync_with(&shared.store, view, peer, &remote, copies).await
}

/// Runs an anti-entropy pass with every serving peer whose id is above this node's
/// (one side of each pair starts the exchange) every `interval`, until `stop`; sooner
/// ([`antientropy::BACKLOG_DELAY`]) after a pass that stopped at its key budget or
/// failed, and after a node joined the ring, when there is most to repair.
pub async fn anti_entropy(
    shared: Arc<Shared>,
    node: Arc<ClusterNode>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut views = node.subscribe();
    let serving_count = |view: &ClusterView| view.serving().count();
    let mut serving = serving_count(&views.borrow());
    let mut next = tokio::time::Instant::now() + interval;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            changed = views.changed() => {
                if changed.is_err() {
                    return;
                }
                // A node joined or came back: it has the most to catch up on.
                let now_serving = serving_count(&views.borrow_and_update());
                if now_serving > serving {
                    next = next.min(tokio::time::Instant::now() + antientropy::BACKLOG_DELAY);
                }
                serving = now_serving;
                continue;
            }
            () = stop.cancelled() => return,
        }
        next = tokio::time::Instant::now() + interval;
        let view = node.view();
        let copies = node.placement(&view).copies();
        if copies < 2 {
            continue;
        }
        let peers: Vec<NodeId> = view
            .serving()
            .map(|member| member.id.clone())
            .filter(|id| *id > view.self_id)
            .collect();
        for peer in peers {
            match sync_with_peer(&shared, &node, &view, &peer, copies).await {
                Ok(report) => {
                    let stats = node.replicator.stats();
                    let moved = (report.pulled + report.pushed) as u64;
                    stats
                        .anti_entropy_buckets
                        .fetch_add(report.buckets_compared as u64, Ordering::Relaxed);
                    stats.anti_entropy_keys.fetch_add(moved, Ordering::Relaxed);
                    if moved > 0 {
                        tracing::info!(%peer, pulled = report.pulled, pushed = report.pushed,
                            differing_buckets = report.buckets_differing, "anti-entropy repaired");
                    }
                    if report.truncated {
                        next = tokio::time::Instant::now() + antientropy::BACKLOG_DELAY;
                    }
                }
                Err(error) => {
                    // Most often a peer that just came back, whose connection is still
                    // in reconnect backoff: try again soon rather than in an interval.
                    tracing::debug!(%peer, %error, "anti-entropy exchange failed");
                    next = next.min(tokio::time::Instant::now() + antientropy::BACKLOG_DELAY);
                }
            }
        }
    }
}

/// Measures this node's health and rates every [`STATS_INTERVAL`] ([`crate::health`]),
/// keeps the latest sample in [`Shared::health`] for the metrics and the HTTP API, ends
/// the hot-key detector's window ([`crate::hot_keys`]), and in cluster mode publishes
/// all of it in gossip with the store's figures, until `stop` is cancelled. Runs on a
/// single node too.
pub async fn measure(shared: Arc<Shared>, node: Option<Arc<ClusterNode>>, stop: CancellationToken) {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let mut interval = tokio::time::interval(STATS_INTERVAL);
    let mut before = reading(&shared, &shared.store.stats());
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = stop.cancelled() => return,
        }
        let store = shared.store.stats();
        let after = reading(&shared, &store);
        let transitions = shared
            .hot_keys
            .end_window(after.at - before.at, crate::wall_clock::unix_ms());
        shared
            .metrics
            .hot_key_window_ended(&transitions, shared.hot_keys.hot().len());
        let sample = health::sample(
            &before,
            &after,
            store.total.used_bytes,
            store.maxmemory,
            cpus,
            shared.config.degraded_thresholds,
        );
        before = after;
        let was = std::mem::replace(&mut *shared.health.lock(), sample);
        if was.degraded != sample.degraded {
            tracing::warn!(
                reasons = ?Degraded::reasons(sample.degraded),
                cpu_permille = sample.cpu_permille,
                used_memory = store.total.used_bytes,
                maxmemory = store.maxmemory,
                "node health changed: {}",
                if sample.degraded == 0 { "ok" } else { "degraded" }
            );
        }
        let Some((node, membership)) = node
            .as_ref()
            .and_then(|n| Some((n, n.membership.as_ref()?)))
        else {
            continue;
        };
        let replication = node.replicator.stats();
        membership
            .publish_stats(MemberStats {
                used_memory: store.total.used_bytes,
                maxmemory: store.maxmemory,
                keys: store.total.entries,
                ops_per_sec: sample.ops_per_sec,
                hits_per_sec: sample.hits_per_sec,
                misses_per_sec: sample.misses_per_sec,
                evictions_per_sec: sample.evictions_per_sec,
                expirations_per_sec: sample.expirations_per_sec,
                cpu_permille: sample.cpu_permille,
                rss_bytes: sample.rss_bytes,
                latency_p50_us: sample.latency_p50_us,
                latency_p99_us: sample.latency_p99_us,
                hints_pending: node.replicator.hints().len() as u64,
                read_repairs: replication.read_repairs.load(Ordering::Relaxed),
                quorum_failures: replication.quorum_failures.load(Ordering::Relaxed),
                degraded: sample.degraded,
            })
            .await;
        membership
            .publish_hot_keys(crate::hot_keys::encode(&shared.hot_keys.hot()))
            .await;
    }
}

/// Keeps this node's copies of the cluster's hot keys ([`crate::hot_cache`]) in line
/// with the cluster-wide hot set every [`REFRESH_INTERVAL`]: reads each hot key from the
/// first of its replicas that serves (this node's own store if it is one, one request
/// per replica for all of its keys) and hands the entries to the cache, until `stop` is
/// cancelled. Does nothing when mitigation is off.
pub async fn refresh_hot_copies(
    shared: Arc<Shared>,
    node: Arc<ClusterNode>,
    stop: CancellationToken,
) {
    if !shared.hot_cache.enabled() {
        return;
    }
    let mut interval = tokio::time::interval(REFRESH_INTERVAL);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = stop.cancelled() => return,
        }
        let view = node.view();
        let hot: Vec<Bytes> = hot_keys::seen_from(shared.hot_keys.hot(), Some(&view))
            .into_iter()
            .map(|key| key.key)
            .collect();
        if hot.is_empty() && shared.hot_cache.is_idle() {
            continue;
        }
        let started = shared.hot_cache.writes_so_far();
        let read_at = std::time::Instant::now();
        let placement = node.placement(&view);
        let mut by_replica: HashMap<NodeId, Vec<Bytes>> = HashMap::new();
        // A hot key last read holding a collection is not copied; not read again.
        for key in hot
            .iter()
            .filter(|key| !shared.hot_cache.holds_no_string(key))
        {
            let serving = placement
                .replicas(key)
                .into_iter()
                .find(|id| view.is_serving(id));
            if let Some(replica) = serving {
                by_replica
                    .entry(replica.clone())
                    .or_default()
                    .push(key.clone());
            }
        }
        let mut read: HashMap<Bytes, Option<VersionedEntry>> = HashMap::new();
        let cx = Cx {
            shared: &shared,
            node: &node,
            view: &view,
        };
        for (replica, keys) in by_replica {
            // The replica runs the keys' writes (it is their first serving one): it tells
            // this node of each change, which drops the copy at once.
            match read_following(cx, &replica, keys.clone()).await {
                Ok(entries) => read.extend(keys.into_iter().zip(entries)),
                Err(error) => tracing::debug!(%error, "could not refresh hot-key copies"),
            }
        }
        let refreshed: Vec<(Bytes, Option<Option<VersionedEntry>>)> = hot
            .into_iter()
            .map(|key| {
                let entry = read.remove(&key);
                (key, entry)
            })
            .collect();
        shared
            .hot_cache
            .refresh(&shared.store, started, read_at, &refreshed);
    }
}

/// Sends the changes client tracking and hot-key copies follow to the nodes that follow
/// them ([`crate::tracking`]) as soon as they are queued, until `stop`. Each node's keys
/// go in a request of their own, not awaited by the others', so that a node that does not
/// answer delays no one else's invalidations; a node that does not serve is skipped (its
/// clients' connections closed with it, and a view change invalidates everything).
pub async fn send_invalidations(
    shared: Arc<Shared>,
    node: Arc<ClusterNode>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shared.tracking.outgoing_ready.notified() => {}
            () = stop.cancelled() => return,
        }
        let view = node.view();
        for (follower, keys) in shared.tracking.take_outgoing() {
            if !view.is_serving(&follower) || follower == view.self_id {
                continue;
            }
            let node = node.clone();
            let view = view.clone();
            tokio::spawn(async move { invalidate_at(&node, &view, &follower, keys).await });
        }
    }
}

/// Follows the cluster's views for client tracking, until `stop`: when the nodes that
/// serve change (one went down or came back, the ring changed), a key's primary may have
/// changed, and the new one does not know who follows the key — so every tracking client
/// of this node is told to drop everything it cached. Also announces this node's BCAST
/// prefixes to the serving nodes after each such change and every
/// [`PREFIX_ANNOUNCE_EVERY`](crate::tracking::PREFIX_ANNOUNCE_EVERY), and forgets
/// other nodes' prefixes that were not announced again.
pub async fn follow_views(shared: Arc<Shared>, node: Arc<ClusterNode>, stop: CancellationToken) {
    let mut views = node.subscribe();
    let serving_of = |view: &ClusterView| {
        let ids: Vec<NodeId> = view.serving().map(|member| member.id.clone()).collect();
        (view.ring_version, ids)
    };
    let mut serving = serving_of(&node.view());
    let mut announce = tokio::time::interval(crate::tracking::PREFIX_ANNOUNCE_EVERY);
    loop {
        tokio::select! {
            changed = views.changed() => {
                if changed.is_err() {
                    return;
                }
                let now_serving = serving_of(&views.borrow_and_update());
                if now_serving == serving {
                    continue;
                }
                serving = now_serving;
                shared.tracking.invalidate_all(&shared.pubsub);
            }
            _ = announce.tick() => {
                shared.tracking.drop_lapsed_prefixes(std::time::Instant::now());
            }
            () = stop.cancelled() => return,
        }
        announce_prefixes(&shared, &node, &node.view()).await;
    }
}

/// The node's cumulative counters now, with the store's `stats` just taken.
fn reading(shared: &Shared, stats: &quorra_store::StoreStats) -> health::Reading {
    let cpu = health::ProcessCpu::now();
    let store = &stats.total;
    health::Reading {
        at: std::time::Instant::now(),
        cpu_seconds: cpu.user + cpu.system,
        commands: shared.counters.commands_processed.load(Ordering::Relaxed),
        hits: shared.counters.keyspace_hits.load(Ordering::Relaxed),
        misses: shared.counters.keyspace_misses.load(Ordering::Relaxed),
        evictions: store.evictions,
        expirations: store.expirations,
        latency: shared.metrics.latency_buckets(),
    }
}

/// Delivers the hints kept for replicas that were unreachable, once they serve again;
/// checks every [`HINT_REPLAY_INTERVAL`] until `stop` is cancelled.
pub async fn replay_hints(node: Arc<ClusterNode>, stop: CancellationToken) {
    let mut interval = tokio::time::interval(HINT_REPLAY_INTERVAL);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = stop.cancelled() => return,
        }
        let view = node.view();
        for target in node.replicator.hints().nodes() {
            if view.is_serving(&target) {
                let delivered = node.replicator.replay_hints(&target).await;
                if delivered > 0 {
                    tracing::info!(node = %target, delivered, "hinted writes delivered");
                }
            }
        }
    }
}

/// Marks the node `up` (counted, and serving its keys) once it has joined its cluster:
/// at once for a node that starts a cluster, after it has heard from another member
/// otherwise.
pub async fn serve_when_joined(node: Arc<ClusterNode>, stop: CancellationToken) {
    let Some(membership) = &node.membership else {
        return;
    };
    tokio::select! {
        () = membership.until_joined() => {
            membership.set_state(MemberState::Up).await;
        }
        () = stop.cancelled() => {}
    }
}

/// Raises the `expired` and `evicted` keyspace events the store's removals queued
/// ([`crate::notifications`]), until `stop`: in a cluster only for keys this node is
/// primary for, since every replica expires and evicts its own copy. Waits without a
/// timer while nothing is queued.
pub async fn raise_removals(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = shared.notifier.removals.first_queued() => {}
            () = stop.cancelled() => return,
        }
        let removals = shared.notifier.removals.take();
        let cluster = shared.cluster.as_ref().map(|node| (node, node.view()));
        for (key, removal) in removals {
            if let Some((node, view)) = &cluster
                && node.placement(view).primary(&key) != Some(&view.self_id)
            {
                continue;
            }
            let (class, event) = removal.event();
            shared.notifier.notify(&shared.pubsub, class, event, &key);
        }
    }
}
