//! Membership: who is in the cluster, where to reach them, and who is alive.
//!
//! Built on [`chitchat`]: scuttlebutt gossip spreads a small key-value state per node,
//! and a phi-accrual failure detector marks a node dead when its heartbeats stop. Each
//! node publishes, in its own state:
//!
//! | key | value |
//! |---|---|
//! | `resp`, `http`, `cluster` | advertised addresses (`ip:port`) |
//! | `zone` | the zone, if any |
//! | `state` | `joining`, `up` or `leaving` ([`MemberState`]) |
//! | `stat.used_memory`, `stat.keys`, `stat.ops_per_sec` | figures for `/v1/cluster` |
//!
//! The node id and the generation (start time in ms, so a restarted node supersedes its
//! earlier life) are part of chitchat's node identity. Gossip uses UDP on the same port
//! number as the node's RPC (TCP) port.
//!
//! # Views
//!
//! Whenever the live set or anyone's published state changes, a task builds a new
//! [`ClusterView`] — every known member with its state, and the ring of the members that
//! are alive and `up` — and publishes it on a [`watch`] channel. Nodes that see the same
//! gossip state build the same ring, because a ring depends only on its member set.
//!
//! # Failure detection
//!
//! chitchat's detector computes `phi = time since the last heartbeat / mean interval`
//! over a sampling window, and marks a node dead above [`MembershipConfig::phi_threshold`].
//! Every node gossips with up to three peers each [`MembershipConfig::gossip_interval`],
//! so on a small cluster a heartbeat arrives about once per interval: with the defaults
//! ([`DEFAULT_GOSSIP_INTERVAL`], [`DEFAULT_PHI_THRESHOLD`]) a killed node is marked down
//! after roughly `phi_threshold × interval` plus one interval, about 1.8 s. The
//! detector's prior (its idea of the interval before it has samples) is the gossip
//! interval, so a node is not declared dead during its first seconds either.
//! Dead nodes stay listed (state `down`) for [`MembershipConfig::dead_node_grace`]
//! (chitchat's own default of 24 h is far too long for a cache) and are then forgotten.
//!
//! # Leaving
//!
//! [`Membership::leave`] publishes `leaving`, waits [`LEAVE_GOSSIP_ROUNDS`] gossip
//! intervals so the news spreads, then stops gossiping. Peers drop a `leaving` node from
//! the ring as soon as they hear of it, without waiting for failure detection.
//!
//! # Security
//!
//! Gossip is plain UDP; chitchat has no authentication. The cluster id that chitchat
//! checks on every message is derived from the cluster secret
//! ([`ClusterSecret::gossip_cluster_id`]), so nodes configured with different secrets
//! ignore each other, but an attacker who can read the cluster network can still forge
//! gossip. Data only ever travels over the authenticated RPC, which refuses peers without
//! the secret. Run the cluster port on a trusted network.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::Transport;
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState};
use quorra_ring::{NodeId, NodeSpec, Ring};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::rpc::ClusterSecret;

/// Default time between gossip rounds.
pub const DEFAULT_GOSSIP_INTERVAL: Duration = Duration::from_millis(200);

/// Default phi above which a node is marked dead. chitchat's phi is "silence divided by
/// the mean heartbeat interval", so this is roughly a number of missed intervals.
pub const DEFAULT_PHI_THRESHOLD: f64 = 8.0;

/// Default time a dead node stays listed as `down` before it is forgotten.
pub const DEFAULT_DEAD_NODE_GRACE: Duration = Duration::from_secs(60);

/// Gossip rounds [`Membership::leave`] waits after publishing `leaving`, so that peers
/// hear it directly rather than through failure detection.
pub const LEAVE_GOSSIP_ROUNDS: u32 = 3;

/// Heartbeat intervals the failure detector keeps to estimate the mean.
const SAMPLING_WINDOW: usize = 200;

/// A member's lifecycle state as it publishes it (or `Down`, as others judge it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberState {
    /// Started and gossiping, not yet serving: not in the ring.
    Joining,
    /// Serving: in the ring.
    Up,
    /// Shutting down: out of the ring, about to stop.
    Leaving,
    /// Not heard from: the failure detector declared it dead. Not in the ring.
    Down,
}

impl MemberState {
    /// The name published in gossip and shown by `QUORRA NODES` and `/v1/cluster`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Joining => "joining",
            MemberState::Up => "up",
            MemberState::Leaving => "leaving",
            MemberState::Down => "down",
        }
    }

    fn parse(text: &str) -> Option<MemberState> {
        Some(match text {
            "joining" => MemberState::Joining,
            "up" => MemberState::Up,
            "leaving" => MemberState::Leaving,
            _ => return None,
        })
    }
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a node serves each protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeAddresses {
    /// Redis protocol (clients).
    pub resp: SocketAddr,
    /// Admin HTTP.
    pub http: SocketAddr,
    /// Node-to-node RPC (TCP) and gossip (UDP, same port number).
    pub cluster: SocketAddr,
}

