//! Write-behind at the node: SET and DEL of a key in a `write = "behind"` namespace are
//! acknowledged once the cache has them (with copies, once the write quorum has them),
//! and reach the origin later, coalesced per key, in batches
//! ([`quorra_origin::write_behind`] keeps the marks).
//!
//! - The primary marks a write once it succeeded, before the client is answered
//!   ([`mark_written`], from [`crate::origin_hooks`] and the pipeline); every other
//!   replica marks the copy it applies ([`mark_applied`], from the peer handler). So
//!   every replica that acknowledged the write holds its mark: a kill -9 of any one node
//!   loses none.
//! - Every `write-behind-interval`, each node flushes the marks of the keys it is now
//!   primary for ([`flush_loop`]): it writes each key's newest value it holds (the mark's
//!   own value if the key was evicted meanwhile), or runs the delete, then drops the
//!   marks and tells the key's other replicas ([`Request::Flushed`]), which drop theirs.
//!   When a primary dies, its keys' next serving replica is their primary: it flushes
//!   the marks it holds.
//! - A node stopping gracefully (SIGTERM) flushes every mark it holds before it leaves
//!   ([`flush_all`]); the other replicas' marks of those keys are then dropped.
//!
//! Known limits: a write refused with NOQUORUM but already marked on a replica that
//! applied it may still reach the origin; a replica that got a copy only after its
//! primary's flush keeps a mark that the next write of the key (or a failover flush,
//! which rewrites the same value) clears.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use quorra_cluster::membership::ClusterView;
use quorra_cluster::message::Request;
use quorra_origin::write_behind::{Mark, QueueFull, WriteBehind};
use quorra_ring::NodeId;
use quorra_store::VersionedEntry;
use tokio_util::sync::CancellationToken;

use crate::cluster_node::ClusterNode;
use crate::commands::{self, CommandError};
use crate::node_replicas::read_entry;
use crate::shared::Shared;

/// How `entry` (the store's, after a write; `None` if the key is gone) is marked:
/// its version and value, `None` for a delete.
fn as_marked(entry: Option<VersionedEntry>, shared: &Shared) -> ((u64, u64), Option<Bytes>) {
    match entry {
        Some(entry) => {
            let version = (entry.version.hlc, entry.version.node);
            let live = entry.is_live(shared.store.now_ms());
            (version, live.then_some(entry.value))
        }
        // Deleted without a tombstone (a single node): a version from the store's clock,
        // newer than every write it made.
        None => {
            let version = shared.store.hybrid_clock().next(shared.store.now_ms());
            ((version.hlc, version.node), None)
        }
    }
}

/// Refuses, before it runs, a write that would add a key to a full write-behind queue.
pub fn check_room(shared: &Shared, args: &[Bytes]) -> Result<(), CommandError> {
    let Some(origins) = shared.origins.as_ref().filter(|o| o.writes_behind()) else {
        return Ok(());
    };
    for key in commands::keys_of(args) {
        let Some(namespace) = origins.catalog().namespace_of(key) else {
            continue;
        };
        if let Some(queue) = origins.write_behind(namespace)
            && queue.is_full_for(key)
        {
            let name = &origins.catalog().namespaces()[namespace].name;
            return Err(CommandError::new(format!(
                "ERR namespace {name} writes behind: {}",
                QueueFull(queue.capacity())
            )));
        }
    }
    Ok(())
}

/// After the write command `args` succeeded here, at its keys' primary: marks each of
/// its keys in a write-behind namespace as the store now holds it.
pub fn mark_written(shared: &Shared, args: &[Bytes]) {
    let Some(origins) = shared.origins.as_ref().filter(|o| o.writes_behind()) else {
        return;
    };
    if !commands::lookup(&args[0]).is_some_and(|id| id.info().writes()) {
        return;
    }
    for key in commands::keys_of(args) {
        let Some(namespace) = origins.catalog().namespace_of(key) else {
            continue;
        };
        if let Some(queue) = origins.write_behind(namespace) {
            let (version, value) = as_marked(read_entry(&shared.store, key, false), shared);
            let mark = Mark {
                namespace,
                version,
                value,
                since_ms: shared.store.now_ms(),
            };
            // Room was checked before the command ran; a race past the limit by a few
            // keys is kept rather than lost.
            let _ = queue.mark(key, mark, true);
        }
    }
}

/// A replica stored `entry` for `key`, copied from the key's primary: marks it if its
/// namespace writes behind.
pub fn mark_applied(shared: &Shared, key: &Bytes, entry: &VersionedEntry) {
    let Some(origins) = shared.origins.as_ref().filter(|o| o.writes_behind()) else {
        return;
    };
    let Some(namespace) = origins.catalog().namespace_of(key) else {
        return;
    };
    if let Some(queue) = origins.write_behind(namespace) {
        let now = shared.store.now_ms();
        let mark = Mark {
            namespace,
            version: (entry.version.hlc, entry.version.node),
            value: entry.is_live(now).then(|| entry.value.clone()),
            since_ms: now,
        };
        let _ = queue.mark(key, mark, true);
    }
}

/// The primary flushed these keys as of these versions: drops the marks that are not
/// newer.
pub fn flushed_elsewhere(shared: &Shared, entries: &[(Bytes, u64, u64)]) {
    let Some(origins) = &shared.origins else {
        return;
    };
    for (key, hlc, node) in entries {
        if let Some(queue) = origins
            .catalog()
            .namespace_of(key)
            .and_then(|namespace| origins.write_behind(namespace))
        {
            queue.flushed(key, (*hlc, *node));
        }
    }
}

