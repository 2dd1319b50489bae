//! A node's cluster machinery: its membership, the view of the cluster it routes by,
//! the client it calls peers with, and its replicator.
//!
//! [`start`] binds the cluster port (RPC over TCP; gossip takes the same number over
//! UDP), starts gossip in state `joining`, and returns a [`ClusterNode`]. Peers'
//! requests are answered by the handler the caller passes in
//! ([`crate::peer_handler`]). The server marks the node `up` once its client listeners
//! are serving ([`crate::cluster_tasks::serve_when_joined`]), which puts it in every
//! peer's ring.
//!
//! A [`ClusterNode`] can also be built without gossip or sockets
//! ([`ClusterNode::in_memory`]): its views are whatever the embedder sends, and its
//! peers are reached over any [`Transport`]. Routing and
//! pipeline tests run whole clusters in one process that way.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quorra_cluster::gossip_auth::GossipAuthStats;
use quorra_cluster::membership::{ClusterView, Membership, MembershipConfig, NodeAddresses};
use quorra_cluster::placement::Placement;
use quorra_cluster::replication::{Consistency, Replicator};
use quorra_cluster::rpc::{ClusterSecret, Handler, RpcClient, RpcConfig, RpcServer};
use quorra_cluster::tls::TlsMaterial;
use quorra_ring::NodeId;
use quorra_store::Store;
use tokio::sync::watch;

use crate::config::{ClusterConfig, Config, check_node_id};
use crate::metrics::{ClusterFigures, Metrics};
use crate::node_replicas::NodeReplicas;
use crate::peer::{PeerClient, Transport};
use crate::wall_clock::unix_ms;

/// Room in an RPC frame beyond the largest command a client may send: message framing
/// and the other commands of a batch.
const FRAME_SLACK_BYTES: u64 = 1 << 20;

/// Attempts at finding a cluster port whose number is free for both TCP and UDP, when
/// the configured port is 0.
const PORT_ATTEMPTS: usize = 20;

/// A node's cluster machinery, shared by its connections.
pub struct ClusterNode {
    /// Gossip membership; `None` for a node built [`in_memory`](Self::in_memory).
    pub membership: Option<Membership>,
    /// The current view of the cluster, and its changes.
    views: watch::Receiver<Arc<ClusterView>>,
    /// Calls to peers.
    pub peers: PeerClient,
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
    /// Told each time this node stores replicated writes, so that a delta that came
    /// before the write it builds on can wait for it
    /// ([`apply_delta_waiting`](crate::node_replicas::apply_delta_waiting)).
    pub replica_writes: tokio::sync::Notify,
    /// The RPC server answering peers.
    rpc_server: parking_lot::Mutex<Option<RpcServer>>,
}

/// What a node's cluster machinery is built from, however its peers are reached.
pub struct ClusterParts {
    /// The node's store, which its replicator reads and writes as one replica.
    pub store: Arc<Store>,
    /// Where calls to peers are timed.
    pub metrics: Arc<Metrics>,
    /// Bound on one forwarded command.
    pub timeout: Duration,
    /// Copies per key and the default levels.
    pub consistency: Consistency,
    /// Most hints kept for unreachable replicas.
    pub max_hints: usize,
}

impl ClusterNode {
    fn build(
        parts: ClusterParts,
        views: watch::Receiver<Arc<ClusterView>>,
        transport: Arc<dyn Transport>,
        addresses: NodeAddresses,
    ) -> ClusterNode {
        let peers = PeerClient::new(transport, parts.metrics);
        let replicas = NodeReplicas {
            store: parts.store,
            self_id: views.borrow().self_id.clone(),
            peers: peers.clone(),
            views: views.clone(),
        };
        ClusterNode {
            membership: None,
            views,
            peers,
            timeout: parts.timeout,
            addresses,
            consistency: parts.consistency,
            replicator: Replicator::new(Arc::new(replicas), parts.max_hints),
            gossip_stats: Arc::default(),
            replica_writes: tokio::sync::Notify::new(),
            rpc_server: parking_lot::Mutex::new(None),
        }
    }

    /// A node without gossip or sockets: its view is whatever `views` holds (the
    /// embedder sends changes), and it reaches its peers over `transport`. Its
    /// addresses are those its view gives it.
    pub fn in_memory(
        parts: ClusterParts,
        views: watch::Receiver<Arc<ClusterView>>,
        transport: Arc<dyn Transport>,
    ) -> ClusterNode {
        let addresses = {
            let view = views.borrow();
            view.member(&view.self_id)
                .expect("a view holds its own node")
                .addresses
        };
        ClusterNode::build(parts, views, transport, addresses)
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.views.borrow().self_id.clone()
    }

    /// The current view of the cluster.
    pub fn view(&self) -> Arc<ClusterView> {
        self.views.borrow().clone()
    }

    /// The views from now on, for tasks that wait for changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.views.clone()
    }

    /// The figures `/metrics` shows about this node's cluster under `view`.
    pub fn figures<'a>(&'a self, view: &'a ClusterView) -> ClusterFigures<'a> {
        ClusterFigures {
            view,
            replication: self.replicator.stats(),
            hints_pending: self.replicator.hints().len(),
            gossip: &self.gossip_stats,
        }
    }

    /// Where keys live under `view`, with this node's configured number of copies.
    pub fn placement<'v>(&self, view: &'v ClusterView) -> Placement<'v> {
        Placement::new(view, self.consistency.replicas)
    }

    /// Stops answering peers and gossiping; with `leave`, publishes `leaving` first and
    /// gives gossip a few rounds to carry it.
    pub async fn stop(&self, leave: bool) {
        if let Some(membership) = &self.membership {
            if leave {
                membership.leave().await;
            } else {
                membership.stop();
            }
        }
        let server = self.rpc_server.lock().take();
        if let Some(server) = server {
            server.shutdown().await;
        }
    }
}

/// The client ports a node has bound, which it publishes to its peers.
#[derive(Clone, Copy, Debug)]
pub struct ClientPorts {
    /// The RESP address.
    pub resp: SocketAddr,
    /// The admin HTTP address.
    pub http: SocketAddr,
}

/// Binds the cluster port and starts the RPC server, whose requests `handler` answers,
/// and gossip. The published addresses are `clients`' ports at `config.advertise`.
pub async fn start<H: Handler + Clone>(
    node_config: &Config,
    config: &ClusterConfig,
    node_id: NodeId,
    clients: ClientPorts,
    tls: Option<Arc<TlsMaterial>>,
    parts: ClusterParts,
    handler: H,
) -> std::io::Result<ClusterNode> {
    let bind = node_config.bind;
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
    let generation = unix_ms();
    let attempts = if config.port == 0 { PORT_ATTEMPTS } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let server =
            RpcServer::bind((bind, config.port), rpc_config.clone(), handler.clone()).await?;
        let port = server.local_addr().port();
        let advertised = |addr: SocketAddr| SocketAddr::new(config.advertise, addr.port());
        let addresses = NodeAddresses {
            resp: advertised(clients.resp),
            http: advertised(clients.http),
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
                let transport = Arc::new(RpcClient::new(rpc_config));
                let mut node =
                    ClusterNode::build(parts, membership.subscribe(), transport, addresses);
                node.membership = Some(membership);
                node.gossip_stats = gossip_stats;
                node.rpc_server = parking_lot::Mutex::new(Some(server));
                return Ok(node);
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
pub fn resolve_node_id(config: &ClusterConfig) -> std::io::Result<String> {
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
