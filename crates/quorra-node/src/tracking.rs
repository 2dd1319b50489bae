//! Server-assisted client-side caching: Redis's `CLIENT TRACKING`, kept coherent across
//! the cluster.
//!
//! A tracking client caches the replies of its reads; the node tells it, with an
//! `invalidate` push (RESP3) or a message on `__redis__:invalidate` (RESP2, to the
//! client it redirects to), when a key it read may have changed. In Redis Cluster a node
//! tells only of the writes it saw itself; here a client connected to any node hears of
//! every change of the keys it read, wherever the change happened.
//!
//! **Who tells whom.** Every change of a key happens first at its primary (where writes
//! run; [`crate::primary_write`]). So a tracking client's read is sent to the key's
//! primary (as a WATCHed key's is), and the primary notes, in the same step as the read,
//! that the node the client is connected to follows the key ([`Tracker::Node`]); the
//! client's own node notes the client ([`Tracker::Client`]) before the read leaves.
//! When the primary runs a write, its commands' hook ([`Tracking::changed`], from
//! [`crate::commands::run`]) sends the key to the following nodes, and each of them to
//! its clients. Entries are one-shot, as in Redis: a key's followers are told once and
//! forgotten; the next read follows it again.
//!
//! The order that makes this safe: a read that was sent before an invalidation arrived
//! has its reply written to the client before the invalidation (pushes are written
//! between a connection's batches), so a client never keeps a value read before a change
//! it was told of. A change the primary makes is sent on at once, before the write is
//! acknowledged to its client; it reaches the other nodes a round trip later.
//!
//! **Expiry, eviction, flushes.** The store's removals of tracked keys (TTL, eviction)
//! invalidate them like writes. FLUSHALL and FLUSHDB invalidate everything (a null
//! invalidation). When the set of serving nodes changes, every node sends every tracking
//! client a null invalidation and forgets what it tracked: a key's primary may have
//! changed, and the new one knows nothing of who follows the key
//! ([`crate::cluster_tasks::follow_views`]). A node's death closes its clients'
//! connections, and a client whose connection drops must drop its cache too (redis-py
//! and node-redis do); see `docs/client-side-caching.md`.
//!
//! **BCAST.** A broadcasting client names key prefixes instead of reads; its node sends
//! them to every node ([`Tracking::prefixes_to_announce`]), which tells it of every
//! change under them. Prefixes are announced again after every view change and every few
//! seconds, and a node forgets a peer's prefixes not announced for a while.
//!
//! **Bound.** The table of tracked keys holds at most `tracking-table-max-keys` keys
//! (Redis's setting, default 1,000,000); a key pushed out is invalidated for every client
//! and node that followed it, so no one keeps a value nobody will invalidate.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use quorra_ring::NodeId;
use tokio::sync::Notify;

use crate::databases::client_key;
use crate::pubsub::PubSub;

/// How long a node keeps another node's announced BCAST prefixes without hearing them
/// again.
pub const PREFIX_LEASE: Duration = Duration::from_secs(15);

/// How often a node announces its clients' BCAST prefixes to the others.
pub const PREFIX_ANNOUNCE_EVERY: Duration = Duration::from_secs(5);

/// Who follows a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Tracker {
    /// A client of this node, by id.
    Client(u64),
    /// Another node, whose clients read the key through it.
    Node(NodeId),
}

/// A tracking client's options (`CLIENT TRACKING ON ...`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackingOptions {
    /// The client that receives the invalidations (`REDIRECT`); `None`: this one.
    pub redirect: Option<u64>,
    /// `BCAST`: invalidations for every key under [`prefixes`](Self::prefixes).
    pub bcast: bool,
    /// `PREFIX`es of a BCAST client (none: every key).
    pub prefixes: Vec<Bytes>,
    /// `OPTIN`: only reads after `CLIENT CACHING YES` are tracked.
    pub optin: bool,
    /// `OPTOUT`: reads after `CLIENT CACHING NO` are not tracked.
    pub optout: bool,
    /// `NOLOOP`: not told of its own writes.
    pub noloop: bool,
}

impl TrackingOptions {
    /// Whether a read by a client with these options, after `CLIENT CACHING` set
    /// `caching` (or not), is tracked.
    pub fn tracks_read(&self, caching: bool) -> bool {
        if self.bcast {
            return false;
        }
        match caching {
            true => !self.optout,
            false => !self.optin,
        }
    }
}

