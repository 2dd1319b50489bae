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
//! | `stat.*` | [`MemberStats`]: figures and health for `QUORRA NODES`, `/v1/cluster` and the dashboard |
//! | `hot.keys` | the node's hot keys ([`Member::hot_keys`]) |
//! | `roster.<id>`, `gone.<id>` | the roster as this node knows it ([`crate::roster`]) |
//!
//! The node id and the generation (start time in ms, so a restarted node supersedes its
//! earlier life) are part of chitchat's node identity. Gossip uses UDP on the same port
//! number as the node's RPC (TCP) port.
//!
//! # Views
//!
//! Whenever the live set or anyone's published state changes, a task merges what the
//! members publish into the [roster](crate::roster) and builds a new [`ClusterView`] —
//! every member with its state, and the ring of the counted members, up or down — and
//! publishes it on a [`watch`] channel. Nodes that hold the same roster build the same
//! ring, because a ring depends only on its member set. The ring changes when a member
//! joins, leaves or is forgotten, not when one goes down or comes back: which nodes
//! hold a key's copies, and how many answers a quorum needs, do not depend on who is
//! reachable (see [`crate::placement`]).
//!
//! # Joining
//!
//! A node that starts with seeds, or that remembers a cluster in its roster file, has
//! not *joined* until it has heard from another member: until then its view says
//! [`ClusterView::joined`] = false, and the server serves no keys (a node that knows
//! only itself would otherwise act as a cluster of one). A node with neither seeds nor
//! a remembered cluster starts a new cluster and has joined at once.
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
//! chitchat keeps a dead node's gossip state for [`MembershipConfig::dead_node_grace`]
//! (its own default of 24 h keeps too much state); the roster keeps counting the node
//! after that, as `down`, until it leaves or is forgotten ([`Membership::forget`]).
//!
//! # Leaving
//!
//! [`Membership::leave`] publishes `leaving`, waits [`LEAVE_GOSSIP_ROUNDS`] gossip
//! intervals so the news spreads, then stops gossiping. Peers drop a `leaving` node from
//! the roster and the ring as soon as they hear of it, and publish its tombstone.
//!
//! # Security
//!
//! chitchat itself authenticates nothing. [`Membership::start`] gossips over
//! [`crate::gossip_auth`]: every packet carries an HMAC under a key derived from the
//! cluster secret, with replay protection, so a sender without the secret can neither
//! change membership nor replay what it captured. The cluster id chitchat checks is
//! derived from the secret as well ([`ClusterSecret::gossip_cluster_id`]). Gossip is not
//! encrypted: addresses, states and figures travel in clear.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::Transport;
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState};
use parking_lot::Mutex;
use quorra_ring::{NodeId, NodeSpec, Ring};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::gossip_auth::{AuthenticatedUdp, GossipAuthStats};
use crate::roster::{Roster, RosterEntry};
use crate::rpc::ClusterSecret;

/// Default time between gossip rounds.
pub const DEFAULT_GOSSIP_INTERVAL: Duration = Duration::from_millis(200);

/// Default phi above which a node is marked dead. chitchat's phi is "silence divided by
/// the mean heartbeat interval", so this is roughly a number of missed intervals.
pub const DEFAULT_PHI_THRESHOLD: f64 = 8.0;

/// Default time chitchat keeps a dead node's gossip state. The roster keeps counting
/// the node as `down` after that; only leaving or [`Membership::forget`] removes it.
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

/// Figures a node publishes about itself, refreshed every publishing period (rates are
/// over the last period).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemberStats {
    /// Accounted bytes in the store.
    pub used_memory: u64,
    /// Its `maxmemory` (0: unlimited).
    pub maxmemory: u64,
    /// Live keys.
    pub keys: u64,
    /// Commands per second.
    pub ops_per_sec: u64,
    /// Keyspace hits per second.
    pub hits_per_sec: u64,
    /// Keyspace misses per second.
    pub misses_per_sec: u64,
    /// Keys evicted for memory per second.
    pub evictions_per_sec: u64,
    /// Keys expired per second.
    pub expirations_per_sec: u64,
    /// CPU used, in thousandths of the machine's CPUs.
    pub cpu_permille: u64,
    /// Resident set size of the process, bytes.
    pub rss_bytes: u64,
    /// Median command latency, microseconds (0: no command ran).
    pub latency_p50_us: u64,
    /// 99th percentile command latency, microseconds (0: no command ran).
    pub latency_p99_us: u64,
    /// Writes kept for replicas that were unreachable.
    pub hints_pending: u64,
    /// Stale copies repaired by reads, since start.
    pub read_repairs: u64,
    /// Writes and reads that missed their quorum, since start.
    pub quorum_failures: u64,
    /// Why the node is degraded, as [`Degraded`] bits; 0 when it is healthy.
    pub degraded: u8,
}

