//! A cluster in one process, without sockets or gossip, for tests of routing, the
//! pipeline and replication: every node is a real [`Shared`] with its store, commands
//! and [`ClusterNode`], its views are set by the test, and its peers are reached over a
//! [`MemoryNetwork`] that calls their [`peer_handler`](crate::peer_handler) directly.
//! Links can be cut (the call fails before it is sent, as a refused connection does) or
//! made to lose answers (the request runs, the caller gets a closed connection), and
//! healed. Time is a [`MockClock`].

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use quorra_cluster::membership::{ClusterView, Member, MemberState, MemberStats, NodeAddresses};
use quorra_cluster::placement::Placement;
use quorra_cluster::replication::{Consistency, Level};
use quorra_cluster::rpc::{BoxFuture, RpcError};
use quorra_ring::NodeId;
use quorra_store::MockClock;
use tokio::sync::watch;

use crate::cluster_node::{ClusterNode, ClusterParts};
use crate::config::{ClusterConfig, Config};
use crate::executor::Cx;
use crate::peer::Transport;
use crate::pipeline::Pipeline;
use crate::session::Session;
use crate::shared::{NodeParts, Shared};

/// Virtual nodes per member in test views: few, so views are cheap to build.
const VNODES: u32 = 16;

/// The links between the nodes of an in-memory cluster.
#[derive(Default)]
pub(crate) struct MemoryNetwork {
    nodes: Mutex<HashMap<SocketAddr, (NodeId, Weak<Shared>)>>,
    /// Nodes that can neither call nor be called.
    cut: Mutex<HashSet<NodeId>>,
    /// Nodes whose answers are lost: requests to them run, their callers see the
    /// connection close.
    losing_answers: Mutex<HashSet<NodeId>>,
}

/// One node's end of the network.
struct Link {
    network: Arc<MemoryNetwork>,
    from: NodeId,
}

impl Transport for Link {
    fn send(&self, addr: SocketAddr, payload: Bytes) -> BoxFuture<Result<Bytes, RpcError>> {
        let network = &self.network;
        let target = network.nodes.lock().get(&addr).cloned();
        let cut = network.cut.lock();
        let refused = match &target {
            None => true,
            Some((id, _)) => cut.contains(id) || cut.contains(&self.from),
        };
        drop(cut);
        let loses_answer = target
            .as_ref()
            .is_some_and(|(id, _)| network.losing_answers.lock().contains(id));
        let from = self.from.clone();
        Box::pin(async move {
            let unreachable = || RpcError::Unreachable {
                peer: addr,
                source: Arc::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            };
            let (_, shared) = target.filter(|_| !refused).ok_or_else(unreachable)?;
            let shared = shared.upgrade().ok_or_else(unreachable)?;
            let answer = crate::peer_handler::answer(shared, from, payload).await;
            if loses_answer {
                return Err(RpcError::Closed { peer: addr });
            }
            answer.map_err(|message| RpcError::Remote {
                peer: addr,
                message,
            })
        })
    }
}

/// A cluster of nodes `n0`, `n1`, ... in one process.
pub(crate) struct InMemoryCluster {
    /// The nodes, in id order.
    pub(crate) nodes: Vec<Arc<Shared>>,
    /// The links between them.
    pub(crate) network: Arc<MemoryNetwork>,
    /// Every node's clock.
    pub(crate) clock: MockClock,
    views: Vec<watch::Sender<Arc<ClusterView>>>,
    members: Vec<Member>,
}

/// The id of node `index`.
pub(crate) fn node_id(index: usize) -> NodeId {
    NodeId::from(format!("n{index}"))
}

/// A member `index` in `state`, at made-up loopback addresses nothing listens on.
pub(crate) fn member(index: usize, state: MemberState) -> Member {
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let base = 40_000 + 10 * index as u16;
    Member {
        id: node_id(index),
        generation: 1,
        addresses: NodeAddresses {
            resp: addr(base),
            http: addr(base + 1),
            cluster: addr(base + 2),
        },
        zone: None,
        state,
        stats: MemberStats::default(),
        hot_keys: String::new(),
    }
}

/// The view node `self_index` has of members in `states` (node `i` in `states[i]`).
pub(crate) fn view(self_index: usize, states: &[MemberState]) -> ClusterView {
    let members = states
        .iter()
        .enumerate()
        .map(|(index, state)| member(index, *state))
        .collect();
    ClusterView::of_members(node_id(self_index), members, VNODES)
}

impl InMemoryCluster {
    /// `size` nodes, all up, keeping `replicas` copies of each key with quorum writes and
    /// reads, each with `maxmemory` bytes (0: no limit).
    pub(crate) fn new(size: usize, replicas: usize, maxmemory: u64) -> InMemoryCluster {
        InMemoryCluster::configured(size, replicas, |config| config.maxmemory = maxmemory)
    }