/// Flushes every write-behind namespace at its interval, until `stop`.
pub async fn flush_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let Some(origins) = shared.origins.clone().filter(|o| o.writes_behind()) else {
        return;
    };
    let namespaces = origins.catalog().namespaces();
    let tick = namespaces
        .iter()
        .enumerate()
        .filter(|(index, _)| origins.write_behind(*index).is_some())
        .map(|(_, namespace)| namespace.write_behind.interval)
        .min()
        .unwrap_or(Duration::from_secs(1));
    let mut last_flush = vec![tokio::time::Instant::now(); namespaces.len()];
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = stop.cancelled() => return,
        }
        for (index, namespace) in namespaces.iter().enumerate() {
            if origins.write_behind(index).is_none()
                || last_flush[index].elapsed() < namespace.write_behind.interval
            {
                continue;
            }
            last_flush[index] = tokio::time::Instant::now();
            if let Err(error) = flush(&shared, index, false).await {
                tracing::warn!(namespace = %namespace.name, %error,
                    "write-behind flush failed; the writes stay queued");
            }
        }
    }
}

/// Flushes every mark this node holds, primary or not, before it stops.
pub async fn flush_all(shared: &Shared) {
    let Some(origins) = shared.origins.as_ref().filter(|o| o.writes_behind()) else {
        return;
    };
    for (index, namespace) in origins.catalog().namespaces().iter().enumerate() {
        if origins.write_behind(index).is_none() {
            continue;
        }
        if let Err(error) = flush(shared, index, true).await {
            let pending = origins.write_behind(index).map_or(0, |q| q.depth());
            tracing::error!(namespace = %namespace.name, %error, pending,
                "write-behind flush at shutdown failed; the other replicas keep these writes");
        }
    }
}

/// One flush of the namespace at `namespace`: the marks of the keys this node is
/// primary for (every mark with `everything`), found in one pass over the queue, written
/// oldest first, `write-behind-batch` keys at a time. Returns how many were written, or
/// the origin's first error (that batch's failures, and every later batch, stay queued).
async fn flush(shared: &Shared, namespace: usize, everything: bool) -> Result<usize, String> {
    let origins = shared.origins.as_ref().expect("flushes need origins");
    let queue = origins
        .write_behind(namespace)
        .expect("a write-behind namespace");
    let policy = &origins.catalog().namespaces()[namespace];
    let view = shared.cluster.as_ref().map(|node| (node, node.view()));
    let mine = |key: &Bytes, _: &Mark| match &view {
        Some((node, view)) => {
            everything || node.placement(view).primary(key) == Some(&view.self_id)
        }
        None => true,
    };
    let mut due = queue.due(mine);
    let cluster = view
        .as_ref()
        .map(|(node, view)| (node.as_ref(), view.as_ref()));
    let mut written = 0;
    while !due.is_empty() {
        let rest = due.split_off(due.len().min(policy.write_behind.batch));
        let batch = std::mem::replace(&mut due, rest);
        written += write_batch(shared, namespace, queue, cluster, batch).await?;
    }
    Ok(written)
}

/// Writes one batch of marks of the namespace at `namespace` to the origin, then drops
/// their marks from `queue` and, in `cluster` mode, tells the keys' other replicas.
/// Returns how many were written, or the first error.
async fn write_batch(
    shared: &Shared,
    namespace: usize,
    queue: &WriteBehind,
    cluster: Option<(&ClusterNode, &ClusterView)>,
    batch: Vec<(Bytes, Mark)>,
) -> Result<usize, String> {
    let origins = shared.origins.as_ref().expect("flushes need origins");
    let policy = &origins.catalog().namespaces()[namespace];
    // The batch's keys are distinct: they are written side by side, as many at once as
    // the origin's pool has connections.
    let connections = origins.catalog().origins()[policy.origin].pool;
    let writes = batch.into_iter().map(|(key, mark)| async move {
        // The newest this node holds: the store's entry if it is at least the mark's
        // version, else the mark's own (the key was evicted, or the copy is behind).
        let (version, value) = match read_entry(&shared.store, &key, false) {
            Some(entry) if (entry.version.hlc, entry.version.node) >= mark.version => {
                as_marked(Some(entry), shared)
            }
            _ => (mark.version, mark.value.clone()),
        };
        let outcome = origins.write(namespace, &key, value.as_deref()).await;
        (key, version, outcome)
    });
    let outcomes: Vec<_> = futures_util::stream::iter(writes)
        .buffer_unordered(connections)
        .collect()
        .await;
    let mut flushed: HashMap<NodeId, Vec<(Bytes, u64, u64)>> = HashMap::new();
    let mut written = 0;
    let mut failure = None;
    for (key, version, outcome) in outcomes {
        if let Err(error) = outcome {
            failure.get_or_insert(error.to_string());
            continue;
        }
        queue.flushed(&key, version);
        written += 1;
        if let Some((node, view)) = cluster {
            for replica in node.placement(view).replicas(&key) {
                if *replica != view.self_id {
                    let entry = (key.clone(), version.0, version.1);
                    flushed.entry(replica.clone()).or_default().push(entry);
                }
            }
        }
    }
    if let Some((node, view)) = cluster {
        for (replica, entries) in flushed {
            // Best effort: a replica that misses this keeps its marks until the key's
            // next flush.
            let _ = node
                .peers
                .call(view, &replica, &Request::Flushed { entries })
                .await;
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(written),
    }
}
