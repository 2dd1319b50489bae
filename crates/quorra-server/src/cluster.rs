//! Cluster mode: the node's membership, its RPC server and client, and what it answers
//! to peers.
//!
//! [`start`] binds the cluster port (RPC over TCP; gossip takes the same number over
//! UDP), starts gossip in state `joining`, and returns a [`ClusterNode`] that the
//! connections use to route commands ([`crate::routing`]). The server marks the node
//! `up` once its client listeners are serving, which puts it in every peer's ring.
//!
//! A peer's [`Request::Execute`] runs through the same [`commands::dispatch`] as a local
//! client's command, on a session that is authenticated (the peer proved it knows the
//! cluster secret) and speaks the RESP version of the client the peer coordinates for.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use quorra_cluster::antientropy::{self, BucketEntry};
use quorra_cluster::gossip_auth::GossipAuthStats;
use quorra_cluster::membership::{
    ClusterView, MemberState, MemberStats, Membership, MembershipConfig, NodeAddresses,
};
use quorra_cluster::message::{Request, Response};
use quorra_cluster::placement::Placement;
use quorra_cluster::replication::{Consistency, Replicator};
use quorra_cluster::rpc::BoxFuture;
use quorra_cluster::rpc::{ClusterSecret, RpcClient, RpcConfig, RpcServer};
use quorra_cluster::tls::TlsMaterial;
use quorra_resp::Protocol;
use quorra_ring::NodeId;
use quorra_store::{Version, VersionedEntry};
use std::sync::atomic::Ordering;

use crate::accounting;
use crate::commands;
use crate::config::{ClusterConfig, Config, check_node_id};
use crate::connection::Session;
use crate::replica::{NodeReplicas, read_entry};
use crate::routing::{Mode, keyspace_counts, run_here};
use crate::shared::{Shared, unix_ms};

/// How far nodes' clocks may disagree before a request that arrived in time is taken for
/// one that arrived after its deadline (see [`Request::Execute`]'s `deadline_ms`).
pub const CLOCK_SKEW_ALLOWANCE_MS: u64 = 1_000;

/// How often a node publishes its figures (used memory, keys, ops/s) in gossip.
pub const STATS_INTERVAL: Duration = Duration::from_secs(2);

/// How often hints for returned replicas are replayed.
pub const HINT_REPLAY_INTERVAL: Duration = Duration::from_secs(1);

/// Room in an RPC frame beyond the largest command a client may send: message framing
/// and the other commands of a batch.
const FRAME_SLACK_BYTES: u64 = 1 << 20;

/// Attempts at finding a cluster port whose number is free for both TCP and UDP, when
/// the configured port is 0.
const PORT_ATTEMPTS: usize = 20;

/// A node's cluster machinery, shared by its connections.
pub struct ClusterNode {
    /// Gossip membership and the current view.
    pub membership: Membership,
    /// Calls to peers.
    pub rpc: RpcClient,
    /// Bound on one forwarded command.
    pub timeout: Duration,
    /// The addresses this node publishes.
    pub addresses: NodeAddresses,
    /// Copies per key and the default levels.
    pub consistency: Consistency,
    /// Replicated writes and reads, hints and their counters.
    pub replicator: Replicator,
    /// Gossip packets accepted and dropped (forged, replayed, ...).
    pub gossip_stats: Arc<GossipAuthStats>,
    /// The RPC server answering peers.
    rpc_server: parking_lot::Mutex<Option<RpcServer>>,
}

impl ClusterNode {
    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        self.membership.node_id()
    }

    /// The current view of the cluster.
    pub fn view(&self) -> Arc<ClusterView> {
        self.membership.view()
    }

    /// Where keys live under `view`, with this node's configured number of copies.
    pub fn placement<'v>(&self, view: &'v ClusterView) -> Placement<'v> {
        Placement::new(view, self.consistency.replicas)
    }

    /// Stops answering peers and gossiping; with `leave`, publishes `leaving` first and
    /// gives gossip a few rounds to carry it.
    pub async fn stop(&self, leave: bool) {
        if leave {
            self.membership.leave().await;
        } else {
            self.membership.stop();
        }
        let server = self.rpc_server.lock().take();
        if let Some(server) = server {
            server.shutdown().await;
        }
    }
}

