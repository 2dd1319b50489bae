//! Eviction under replication: when one replica evicts a key for memory, the key's other
//! replicas drop it too.
//!
//! With several copies of each key, every replica has its own LRU and its own memory
//! limit. If replicas evicted on their own and kept quiet, a key evicted on one would
//! still be held by the others, and read repair, hints or anti-entropy would copy it
//! back — onto a node short of memory, which then evicts something else: the cluster
//! would churn keys back and forth. So the rule is: **a key evicted for memory by any of
//! its replicas is evicted by all of them** (unless one holds a newer write). Reads
//! promote a key on every replica they ask, so the replicas' LRU orders agree and they
//! mostly evict the same keys anyway; the messages keep them in step, and nothing is
//! left behind to copy back.
//!
//! The store reports each eviction to an [`EvictionFeed`] (under its shard lock, so it
//! only queues the key); [`propagate`] sends the queue [`FLUSH_INTERVAL`] after its first
//! eviction, one `Evict` request per replica, without waiting for answers. A node that
//! evicts nothing does not wake up for it. An eviction that a replica
//! misses (down, or the queue full: [`crate::removal_queue`]) leaves one stale copy, which anti-entropy may copy
//! back once; it is evicted again when memory runs short.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use quorra_cluster::message::Request;
use quorra_ring::NodeId;
use quorra_store::{RemovalObserver, Version};
use tokio_util::sync::CancellationToken;

use crate::cluster_node::ClusterNode;
use crate::removal_queue::RemovalQueue;

/// How long evictions gather after the first one before they are sent together.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// The evictions of this node's store, waiting to be sent.
#[derive(Debug, Default)]
pub struct EvictionFeed {
    /// The evicted keys and versions (its `dropped`: evictions not sent because it was
    /// full).
    pub queue: RemovalQueue<(Bytes, Version)>,
    /// Evictions sent to other replicas (one per key and replica).
    pub sent: AtomicU64,
}

impl RemovalObserver for EvictionFeed {
    fn on_evict(&self, key: &[u8], version: Version) {
        self.queue.push((Bytes::copy_from_slice(key), version));
    }
}

/// Sends the feed's evictions to each key's other serving replicas, at most every
/// [`FLUSH_INTERVAL`], until `stop`. Waits without a timer while nothing is evicted: a
/// ticking timer on every node woke a worker thread 50 times a second for nothing.
pub async fn propagate(feed: Arc<EvictionFeed>, node: Arc<ClusterNode>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = feed.queue.first_queued() => {}
            () = stop.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(FLUSH_INTERVAL) => {}
            () = stop.cancelled() => return,
        }
        let evicted = feed.queue.take();
        if evicted.is_empty() {
            continue;
        }
        let view = node.view();
        let placement = node.placement(&view);
        if !placement.replicated() {
            continue;
        }
        let mut by_replica: HashMap<NodeId, Vec<(Bytes, u64, u64)>> = HashMap::new();
        for (key, version) in evicted {
            for replica in placement.replicas(&key) {
                if *replica != view.self_id && view.is_serving(replica) {
                    let entry = (key.clone(), version.hlc, version.node);
                    by_replica.entry(replica.clone()).or_default().push(entry);
                }
            }
        }
        for (replica, entries) in by_replica {
            feed.sent.fetch_add(entries.len() as u64, Ordering::Relaxed);
            let call = node
                .peers
                .call(&view, &replica, &Request::Evict { entries });
            tokio::spawn(async move {
                if let Err(error) = call.await {
                    tracing::debug!(%error, "evictions not delivered");
                }
            });
        }
    }
}
