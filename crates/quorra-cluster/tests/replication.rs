//! Replication over three in-memory stores whose links the test cuts, N=3 W=2 R=2, on
//! tokio's paused clock (a cut link answers after the timeout, in virtual time) and the
//! stores' mock clock.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use quorra_cluster::replication::{Level, ReplicaError, ReplicaWrite, Replicas, Replicator};
use quorra_cluster::rpc::BoxFuture;
use quorra_ring::NodeId;
use quorra_store::collection::HashValue;
use quorra_store::{
    ApplyOutcome, DeltaOutcome, EntryDelta, MockClock, Store, StoreConfig, VersionedEntry,
};

const TIMEOUT: Duration = Duration::from_secs(1);
const START_MS: u64 = 1_800_000_000_000;

/// Three stores behind links that can be cut.
struct Network {
    stores: HashMap<NodeId, Arc<Store>>,
    cut: Mutex<HashSet<NodeId>>,
    /// Write requests (`apply`) each node was sent.
    write_requests: Mutex<HashMap<NodeId, usize>>,
}

impl Network {
    fn new(clock: &MockClock) -> Arc<Network> {
        let stores = ["a", "b", "c"]
            .into_iter()
            .enumerate()
            .map(|(i, id)| {
                let config = StoreConfig {
                    node_id: i as u64 + 1,
                    tombstone_grace_ms: 60_000,
                    ..StoreConfig::default()
                };
                (
                    NodeId::from(id),
                    Arc::new(Store::new(config, Arc::new(clock.clone()))),
                )
            })
            .collect();
        Arc::new(Network {
            stores,
            cut: Mutex::new(HashSet::new()),
            write_requests: Mutex::new(HashMap::new()),
        })
    }

    fn cut(&self, node: &str) {
        self.cut.lock().insert(node.into());
    }

    fn heal(&self) {
        self.cut.lock().clear();
    }

    fn write_requests(&self, node: &str) -> usize {
        self.write_requests
            .lock()
            .get(&NodeId::from(node))
            .copied()
            .unwrap_or(0)
    }

    fn store(&self, node: &str) -> &Store {
        &self.stores[&NodeId::from(node)]
    }

    /// Waits while the link to `node` is cut, then fails as a timed-out call would.
    fn reach(&self, node: &NodeId) -> Option<Arc<Store>> {
        (!self.cut.lock().contains(node)).then(|| self.stores[node].clone())
    }
}

fn unreachable(node: &NodeId) -> ReplicaError {
    ReplicaError {
        node: node.clone(),
        message: "timed out".into(),
        unreachable: true,
    }
}

impl Replicas for Network {
    fn apply(
        &self,
        node: &NodeId,
        entries: Vec<(Bytes, VersionedEntry)>,
        // The stores here are only read between requests: every batch is atomic.
        _atomic: bool,
    ) -> BoxFuture<Result<Vec<Result<(), ReplicaError>>, ReplicaError>> {
        *self.write_requests.lock().entry(node.clone()).or_default() += 1;
        let (store, node) = (self.reach(node), node.clone());
        Box::pin(async move {
            let Some(store) = store else {
                tokio::time::sleep(TIMEOUT).await;
                return Err(unreachable(&node));
            };
            Ok(entries
                .into_iter()
                .map(|(key, entry)| {
                    store
                        .apply(&key, entry)
                        .map(|_| ())
                        .map_err(|error| ReplicaError {
                            node: node.clone(),
                            message: error.to_string(),
                            unreachable: false,
                        })
                })
                .collect())
        })
    }

    fn apply_deltas(
        &self,
        node: &NodeId,
        deltas: Vec<(Bytes, EntryDelta)>,
    ) -> BoxFuture<Result<Vec<Result<DeltaOutcome, ReplicaError>>, ReplicaError>> {
        *self.write_requests.lock().entry(node.clone()).or_default() += 1;
        let (store, node) = (self.reach(node), node.clone());
        Box::pin(async move {
            let Some(store) = store else {
                tokio::time::sleep(TIMEOUT).await;
                return Err(unreachable(&node));
            };
            Ok(deltas
                .iter()
                .map(|(key, delta)| {
                    store.apply_delta(key, delta).map_err(|error| ReplicaError {
                        node: node.clone(),
                        message: error.to_string(),
                        unreachable: false,
                    })
                })
                .collect())
        })
    }