/// A [`ClusterNode`] whose RPC handler still waits for the node's shared state, which
/// can only be built once the cluster node exists.
pub struct Starting {
    /// The cluster node, to be put in [`Shared`].
    pub node: Arc<ClusterNode>,
    shared: Arc<OnceLock<Weak<Shared>>>,
}

impl Starting {
    /// Connects the RPC handler to the node's state: peers' requests are served from now.
    pub fn serve(self, shared: &Arc<Shared>) -> Arc<ClusterNode> {
        let _ = self.shared.set(Arc::downgrade(shared));
        self.node
    }
}

/// Binds the cluster port, starts the RPC server and gossip. `resp` and `http` are the
/// bound client addresses; the published ones use `config.advertise`.
pub async fn start(
    node_config: &Config,
    config: &ClusterConfig,
    resp: SocketAddr,
    http: SocketAddr,
    tls: Option<Arc<TlsMaterial>>,
) -> std::io::Result<Starting> {
    let bind = node_config.bind;
    let node_id = NodeId::from(resolve_node_id(config)?);
    let secret = ClusterSecret::new(&config.secret);
    let mut rpc_config = RpcConfig::new(node_id.clone(), secret.clone());
    rpc_config.call_timeout = config.timeout;
    rpc_config.tls = tls;
    // A forwarded command is as large as a client may send one (and its reply about as
    // large as a value); the frame length travels as a u32.
    rpc_config.max_frame_bytes = usize::try_from(
        node_config
            .client_query_buffer_limit
            .saturating_add(FRAME_SLACK_BYTES)
            .min(u64::from(u32::MAX)),
    )
    .unwrap_or(u32::MAX as usize);
    let shared_slot: Arc<OnceLock<Weak<Shared>>> = Arc::new(OnceLock::new());
    let generation = unix_ms();
    let attempts = if config.port == 0 { PORT_ATTEMPTS } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let slot = shared_slot.clone();
        let handler =
            move |from: NodeId, payload: Bytes| answer_peer(slot.get().cloned(), from, payload);
        let server = RpcServer::bind((bind, config.port), rpc_config.clone(), handler).await?;
        let port = server.local_addr().port();
        let advertised = |addr: SocketAddr| SocketAddr::new(config.advertise, addr.port());
        let addresses = NodeAddresses {
            resp: advertised(resp),
            http: advertised(http),
            cluster: SocketAddr::new(config.advertise, port),
        };
        let mut membership_config =
            MembershipConfig::new(node_id.clone(), generation, addresses, secret.clone());
        membership_config.gossip_listen = SocketAddr::new(bind, port);
        membership_config.seeds = config.seeds.clone();
        membership_config.zone = config.zone.clone();
        membership_config.vnodes = config.vnodes;
        membership_config.gossip_interval = config.gossip_interval;
        membership_config.dead_node_grace = config.dead_node_grace;
        // Named after the node, so that nodes given ids but sharing a data directory
        // never read each other's roster.
        membership_config.roster_file = Some(config.data_dir.join(format!("{node_id}.roster")));
        let gossip_stats = Arc::new(GossipAuthStats::default());
        match Membership::start(membership_config, gossip_stats.clone()).await {
            Ok(membership) => {
                tracing::info!(node = %node_id, cluster = %addresses.cluster, seeds = ?config.seeds, "cluster mode");
                let rpc = RpcClient::new(rpc_config);
                let replicas = NodeReplicas {
                    shared: shared_slot.clone(),
                    rpc: rpc.clone(),
                };
                let node = ClusterNode {
                    membership,
                    rpc,
                    timeout: config.timeout,
                    addresses,
                    consistency: config.consistency,
                    replicator: Replicator::new(Arc::new(replicas), config.max_hints),
                    gossip_stats,
                    rpc_server: parking_lot::Mutex::new(Some(server)),
                };
                return Ok(Starting {
                    node: Arc::new(node),
                    shared: shared_slot,
                });
            }
            Err(error) => {
                // The UDP port of that number is taken; with port 0, try another.
                server.shutdown().await;
                last_error = Some(error);
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        last_error.map_or_else(String::new, |error| error.to_string()),
    ))
}

