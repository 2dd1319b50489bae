//! Anti-entropy: a periodic comparison of two replicas that transfers only what differs.
//!
//! Read repair fixes keys that are read and hints fix writes a replica missed while it
//! was unreachable; anti-entropy fixes the rest (keys nobody reads, hints that were
//! dropped or lost with a crashed coordinator, a replica that restarted empty).
//!
//! Two nodes compare the keys they *share* — those whose first N preference-list nodes
//! include both — in [`BUCKETS`] buckets by the top bits of the key's ring token. Each
//! side digests a bucket as the XOR of a hash of every shared entry's key and version
//! (order-free, so no sorting), a flat Merkle tree of one level. Only buckets whose
//! digests differ are opened: the initiator fetches the peer's (key, version) list for
//! the bucket, pulls the entries where the peer is newer and pushes those where it is
//! newer itself (last writer wins on both sides, so the exchange is idempotent). Pulls
//! read 64 keys per request and pushes send up to 4 MiB of entries per request. A pass
//! moves at most [`MAX_KEYS_PER_PASS`] keys per peer and says when it stopped short
//! ([`SyncReport::truncated`]); the caller then runs the next pass after
//! [`BACKLOG_DELAY`] instead of a whole interval, which bounds the transfer rate at about
//! `MAX_KEYS_PER_PASS` keys per `BACKLOG_DELAY` and peer. Both sides compute "shared" from their own ring view; when the views differ
//! (during a membership change) the digests differ too and the pass transfers a little
//! more than needed, which is harmless.
//!
//! Computing a digest visits every entry of the store and computes its preference list,
//! and so does each request for the (key, version) lists of up to 32 differing buckets:
//! O(entries) a few times per peer per pass, run every
//! [`DEFAULT_ANTI_ENTROPY_INTERVAL`].

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use quorra_ring::{NodeId, TokenRange};
use quorra_store::{ApplyOutcome, Store, Version, VersionedEntry};

use crate::membership::ClusterView;
use crate::placement::Placement;
use crate::replication::entry_batches;
use crate::rpc::BoxFuture;

/// Buckets a digest has (the top 8 bits of a key's token).
pub const BUCKETS: usize = 256;

/// Most keys one pass transfers between two nodes, both directions together.
pub const MAX_KEYS_PER_PASS: usize = 10_000;

/// Buckets whose (key, version) lists one request asks for: the store is visited once per
/// request on each side.
const BUCKETS_PER_REQUEST: usize = 32;

/// Entries copied at the same time during a pass.
const CONCURRENT_TRANSFERS: usize = 32;

/// Keys per read request when pulling: their values come back in one response, whose
/// size the caller cannot know in advance, so this stays small.
const KEYS_PER_PULL: usize = 64;

/// Time before the next pass when the last one stopped at [`MAX_KEYS_PER_PASS`], or
/// after a node joined the ring.
pub const BACKLOG_DELAY: Duration = Duration::from_secs(1);

/// Default time between passes.
pub const DEFAULT_ANTI_ENTROPY_INTERVAL: Duration = Duration::from_secs(30);

fn bucket_of(token: u64) -> usize {
    (token >> (64 - BUCKETS.trailing_zeros())) as usize
}

fn entry_hash(key: &[u8], version: Version, tombstone: bool) -> u64 {
    let mut input = Vec::with_capacity(key.len() + 17);
    input.extend_from_slice(key);
    input.extend_from_slice(&version.hlc.to_le_bytes());
    input.extend_from_slice(&version.node.to_le_bytes());
    input.push(u8::from(tombstone));
    xxhash_rust::xxh3::xxh3_64(&input)
}

/// True if `a` and `b` are both replicas of the key at `token` under `n` copies.
fn shared(view: &ClusterView, token: u64, n: usize, a: &NodeId, b: &NodeId) -> bool {
    let replicas = Placement::new(view, n).replicas_for_token(token);
    replicas.contains(&a) && replicas.contains(&b)
}