    /// Node a plays the primary: deltas are made there, and their whole entries read.
    fn local_entry(&self, key: &[u8]) -> Option<VersionedEntry> {
        self.store("a").get_versioned(key)
    }

    fn read(
        &self,
        node: &NodeId,
        keys: Vec<Bytes>,
        promote: bool,
    ) -> BoxFuture<Result<Vec<Option<VersionedEntry>>, ReplicaError>> {
        let (store, node) = (self.reach(node), node.clone());
        Box::pin(async move {
            let Some(store) = store else {
                tokio::time::sleep(TIMEOUT).await;
                return Err(unreachable(&node));
            };
            let read = |key: &Bytes| match promote {
                true => store.read_versioned(key),
                false => store.get_versioned(key),
            };
            Ok(keys.iter().map(read).collect())
        })
    }
}

fn replicas() -> Vec<NodeId> {
    ["a", "b", "c"].map(NodeId::from).to_vec()
}

/// A write as a coordinator makes one: a fresh version from `writer`'s clock.
fn entry(net: &Network, writer: &str, value: &str) -> VersionedEntry {
    let version = net.store(writer).hybrid_clock().next(START_MS);
    VersionedEntry::value(Bytes::from(value.to_owned()), version)
}

fn whole(entry: VersionedEntry) -> ReplicaWrite {
    ReplicaWrite::Whole(entry)
}

fn tombstone(net: &Network, writer: &str) -> VersionedEntry {
    VersionedEntry::tombstone(net.store(writer).hybrid_clock().next(START_MS))
}

fn value_at(net: &Network, node: &str, key: &str) -> Option<Bytes> {
    net.store(node).get(key.as_bytes())
}

/// Writes `entry` for key `k` to a, b and c, at `level`.
async fn put(
    replicator: &Replicator,
    level: Level,
    entry: VersionedEntry,
) -> Result<usize, quorra_cluster::replication::QuorumError> {
    replicator
        .write(&replicas(), 3, level, "k".into(), entry)
        .await
}

/// Lets the background repairs and late writes finish (virtual time).
async fn settle() {
    tokio::time::sleep(TIMEOUT * 3).await;
}

#[tokio::test(start_paused = true)]
async fn with_one_replica_cut_off_quorum_writes_and_reads_succeed() {
    let clock = MockClock::new(START_MS);
    let net = Network::new(&clock);
    let replicator = Replicator::new(net.clone(), 1000);
    net.cut("c");
    let acks = put(&replicator, Level::Quorum, entry(&net, "a", "v1"))
        .await
        .unwrap();
    assert_eq!(acks, 2);
    let read = replicator
        .read(&replicas(), 3, Level::Quorum, "k".into())
        .await
        .unwrap();
    assert_eq!(read.unwrap().value, "v1");
    assert_eq!(value_at(&net, "c", "k"), None);
}