/// The configured node id, or the one kept in `<data-dir>/node-id`, generating and
/// writing it on first start so a restarted node keeps its place in the ring.
fn resolve_node_id(config: &ClusterConfig) -> std::io::Result<String> {
    if let Some(id) = &config.node_id {
        return Ok(id.clone());
    }
    let path = config.data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim().to_owned();
            check_node_id(&id).map_err(|reason| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: node id {reason}", path.display()),
                )
            })?;
            Ok(id)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let id = format!("node-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
            write_node_id(&config.data_dir, &path, &id)?;
            tracing::info!(node = %id, file = %path.display(), "generated a node id");
            Ok(id)
        }
        Err(error) => Err(error),
    }
}

fn write_node_id(dir: &Path, path: &Path, id: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(path, format!("{id}\n"))
}

/// Serves one request from an authenticated peer.
async fn answer_peer(
    shared: Option<Weak<Shared>>,
    from: NodeId,
    payload: Bytes,
) -> Result<Bytes, String> {
    let shared = shared
        .and_then(|weak| weak.upgrade())
        .ok_or("node is starting or stopping")?;
    let request = Request::decode(&payload).map_err(|error| error.to_string())?;
    let response = match request {
        Request::Execute {
            resp3,
            commands,
            replicate,
            primary_only,
            deadline_ms,
        } => {
            if unix_ms() > deadline_ms.saturating_add(CLOCK_SKEW_ALLOWANCE_MS) {
                return Err(format!(
                    "request from {from} arrived after its deadline; not run"
                ));
            }
            let mut session = Session::new(shared.peer_client.clone(), false);
            session.protocol = if resp3 {
                Protocol::Resp3
            } else {
                Protocol::Resp2
            };
            let mode = Mode {
                protocol: session.protocol,
                replicate,
                primary_only,
            };
            if commands.iter().any(Vec::is_empty) {
                return Err(format!("empty command from {from}"));
            }
            let view = shared.cluster.as_ref().map(|node| node.view());
            let (replies, lookups) = match &view {
                Some(view) => run_here(&shared, view, &mut session, &commands, mode).await,
                None => commands::run_each(&shared, &mut session, &commands),
            };
            // The peer's node answers the client and counts the commands; here they
            // count only as run for a peer.
            accounting::peer_commands(&shared, replies.len());
            Response::Replies {
                replies,
                hits: lookups.hits,
                misses: lookups.misses,
            }
        }
        Request::KeyspaceCounts { primary_only } => {
            let (keys, expires) = keyspace_counts(&shared, primary_only);
            Response::KeyspaceCounts { keys, expires }
        }
        Request::Apply { entries } => Response::Applied(
            entries
                .into_iter()
                .map(|(key, entry)| {
                    let outcome = shared.store.apply(&key, entry.into());
                    outcome.err().map(|error| error.to_string())
                })
                .collect(),
        ),
        Request::Read { keys, promote } => Response::Entries(
            keys.iter()
                .map(|key| read_entry(&shared.store, key, promote).map(Into::into))
                .collect(),
        ),
        Request::Evict { entries } => {
            let mut dropped = 0;
            for (key, hlc, node) in entries {
                dropped += u64::from(shared.store.evict_replica(&key, Version { hlc, node }));
            }
            Response::Evicted { dropped }
        }
        Request::Digest { copies } => {
            let view = shared_view(&shared)?;
            Response::Digest(antientropy::digest(
                &shared.store,
                &view,
                &from,
                copies as usize,
            ))
        }
        Request::BucketVersions { copies, buckets } => {
            let view = shared_view(&shared)?;
            let buckets: Vec<usize> = buckets.into_iter().map(|bucket| bucket as usize).collect();
            let versions = antientropy::bucket_versions(
                &shared.store,
                &view,
                &from,
                copies as usize,
                &buckets,
            );
            Response::Versions(
                versions
                    .into_iter()
                    .map(|(bucket, key, version)| (bucket as u32, key, version.hlc, version.node))
                    .collect(),
            )
        }
    };
    Ok(response.encode())
}

fn shared_view(shared: &Shared) -> Result<Arc<ClusterView>, String> {
    shared
        .cluster
        .as_ref()
        .map(|node| node.view())
        .ok_or_else(|| "not in cluster mode".to_owned())
}

/// The other node of an anti-entropy exchange, over RPC.
struct RpcPeer<'a> {
    node: &'a ClusterNode,
    peer: NodeId,
    copies: u32,
}