/// Calls `f` with every entry of `store` that this node (`view.self_id`) shares with
/// `peer` under `n` copies.
fn visit_shared(
    store: &Store,
    view: &ClusterView,
    peer: &NodeId,
    n: usize,
    mut f: impl FnMut(quorra_store::EntryView<'_>),
) {
    let whole_ring = TokenRange { start: 0, end: 0 };
    store.visit_range(whole_ring, |entry| {
        if shared(view, entry.token, n, &view.self_id, peer) {
            f(entry);
        }
    });
}

/// The digest of the entries this node shares with `peer`: one word per bucket.
pub fn digest(store: &Store, view: &ClusterView, peer: &NodeId, n: usize) -> Vec<u64> {
    let mut buckets = vec![0u64; BUCKETS];
    visit_shared(store, view, peer, n, |entry| {
        buckets[bucket_of(entry.token)] ^= entry_hash(entry.key, entry.version, entry.tombstone);
    });
    buckets
}

/// One entry of a bucket listing: its bucket, key and version.
pub type BucketEntry = (usize, Bytes, Version);

/// The (bucket, key, version) of every entry in `buckets` that this node shares with
/// `peer`, from one pass over the store.
pub fn bucket_versions(
    store: &Store,
    view: &ClusterView,
    peer: &NodeId,
    n: usize,
    buckets: &[usize],
) -> Vec<BucketEntry> {
    let mut wanted = [false; BUCKETS];
    for &bucket in buckets.iter().filter(|&&bucket| bucket < BUCKETS) {
        wanted[bucket] = true;
    }
    let mut versions = Vec::new();
    visit_shared(store, view, peer, n, |entry| {
        let bucket = bucket_of(entry.token);
        if wanted[bucket] {
            versions.push((bucket, Bytes::copy_from_slice(entry.key), entry.version));
        }
    });
    versions
}

/// The other side of an anti-entropy exchange.
pub trait Peer: Send + Sync {
    /// The peer's [`digest`] of what it shares with us.
    fn digest(&self) -> BoxFuture<Result<Vec<u64>, String>>;
    /// The peer's [`bucket_versions`] for `buckets`.
    fn bucket_versions(&self, buckets: Vec<usize>) -> BoxFuture<Result<Vec<BucketEntry>, String>>;
    /// The peer's entries for `keys`, in order (`None` where it holds nothing), in one
    /// request.
    fn read(&self, keys: Vec<Bytes>) -> BoxFuture<Result<Vec<Option<VersionedEntry>>, String>>;
    /// Stores each entry at the peer if newer, in one request; how many it took (a peer
    /// does not take back what it evicted for memory).
    fn apply(&self, entries: Vec<(Bytes, VersionedEntry)>) -> BoxFuture<Result<usize, String>>;
}

/// What one exchange did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Buckets compared.
    pub buckets_compared: usize,
    /// Buckets whose digests differed.
    pub buckets_differing: usize,
    /// Entries copied from the peer to this node.
    pub pulled: usize,
    /// Entries copied from this node to the peer.
    pub pushed: usize,
    /// The pass stopped at [`MAX_KEYS_PER_PASS`] with differences left.
    pub truncated: bool,
}

/// Compares what this node shares with `peer` and copies the newer side of every
/// difference, at most [`MAX_KEYS_PER_PASS`] keys.
pub async fn sync_with(
    store: &Store,
    view: &ClusterView,
    peer_id: &NodeId,
    peer: &dyn Peer,
    n: usize,
) -> Result<SyncReport, String> {
    let ours = digest(store, view, peer_id, n);
    let theirs = peer.digest().await?;
    if theirs.len() != BUCKETS {
        return Err(format!("peer sent a digest of {} buckets", theirs.len()));
    }
    let mut report = SyncReport {
        buckets_compared: BUCKETS,
        ..SyncReport::default()
    };
    let differing: Vec<usize> = (0..BUCKETS)
        .filter(|&bucket| ours[bucket] != theirs[bucket])
        .collect();
    report.buckets_differing = differing.len();
    let mut budget = MAX_KEYS_PER_PASS;
    for group in differing.chunks(BUCKETS_PER_REQUEST) {
        if budget == 0 {
            report.truncated = true;
            break;
        }
        let mine: HashMap<Bytes, Version> = bucket_versions(store, view, peer_id, n, group)
            .into_iter()
            .map(|(_, key, version)| (key, version))
            .collect();
        let mut theirs: HashMap<Bytes, Version> = peer
            .bucket_versions(group.to_vec())
            .await?
            .into_iter()
            .map(|(_, key, version)| (key, version))
            .collect();
        let (mut pulls, mut pushes) = (Vec::new(), Vec::new());
        for (key, version) in mine {
            match theirs.remove(&key) {
                Some(their_version) if their_version > version => pulls.push(key),
                Some(their_version) if their_version == version => {}
                _ => pushes.push(key),
            }
        }
        pulls.extend(theirs.into_keys());
        if pulls.len() + pushes.len() > budget {
            report.truncated = true;
            pulls.truncate(budget);
            pushes.truncate(budget - pulls.len());
        }
        budget -= pulls.len() + pushes.len();
        let pull_batches: Vec<Vec<Bytes>> =
            pulls.chunks(KEYS_PER_PULL).map(<[Bytes]>::to_vec).collect();
        let pulled = futures_util::stream::iter(pull_batches)
            .map(|keys| pull(store, peer, keys))
            .buffer_unordered(CONCURRENT_TRANSFERS)
            .collect::<Vec<_>>()
            .await;
        for outcome in pulled {
            report.pulled += outcome?;
        }
        let entries: Vec<(Bytes, VersionedEntry)> = pushes
            .into_iter()
            .filter_map(|key| store.get_versioned(&key).map(|entry| (key, entry)))
            .collect();
        let pushed = futures_util::stream::iter(entry_batches(entries))
            .map(|batch| peer.apply(batch))
            .buffer_unordered(CONCURRENT_TRANSFERS)
            .collect::<Vec<_>>()
            .await;
        for outcome in pushed {
            report.pushed += outcome?;
        }
    }
    Ok(report)
}

/// Copies the peer's entries for `keys` here; how many this node took.
async fn pull(store: &Store, peer: &dyn Peer, keys: Vec<Bytes>) -> Result<usize, String> {
    let entries = peer.read(keys.clone()).await?;
    let mut pulled = 0;
    for (key, entry) in keys.into_iter().zip(entries) {
        let Some(entry) = entry else {
            continue;
        };
        let outcome = store
            .apply(&key, entry)
            .map_err(|error| format!("cannot store {key:?}: {error}"))?;
        // Not what this node holds a newer version of, nor what it evicted.
        pulled += usize::from(outcome == ApplyOutcome::Applied);
    }
    Ok(pulled)
}