/// Figures a node publishes about itself, refreshed every few seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemberStats {
    /// Accounted bytes in the store.
    pub used_memory: u64,
    /// Live keys.
    pub keys: u64,
    /// Commands per second over the last publishing period.
    pub ops_per_sec: u64,
}

/// One node as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    /// Its id.
    pub id: NodeId,
    /// Its start time, ms since the epoch; a restart has a higher one.
    pub generation: u64,
    /// Its addresses.
    pub addresses: NodeAddresses,
    /// Its zone, if it has one.
    pub zone: Option<String>,
    /// Its state.
    pub state: MemberState,
    /// What it last published about itself.
    pub stats: MemberStats,
}

/// Everything this node knows about the cluster at one moment. Cheap to share
/// (`Arc<ClusterView>`); a new one replaces it on every change.
#[derive(Clone, Debug)]
pub struct ClusterView {
    /// This node's id.
    pub self_id: NodeId,
    /// Every known member, sorted by id: live ones in their published state, dead ones
    /// as [`MemberState::Down`].
    pub members: Vec<Member>,
    /// The ring of the members that are alive and `up`.
    pub ring: Ring,
    /// How many times the ring changed before this view (0 for the first ring).
    pub ring_version: u64,
}

impl ClusterView {
    /// A view of a single node that owns everything (cluster mode off, or before the
    /// first gossip round).
    pub fn single(member: Member, vnodes: u32) -> ClusterView {
        let self_id = member.id.clone();
        let mut ring = ring_with_vnodes(vnodes);
        ring.add_node(NodeSpec::new(self_id.clone()))
            .expect("an empty ring accepts a node");
        ClusterView {
            self_id,
            members: vec![member],
            ring,
            ring_version: 0,
        }
    }

    /// The member with this id.
    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.members
            .binary_search_by(|member| member.id.cmp(id))
            .ok()
            .map(|index| &self.members[index])
    }

    /// The node that owns `key`, if the ring is not empty.
    pub fn owner(&self, key: &[u8]) -> Option<&NodeId> {
        self.ring.lookup(key)
    }

    /// True if the ring has only this node, so every key is local.
    pub fn is_alone(&self) -> bool {
        self.ring.len() == 1 && self.ring.member(&self.self_id).is_some()
    }

    /// The ring's members (the nodes that serve), sorted by id.
    pub fn serving(&self) -> impl Iterator<Item = &Member> {
        self.members
            .iter()
            .filter(|member| self.ring.member(&member.id).is_some())
    }
}

/// How a node takes part in membership.
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// This node's id.
    pub node_id: NodeId,
    /// This run's generation: start time in ms since the epoch.
    pub generation: u64,
    /// Addresses published to peers. `cluster` is also the gossip address peers use.
    pub addresses: NodeAddresses,
    /// The UDP address to bind for gossip (usually `addresses.cluster`, or the wildcard
    /// address on its port).
    pub gossip_listen: SocketAddr,
    /// Cluster ports (`host:port`) of nodes to contact first.
    pub seeds: Vec<String>,
    /// This node's zone.
    pub zone: Option<String>,
    /// The cluster secret; gossip only reaches nodes with the same one.
    pub secret: ClusterSecret,
    /// Virtual nodes per member on the ring.
    pub vnodes: u32,
    /// Time between gossip rounds. Default [`DEFAULT_GOSSIP_INTERVAL`].
    pub gossip_interval: Duration,
    /// Failure detector threshold. Default [`DEFAULT_PHI_THRESHOLD`].
    pub phi_threshold: f64,
    /// How long a dead node stays listed. Default [`DEFAULT_DEAD_NODE_GRACE`].
    pub dead_node_grace: Duration,
}

impl MembershipConfig {
    /// A config with the defaults for everything but identity and addresses.
    pub fn new(
        node_id: impl Into<NodeId>,
        generation: u64,
        addresses: NodeAddresses,
        secret: ClusterSecret,
    ) -> MembershipConfig {
        MembershipConfig {
            node_id: node_id.into(),
            generation,
            addresses,
            gossip_listen: addresses.cluster,
            seeds: Vec::new(),
            zone: None,
            secret,
            vnodes: quorra_ring::DEFAULT_VNODES,
            gossip_interval: DEFAULT_GOSSIP_INTERVAL,
            phi_threshold: DEFAULT_PHI_THRESHOLD,
            dead_node_grace: DEFAULT_DEAD_NODE_GRACE,
        }
    }

    fn self_member(&self, state: MemberState) -> Member {
        Member {
            id: self.node_id.clone(),
            generation: self.generation,
            addresses: self.addresses,
            zone: self.zone.clone(),
            state,
            stats: MemberStats::default(),
        }
    }
}