/// The reasons a node can be degraded (bits of [`MemberStats::degraded`]).
pub struct Degraded;

impl Degraded {
    /// Memory above its threshold share of `maxmemory`.
    pub const MEMORY: u8 = 1;
    /// CPU above its threshold share of the machine.
    pub const CPU: u8 = 2;

    /// The reasons named by `bits`, as `QUORRA NODES` and `/v1/cluster` show them.
    pub fn reasons(bits: u8) -> Vec<&'static str> {
        [(Self::MEMORY, "memory"), (Self::CPU, "cpu")]
            .into_iter()
            .filter(|(bit, _)| bits & bit != 0)
            .map(|(_, name)| name)
            .collect()
    }
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
    /// What it last published of its hot keys (`hot.keys`), in the encoding of
    /// quorra-node's hot-key detector; empty for none.
    pub hot_keys: String,
}

/// Everything this node knows about the cluster at one moment. Cheap to share
/// (`Arc<ClusterView>`); a new one replaces it on every change.
#[derive(Clone, Debug)]
pub struct ClusterView {
    /// This node's id.
    pub self_id: NodeId,
    /// Every member, sorted by id: the counted ones (the roster) in their current state
    /// — [`MemberState::Down`] when not heard from — and live nodes that are not counted
    /// (joining for the first time, leaving).
    pub members: Vec<Member>,
    /// The ring of the counted members, up or down. Placement works on it, so a key's
    /// replicas do not change when one of them goes down.
    pub ring: Ring,
    /// How many times the ring changed before this view (0 for the first ring).
    pub ring_version: u64,
    /// False while a node that belongs to a cluster has not yet heard from any other
    /// member: it must not serve keys, since it cannot tell which are its own.
    pub joined: bool,
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
            joined: true,
        }
    }

    /// A joined view, as `self_id` would see it, of `members` (whatever their states),
    /// all of them counted in the ring with `vnodes` virtual nodes each. Views that do not
    /// come from gossip: in-process clusters, in tests of routing and replication.
    pub fn of_members(self_id: NodeId, mut members: Vec<Member>, vnodes: u32) -> ClusterView {
        members.sort_by(|a, b| a.id.cmp(&b.id));
        let mut ring = ring_with_vnodes(vnodes);
        for member in &members {
            let mut spec = NodeSpec::new(member.id.clone());
            if let Some(zone) = &member.zone {
                spec = spec.with_zone(zone.as_str());
            }
            ring.add_node(spec).expect("member ids are distinct");
        }
        ClusterView {
            self_id,
            members,
            ring,
            ring_version: 0,
            joined: true,
        }
    }

    /// The member with this id.
    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.members
            .binary_search_by(|member| member.id.cmp(id))
            .ok()
            .map(|index| &self.members[index])
    }

    /// True if `id` is counted and serving: in the ring and `up`.
    pub fn is_serving(&self, id: &NodeId) -> bool {
        self.member(id)
            .is_some_and(|member| member.state == MemberState::Up)
            && self.ring.member(id).is_some()
    }

    /// True if the ring has only this node, so every key is local.
    pub fn is_alone(&self) -> bool {
        self.ring.len() == 1 && self.ring.member(&self.self_id).is_some()
    }

    /// The members that serve (in the ring and `up`), sorted by id.
    pub fn serving(&self) -> impl Iterator<Item = &Member> {
        self.members
            .iter()
            .filter(|member| member.state == MemberState::Up)
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
    /// How long chitchat keeps a dead node's gossip state. Default
    /// [`DEFAULT_DEAD_NODE_GRACE`]. The roster counts the node after that too.
    pub dead_node_grace: Duration,
    /// Where the roster is kept across restarts (`None`: in memory only).
    pub roster_file: Option<PathBuf>,
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
            roster_file: None,
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
            hot_keys: String::new(),
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
    /// The roster file exists but cannot be read.
    #[error("cannot read the roster: {0}")]
    Roster(std::io::Error),
}