    /// [`new`](Self::new) with every node's settings changed by `adjust`.
    pub(crate) fn configured(
        size: usize,
        replicas: usize,
        adjust: impl Fn(&mut Config),
    ) -> InMemoryCluster {
        let network = Arc::new(MemoryNetwork::default());
        let clock = MockClock::new(1_700_000_000_000);
        let members: Vec<Member> = (0..size).map(|i| member(i, MemberState::Up)).collect();
        let consistency = Consistency {
            replicas,
            write: Level::Quorum,
            read: Level::Quorum,
        };
        let mut nodes = Vec::new();
        let mut views = Vec::new();
        for index in 0..size {
            let mut config = Config {
                cluster: Some(cluster_config(consistency)),
                ..Config::default()
            };
            adjust(&mut config);
            let id = node_id(index);
            let parts = NodeParts::new(&config, Some(&id), Arc::new(clock.clone()));
            let view = ClusterView::of_members(id.clone(), members.clone(), VNODES);
            let (sender, receiver) = watch::channel(Arc::new(view));
            let link = Link {
                network: network.clone(),
                from: id,
            };
            let cluster_parts = ClusterParts {
                store: parts.store.clone(),
                metrics: parts.metrics.clone(),
                timeout: Duration::from_secs(1),
                consistency,
                max_hints: 1_000,
            };
            let node = ClusterNode::in_memory(cluster_parts, receiver, Arc::new(link));
            let resp_addr = members[index].addresses.resp;
            let shared = Arc::new(Shared::new(config, resp_addr, parts, Some(Arc::new(node))));
            network.nodes.lock().insert(
                members[index].addresses.cluster,
                (node_id(index), Arc::downgrade(&shared)),
            );
            nodes.push(shared);
            views.push(sender);
        }
        InMemoryCluster {
            nodes,
            network,
            clock,
            views,
            members,
        }
    }

    /// Cuts every link of node `index`: calls to and from it are refused.
    pub(crate) fn cut(&self, index: usize) {
        self.network.cut.lock().insert(node_id(index));
    }

    /// Makes node `index` lose its answers: what is sent to it runs there, and the
    /// caller sees the connection close.
    pub(crate) fn lose_answers(&self, index: usize) {
        self.network.losing_answers.lock().insert(node_id(index));
    }

    /// Restores every link.
    pub(crate) fn heal(&self) {
        self.network.cut.lock().clear();
        self.network.losing_answers.lock().clear();
    }

    /// Every node now sees node `index` in `state` (as failure detection would tell
    /// them).
    pub(crate) fn set_state(&mut self, index: usize, state: MemberState) {
        self.members[index].state = state;
        for (viewer, sender) in self.views.iter().enumerate() {
            let view = ClusterView::of_members(node_id(viewer), self.members.clone(), VNODES);
            sender.send_replace(Arc::new(view));
        }
    }

    /// A key whose replicas (preference order) start with node `primary`, and whose
    /// name starts with `prefix`.
    pub(crate) fn key_with_primary(&self, prefix: &str, primary: usize) -> String {
        let view = self.view_of(0);
        let node = self.nodes[0].cluster.as_ref().expect("cluster node");
        let placement = Placement::new(&view, node.consistency.replicas);
        (0..)
            .map(|n| format!("{prefix}{n}"))
            .find(|key| placement.replicas(key.as_bytes())[0] == &node_id(primary))
            .expect("some key has every primary")
    }

    fn view_of(&self, index: usize) -> Arc<ClusterView> {
        self.nodes[index]
            .cluster
            .as_ref()
            .expect("cluster node")
            .view()
    }

    /// A client of node `index`.
    pub(crate) fn client(&self, index: usize) -> Client<'_> {
        let shared = &self.nodes[index];
        let addr = SocketAddr::from(([127, 0, 0, 1], 50_000));
        Client {
            shared,
            session: Session::new(shared.clients.connect(addr, shared.resp_addr), false),
            pipeline: Pipeline::default(),
        }
    }
}

fn cluster_config(consistency: Consistency) -> ClusterConfig {
    ClusterConfig {
        port: 0,
        seeds: Vec::new(),
        secret: "in-memory".into(),
        node_id: None,
        data_dir: std::env::temp_dir(),
        zone: None,
        advertise: [127, 0, 0, 1].into(),
        vnodes: VNODES,
        gossip_interval: Duration::from_millis(200),
        dead_node_grace: Duration::from_secs(60),
        timeout: Duration::from_secs(1),
        consistency,
        max_hints: 1_000,
        anti_entropy_interval: None,
    }
}

fn node_of(shared: &Shared) -> &ClusterNode {
    shared.cluster.as_ref().expect("cluster node")
}

/// What the executor works with at `shared`'s node, under `view`.
fn cx<'a>(shared: &'a Shared, view: &'a ClusterView) -> Cx<'a> {
    Cx {
        shared,
        node: node_of(shared),
        view,
    }
}

/// A client connected to one node, sending pipelines as a RESP connection does.
pub(crate) struct Client<'a> {
    shared: &'a Arc<Shared>,
    session: Session,
    pipeline: Pipeline,
}

impl Client<'_> {
    /// Plans and runs one command (its reply may wait for [`flush`](Self::flush)),
    /// appending what can be answered already to `out`.
    pub(crate) async fn send(&mut self, command: &[&str], out: &mut BytesMut) {
        let mut args: Vec<Bytes> = command
            .iter()
            .map(|arg| Bytes::copy_from_slice(arg.as_bytes()))
            .collect();
        crate::databases::enter(self.session.db, &mut args);
        let shared = self.shared;
        let view = node_of(shared).view();
        let cx = cx(shared, &view);
        self.pipeline.run(cx, &mut self.session, &args, out).await;
    }

    /// Sends what is queued and appends every remaining reply to `out`, as a connection
    /// does at the end of what one read brought in.
    pub(crate) async fn flush(&mut self, out: &mut BytesMut) {
        let shared = self.shared;
        let view = node_of(shared).view();
        let cx = cx(shared, &view);
        self.pipeline.flush(cx, &self.session, out).await;
    }

    /// Sends `commands` as one pipeline and returns the replies' exact bytes.
    pub(crate) async fn pipeline(&mut self, commands: &[&[&str]]) -> String {
        let mut out = BytesMut::new();
        for command in commands {
            self.send(command, &mut out).await;
        }
        self.flush(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }
}
