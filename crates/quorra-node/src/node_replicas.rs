//! How this node's [`Replicator`](quorra_cluster::replication::Replicator) reaches a
//! key's replicas: its own store directly, every other member through the
//! [`PeerClient`] (`Apply` and `Read` requests).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quorra_cluster::membership::ClusterView;
use quorra_cluster::message::{DeltaAnswer, Request, Response};
use quorra_cluster::replication::{ReplicaError, Replicas};
use quorra_cluster::rpc::BoxFuture;
use quorra_ring::NodeId;
use quorra_store::{ApplyOutcome, DeltaOutcome, EntryDelta, Store, VersionedEntry};
use tokio::sync::{Notify, watch};

use crate::peer::{PeerClient, PeerError};

/// Replicas of this node's cluster: its own store, and the other members.
pub struct NodeReplicas {
    /// This node's store.
    pub store: Arc<Store>,
    /// This node's id.
    pub self_id: NodeId,
    /// Calls to the other members.
    pub peers: PeerClient,
    /// The current view, to find the other members in.
    pub views: watch::Receiver<Arc<ClusterView>>,
}

/// A replica that refused what it was asked.
fn refused(node: &NodeId, message: String) -> ReplicaError {
    ReplicaError {
        node: node.clone(),
        message,
        unreachable: false,
    }
}

impl From<PeerError> for ReplicaError {
    fn from(error: PeerError) -> Self {
        ReplicaError {
            unreachable: error.is_unreachable(),
            message: error.failure.to_string(),
            node: error.node,
        }
    }
}

impl NodeReplicas {
    fn call(
        &self,
        node: &NodeId,
        request: &Request,
    ) -> impl Future<Output = Result<Response, PeerError>> + Send + use<> {
        let view = self.views.borrow().clone();
        self.peers.call(&view, node, request)
    }
}

impl Replicas for NodeReplicas {
    fn apply(
        &self,
        node: &NodeId,
        entries: Vec<(Bytes, VersionedEntry)>,
        atomic: bool,
    ) -> BoxFuture<Result<Vec<Result<(), ReplicaError>>, ReplicaError>> {
        let node = node.clone();
        if node == self.self_id {
            let _section = atomic.then(|| self.store.exclusive_section());
            let outcomes = entries
                .into_iter()
                .map(|(key, entry)| {
                    apply_entry(&self.store, &key, entry).map_err(|why| refused(&node, why))
                })
                .collect();
            return Box::pin(async move { Ok(outcomes) });
        }
        let count = entries.len();
        let entries = entries
            .into_iter()
            .map(|(key, entry)| (key, entry.into()))
            .collect();
        let call = self.call(&node, &Request::Apply { entries, atomic });
        Box::pin(async move {
            match call.await? {
                Response::Applied(outcomes) if outcomes.len() == count => Ok(outcomes
                    .into_iter()
                    .map(|outcome| match outcome {
                        None => Ok(()),
                        Some(message) => Err(refused(&node, message)),
                    })
                    .collect()),
                other => Err(refused(&node, format!("unexpected answer {other:?}"))),
            }
        })
    }

    fn apply_deltas(
        &self,
        node: &NodeId,
        deltas: Vec<(Bytes, EntryDelta)>,
    ) -> BoxFuture<Result<Vec<Result<DeltaOutcome, ReplicaError>>, ReplicaError>> {
        let node = node.clone();
        if node == self.self_id {
            let outcomes = deltas
                .iter()
                .map(|(key, delta)| {
                    apply_delta(&self.store, key, delta).map_err(|why| refused(&node, why))
                })
                .collect();
            return Box::pin(async move { Ok(outcomes) });
        }
        let count = deltas.len();
        let deltas = deltas
            .into_iter()
            .map(|(key, delta)| (key, delta.into()))
            .collect();
        let call = self.call(&node, &Request::ApplyDeltas { deltas });
        Box::pin(async move {
            match call.await? {
                Response::DeltasApplied(answers) if answers.len() == count => Ok(answers
                    .into_iter()
                    .map(|answer| match answer {
                        DeltaAnswer::Stored => Ok(DeltaOutcome::Applied),
                        DeltaAnswer::NeedsWhole => Ok(DeltaOutcome::NeedsWhole),
                        DeltaAnswer::Refused(message) => Err(refused(&node, message)),
                    })
                    .collect()),
                other => Err(refused(&node, format!("unexpected answer {other:?}"))),
            }
        })
    }

    fn local_entry(&self, key: &[u8]) -> Option<VersionedEntry> {
        self.store.get_versioned(key)
    }

    fn read(
        &self,
        node: &NodeId,
        keys: Vec<Bytes>,
        promote: bool,
    ) -> BoxFuture<Result<Vec<Option<VersionedEntry>>, ReplicaError>> {
        if *node == self.self_id {
            let entries = read_entries(&self.store, &keys, promote);
            return Box::pin(async move { Ok(entries) });
        }
        let expected = keys.len();
        let call = self.call(
            node,
            &Request::Read {
                keys,
                promote,
                follow: false,
            },
        );
        let node = node.clone();
        Box::pin(async move {
            match call.await? {
                Response::Entries(entries) if entries.len() == expected => Ok(entries
                    .into_iter()
                    .map(|entry| entry.map(VersionedEntry::from))
                    .collect()),
                other => Err(refused(&node, format!("unexpected answer {other:?}"))),
            }
        })
    }
}

/// Stores a replica's copy of `key`, unless the store holds a newer version or evicted
/// the key for memory: `Err` with why it was not taken.
pub fn apply_entry(store: &Store, key: &[u8], entry: VersionedEntry) -> Result<(), String> {
    match store.apply(key, entry) {
        Ok(ApplyOutcome::Evicted) => Err("the key was evicted here for memory".to_owned()),
        Ok(_) => Ok(()),
        Err(error) => Err(error.to_string()),
    }
}