/// A connection's tracking while it is on: turned off in the table when dropped (CLIENT
/// TRACKING OFF, RESET, the connection closing).
pub struct TrackingOn {
    /// Its options.
    pub options: TrackingOptions,
    tracking: Arc<Tracking>,
    client: u64,
}

impl TrackingOn {
    /// Turns tracking on for client `client` with `options`.
    pub fn new(tracking: Arc<Tracking>, client: u64, options: TrackingOptions) -> TrackingOn {
        tracking.enable(client, options.clone());
        TrackingOn {
            options,
            tracking,
            client,
        }
    }
}

impl Drop for TrackingOn {
    fn drop(&mut self) {
        self.tracking.disable(self.client);
    }
}

/// What INFO reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TrackingFigures {
    /// Clients with tracking on.
    pub clients: usize,
    /// Keys in the table.
    pub keys: usize,
    /// (key, follower) pairs in the table.
    pub items: usize,
    /// BCAST prefixes, this node's clients' and other nodes'.
    pub prefixes: usize,
    /// Keys pushed out of the full table (and invalidated).
    pub evicted: u64,
    /// Invalidations sent to this node's clients.
    pub sent: u64,
}

#[derive(Default)]
struct Table {
    keys: HashMap<Bytes, Vec<Tracker>>,
    items: usize,
    /// Tracking clients of this node.
    clients: HashMap<u64, TrackingOptions>,
    /// BCAST prefixes: this node's clients', and other nodes' with when they lapse.
    prefixes: Vec<(Bytes, Tracker, Option<Instant>)>,
}

/// Why a key's followers are told.
#[derive(Clone, Copy)]
enum Cause {
    /// It changed, by a write of this client (`None`: not a client's write).
    Change { by: Option<u64> },
    /// It was pushed out of the full table.
    PushedOut,
}

/// Keys to tell other nodes of, per node.
pub type NodeInvalidations = HashMap<NodeId, Vec<Bytes>>;

/// Invalidations for other nodes that a command's writes made, held by its session until
/// they are sent and answered, before the command's reply is ([`crate::executor::settle`]):
/// a write is acknowledged only once every node that follows its keys has dropped what
/// it cached of them. Dropped unsent (a session that is not a client's), they are queued
/// for [`crate::cluster_tasks::send_invalidations`].
pub struct Unsettled {
    tracking: Arc<Tracking>,
    nodes: NodeInvalidations,
}

impl Unsettled {
    /// None yet.
    pub fn new(tracking: Arc<Tracking>) -> Unsettled {
        Unsettled {
            tracking,
            nodes: NodeInvalidations::new(),
        }
    }

    /// Adds `nodes`.
    pub fn add(&mut self, nodes: NodeInvalidations) {
        for (node, keys) in nodes {
            self.nodes.entry(node).or_default().extend(keys);
        }
    }

    /// Takes them, for the caller to send.
    pub fn take(&mut self) -> NodeInvalidations {
        std::mem::take(&mut self.nodes)
    }
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        let nodes = self.take();
        self.tracking.queue(nodes);
    }
}

/// Changes to tell other nodes of, waiting for [`crate::cluster_tasks::send_invalidations`].
#[derive(Default)]
struct Outgoing {
    keys: HashMap<NodeId, Vec<Bytes>>,
}

/// A node's tracking table.
pub struct Tracking {
    table: Mutex<Table>,
    /// Set while nothing is tracked: the write path's one check.
    idle: AtomicBool,
    max_keys: usize,
    outgoing: Mutex<Outgoing>,
    /// Woken when changes for other nodes are queued.
    pub outgoing_ready: Notify,
    evicted: AtomicU64,
    sent: AtomicU64,
}

impl Tracking {
    /// An empty table of at most `max_keys` keys.
    pub fn new(max_keys: usize) -> Tracking {
        Tracking {
            table: Mutex::default(),
            idle: AtomicBool::new(true),
            max_keys: max_keys.max(1),
            outgoing: Mutex::default(),
            outgoing_ready: Notify::new(),
            evicted: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        }
    }