/// Why membership could not start.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// chitchat could not open its socket (the UDP port is taken, ...).
    #[error("cannot start gossip on {addr}: {message}")]
    Gossip {
        /// The gossip address.
        addr: SocketAddr,
        /// chitchat's error.
        message: String,
    },
}

/// A running membership: gossip, failure detection and the live view.
pub struct Membership {
    config: MembershipConfig,
    chitchat: ChitchatHandle,
    view: watch::Receiver<Arc<ClusterView>>,
    stop_views: CancellationToken,
}

impl Membership {
    /// Starts gossiping over UDP (state `joining`); call [`set_state`](Self::set_state)
    /// with [`MemberState::Up`] once the node serves.
    pub async fn start(config: MembershipConfig) -> Result<Membership, MembershipError> {
        Membership::start_with_transport(config, &chitchat::transport::UdpTransport).await
    }

    /// [`start`](Self::start) over any chitchat transport (tests use chitchat's
    /// in-memory `ChannelTransport`, whose links they can cut).
    pub async fn start_with_transport(
        config: MembershipConfig,
        transport: &dyn Transport,
    ) -> Result<Membership, MembershipError> {
        let chitchat_id = ChitchatId::new(
            config.node_id.as_str().to_owned(),
            config.generation,
            config.addresses.cluster,
        );
        let chitchat_config = ChitchatConfig {
            chitchat_id,
            cluster_id: config.secret.gossip_cluster_id(),
            gossip_interval: config.gossip_interval,
            listen_addr: config.gossip_listen,
            seed_nodes: config.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: config.phi_threshold,
                sampling_window_size: SAMPLING_WINDOW,
                // A gap this long is an outage, not a sample of the normal interval.
                max_interval: config.gossip_interval * 10,
                initial_interval: config.gossip_interval,
                dead_node_grace_period: config.dead_node_grace,
            },
            marked_for_deletion_grace_period: config.dead_node_grace,
            catchup_callback: None,
            extra_liveness_predicate: None,
        };
        let mut initial = vec![
            ("resp".to_owned(), config.addresses.resp.to_string()),
            ("http".to_owned(), config.addresses.http.to_string()),
            ("cluster".to_owned(), config.addresses.cluster.to_string()),
            ("state".to_owned(), MemberState::Joining.as_str().to_owned()),
        ];
        if let Some(zone) = &config.zone {
            initial.push(("zone".to_owned(), zone.clone()));
        }
        let chitchat = chitchat::spawn_chitchat(chitchat_config, initial, transport)
            .await
            .map_err(|error| MembershipError::Gossip {
                addr: config.gossip_listen,
                message: format!("{error:#}"),
            })?;
        let first = ClusterView {
            self_id: config.node_id.clone(),
            members: vec![config.self_member(MemberState::Joining)],
            ring: ring_with_vnodes(config.vnodes),
            ring_version: 0,
        };
        let (view_tx, view) = watch::channel(Arc::new(first));
        let stop_views = CancellationToken::new();
        tokio::spawn(maintain_views(
            chitchat.chitchat(),
            config.clone(),
            view_tx,
            stop_views.clone(),
        ));
        Ok(Membership {
            config,
            chitchat,
            view,
            stop_views,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.config.node_id
    }

    /// The current view.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.borrow().clone()
    }