/// Why [`Membership::forget`] refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForgetError {
    /// No member has this id.
    #[error("no such node '{0}'")]
    Unknown(NodeId),
    /// The node asked to forget itself.
    #[error("a node cannot forget itself")]
    Myself,
    /// The member is alive; it should leave instead (stop it gracefully).
    #[error("node '{0}' is {1}, not down: stop it and it leaves by itself")]
    Alive(NodeId, MemberState),
}

/// A running membership: gossip, failure detection, the roster and the view.
pub struct Membership {
    config: MembershipConfig,
    chitchat: ChitchatHandle,
    view: watch::Receiver<Arc<ClusterView>>,
    roster: Arc<Mutex<Roster>>,
    /// Wakes the views task after a change made here rather than through gossip.
    nudge: Arc<Notify>,
    stop_views: CancellationToken,
}

impl Membership {
    /// Starts gossiping over authenticated UDP ([`crate::gossip_auth`]) in state
    /// `joining`; call [`set_state`](Self::set_state) with [`MemberState::Up`] once the
    /// node serves (after [`until_joined`](Self::until_joined)). What the transport drops
    /// is counted in `gossip_stats`.
    pub async fn start(
        config: MembershipConfig,
        gossip_stats: Arc<GossipAuthStats>,
    ) -> Result<Membership, MembershipError> {
        let transport = AuthenticatedUdp::new(&config.secret, gossip_stats);
        Membership::start_with_transport(config, &transport).await
    }

