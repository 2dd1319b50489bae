//! Replication: N copies of each key, quorum writes and reads, read repair, hinted
//! handoff.
//!
//! A key's replicas are the first N distinct nodes of its preference list on the ring
//! (zone-aware when zones are set); the ring holds only serving nodes, so with some of
//! them down a key has fewer than N live replicas, but levels still count against N
//! (capped by the cluster's known members): a majority of N is needed, and a node cut
//! off on its own cannot reach one. The coordinating node hands a [`Replicator`] the
//! live replicas, N and the level:
//!
//! - [`Replicator::write`] sends a versioned entry (value or tombstone, with its absolute
//!   expiry) to every replica at once and returns as soon as `required` of them have
//!   stored it; the other sends keep going in the background, so late acks still land.
//!   A replica that cannot be reached gets a *hint*: the entry is kept in [`Hints`]
//!   (bounded by [`Hints::new`]'s limit, newest version per key) and replayed by
//!   [`Replicator::replay_hints`] when the node is reachable again.
//! - [`Replicator::write_many`] does the same for many keys, each with its own replicas:
//!   every replica gets one request ([`Replicas::apply`]) with all of its entries,
//!   and each key is answered once enough of its replicas have stored it. A write to a
//!   hash, set or sorted set may travel as a delta, its changed elements
//!   ([`ReplicaWrite::Delta`], [`Replicas::apply_deltas`]), so that a write to a big
//!   collection does not cost its size; a replica that does not hold the version the
//!   delta starts from is sent the whole entry instead, and a hint is always whole.
//! - [`Replicator::read`] asks every replica and answers once `required` have replied,
//!   with the newest version among them (last writer wins: versions are hybrid-logical
//!   timestamps with the node id as tie-break, see `quorra_store::Version`). In the
//!   background it waits for the remaining replies too (each bounded by the transport's
//!   timeout) and *repairs* every replica that answered with an older version, or none,
//!   by writing the newest one to it.
//!
//! When fewer than `required` replicas answer, the caller gets a [`QuorumError`] that says
//! how many did and what was asked: `NOQUORUM 1 of 2 required replicas answered (level
//! QUORUM)`. A failed write may still have been stored by the replicas that did answer.
//!
//! The replicator does no I/O itself: it talks to replicas through [`Replicas`], which the
//! server implements over RPC (and its own store), and tests implement over in-memory
//! stores with links they can cut.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use futures_util::FutureExt;
use parking_lot::Mutex;
use quorra_ring::NodeId;
use quorra_store::{DeltaOutcome, EntryDelta, Version, VersionedEntry};
use tokio::sync::mpsc;

use crate::rpc::BoxFuture;

/// Default number of copies of each key.
pub const DEFAULT_REPLICAS: usize = 3;

/// Default cap on hints kept for unreachable replicas, over all of them.
pub const DEFAULT_MAX_HINTS: usize = 100_000;

/// How many replicas must answer: a level, resolved against the number of replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Level {
    /// One replica.
    One,
    /// A majority: `n / 2 + 1`.
    Quorum,
    /// Every replica.
    All,
    /// Exactly this many (more than there are replicas cannot succeed).
    Count(usize),
}

impl Level {
    /// The number of answers needed out of `n` replicas.
    pub fn required(self, n: usize) -> usize {
        match self {
            Level::One => 1,
            Level::Quorum => n / 2 + 1,
            Level::All => n,
            Level::Count(count) => count,
        }
    }

    /// Parses `ONE`, `QUORUM`, `ALL` (any case) or a number from 1 to 255.
    pub fn parse(text: &str) -> Option<Level> {
        Some(match text.to_ascii_uppercase().as_str() {
            "ONE" => Level::One,
            "QUORUM" => Level::Quorum,
            "ALL" => Level::All,
            digits => match digits.parse::<usize>() {
                Ok(count) if (1..=255).contains(&count) => Level::Count(count),
                _ => return None,
            },
        })
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Level::One => f.write_str("ONE"),
            Level::Quorum => f.write_str("QUORUM"),
            Level::All => f.write_str("ALL"),
            Level::Count(count) => write!(f, "{count}"),
        }
    }
}