    /// A receiver that sees every new view.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view.clone()
    }

    /// Publishes this node's state.
    pub async fn set_state(&self, state: MemberState) {
        self.set("state", state.as_str().to_owned()).await;
    }

    /// Publishes this node's figures. Only changed values travel.
    pub async fn publish_stats(&self, stats: MemberStats) {
        let chitchat = self.chitchat.chitchat();
        let mut chitchat = chitchat.lock().await;
        let state = chitchat.self_node_state();
        state.set("stat.used_memory", stats.used_memory);
        state.set("stat.keys", stats.keys);
        state.set("stat.ops_per_sec", stats.ops_per_sec);
    }

    async fn set(&self, key: &str, value: String) {
        let chitchat = self.chitchat.chitchat();
        chitchat.lock().await.self_node_state().set(key, value);
    }

    /// Leaves gracefully: publishes `leaving`, lets [`LEAVE_GOSSIP_ROUNDS`] rounds carry
    /// it to the peers, then stops.
    pub async fn leave(&self) {
        self.set_state(MemberState::Leaving).await;
        tokio::time::sleep(self.config.gossip_interval * LEAVE_GOSSIP_ROUNDS).await;
        self.stop();
    }

    /// Stops gossiping at once, as a crash would look to the peers (they notice through
    /// failure detection). The view stays as it was.
    pub fn stop(&self) {
        self.stop_views.cancel();
        // Fails only if gossip already stopped.
        let _ = self.chitchat.initiate_shutdown();
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ring_with_vnodes(vnodes: u32) -> Ring {
    Ring::with_default_vnodes(vnodes).unwrap_or_default()
}

/// Rebuilds the view whenever chitchat reports a change in the live set or in a live
/// node's state, until `stop` is cancelled.
async fn maintain_views(
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    config: MembershipConfig,
    view_tx: watch::Sender<Arc<ClusterView>>,
    stop: CancellationToken,
) {
    let mut live = chitchat.lock().await.live_nodes_watcher();
    let mut ring_version = 0u64;
    loop {
        let dead: Vec<(ChitchatId, Option<Member>)> = {
            let chitchat = chitchat.lock().await;
            chitchat
                .dead_nodes()
                .map(|id| {
                    let member = chitchat
                        .node_state(id)
                        .and_then(|state| member_from_gossip(id, state, MemberState::Down));
                    (id.clone(), member)
                })
                .collect()
        };
        let members = {
            let live = live.borrow_and_update();
            merge_members(&config, &live, dead)
        };
        let previous = view_tx.borrow().clone();
        let ring = ring_of(&members, config.vnodes);
        if ring != previous.ring {
            if !previous.ring.is_empty() || ring_version > 0 {
                ring_version += 1;
            }
            let ids: Vec<&str> = ring.members().iter().map(|m| m.id().as_str()).collect();
            tracing::info!(node = %config.node_id, ring_version, members = ?ids, "ring changed");
        }
        if members != previous.members || ring != previous.ring {
            let view = ClusterView {
                self_id: config.node_id.clone(),
                members,
                ring,
                ring_version,
            };
            view_tx.send_replace(Arc::new(view));
        }
        tokio::select! {
            changed = live.changed() => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
    }
}

/// One member per node id: the newest generation wins, and a live generation beats a
/// dead one (a restarted node's old life lingers in chitchat as dead for a while).
fn merge_members(
    config: &MembershipConfig,
    live: &BTreeMap<ChitchatId, NodeState>,
    dead: Vec<(ChitchatId, Option<Member>)>,
) -> Vec<Member> {
    let mut by_id: HashMap<String, Member> = HashMap::new();
    let rank = |member: &Member| (member.state != MemberState::Down, member.generation);
    let mut consider = |member: Member| {
        let better = by_id
            .get(member.id.as_str())
            .is_none_or(|known| rank(&member) > rank(known));
        if better {
            by_id.insert(member.id.as_str().to_owned(), member);
        }
    };
    for (id, state) in live {
        let member = if id.node_id == config.node_id.as_str() {
            // Our own state from chitchat, which has our latest published values.
            member_from_gossip(id, state, MemberState::Joining)
                .unwrap_or_else(|| config.self_member(MemberState::Joining))
        } else {
            match member_from_gossip(id, state, MemberState::Joining) {
                Some(member) => member,
                None => continue,
            }
        };
        consider(member);
    }
    for member in dead.into_iter().filter_map(|(_, member)| member) {
        consider(member);
    }
    let mut members: Vec<Member> = by_id.into_values().collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    members
}

/// Reads a member from its gossip state; `None` if its addresses have not arrived yet.
/// `state` overrides the published state when it is [`MemberState::Down`].
fn member_from_gossip(id: &ChitchatId, state: &NodeState, judged: MemberState) -> Option<Member> {
    let addr = |key: &str| state.get(key).and_then(|text| text.parse().ok());
    let stat = |key: &str| {
        state
            .get(key)
            .and_then(|text| text.parse().ok())
            .unwrap_or(0)
    };
    let published = state.get("state").and_then(MemberState::parse)?;
    Some(Member {
        id: NodeId::from(id.node_id.as_str()),
        generation: id.generation_id,
        addresses: NodeAddresses {
            resp: addr("resp")?,
            http: addr("http")?,
            cluster: addr("cluster")?,
        },
        zone: state.get("zone").map(str::to_owned),
        state: if judged == MemberState::Down {
            MemberState::Down
        } else {
            published
        },
        stats: MemberStats {
            used_memory: stat("stat.used_memory"),
            keys: stat("stat.keys"),
            ops_per_sec: stat("stat.ops_per_sec"),
        },
    })
}

/// The ring of the members that serve (`up`).
fn ring_of(members: &[Member], vnodes: u32) -> Ring {
    let mut ring = ring_with_vnodes(vnodes);
    for member in members.iter().filter(|m| m.state == MemberState::Up) {
        let mut spec = NodeSpec::new(member.id.clone());
        if let Some(zone) = &member.zone {
            spec = spec.with_zone(zone.as_str());
        }
        if let Err(error) = ring.add_node(spec) {
            tracing::warn!(node = %member.id, %error, "member left out of the ring");
        }
    }
    ring
}