    /// True while no key, prefix or client is tracked: changes need not be looked up.
    pub fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Relaxed)
    }

    /// Turns tracking on (or changes its options) for client `client`.
    pub fn enable(&self, client: u64, options: TrackingOptions) {
        let mut table = self.table.lock();
        table
            .prefixes
            .retain(|(_, tracker, _)| *tracker != Tracker::Client(client));
        if options.bcast {
            let prefixes = match options.prefixes.is_empty() {
                true => vec![Bytes::new()],
                false => options.prefixes.clone(),
            };
            for prefix in prefixes {
                table.prefixes.push((prefix, Tracker::Client(client), None));
            }
        }
        table.clients.insert(client, options);
        self.idle.store(false, Ordering::Relaxed);
    }

    /// Turns tracking off for client `client` (its keys are forgotten lazily: an entry of
    /// a client that no longer tracks is skipped when the key changes).
    pub fn disable(&self, client: u64) {
        let mut table = self.table.lock();
        table.clients.remove(&client);
        table
            .prefixes
            .retain(|(_, tracker, _)| *tracker != Tracker::Client(client));
        self.update_idle(&table);
    }

    fn update_idle(&self, table: &Table) {
        let idle = table.keys.is_empty() && table.prefixes.is_empty() && table.clients.is_empty();
        self.idle.store(idle, Ordering::Relaxed);
    }

    /// Notes that `tracker` follows `keys` (stored form), before they are read. Keys
    /// pushed out of a full table are invalidated through `pubsub`.
    pub fn follow<'a>(
        &self,
        pubsub: &PubSub,
        tracker: &Tracker,
        keys: impl IntoIterator<Item = &'a Bytes>,
    ) {
        let mut table = self.table.lock();
        for key in keys {
            let followers = table.keys.entry(key.clone()).or_default();
            if !followers.contains(tracker) {
                followers.push(tracker.clone());
                table.items += 1;
            }
        }
        self.idle.store(false, Ordering::Relaxed);
        let mut nodes = NodeInvalidations::new();
        while table.keys.len() > self.max_keys {
            // An arbitrary key, as Redis picks a random one.
            let Some(key) = table.keys.keys().next().cloned() else {
                break;
            };
            let followers = table.keys.remove(&key).unwrap_or_default();
            table.items -= followers.len();
            self.evicted.fetch_add(1, Ordering::Relaxed);
            self.tell(
                pubsub,
                &table,
                &key,
                followers,
                Cause::PushedOut,
                &mut nodes,
            );
        }
        drop(table);
        self.queue(nodes);
    }

    /// `keys` (stored form) changed here — written by client `by` (`None`: expired,
    /// evicted, or changed by another node): tells every client of this node that
    /// followed them, forgets that they did, and returns what to tell the other nodes
    /// that followed them (the caller sends it before acknowledging the change, or
    /// [`queue`](Self::queue)s it).
    pub fn changed<'a>(
        &self,
        pubsub: &PubSub,
        keys: impl IntoIterator<Item = &'a Bytes>,
        by: Option<u64>,
    ) -> NodeInvalidations {
        let mut nodes = NodeInvalidations::new();
        if self.is_idle() {
            return nodes;
        }
        let mut table = self.table.lock();
        for key in keys {
            let followers = table.keys.remove(key).unwrap_or_default();
            table.items -= followers.len();
            self.tell(
                pubsub,
                &table,
                key,
                followers,
                Cause::Change { by },
                &mut nodes,
            );
        }
        self.update_idle(&table);
        nodes
    }

    /// Queues invalidations for other nodes, for
    /// [`crate::cluster_tasks::send_invalidations`] to send.
    pub fn queue(&self, nodes: NodeInvalidations) {
        if nodes.is_empty() {
            return;
        }
        let mut outgoing = self.outgoing.lock();
        for (node, keys) in nodes {
            outgoing.keys.entry(node).or_default().extend(keys);
        }
        drop(outgoing);
        self.outgoing_ready.notify_one();
    }

    /// Sends the invalidation of `key` to `followers` and, for a change (not a key pushed
    /// out of the table), to the prefixes it falls under — except to a NOLOOP client
    /// that made the change.
    fn tell(
        &self,
        pubsub: &PubSub,
        table: &Table,
        key: &Bytes,
        followers: Vec<Tracker>,
        cause: Cause,
        nodes: &mut NodeInvalidations,
    ) {
        let user_key = client_key(key);
        let (changed, by) = match cause {
            Cause::Change { by } => (true, by),
            Cause::PushedOut => (false, None),
        };
        let under_prefix = table
            .prefixes
            .iter()
            .filter(|(prefix, _, _)| changed && user_key.starts_with(prefix))
            .map(|(_, tracker, _)| tracker.clone());
        let mut told = HashSet::new();
        for tracker in followers.into_iter().chain(under_prefix) {
            if !told.insert(tracker.clone()) {
                continue;
            }
            match tracker {
                Tracker::Client(client) => {
                    let Some(options) = table.clients.get(&client) else {
                        continue;
                    };
                    if options.noloop && by == Some(client) {
                        continue;
                    }
                    let target = options.redirect.unwrap_or(client);
                    let keys: Arc<[Bytes]> = Arc::from(vec![user_key.clone()]);
                    if pubsub.invalidate(target, Some(keys)) {
                        self.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Tracker::Node(node) => nodes.entry(node).or_default().push(key.clone()),
            }
        }
    }

    /// Tells every tracking client of this node that all its cached keys are invalid
    /// (FLUSHALL, a view change), and forgets the keys they followed.
    pub fn invalidate_all(&self, pubsub: &PubSub) {
        let mut table = self.table.lock();
        // Other nodes that follow keys here still do: they are told of the keys' changes.
        table.keys.retain(|_, followers| {
            followers.retain(|follower| matches!(follower, Tracker::Node(_)));
            !followers.is_empty()
        });
        table.items = table.keys.values().map(Vec::len).sum();
        let targets: HashSet<u64> = table
            .clients
            .iter()
            .map(|(client, options)| options.redirect.unwrap_or(*client))
            .collect();
        for target in targets {
            if pubsub.invalidate(target, None) {
                self.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.update_idle(&table);
    }

    /// Notes the BCAST `prefixes` node `node` announced; a node's earlier prefixes are
    /// replaced.
    pub fn follow_prefixes(&self, node: &NodeId, prefixes: Vec<Bytes>, now: Instant) {
        let mut table = self.table.lock();
        let tracker = Tracker::Node(node.clone());
        table.prefixes.retain(|(_, owner, _)| *owner != tracker);
        for prefix in prefixes {
            table
                .prefixes
                .push((prefix, tracker.clone(), Some(now + PREFIX_LEASE)));
        }
        self.update_idle(&table);
    }

    /// Forgets other nodes' prefixes not announced again in time.
    pub fn drop_lapsed_prefixes(&self, now: Instant) {
        let mut table = self.table.lock();
        table
            .prefixes
            .retain(|(_, _, lapses)| lapses.is_none_or(|at| at > now));
        self.update_idle(&table);
    }

    /// The BCAST prefixes of this node's clients, for the other nodes.
    pub fn prefixes_to_announce(&self) -> Vec<Bytes> {
        let table = self.table.lock();
        let mut prefixes: Vec<Bytes> = table
            .prefixes
            .iter()
            .filter(|(_, tracker, _)| matches!(tracker, Tracker::Client(_)))
            .map(|(prefix, _, _)| prefix.clone())
            .collect();
        prefixes.sort();
        prefixes.dedup();
        prefixes
    }

    /// The changes waiting to be told to other nodes, taken.
    pub fn take_outgoing(&self) -> HashMap<NodeId, Vec<Bytes>> {
        std::mem::take(&mut self.outgoing.lock().keys)
    }

    /// What INFO reports.
    pub fn figures(&self) -> TrackingFigures {
        let table = self.table.lock();
        TrackingFigures {
            clients: table.clients.len(),
            keys: table.keys.len(),
            items: table.items,
            prefixes: table.prefixes.len(),
            evicted: self.evicted.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use quorra_resp::Protocol;

    use super::*;
    use crate::clients::ClientRegistry;
    use crate::pubsub::Subscriber;

    fn key(text: &str) -> Bytes {
        Bytes::from(text.to_owned())
    }

    struct Connection {
        id: u64,
        subscriber: Subscriber,
    }

    impl Connection {
        fn new(hub: &Arc<PubSub>, registry: &ClientRegistry) -> Connection {
            let addr = "127.0.0.1:1".parse().unwrap();
            let info = registry.unlisted(addr, addr);
            Connection {
                id: info.id,
                subscriber: Subscriber::new(hub.clone(), info),
            }
        }

        fn received(&mut self) -> String {
            let mut out = BytesMut::new();
            self.subscriber
                .drain_into(&mut out, Protocol::Resp3, usize::MAX);
            String::from_utf8_lossy(&out).into_owned()
        }
    }

    const INVALIDATE_A: &str = ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n";

    #[test]
    fn a_change_is_told_once_to_each_follower_and_then_forgotten() {
        let hub = Arc::new(PubSub::new(0));
        let registry = ClientRegistry::default();
        let tracking = Tracking::new(100);
        let mut reader = Connection::new(&hub, &registry);
        let mut writer = Connection::new(&hub, &registry);
        assert!(tracking.is_idle());
        tracking.enable(reader.id, TrackingOptions::default());
        tracking.enable(
            writer.id,
            TrackingOptions {
                noloop: true,
                ..TrackingOptions::default()
            },
        );
        let node = NodeId::from("node-b");
        tracking.follow(&hub, &Tracker::Client(reader.id), [&key("a")]);
        tracking.follow(&hub, &Tracker::Client(writer.id), [&key("a")]);
        tracking.follow(&hub, &Tracker::Node(node.clone()), [&key("a"), &key("b")]);
        assert_eq!(tracking.figures().items, 4);

        let nodes = tracking.changed(&hub, [&key("a")], Some(writer.id));
        assert_eq!(reader.received(), INVALIDATE_A);
        assert_eq!(writer.received(), "", "NOLOOP: not told of its own write");
        assert_eq!(nodes, HashMap::from([(node, vec![key("a")])]));

        // One-shot: told again only after reading again.
        assert!(tracking.changed(&hub, [&key("a")], None).is_empty());
        assert_eq!(reader.received(), "");
        assert_eq!(tracking.figures().keys, 1, "b is still followed");
    }

    #[test]
    fn a_full_table_pushes_keys_out_and_invalidates_them() {
        let hub = Arc::new(PubSub::new(0));
        let registry = ClientRegistry::default();
        let tracking = Tracking::new(10);
        let mut reader = Connection::new(&hub, &registry);
        tracking.enable(reader.id, TrackingOptions::default());
        let keys: Vec<Bytes> = (0..1000).map(|i| key(&format!("k{i}"))).collect();
        for key in &keys {
            tracking.follow(&hub, &Tracker::Client(reader.id), [key]);
        }
        let figures = tracking.figures();
        assert_eq!((figures.keys, figures.items), (10, 10));
        assert_eq!(figures.evicted, 990);
        assert_eq!(reader.received().matches("invalidate").count(), 990);
    }

    #[test]
    fn bcast_clients_hear_of_every_key_under_their_prefixes() {
        let hub = Arc::new(PubSub::new(0));
        let registry = ClientRegistry::default();
        let tracking = Tracking::new(100);
        let mut bcast = Connection::new(&hub, &registry);
        tracking.enable(
            bcast.id,
            TrackingOptions {
                bcast: true,
                prefixes: vec![key("a")],
                ..TrackingOptions::default()
            },
        );
        let node = NodeId::from("node-b");
        tracking.follow_prefixes(&node, vec![key("b")], Instant::now());
        let nodes = tracking.changed(&hub, [&key("a"), &key("b"), &key("c")], None);
        assert_eq!(bcast.received(), INVALIDATE_A);
        assert_eq!(nodes, HashMap::from([(node, vec![key("b")])]));
        assert_eq!(tracking.prefixes_to_announce(), vec![key("a")]);
        tracking.drop_lapsed_prefixes(Instant::now() + PREFIX_LEASE * 2);
        assert_eq!(tracking.figures().prefixes, 1, "the peer's prefix lapsed");
    }

    #[test]
    fn a_flush_invalidates_everything_with_a_null() {
        let hub = Arc::new(PubSub::new(0));
        let registry = ClientRegistry::default();
        let tracking = Tracking::new(100);
        let mut reader = Connection::new(&hub, &registry);
        tracking.enable(reader.id, TrackingOptions::default());
        tracking.follow(&hub, &Tracker::Client(reader.id), [&key("a")]);
        tracking.invalidate_all(&hub);
        assert_eq!(reader.received(), ">2\r\n$10\r\ninvalidate\r\n_\r\n");
        assert_eq!(tracking.figures().keys, 0);
        tracking.disable(reader.id);
        assert!(tracking.is_idle());
    }
}
