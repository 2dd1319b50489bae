//! How this node's [`Replicator`](quorra_cluster::replication::Replicator) reaches a
//! key's replicas: its own store directly, every other member through the
//! [`PeerClient`] (`Apply` and `Read` requests).

use std::sync::Arc;

use bytes::Bytes;
use quorra_cluster::membership::ClusterView;
use quorra_cluster::message::{Request, Response};
use quorra_cluster::replication::{ReplicaError, Replicas};
use quorra_cluster::rpc::BoxFuture;
use quorra_ring::NodeId;
use quorra_store::{ApplyOutcome, Store, VersionedEntry};
use tokio::sync::watch;

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
        let call = self.call(node, &Request::Read { keys, promote });
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