#[tokio::test(start_paused = true)]
async fn with_two_cut_off_quorum_fails_with_the_counts_and_one_succeeds() {
    let clock = MockClock::new(START_MS);
    let net = Network::new(&clock);
    let replicator = Replicator::new(net.clone(), 1000);
    net.cut("b");
    net.cut("c");
    let failed = put(&replicator, Level::Quorum, entry(&net, "a", "v1"))
        .await
        .unwrap_err();
    assert_eq!(
        failed.to_string(),
        "NOQUORUM 1 of 2 required replicas answered (level QUORUM)"
    );
    let failed = replicator
        .read(&replicas(), 3, Level::Quorum, "k".into())
        .await
        .unwrap_err();
    assert_eq!(
        failed.to_string(),
        "NOQUORUM 1 of 2 required replicas answered (level QUORUM)"
    );
    assert_eq!(
        put(&replicator, Level::One, entry(&net, "a", "v2")).await,
        Ok(1)
    );
    let read = replicator
        .read(&replicas(), 3, Level::One, "k".into())
        .await
        .unwrap();
    assert_eq!(read.unwrap().value, "v2");
    assert_eq!(
        replicator
            .stats()
            .quorum_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn a_node_that_sees_only_itself_is_no_majority_of_three() {
    let clock = MockClock::new(START_MS);
    let net = Network::new(&clock);
    let replicator = Replicator::new(net.clone(), 1000);
    // c is cut off: its ring has only itself, but N is still 3.
    let alone = [NodeId::from("c")];
    let refused = replicator
        .write(&alone, 3, Level::Quorum, "k".into(), entry(&net, "c", "v"))
        .await
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "NOQUORUM 1 of 2 required replicas answered (level QUORUM)"
    );
    assert_eq!(
        replicator
            .write(&alone, 3, Level::One, "k".into(), entry(&net, "c", "v"))
            .await,
        Ok(1)
    );
}

#[tokio::test(start_paused = true)]
async fn many_keys_are_read_in_one_request_per_replica_and_each_resolves_on_its_own() {
    let clock = MockClock::new(START_MS);
    let net = Network::new(&clock);
    let replicator = Replicator::new(net.clone(), 1000);
    for key in ["k1", "k2"] {
        replicator
            .write(
                &replicas(),
                3,
                Level::All,
                key.into(),
                entry(&net, "a", key),
            )
            .await
            .unwrap();
    }
    net.cut("c");
    let bc = vec![NodeId::from("b"), NodeId::from("c")];
    let results = replicator
        .read_many(
            vec![
                ("k1".into(), replicas()),
                ("k2".into(), bc),
                ("none".into(), replicas()),
            ],
            3,
            Level::Quorum,
            true,
        )
        .await;
    assert_eq!(results[0].as_ref().unwrap().as_ref().unwrap().value, "k1");
    assert_eq!(
        results[1].as_ref().unwrap_err().to_string(),
        "NOQUORUM 1 of 2 required replicas answered (level QUORUM)"
    );
    assert_eq!(results[2], Ok(None));
}

#[tokio::test(start_paused = true)]
async fn many_keys_are_written_in_one_request_per_replica_and_each_resolves_on_its_own() {
    let clock = MockClock::new(START_MS);
    let net = Network::new(&clock);
    let replicator = Replicator::new(net.clone(), 1000);
    net.cut("c");
    let (ab, bc) = (
        vec![NodeId::from("a"), NodeId::from("b")],
        vec![NodeId::from("b"), NodeId::from("c")],
    );
    let results = replicator
        .write_many(
            vec![
                ("k1".into(), whole(entry(&net, "a", "v1")), replicas()),
                ("k2".into(), whole(entry(&net, "a", "v2")), ab),
                ("k3".into(), whole(entry(&net, "a", "v3")), bc),
            ],
            3,
            Level::Quorum,
            false,
        )
        .await;
    assert_eq!(results[0], Ok(2), "a and b stored k1");
    assert_eq!(results[1], Ok(2));
    assert_eq!(
        results[2].as_ref().unwrap_err().to_string(),
        "NOQUORUM 1 of 2 required replicas answered (level QUORUM)"
    );
    for node in ["a", "b", "c"] {
        assert_eq!(net.write_requests(node), 1, "one request to {node}");
    }
    assert_eq!(
        value_at(&net, "b", "k3").unwrap(),
        "v3",
        "k3 landed where it could"
    );
    // c was unreachable: a hint for each of its two keys, delivered when it returns.
    settle().await;
    assert_eq!(replicator.hints().len(), 2);
    net.heal();
    assert_eq!(replicator.replay_hints(&"c".into()).await, 2);
    assert_eq!(value_at(&net, "c", "k1").unwrap(), "v1");
    assert_eq!(value_at(&net, "c", "k3").unwrap(), "v3");
}

#[tokio::test(start_paused = true)]
async fn after_healing_read_repair_brings_a_stale_replica_up_to_date() {
    let clock = MockClock::new(START_MS);
    let net = Network::new(&clock);
    // No hints: only read repair can bring c up to date.
    let replicator = Replicator::new(net.clone(), 0);
    put(&replicator, Level::All, entry(&net, "a", "old"))
        .await
        .unwrap();
    net.cut("c");
    put(&replicator, Level::Quorum, entry(&net, "b", "new"))
        .await
        .unwrap();
    settle().await;
    assert_eq!(value_at(&net, "c", "k").unwrap(), "old");
    net.heal();
    // Even a read that is answered by a and b alone repairs c once it answers.
    let read = replicator
        .read(&replicas(), 3, Level::Quorum, "k".into())
        .await
        .unwrap();
    assert_eq!(read.unwrap().value, "new");
    settle().await;
    for node in ["a", "b", "c"] {
        assert_eq!(value_at(&net, node, "k").unwrap(), "new", "{node}");
        assert_eq!(
            net.store(node).get_versioned(b"k").unwrap().version,
            net.store("a").get_versioned(b"k").unwrap().version
        );
    }
    assert!(
        replicator
            .stats()
            .read_repairs
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test(start_paused = true)]
async fn a_hinted_write_reaches_the_returning_replica() {
    let clock = MockClock::new(START_MS);
    let net = Network::new(&clock);
    let replicator = Replicator::new(net.clone(), 1000);
    net.cut("c");
    put(&replicator, Level::Quorum, entry(&net, "a", "hinted"))
        .await
        .unwrap();
    settle().await;
    assert_eq!(replicator.hints().nodes(), [NodeId::from("c")]);
    // Still unreachable: the hint is kept for later.
    assert_eq!(replicator.replay_hints(&"c".into()).await, 0);
    assert_eq!(replicator.hints().len(), 1);
    net.heal();
    assert_eq!(replicator.replay_hints(&"c".into()).await, 1);
    assert_eq!(value_at(&net, "c", "k").unwrap(), "hinted");
    assert!(replicator.hints().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_key_deleted_during_a_partition_is_not_resurrected() {
    let clock = MockClock::new(START_MS);
    let net = Network::new(&clock);
    let replicator = Replicator::new(net.clone(), 0);
    put(&replicator, Level::All, entry(&net, "a", "alive"))
        .await
        .unwrap();
    net.cut("c");
    put(&replicator, Level::Quorum, tombstone(&net, "b"))
        .await
        .unwrap();
    settle().await;
    net.heal();
    // c still holds the old value; a read that hears it, and a, sees the tombstone win.
    assert_eq!(value_at(&net, "c", "k").unwrap(), "alive");
    let c_first = [NodeId::from("c"), NodeId::from("a")];
    let read = replicator
        .read(&c_first, 2, Level::All, "k".into())
        .await
        .unwrap();
    assert!(
        read.unwrap().tombstone,
        "the delete is newer than the value"
    );
    settle().await;
    assert_eq!(value_at(&net, "c", "k"), None, "repair deleted it on c");
    assert!(net.store("c").get_versioned(b"k").unwrap().tombstone);
}

mod anti_entropy {
    use super::*;
    use quorra_cluster::antientropy::{self, BucketEntry, Peer, sync_with};
    use quorra_cluster::membership::{
        ClusterView, Member, MemberState, MemberStats, NodeAddresses,
    };
    use quorra_ring::{NodeSpec, Ring};

    fn view_of(self_id: &str) -> ClusterView {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let addresses = NodeAddresses {
            resp: addr,
            http: addr,
            cluster: addr,
        };
        let members = ["a", "b", "c"]
            .into_iter()
            .map(|id| Member {
                id: id.into(),
                generation: 1,
                addresses,
                zone: None,
                state: MemberState::Up,
                stats: MemberStats::default(),
                hot_keys: String::new(),
            })
            .collect();
        ClusterView {
            self_id: self_id.into(),
            members,
            ring: Ring::from_nodes(["a", "b", "c"].map(NodeSpec::new)).unwrap(),
            ring_version: 0,
            joined: true,
        }
    }

    /// `b` as `a`'s anti-entropy peer, in process.
    struct InProcess {
        store: Arc<Store>,
        view: ClusterView,
        asker: NodeId,
        /// Read and apply requests received.
        requests: Mutex<usize>,
    }

    impl Peer for InProcess {
        fn digest(&self) -> BoxFuture<Result<Vec<u64>, String>> {
            let digest = antientropy::digest(&self.store, &self.view, &self.asker, 3);
            Box::pin(async move { Ok(digest) })
        }
        fn bucket_versions(
            &self,
            buckets: Vec<usize>,
        ) -> BoxFuture<Result<Vec<BucketEntry>, String>> {
            let versions =
                antientropy::bucket_versions(&self.store, &self.view, &self.asker, 3, &buckets);
            Box::pin(async move { Ok(versions) })
        }
        fn read(&self, keys: Vec<Bytes>) -> BoxFuture<Result<Vec<Option<VersionedEntry>>, String>> {
            *self.requests.lock() += 1;
            let entries = keys
                .iter()
                .map(|key| self.store.get_versioned(key))
                .collect();
            Box::pin(async move { Ok(entries) })
        }
        fn apply(&self, entries: Vec<(Bytes, VersionedEntry)>) -> BoxFuture<Result<usize, String>> {
            *self.requests.lock() += 1;
            let outcome = entries.iter().try_fold(0, |taken, (key, entry)| {
                let outcome = self.store.apply(key, entry.clone())?;
                Ok::<_, quorra_store::StoreError>(
                    taken + usize::from(outcome == ApplyOutcome::Applied),
                )
            });
            Box::pin(async move { outcome.map_err(|error| error.to_string()) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_partition_anti_entropy_makes_two_replicas_equal_by_moving_only_the_differences()
     {
        let clock = MockClock::new(START_MS);
        let net = Network::new(&clock);
        let (a, b) = (
            net.stores[&"a".into()].clone(),
            net.stores[&"b".into()].clone(),
        );
        // What both had before the partition.
        for i in 0..500 {
            let entry = entry(&net, "a", "same");
            a.apply(format!("common:{i}").as_bytes(), entry.clone())
                .unwrap();
            b.apply(format!("common:{i}").as_bytes(), entry).unwrap();
        }
        // During it: each side took writes the other missed, and b deleted a key.
        a.apply(b"only-a", entry(&net, "a", "a")).unwrap();
        b.apply(b"only-b", entry(&net, "b", "b")).unwrap();
        b.apply(b"common:7", entry(&net, "b", "newer on b"))
            .unwrap();
        a.apply(b"common:8", entry(&net, "a", "newer on a"))
            .unwrap();
        b.apply(b"common:9", tombstone(&net, "b")).unwrap();

        let peer = InProcess {
            store: b.clone(),
            view: view_of("b"),
            asker: "a".into(),
            requests: Mutex::new(0),
        };
        let view_a = view_of("a");
        let report = sync_with(&a, &view_a, &"b".into(), &peer, 3).await.unwrap();
        assert_eq!((report.pulled, report.pushed), (3, 2), "{report:?}");
        assert!(report.buckets_differing <= 5, "{report:?}");
        for key in [
            "only-a", "only-b", "common:7", "common:8", "common:9", "common:1",
        ] {
            assert_eq!(
                a.get_versioned(key.as_bytes()),
                b.get_versioned(key.as_bytes()),
                "{key}"
            );
        }
        assert_eq!(
            a.get(b"common:9"),
            None,
            "the delete won over the old value"
        );
        assert_eq!(
            antientropy::digest(&a, &view_a, &"b".into(), 3),
            antientropy::digest(&b, &view_of("b"), &"a".into(), 3)
        );
        let again = sync_with(&a, &view_a, &"b".into(), &peer, 3).await.unwrap();
        assert_eq!(
            (again.buckets_differing, again.pulled, again.pushed),
            (0, 0, 0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pass_stops_at_its_key_budget_and_says_so() {
        let clock = MockClock::new(START_MS);
        let net = Network::new(&clock);
        let (a, b) = (
            net.stores[&"a".into()].clone(),
            net.stores[&"b".into()].clone(),
        );
        let missing = antientropy::MAX_KEYS_PER_PASS + 500;
        for i in 0..missing {
            a.apply(format!("k:{i}").as_bytes(), entry(&net, "a", "v"))
                .unwrap();
        }
        let peer = InProcess {
            store: b.clone(),
            view: view_of("b"),
            asker: "a".into(),
            requests: Mutex::new(0),
        };
        let view_a = view_of("a");
        let first = sync_with(&a, &view_a, &"b".into(), &peer, 3).await.unwrap();
        assert!(first.truncated);
        assert_eq!(first.pushed, antientropy::MAX_KEYS_PER_PASS);
        // Small entries: one apply request per group of 32 buckets, not one per key.
        assert!(
            *peer.requests.lock() <= antientropy::BUCKETS / 32,
            "{} requests",
            peer.requests.lock()
        );
        let second = sync_with(&a, &view_a, &"b".into(), &peer, 3).await.unwrap();
        assert!(!second.truncated);
        assert_eq!(second.pushed, 500);
        assert_eq!(b.dbsize(0) as usize, missing);
    }
}

/// HSETs `field` to `value` in hash `key` at node a (the primary), as a command does
/// under capture; the delta for the other replicas.
fn hset_at_a(net: &Network, key: &[u8], field: &str, value: &str) -> EntryDelta {
    let a = net.store("a");
    let (_, changes) = a.capture(|| {
        a.update_collection::<HashValue, _>(key, true, 1 << 10, |h, _| {
            h.set(field.as_bytes(), value.as_bytes(), false);
            ((), true)
        })
        .unwrap()
    });
    a.delta(key, changes.get(key).expect("written"))
        .expect("an existing hash's update is a delta")
}

fn fields(net: &Network, node: &str, key: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut fields = net
        .store(node)
        .read_collection::<HashValue, _>(key, |h, now| {
            h.iter(now)
                .map(|e| (e.name().to_vec(), e.value().to_vec()))
                .collect::<Vec<_>>()
        })
        .unwrap()
        .unwrap_or_default();
    fields.sort();
    fields
}

#[tokio::test(start_paused = true)]
async fn a_delta_goes_to_replicas_that_hold_its_base_and_the_whole_hash_to_one_that_does_not() {
    let clock = MockClock::new(START_MS);
    let net = Network::new(&clock);
    let replicator = Replicator::new(net.clone(), 1000);
    let key: &[u8] = b"big";
    // A 1,000-field hash on a and b; c missed it.
    let a = net.store("a");
    for n in 0..1_000 {
        a.update_collection::<HashValue, _>(key, true, 1 << 10, |h, _| {
            ((), h.set(format!("f{n}").as_bytes(), b"v", false))
        })
        .unwrap();
    }
    net.store("b")
        .apply(key, a.get_versioned(key).unwrap())
        .unwrap();

    let delta = hset_at_a(&net, key, "f7", "changed");
    assert!(delta.present.len() < 64, "one field travels, not 1,000");
    let results = replicator
        .write_many(
            vec![(key.into(), ReplicaWrite::Delta(delta), replicas())],
            3,
            Level::All,
            false,
        )
        .await;
    assert_eq!(results[0], Ok(3), "c took the whole hash instead");
    let stats = replicator.stats();
    let load =
        |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        (load(&stats.deltas_sent), load(&stats.deltas_resent_whole)),
        (3, 1)
    );
    for node in ["b", "c"] {
        assert_eq!(fields(&net, node, key), fields(&net, "a", key), "{node}");
        assert_eq!(
            net.store(node).get_versioned(key).unwrap().version,
            a.get_versioned(key).unwrap().version
        );
    }

    // c unreachable: its hint is the whole hash, which brings it up to date later.
    net.cut("c");
    let delta = hset_at_a(&net, key, "f8", "again");
    let results = replicator
        .write_many(
            vec![(key.into(), ReplicaWrite::Delta(delta), replicas())],
            3,
            Level::Quorum,
            false,
        )
        .await;
    assert_eq!(results[0], Ok(2));
    settle().await;
    assert_eq!(replicator.hints().len(), 1);
    net.heal();
    assert_eq!(replicator.replay_hints(&"c".into()).await, 1);
    assert_eq!(fields(&net, "c", key), fields(&net, "a", key));
    assert_eq!(fields(&net, "c", key).len(), 1_000);
}