/// Replication settings: how many copies, and how many answers writes and reads need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Consistency {
    /// Copies of each key (N), capped by the number of serving nodes.
    pub replicas: usize,
    /// Answers a write needs (W).
    pub write: Level,
    /// Answers a read needs (R).
    pub read: Level,
}

impl Default for Consistency {
    fn default() -> Self {
        Consistency {
            replicas: DEFAULT_REPLICAS,
            write: Level::Quorum,
            read: Level::Quorum,
        }
    }
}

/// Too few replicas answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("NOQUORUM {answered} of {required} required replicas answered (level {level})")]
pub struct QuorumError {
    /// Answers needed.
    pub required: usize,
    /// Answers received.
    pub answered: usize,
    /// The level that was asked for.
    pub level: Level,
}

/// Why one replica did not do what it was asked.
#[derive(Clone, Debug, thiserror::Error)]
#[error("replica {node}: {message}")]
pub struct ReplicaError {
    /// The replica.
    pub node: NodeId,
    /// What went wrong.
    pub message: String,
    /// The replica could not be reached (timeout, refused, connection lost): worth a
    /// hint. Otherwise it answered with a refusal (out of memory, ...).
    pub unreachable: bool,
}

/// How the replicator reaches a replica (the local store included).
pub trait Replicas: Send + Sync + 'static {
    /// Stores each entry at `node` if it is newer than what `node` holds, in one request:
    /// one outcome per entry, in order, or one error if `node` could not be asked. With
    /// `atomic` (the copies of a transaction), in one step: nothing that reads `node`
    /// sees some of them stored and not the others.
    fn apply(
        &self,
        node: &NodeId,
        entries: Vec<(Bytes, VersionedEntry)>,
        atomic: bool,
    ) -> BoxFuture<Result<Vec<Result<(), ReplicaError>>, ReplicaError>>;

    /// Applies each delta at `node` (see [`Store::apply_delta`](quorra_store::Store::apply_delta)),
    /// in one request: one outcome per delta, in order, or one error if `node` could
    /// not be asked. Never atomic: a transaction's copies go whole.
    fn apply_deltas(
        &self,
        node: &NodeId,
        deltas: Vec<(Bytes, EntryDelta)>,
    ) -> BoxFuture<Result<Vec<Result<DeltaOutcome, ReplicaError>>, ReplicaError>>;

    /// This node's own entry for `key`: what a replica that cannot apply a delta, or a
    /// hint, gets instead.
    fn local_entry(&self, key: &[u8]) -> Option<VersionedEntry>;

    /// `node`'s entries for `keys`, in order, tombstones included; `None` where it holds
    /// nothing. One request however many keys. With `promote` (a client's read), `node`
    /// promotes the entries in its LRU as a GET would.
    fn read(
        &self,
        node: &NodeId,
        keys: Vec<Bytes>,
        promote: bool,
    ) -> BoxFuture<Result<Vec<Option<VersionedEntry>>, ReplicaError>>;
}

/// Counters of what replication did, for INFO and metrics.
#[derive(Debug, Default)]
pub struct ReplicationStats {
    /// Replicas written by read repair.
    pub read_repairs: AtomicU64,
    /// Hints stored for unreachable replicas.
    pub hints_stored: AtomicU64,
    /// Hints delivered to a returning replica.
    pub hints_replayed: AtomicU64,
    /// Hints refused because the store of hints was full.
    pub hints_dropped: AtomicU64,
    /// Writes and reads that failed for want of a quorum.
    pub quorum_failures: AtomicU64,
    /// Anti-entropy: buckets compared with a peer.
    pub anti_entropy_buckets: AtomicU64,
    /// Anti-entropy: entries copied in either direction.
    pub anti_entropy_keys: AtomicU64,
    /// Writes copied to a replica as a delta (the elements a write changed).
    pub deltas_sent: AtomicU64,
    /// Deltas a replica could not apply (it did not hold their base version), sent
    /// again whole.
    pub deltas_resent_whole: AtomicU64,
}