    /// [`start`](Self::start) over any chitchat transport (tests use chitchat's
    /// in-memory `ChannelTransport`, whose links they can cut).
    pub async fn start_with_transport(
        config: MembershipConfig,
        transport: &dyn Transport,
    ) -> Result<Membership, MembershipError> {
        let roster = match &config.roster_file {
            Some(path) => Roster::load(path).map_err(MembershipError::Roster)?,
            None => Roster::default(),
        };
        let remembered: Vec<String> = roster
            .members()
            .filter(|(id, _)| **id != config.node_id)
            .map(|(_, entry)| entry.addresses.cluster.to_string())
            .collect();
        let own_addresses = [config.addresses.cluster, config.gossip_listen];
        let mut has_seeds = false;
        for seed in &config.seeds {
            has_seeds |= names_another_node(seed, &own_addresses).await;
        }
        // A node that knows of no other member starts a cluster of its own.
        let joined = !has_seeds && remembered.is_empty();
        let mut seed_nodes = config.seeds.clone();
        seed_nodes.extend(remembered);
        seed_nodes.sort();
        seed_nodes.dedup();
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
            seed_nodes,
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
            members: Vec::new(),
            ring: ring_with_vnodes(config.vnodes),
            ring_version: 0,
            joined,
        };
        let (view_tx, view) = watch::channel(Arc::new(first));
        let roster = Arc::new(Mutex::new(roster));
        let nudge = Arc::new(Notify::new());
        let stop_views = CancellationToken::new();
        let views = ViewsTask {
            chitchat: chitchat.chitchat(),
            config: config.clone(),
            roster: roster.clone(),
            published: Roster::default(),
            saved: None,
            joined,
            ring_version: 0,
            view_tx,
        };
        tokio::spawn(views.run(nudge.clone(), stop_views.clone()));
        Ok(Membership {
            config,
            chitchat,
            view,
            roster,
            nudge,
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

    /// Returns once this node has joined its cluster (at once for a node that starts
    /// one): it has heard from another member, so it knows the roster.
    pub async fn until_joined(&self) {
        let mut views = self.subscribe();
        // Fails only when membership stopped; there is nothing left to wait for then.
        let _ = views.wait_for(|view| view.joined).await;
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
        let figures = [
            ("stat.used_memory", stats.used_memory),
            ("stat.maxmemory", stats.maxmemory),
            ("stat.keys", stats.keys),
            ("stat.ops_per_sec", stats.ops_per_sec),
            ("stat.hits_per_sec", stats.hits_per_sec),
            ("stat.misses_per_sec", stats.misses_per_sec),
            ("stat.evictions_per_sec", stats.evictions_per_sec),
            ("stat.expirations_per_sec", stats.expirations_per_sec),
            ("stat.cpu_permille", stats.cpu_permille),
            ("stat.rss_bytes", stats.rss_bytes),
            ("stat.latency_p50_us", stats.latency_p50_us),
            ("stat.latency_p99_us", stats.latency_p99_us),
            ("stat.hints_pending", stats.hints_pending),
            ("stat.read_repairs", stats.read_repairs),
            ("stat.quorum_failures", stats.quorum_failures),
            ("stat.degraded", u64::from(stats.degraded)),
        ];
        for (key, value) in figures {
            state.set(key, value);
        }
    }

    /// Publishes this node's hot keys (see [`Member::hot_keys`]).
    pub async fn publish_hot_keys(&self, encoded: String) {
        self.set("hot.keys", encoded).await;
    }

    async fn set(&self, key: &str, value: String) {
        let chitchat = self.chitchat.chitchat();
        chitchat.lock().await.self_node_state().set(key, value);
    }

    /// Removes a down member from the roster for good: quorums and replica sets stop
    /// counting it, on every node once gossip carries the tombstone. This is the
    /// operator's step after a node is lost for good (`QUORRA FORGET`). A member that
    /// is alive cannot be forgotten; stopped gracefully, it leaves by itself. The
    /// member, restarted later, joins again as a new member.
    pub fn forget(&self, id: &NodeId) -> Result<(), ForgetError> {
        if *id == self.config.node_id {
            return Err(ForgetError::Myself);
        }
        let view = self.view();
        let member = view
            .member(id)
            .ok_or_else(|| ForgetError::Unknown(id.clone()))?;
        if member.state != MemberState::Down {
            return Err(ForgetError::Alive(id.clone(), member.state));
        }
        let generation = {
            let mut roster = self.roster.lock();
            let generation = roster
                .get(id)
                .map_or(member.generation, |entry| entry.generation);
            roster.remove(id, generation);
            generation
        };
        tracing::warn!(node = %id, generation, "member forgotten by the operator");
        self.nudge.notify_one();
        Ok(())
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

/// The task that keeps the roster and the view up to date.
struct ViewsTask {
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    config: MembershipConfig,
    roster: Arc<Mutex<Roster>>,
    /// The roster as last published in this node's gossip state.
    published: Roster,
    /// The roster as last written to the roster file.
    saved: Option<Roster>,
    joined: bool,
    ring_version: u64,
    view_tx: watch::Sender<Arc<ClusterView>>,
}

/// A member as its gossip state describes it, and whether chitchat thinks it is alive.
struct Observed {
    member: Member,
    alive: bool,
}

impl ViewsTask {
    /// Rebuilds the view whenever chitchat reports a change in the live set or in a
    /// live node's state, or `nudge` is notified, until `stop` is cancelled.
    async fn run(mut self, nudge: Arc<Notify>, stop: CancellationToken) {
        let mut live = self.chitchat.lock().await.live_nodes_watcher();
        loop {
            live.borrow_and_update();
            self.refresh().await;
            tokio::select! {
                changed = live.changed() => if changed.is_err() { return },
                () = nudge.notified() => {}
                () = stop.cancelled() => return,
            }
        }
    }

    async fn refresh(&mut self) {
        let (observed, roster) = {
            let mut chitchat = self.chitchat.lock().await;
            let live: HashSet<ChitchatId> = chitchat.live_nodes().cloned().collect();
            let mut observed = Vec::new();
            let mut gossiped = Roster::default();
            for (id, state) in chitchat.node_states() {
                for (key, value) in state.key_values() {
                    gossiped.take_gossip_pair(key, value);
                }
                if let Some(member) = member_from_gossip(id, state) {
                    observed.push(Observed {
                        alive: live.contains(id),
                        member,
                    });
                }
            }
            let roster = {
                let mut roster = self.roster.lock();
                roster.merge(&gossiped);
                for Observed { member, .. } in &observed {
                    match member.state {
                        MemberState::Up => {
                            roster.admit(&member.id, roster_entry(member));
                        }
                        MemberState::Leaving => {
                            roster.remove(&member.id, member.generation);
                        }
                        MemberState::Joining | MemberState::Down => {}
                    }
                }
                roster.clone()
            };
            if roster != self.published {
                publish_roster(chitchat.self_node_state(), &self.published, &roster);
                self.published = roster.clone();
            }
            (observed, roster)
        };
        self.save(&roster);
        let self_id = &self.config.node_id;
        if !self.joined
            && observed
                .iter()
                .any(|seen| seen.alive && seen.member.id != *self_id)
        {
            tracing::info!(node = %self_id, members = roster.len(), "joined the cluster");
            self.joined = true;
        }
        if roster
            .gone_generation(self_id)
            .is_some_and(|gone| gone >= self.config.generation)
        {
            tracing::error!(node = %self_id, "this node was forgotten by the cluster; restart it to join again");
        }
        let members = members_of(&self.config, &roster, observed);
        let previous = self.view_tx.borrow().clone();
        let ring = ring_of(&roster, self.config.vnodes);
        if ring != previous.ring {
            if !previous.ring.is_empty() || self.ring_version > 0 {
                self.ring_version += 1;
            }
            let ids: Vec<&str> = ring.members().iter().map(|m| m.id().as_str()).collect();
            tracing::info!(node = %self_id, ring_version = self.ring_version, members = ?ids, "ring changed");
        }
        if members != previous.members || ring != previous.ring || self.joined != previous.joined {
            let view = ClusterView {
                self_id: self_id.clone(),
                members,
                ring,
                ring_version: self.ring_version,
                joined: self.joined,
            };
            self.view_tx.send_replace(Arc::new(view));
        }
    }

    /// Writes the roster file if the roster changed since it was last written. A write
    /// that fails is logged and tried again at the next change: the node keeps working,
    /// but would forget new members if it restarted meanwhile.
    fn save(&mut self, roster: &Roster) {
        let Some(path) = &self.config.roster_file else {
            return;
        };
        if self.saved.as_ref() == Some(roster) {
            return;
        }
        match roster.save(path) {
            Ok(()) => self.saved = Some(roster.clone()),
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "cannot write the roster");
            }
        }
    }
}

/// Updates this node's gossip state from the roster it published last to `roster`: only
/// the keys that changed are written, so only they travel.
fn publish_roster(state: &mut NodeState, published: &Roster, roster: &Roster) {
    let before: HashMap<String, String> = published.gossip_pairs().into_iter().collect();
    let after: HashMap<String, String> = roster.gossip_pairs().into_iter().collect();
    for key in before.keys().filter(|key| !after.contains_key(*key)) {
        state.delete(key);
    }
    for (key, value) in after {
        if before.get(&key) != Some(&value) {
            state.set(key, value);
        }
    }
}

fn roster_entry(member: &Member) -> RosterEntry {
    RosterEntry {
        generation: member.generation,
        addresses: member.addresses,
        zone: member.zone.clone(),
    }
}

/// The view's members: the counted ones, each in the state of its newest generation
/// heard of (`down` if that one is not alive, or was never heard from directly), and
/// the live nodes that are not counted (joining for the first time, leaving).
fn members_of(config: &MembershipConfig, roster: &Roster, observed: Vec<Observed>) -> Vec<Member> {
    let mut newest: HashMap<NodeId, Observed> = HashMap::new();
    for seen in observed {
        let newer = newest.get(&seen.member.id).is_none_or(|kept| {
            (seen.member.generation, seen.alive) > (kept.member.generation, kept.alive)
        });
        if newer {
            newest.insert(seen.member.id.clone(), seen);
        }
    }
    let mut members: Vec<Member> = Vec::new();
    for (id, entry) in roster.members() {
        let member = match newest.remove(id) {
            Some(seen) if seen.member.generation >= entry.generation => {
                let mut member = seen.member;
                if !seen.alive {
                    member.state = MemberState::Down;
                }
                member
            }
            _ => Member {
                id: id.clone(),
                generation: entry.generation,
                addresses: entry.addresses,
                zone: entry.zone.clone(),
                state: MemberState::Down,
                stats: MemberStats::default(),
                hot_keys: String::new(),
            },
        };
        members.push(member);
    }
    members.extend(
        newest
            .into_values()
            .filter(|seen| seen.alive)
            .map(|seen| seen.member),
    );
    if !members.iter().any(|member| member.id == config.node_id) {
        members.push(config.self_member(MemberState::Joining));
    }
    members.sort_by(|a, b| a.id.cmp(&b.id));
    members
}

/// Reads a member from its gossip state, in the state it published; `None` if its
/// addresses or state have not arrived yet.
fn member_from_gossip(id: &ChitchatId, state: &NodeState) -> Option<Member> {
    let addr = |key: &str| state.get(key).and_then(|text| text.parse().ok());
    let stat = |key: &str| {
        state
            .get(key)
            .and_then(|text| text.parse().ok())
            .unwrap_or(0)
    };
    Some(Member {
        id: NodeId::from(id.node_id.as_str()),
        generation: id.generation_id,
        addresses: NodeAddresses {
            resp: addr("resp")?,
            http: addr("http")?,
            cluster: addr("cluster")?,
        },
        zone: state.get("zone").map(str::to_owned),
        state: state.get("state").and_then(MemberState::parse)?,
        stats: MemberStats {
            used_memory: stat("stat.used_memory"),
            maxmemory: stat("stat.maxmemory"),
            keys: stat("stat.keys"),
            ops_per_sec: stat("stat.ops_per_sec"),
            hits_per_sec: stat("stat.hits_per_sec"),
            misses_per_sec: stat("stat.misses_per_sec"),
            evictions_per_sec: stat("stat.evictions_per_sec"),
            expirations_per_sec: stat("stat.expirations_per_sec"),
            cpu_permille: stat("stat.cpu_permille"),
            rss_bytes: stat("stat.rss_bytes"),
            latency_p50_us: stat("stat.latency_p50_us"),
            latency_p99_us: stat("stat.latency_p99_us"),
            hints_pending: stat("stat.hints_pending"),
            read_repairs: stat("stat.read_repairs"),
            quorum_failures: stat("stat.quorum_failures"),
            degraded: u8::try_from(stat("stat.degraded")).unwrap_or(u8::MAX),
        },
        hot_keys: state.get("hot.keys").unwrap_or_default().to_owned(),
    })
}

/// True unless `seed` is this node itself (at one of `own` addresses): a node seeded
/// only with itself starts a cluster; any other seed makes it wait to hear from a
/// member before it serves. A host name counts as another node unless it resolves to
/// this one — a StatefulSet seeds every pod with every pod's name, its own included —
/// and a name that does not resolve yet counts too, so that the node waits rather than
/// serve alone as a cluster of one.
async fn names_another_node(seed: &str, own: &[SocketAddr]) -> bool {
    if let Ok(address) = seed.parse::<SocketAddr>() {
        return !own.contains(&address);
    }
    match tokio::net::lookup_host(seed).await {
        Ok(mut addresses) => !addresses.any(|address| own.contains(&address)),
        Err(_) => true,
    }
}

/// The ring of the counted members.
fn ring_of(roster: &Roster, vnodes: u32) -> Ring {
    let mut ring = ring_with_vnodes(vnodes);
    for (id, entry) in roster.members() {
        let mut spec = NodeSpec::new(id.clone());
        if let Some(zone) = &entry.zone {
            spec = spec.with_zone(zone.as_str());
        }
        if let Err(error) = ring.add_node(spec) {
            tracing::warn!(node = %id, %error, "member left out of the ring");
        }
    }
    ring
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_seed_is_another_node_unless_it_names_this_one() {
        let own: [SocketAddr; 1] = ["127.0.0.1:7946".parse().unwrap()];
        assert!(!names_another_node("127.0.0.1:7946", &own).await);
        assert!(names_another_node("127.0.0.2:7946", &own).await);
        // A host name: resolved; this node's own name does not count as a seed.
        assert!(!names_another_node("localhost:7946", &own).await);
        assert!(names_another_node("localhost:7947", &own).await);
        // A name that does not resolve (yet) counts: the node waits to join.
        assert!(names_another_node("quorra-1.invalid:7946", &own).await);
    }
}