/// Applies a replicated delta: `Ok` with what the store did (its base version missing
/// is an outcome, not a refusal), `Err` with why it refused.
pub fn apply_delta(store: &Store, key: &[u8], delta: &EntryDelta) -> Result<DeltaOutcome, String> {
    match store.apply_delta(key, delta) {
        Ok(DeltaOutcome::Evicted) => Err("the key was evicted here for memory".to_owned()),
        Ok(outcome) => Ok(outcome),
        Err(error) => Err(error.to_string()),
    }
}

/// How long a delta whose base version this replica does not hold waits for it. Deltas
/// of successive writes to one key travel in separate requests, which may be answered
/// out of order; the write a delta builds on is then usually a fraction of a
/// millisecond behind. Past this, the primary sends the whole value.
pub const DELTA_BASE_WAIT: Duration = Duration::from_millis(20);

/// [`apply_delta`], waiting up to [`DELTA_BASE_WAIT`] for the version the delta builds
/// on when the store does not hold it yet: it retries each time `replica_writes` says a
/// replicated write was stored, and tells it when it applies the delta.
pub async fn apply_delta_waiting(
    store: &Store,
    replica_writes: &Notify,
    key: &[u8],
    delta: &EntryDelta,
) -> Result<DeltaOutcome, String> {
    let deadline = tokio::time::Instant::now() + DELTA_BASE_WAIT;
    loop {
        // Listening before trying, so that a write stored in between is not missed.
        let stored_elsewhere = replica_writes.notified();
        tokio::pin!(stored_elsewhere);
        stored_elsewhere.as_mut().enable();
        match apply_delta(store, key, delta)? {
            DeltaOutcome::NeedsWhole => {}
            outcome => {
                if outcome == DeltaOutcome::Applied {
                    replica_writes.notify_waiters();
                }
                return Ok(outcome);
            }
        }
        if tokio::time::timeout_at(deadline, stored_elsewhere)
            .await
            .is_err()
        {
            return Ok(DeltaOutcome::NeedsWhole);
        }
    }
}

/// A replica's entries for `keys`, read in one shared section of the store, so that
/// they show all of a transaction or none of it.
pub fn read_entries(store: &Store, keys: &[Bytes], promote: bool) -> Vec<Option<VersionedEntry>> {
    let _section = store.shared_section();
    keys.iter()
        .map(|key| read_entry(store, key, promote))
        .collect()
}

/// A replica's entry for `key`, promoted in its LRU if the read is a client's.
pub fn read_entry(store: &Store, key: &[u8], promote: bool) -> Option<VersionedEntry> {
    match promote {
        true => store.read_versioned(key),
        false => store.get_versioned(key),
    }
}

#[cfg(test)]
mod tests {
    use quorra_store::collection::SetValue;
    use quorra_store::{MockClock, StoreConfig};

    use super::*;

    fn store(node_id: u64, clock: &MockClock) -> Store {
        let config = StoreConfig {
            node_id,
            tombstone_grace_ms: 60_000,
            ..StoreConfig::default()
        };
        Store::new(config, Arc::new(clock.clone()))
    }

    /// SADDs `member` to `key` at `primary` as a command does, under capture: the
    /// delta for the replicas.
    fn sadd(primary: &Store, key: &[u8], member: &str) -> EntryDelta {
        let (_, changes) = primary.capture(|| {
            primary
                .update_collection::<SetValue, _>(key, true, 1 << 10, |set, _| {
                    ((), set.add(member.as_bytes()))
                })
                .unwrap()
        });
        primary.delta(key, changes.get(key).unwrap()).unwrap()
    }

    fn members(store: &Store, key: &[u8]) -> Vec<Vec<u8>> {
        let mut members = store
            .read_collection::<SetValue, _>(key, |set, _| {
                set.iter().map(<[u8]>::to_vec).collect::<Vec<_>>()
            })
            .unwrap()
            .unwrap_or_default();
        members.sort();
        members
    }

    #[tokio::test(start_paused = true)]
    async fn a_delta_that_overtook_the_one_it_builds_on_waits_for_it() {
        let clock = MockClock::new(1_800_000_000_000);
        let (primary, replica) = (store(1, &clock), store(2, &clock));
        let key: &[u8] = b"tags";
        primary
            .update_collection::<SetValue, _>(key, true, 1 << 10, |set, _| ((), set.add(b"a")))
            .unwrap();
        replica
            .apply(key, primary.get_versioned(key).unwrap())
            .unwrap();
        let (first, second) = (sadd(&primary, key, "b"), sadd(&primary, key, "c"));
        let replica_writes = Notify::new();

        // The second arrives first: it waits, and applies once the first has.
        let (early, late) = tokio::join!(
            apply_delta_waiting(&replica, &replica_writes, key, &second),
            async {
                tokio::task::yield_now().await;
                apply_delta_waiting(&replica, &replica_writes, key, &first).await
            }
        );
        assert_eq!(
            (early, late),
            (Ok(DeltaOutcome::Applied), Ok(DeltaOutcome::Applied))
        );
        assert_eq!(members(&replica, key), members(&primary, key));

        // A delta whose base never comes: after the wait, the primary is asked for
        // the whole set.
        let (_, skipped) = (sadd(&primary, key, "d"), sadd(&primary, key, "e"));
        let started = tokio::time::Instant::now();
        let outcome = apply_delta_waiting(&replica, &replica_writes, key, &skipped).await;
        assert_eq!(outcome, Ok(DeltaOutcome::NeedsWhole));
        assert_eq!(started.elapsed(), DELTA_BASE_WAIT);
        assert_eq!(members(&replica, key).len(), 3, "nothing applied");
    }
}