/// What a write copies to one replica for one key.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplicaWrite {
    /// The entry, whole.
    Whole(VersionedEntry),
    /// The elements a write to a hash, set or sorted set changed, for a replica that
    /// holds the version the write started from; one that does not is sent the whole
    /// entry instead, read from this node's store ([`Replicas::local_entry`]).
    Delta(EntryDelta),
}

impl ReplicaWrite {
    /// The version the replica holds once it is stored.
    pub fn version(&self) -> Version {
        match self {
            ReplicaWrite::Whole(entry) => entry.version,
            ReplicaWrite::Delta(delta) => delta.version,
        }
    }

    /// The bytes it puts in a request, about.
    fn size(&self) -> usize {
        match self {
            ReplicaWrite::Whole(entry) => entry.value.len(),
            ReplicaWrite::Delta(delta) => delta.size(),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Writes waiting for replicas that could not be reached: per node, the newest entry of
/// each key. Bounded: beyond the limit new hints are dropped (and counted), and the
/// replica will be brought up to date by read repair instead.
#[derive(Debug)]
pub struct Hints {
    max: usize,
    count: AtomicUsize,
    pending: Mutex<HashMap<NodeId, HashMap<Bytes, VersionedEntry>>>,
}

impl Hints {
    /// A store of at most `max` hints.
    pub fn new(max: usize) -> Hints {
        Hints {
            max,
            count: AtomicUsize::new(0),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps `entry` for `node`, unless a newer hint for the key is already kept.
    /// Returns false if the store is full.
    pub fn add(&self, node: NodeId, key: Bytes, entry: VersionedEntry) -> bool {
        let mut pending = self.pending.lock();
        let for_node = pending.entry(node).or_default();
        match for_node.get(&key) {
            Some(kept) if kept.version >= entry.version => true,
            Some(_) => {
                for_node.insert(key, entry);
                true
            }
            None if self.count.load(Ordering::Relaxed) >= self.max => false,
            None => {
                for_node.insert(key, entry);
                self.count.fetch_add(1, Ordering::Relaxed);
                true
            }
        }
    }

    /// Drops the hint kept for `node` and `key` if it is the entry of `version`. Returns
    /// true if one was dropped.
    pub fn discard(&self, node: &NodeId, key: &[u8], version: Version) -> bool {
        let mut pending = self.pending.lock();
        let Some(for_node) = pending.get_mut(node) else {
            return false;
        };
        if for_node.get(key).is_none_or(|kept| kept.version != version) {
            return false;
        }
        for_node.remove(key);
        self.count.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// Takes every hint kept for `node`.
    pub fn take(&self, node: &NodeId) -> Vec<(Bytes, VersionedEntry)> {
        let taken: Vec<_> = self
            .pending
            .lock()
            .remove(node)
            .map(|hints| hints.into_iter().collect())
            .unwrap_or_default();
        self.count.fetch_sub(taken.len(), Ordering::Relaxed);
        taken
    }

    /// The nodes that have hints waiting.
    pub fn nodes(&self) -> Vec<NodeId> {
        self.pending
            .lock()
            .iter()
            .filter(|(_, hints)| !hints.is_empty())
            .map(|(node, _)| node.clone())
            .collect()
    }

    /// Hints kept, over all nodes.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// True if no hint is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Coordinates replicated writes and reads. Cheap to clone.
#[derive(Clone)]
pub struct Replicator {
    replicas: Arc<dyn Replicas>,
    hints: Arc<Hints>,
    stats: Arc<ReplicationStats>,
}

impl Replicator {
    /// A replicator over `replicas`, keeping at most `max_hints` hints.
    pub fn new(replicas: Arc<dyn Replicas>, max_hints: usize) -> Replicator {
        Replicator {
            replicas,
            hints: Arc::new(Hints::new(max_hints)),
            stats: Arc::new(ReplicationStats::default()),
        }
    }

    /// What replication has done so far.
    pub fn stats(&self) -> &ReplicationStats {
        &self.stats
    }

    /// The transport to the replicas.
    pub fn replicas(&self) -> &dyn Replicas {
        self.replicas.as_ref()
    }

    /// The hints waiting for unreachable replicas.
    pub fn hints(&self) -> &Hints {
        &self.hints
    }

    /// Withdraws a write whose quorum failed and that no replica but its primary stored:
    /// drops the hints it left for `targets`, so that it is never delivered (the primary
    /// puts the previous entry back itself, see `quorra_store::Store::revert`).
    pub fn withdraw(&self, key: &[u8], version: Version, targets: &[NodeId]) {
        for node in targets {
            self.hints.discard(node, key, version);
        }
    }

    /// Writes `entry` to every node of `targets` at once and returns the number of acks
    /// once `level.required(copies)` have stored it. `targets` are the key's replicas
    /// that serve; with some of its `copies` nodes down they are fewer, but the level
    /// still counts against `copies`, so an isolated minority cannot reach a quorum.
    /// Unreachable replicas get a hint. Fails with [`QuorumError`] when every replica
    /// has answered or failed and too few stored it.
    pub async fn write(
        &self,
        targets: &[NodeId],
        copies: usize,
        level: Level,
        key: Bytes,
        entry: VersionedEntry,
    ) -> Result<usize, QuorumError> {
        let write = ReplicaWrite::Whole(entry);
        let mut results = self
            .write_many(vec![(key, write, targets.to_vec())], copies, level, false)
            .await;
        results.pop().expect("one result per write")
    }

    /// [`write`](Self::write) for many keys at once, each with its own replicas: every
    /// replica gets one request with all of its entries, and each key is answered as soon
    /// as enough of its replicas have stored it. Results are in the order of `writes`.
    ///
    /// With `atomic` (a transaction's writes), each replica gets all of its entries in
    /// one request however large, and stores them in one step
    /// ([`Replicas::apply`]), and they must be whole entries; otherwise requests are cut
    /// at [`MAX_APPLY_BATCH_BYTES`].
    pub async fn write_many(
        &self,
        writes: Vec<(Bytes, ReplicaWrite, Vec<NodeId>)>,
        copies: usize,
        level: Level,
        atomic: bool,
    ) -> Vec<Result<usize, QuorumError>> {
        let required = level.required(copies);
        let mut by_node: HashMap<NodeId, Vec<usize>> = HashMap::new();
        for (index, (_, _, targets)) in writes.iter().enumerate() {
            for node in targets {
                by_node.entry(node.clone()).or_default().push(index);
            }
        }
        let (done, mut acks) = mpsc::unbounded_channel();
        for (node, indices) in by_node {
            let batches = match atomic {
                true => vec![indices],
                false => batches_of(indices, |index| {
                    writes[index].0.len() + writes[index].1.size()
                }),
            };
            for indices in batches {
                let entries: Vec<(Bytes, ReplicaWrite)> = indices
                    .iter()
                    .map(|&index| (writes[index].0.clone(), writes[index].1.clone()))
                    .collect();
                let (replicator, node, done) = (self.clone(), node.clone(), done.clone());
                // Run apart from the caller, so that late acks still land after the
                // caller has its quorum.
                let send =
                    Box::pin(async move { replicator.send_many(node, entries, atomic).await });
                run_to_completion(send, move |stored| {
                    let _ = done.send((indices, stored));
                });
            }
        }
        drop(done);
        let mut stored = vec![0usize; writes.len()];
        let mut results: Vec<Option<Result<usize, QuorumError>>> = vec![None; writes.len()];
        let mut open = writes.len();
        while open > 0 {
            let Some((indices, outcomes)) = acks.recv().await else {
                break;
            };
            for (index, ok) in indices.into_iter().zip(outcomes) {
                stored[index] += usize::from(ok);
                if results[index].is_none() && stored[index] >= required {
                    results[index] = Some(Ok(stored[index]));
                    open -= 1;
                }
            }
        }
        results
            .into_iter()
            .zip(stored)
            .map(|(result, stored)| {
                result.unwrap_or_else(|| {
                    bump(&self.stats.quorum_failures);
                    Err(QuorumError {
                        required,
                        answered: stored,
                        level,
                    })
                })
            })
            .collect()
    }

    /// Replica writes of many keys: the whole entries in one request, the deltas in
    /// another, and those deltas the replica could not apply again whole; a hint for
    /// each if the replica is unreachable. Whether each was stored, in order.
    async fn send_many(
        &self,
        node: NodeId,
        writes: Vec<(Bytes, ReplicaWrite)>,
        atomic: bool,
    ) -> Vec<bool> {
        let mut stored = vec![false; writes.len()];
        let (mut wholes, mut deltas) = (Vec::new(), Vec::new());
        for (index, (key, write)) in writes.into_iter().enumerate() {
            match write {
                ReplicaWrite::Whole(entry) => wholes.push((index, (key, entry))),
                ReplicaWrite::Delta(delta) => deltas.push((index, (key, delta))),
            }
        }
        debug_assert!(
            !atomic || deltas.is_empty(),
            "a transaction's copies go whole"
        );
        if !deltas.is_empty() {
            let sent = deltas.iter().map(|(_, write)| write.clone()).collect();
            match self.replicas.apply_deltas(&node, sent).await {
                Ok(outcomes) => {
                    for ((index, (key, _)), outcome) in deltas.into_iter().zip(outcomes) {
                        bump(&self.stats.deltas_sent);
                        match outcome {
                            Ok(DeltaOutcome::Applied | DeltaOutcome::Held) => stored[index] = true,
                            Ok(DeltaOutcome::NeedsWhole) => {
                                bump(&self.stats.deltas_resent_whole);
                                if let Some(entry) = self.replicas.local_entry(&key) {
                                    wholes.push((index, (key, entry)));
                                }
                            }
                            Ok(DeltaOutcome::Evicted) => {
                                tracing::debug!("replica refused a delta: evicted there");
                            }
                            Err(error) => tracing::debug!(%error, "replica refused a delta"),
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "replica unreachable for deltas");
                    if error.unreachable {
                        // A hint is the whole entry, as it is here now.
                        let entries = deltas.into_iter().filter_map(|(_, (key, _))| {
                            let entry = self.replicas.local_entry(&key)?;
                            Some((key, entry))
                        });
                        self.keep_hints(&node, entries);
                    }
                }
            }
        }
        if !wholes.is_empty() {
            let (indices, entries): (Vec<usize>, Vec<_>) = wholes.into_iter().unzip();
            let outcomes = self.send_whole(node, entries, atomic).await;
            for (index, ok) in indices.into_iter().zip(outcomes) {
                stored[index] = ok;
            }
        }
        stored
    }

    /// Hints for unreachable `node`, counted.
    fn keep_hints(&self, node: &NodeId, entries: impl Iterator<Item = (Bytes, VersionedEntry)>) {
        for (key, entry) in entries {
            if self.hints.add(node.clone(), key, entry) {
                bump(&self.stats.hints_stored);
            } else {
                bump(&self.stats.hints_dropped);
            }
        }
    }

    /// Replica writes of many whole entries in one request; a hint for each if the
    /// replica is unreachable. Whether each was stored, in order.
    async fn send_whole(
        &self,
        node: NodeId,
        entries: Vec<(Bytes, VersionedEntry)>,
        atomic: bool,
    ) -> Vec<bool> {
        match self.replicas.apply(&node, entries.clone(), atomic).await {
            Ok(outcomes) => outcomes
                .into_iter()
                .map(|outcome| match outcome {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::debug!(%error, "replica refused a write");
                        false
                    }
                })
                .collect(),
            Err(error) => {
                tracing::debug!(%error, "replica unreachable for writes");
                let stored = vec![false; entries.len()];
                if error.unreachable {
                    self.keep_hints(&node, entries.into_iter());
                }
                stored
            }
        }
    }

    /// Reads `key` from every node of `targets` and returns the newest entry (tombstones
    /// included) once `level.required(copies)` have answered (see [`write`](Self::write)
    /// for `copies`); `None` if none of them holds the key. Replicas found stale are
    /// repaired in the background, including those that answer after the reply.
    pub async fn read(
        &self,
        targets: &[NodeId],
        copies: usize,
        level: Level,
        key: Bytes,
    ) -> Result<Option<VersionedEntry>, QuorumError> {
        let mut results = self
            .read_many(vec![(key, targets.to_vec())], copies, level, true)
            .await;
        results.pop().expect("one result per key")
    }

    /// [`read`](Self::read) for many keys at once, each with its own replicas: every
    /// replica gets one request with all of its keys, and each key is answered as soon
    /// as enough of its replicas have. Results are in the order of `reads`. With
    /// `promote`, the replicas promote the keys they read (see [`Replicas::read`]).
    pub async fn read_many(
        &self,
        reads: Vec<(Bytes, Vec<NodeId>)>,
        copies: usize,
        level: Level,
        promote: bool,
    ) -> Vec<Result<Option<VersionedEntry>, QuorumError>> {
        if reads.is_empty() {
            // Nothing to ask, and no repair task to start.
            return Vec::new();
        }
        let required = level.required(copies);
        let mut by_node: HashMap<NodeId, Vec<usize>> = HashMap::new();
        for (index, (_, targets)) in reads.iter().enumerate() {
            for node in targets {
                by_node.entry(node.clone()).or_default().push(index);
            }
        }
        let (done, mut answers) = mpsc::unbounded_channel();
        for (node, indices) in by_node {
            let keys: Vec<Bytes> = indices
                .iter()
                .map(|&index| reads[index].0.clone())
                .collect();
            let read = self.replicas.read(&node, keys, promote);
            let done = done.clone();
            run_to_completion(read, move |answer| {
                let _ = done.send((node, indices, answer));
            });
        }
        drop(done);
        let mut heard: Vec<Heard> = vec![Vec::new(); reads.len()];
        let mut failed = vec![0usize; reads.len()];
        let mut results: Vec<Option<Result<Option<VersionedEntry>, QuorumError>>> =
            vec![None; reads.len()];
        let mut open = reads.len();
        while open > 0 {
            let Some((node, indices, answer)) = answers.recv().await else {
                break;
            };
            match answer {
                Ok(entries) => {
                    for (index, entry) in indices.into_iter().zip(entries) {
                        heard[index].push((node.clone(), entry));
                        if results[index].is_none() && heard[index].len() >= required {
                            results[index] =
                                Some(Ok(newest(heard[index].iter().map(|(_, entry)| entry))));
                            open -= 1;
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "replica read failed");
                    for index in indices {
                        failed[index] += 1;
                        let possible = reads[index].1.len() - failed[index];
                        if results[index].is_none() && possible < required {
                            results[index] = Some(Err(QuorumError {
                                required,
                                answered: heard[index].len(),
                                level,
                            }));
                            open -= 1;
                        }
                    }
                }
            }
        }
        let results: Vec<_> = results
            .into_iter()
            .zip(&heard)
            .map(|(result, heard)| {
                result.unwrap_or(Err(QuorumError {
                    required,
                    answered: heard.len(),
                    level,
                }))
            })
            .collect();
        for _ in results.iter().filter(|result| result.is_err()) {
            bump(&self.stats.quorum_failures);
        }
        // The remaining answers, then repair every key from all that answered.
        let replicator = self.clone();
        tokio::spawn(async move {
            while let Some((node, indices, answer)) = answers.recv().await {
                if let Ok(entries) = answer {
                    for (index, entry) in indices.into_iter().zip(entries) {
                        heard[index].push((node.clone(), entry));
                    }
                }
            }
            let reads = reads.into_iter().map(|(key, _)| key).zip(heard).collect();
            replicator.repair(reads).await;
        });
        results
    }

    /// Writes the newest of each key's `heard` entries to every replica that answered
    /// with something older: one request per stale replica for all of its keys.
    async fn repair(&self, reads: Vec<(Bytes, Heard)>) {
        let mut stale: HashMap<NodeId, Vec<(Bytes, VersionedEntry)>> = HashMap::new();
        for (key, heard) in reads {
            let Some(newest) = newest(heard.iter().map(|(_, entry)| entry)) else {
                continue;
            };
            for (node, held) in heard {
                if held.is_none_or(|held| held.version < newest.version) {
                    stale
                        .entry(node)
                        .or_default()
                        .push((key.clone(), newest.clone()));
                }
            }
        }
        let repairs = stale.into_iter().map(|(node, entries)| async move {
            for batch in entry_batches(entries) {
                let stored = self.send_whole(node.clone(), batch, false).await;
                for _ in stored.into_iter().filter(|&ok| ok) {
                    bump(&self.stats.read_repairs);
                }
            }
        });
        futures_util::future::join_all(repairs).await;
    }

    /// Delivers the hints kept for `node`, in requests of at most
    /// [`MAX_APPLY_BATCH_BYTES`]; those it still cannot take are kept again. Returns how
    /// many were delivered.
    ///
    /// Each request is stored atomically: the hints of a transaction that `node` missed
    /// reach its readers all at once when they fit in one request (all of the node's
    /// hints together within [`MAX_APPLY_BATCH_BYTES`]). Hints are kept per key, not
    /// per transaction, so a larger backlog can split one.
    pub async fn replay_hints(&self, node: &NodeId) -> usize {
        let mut delivered = 0;
        let mut batches = entry_batches(self.hints.take(node)).into_iter();
        while let Some(batch) = batches.next() {
            match self.replicas.apply(node, batch.clone(), true).await {
                Ok(outcomes) => {
                    for outcome in outcomes {
                        match outcome {
                            Ok(()) => {
                                delivered += 1;
                                bump(&self.stats.hints_replayed);
                            }
                            Err(error) => {
                                tracing::debug!(%error, "replica refused a hinted write");
                            }
                        }
                    }
                }
                Err(error) if error.unreachable => {
                    // Gone again: keep this batch and the rest for the next attempt.
                    for (key, entry) in batch.into_iter().chain(batches.flatten()) {
                        self.hints.add(node.clone(), key, entry);
                    }
                    break;
                }
                Err(error) => tracing::debug!(%error, "replica refused hinted writes"),
            }
        }
        delivered
    }
}

/// Runs `work` to its end and hands the outcome to `then`, apart from the caller: on
/// the spot if it is ready at once (this node's own replica answers without waiting),
/// otherwise in a task of its own. A task for an answer that is already there would cost
/// more than the read it carries.
fn run_to_completion<T: Send + 'static>(
    mut work: BoxFuture<T>,
    then: impl FnOnce(T) + Send + 'static,
) {
    match (&mut work).now_or_never() {
        Some(outcome) => then(outcome),
        None => {
            tokio::spawn(async move { then(work.await) });
        }
    }
}

/// Most key and value bytes one [`Replicas::apply`] request carries (a larger single
/// entry goes alone): a pipeline of large values must not make a request larger than
/// the RPC frame limit, nor hold up every other entry behind it.
pub const MAX_APPLY_BATCH_BYTES: usize = 4 << 20;

/// What the replicas of one key answered to a read: each node and its entry, if any.
type Heard = Vec<(NodeId, Option<VersionedEntry>)>;

/// The bytes an entry for `key` puts in an apply request.
fn entry_bytes(key: &[u8], entry: &VersionedEntry) -> usize {
    key.len() + entry.value.len()
}

/// `entries` in batches for [`Replicas::apply`], in order (see [`batches_of`]).
pub(crate) fn entry_batches(
    entries: Vec<(Bytes, VersionedEntry)>,
) -> Vec<Vec<(Bytes, VersionedEntry)>> {
    let sizes: Vec<usize> = entries
        .iter()
        .map(|(key, entry)| entry_bytes(key, entry))
        .collect();
    let batches = batches_of((0..entries.len()).collect(), |index| sizes[index]);
    let mut entries = entries.into_iter();
    batches
        .into_iter()
        .map(|batch| entries.by_ref().take(batch.len()).collect())
        .collect()
}

/// Splits `indices` into runs whose sizes add up to at most [`MAX_APPLY_BATCH_BYTES`]
/// (a run of one may exceed it), in order.
fn batches_of(indices: Vec<usize>, size: impl Fn(usize) -> usize) -> Vec<Vec<usize>> {
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for index in indices {
        let entry = size(index);
        match batches.last_mut() {
            Some(batch) if bytes + entry <= MAX_APPLY_BATCH_BYTES => {
                batch.push(index);
                bytes += entry;
            }
            _ => {
                batches.push(vec![index]);
                bytes = entry;
            }
        }
    }
    batches
}

/// The entry with the highest version, `None` if none holds one.
fn newest<'a>(entries: impl Iterator<Item = &'a Option<VersionedEntry>>) -> Option<VersionedEntry> {
    entries.flatten().max_by_key(|entry| entry.version).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_batches_stay_under_the_byte_limit_and_keep_the_order() {
        let mib = 1 << 20;
        let sizes = [mib, 2 * mib, mib, 5 * mib, 10, 3 * mib, 2 * mib];
        let batches = batches_of((0..sizes.len()).collect(), |index| sizes[index]);
        // 1+2+1 MiB fit; 5 MiB goes alone; then 10 B + 3 MiB; 2 MiB would pass 4 MiB.
        assert_eq!(batches, [vec![0, 1, 2], vec![3], vec![4, 5], vec![6]]);
        assert!(batches_of(Vec::new(), |_| 0).is_empty());
    }

    #[test]
    fn levels_resolve_and_parse() {
        assert_eq!(Level::Quorum.required(3), 2);
        assert_eq!(Level::Quorum.required(1), 1);
        assert_eq!(Level::Quorum.required(4), 3);
        assert_eq!(Level::All.required(3), 3);
        assert_eq!(Level::One.required(3), 1);
        assert_eq!(Level::Count(2).required(3), 2);
        assert_eq!(Level::parse("quorum"), Some(Level::Quorum));
        assert_eq!(Level::parse("2"), Some(Level::Count(2)));
        assert_eq!(Level::parse("0"), None);
        assert_eq!(Level::parse("most"), None);
        let error = QuorumError {
            required: 2,
            answered: 1,
            level: Level::Quorum,
        };
        assert_eq!(
            error.to_string(),
            "NOQUORUM 1 of 2 required replicas answered (level QUORUM)"
        );
    }

    #[test]
    fn hints_keep_the_newest_entry_per_key_and_respect_the_bound() {
        let hints = Hints::new(2);
        let entry = |t| VersionedEntry::value("v", Version::new(t, 0, 1));
        let node = NodeId::from("b");
        assert!(hints.add(node.clone(), "k".into(), entry(2)));
        assert!(hints.add(node.clone(), "k".into(), entry(1)));
        assert!(hints.add(node.clone(), "j".into(), entry(1)));
        assert!(!hints.add(node.clone(), "x".into(), entry(1)), "full");
        assert_eq!(hints.len(), 2);
        assert!(
            !hints.discard(&node, b"j", Version::new(9, 0, 1)),
            "another version"
        );
        assert!(hints.discard(&node, b"j", Version::new(1, 0, 1)));
        assert!(hints.add(node.clone(), "j".into(), entry(1)), "room again");
        let mut taken = hints.take(&node);
        taken.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(taken[1], (Bytes::from("k"), entry(2)));
        assert!(hints.is_empty() && hints.nodes().is_empty());
    }
}