impl RpcPeer<'_> {
    fn call(&self, request: Request) -> BoxFuture<Result<Response, String>> {
        let addr = self
            .node
            .view()
            .member(&self.peer)
            .map(|member| member.addresses.cluster);
        let rpc = self.node.rpc.clone();
        Box::pin(async move {
            let addr = addr.ok_or("not a member")?;
            let payload = rpc
                .call(addr, request.encode())
                .await
                .map_err(|error| error.to_string())?;
            Response::decode(&payload).map_err(|error| error.to_string())
        })
    }
}

impl antientropy::Peer for RpcPeer<'_> {
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

    fn apply(&self, entries: Vec<(Bytes, VersionedEntry)>) -> BoxFuture<Result<(), String>> {
        let apply = self.node.replicator.replicas().apply(&self.peer, entries);
        Box::pin(async move {
            let outcomes = apply.await.map_err(|error| error.to_string())?;
            match outcomes.into_iter().find_map(Result::err) {
                Some(refused) => Err(refused.to_string()),
                None => Ok(()),
            }
        })
    }
}

/// Runs an anti-entropy pass with every serving peer whose id is above this node's
/// (one side of each pair starts the exchange) every `interval`, until `stop`; sooner
/// ([`antientropy::BACKLOG_DELAY`]) after a pass that stopped at its key budget or
/// failed, and after a node joined the ring, when there is most to repair.
pub async fn anti_entropy(
    shared: Arc<Shared>,
    node: Arc<ClusterNode>,
    interval: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut views = node.membership.subscribe();
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
            let remote = RpcPeer {
                node: &node,
                peer: peer.clone(),
                copies: copies as u32,
            };
            match antientropy::sync_with(&shared.store, &view, &peer, &remote, copies).await {
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

/// Publishes this node's figures every [`STATS_INTERVAL`] until `stop` is cancelled.
pub async fn publish_stats(
    shared: Arc<Shared>,
    node: Arc<ClusterNode>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut interval = tokio::time::interval(STATS_INTERVAL);
    let mut last_commands = 0;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = stop.cancelled() => return,
        }
        let commands = shared
            .counters
            .commands_processed
            .load(std::sync::atomic::Ordering::Relaxed);
        let stats = shared.store.stats().total;
        node.membership
            .publish_stats(MemberStats {
                used_memory: stats.used_bytes,
                keys: stats.entries,
                ops_per_sec: (commands - last_commands) / STATS_INTERVAL.as_secs(),
            })
            .await;
        last_commands = commands;
    }
}

/// Delivers the hints kept for replicas that were unreachable, once they serve again;
/// checks every [`HINT_REPLAY_INTERVAL`] until `stop` is cancelled.
pub async fn replay_hints(node: Arc<ClusterNode>, stop: tokio_util::sync::CancellationToken) {
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
pub async fn serve_when_joined(node: Arc<ClusterNode>, stop: tokio_util::sync::CancellationToken) {
    tokio::select! {
        () = node.membership.until_joined() => {
            node.membership.set_state(MemberState::Up).await;
        }
        () = stop.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_in(dir: &Path) -> ClusterConfig {
        ClusterConfig {
            port: 0,
            seeds: Vec::new(),
            secret: "s".into(),
            node_id: None,
            data_dir: dir.to_owned(),
            zone: None,
            advertise: [127, 0, 0, 1].into(),
            vnodes: 150,
            gossip_interval: Duration::from_millis(200),
            dead_node_grace: Duration::from_secs(60),
            timeout: Duration::from_secs(1),
            consistency: Consistency::default(),
            max_hints: 10,
            anti_entropy_interval: None,
        }
    }

    #[test]
    fn a_generated_node_id_is_kept_for_the_next_start() {
        let dir = std::env::temp_dir().join(format!("quorra-node-id-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = config_in(&dir.join("nested"));
        let first = resolve_node_id(&config).unwrap();
        assert!(check_node_id(&first).is_ok(), "{first}");
        assert_eq!(resolve_node_id(&config).unwrap(), first);
        // A given id wins over the file; a corrupt file is an error, not a new identity.
        let given = ClusterConfig {
            node_id: Some("given".into()),
            ..config.clone()
        };
        assert_eq!(resolve_node_id(&given).unwrap(), "given");
        std::fs::write(dir.join("nested/node-id"), "not valid!\n").unwrap();
        assert!(resolve_node_id(&config).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
