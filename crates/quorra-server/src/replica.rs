//! Replication in the server: how a node reaches replicas, copies what its commands
//! wrote, and answers quorum reads.
//!
//! With N > 1 (`--replicas`, capped by the serving nodes) every key lives on the first N
//! nodes of its preference list. The rules, with [`crate::routing`] deciding which
//! applies:
//!
//! - **Writes run at the key's primary** (the first node of the list), exactly as on a
//!   single node, so read-modify-write commands (INCR, APPEND, SET NX, GETSET, ...) see
//!   one sequence of values. Then [`replicate_writes`] sends the resulting entry of
//!   every key the command wrote — value or tombstone, absolute expiry, version — to all
//!   N replicas and answers once W of them (the primary included) hold it; otherwise the
//!   client gets `NOQUORUM ...` (the write may have reached some replicas). If the
//!   primary cannot be connected to at all, routing asks the next replica to act as
//!   primary; a primary that times out is not bypassed, since it may have run the
//!   command. The writes of a pipeline flush, or of a batch forwarded to the primary,
//!   are copied together: all the commands run first, then each replica gets one
//!   request with every key they wrote (a key written twice goes once, as it is now).
//! - **GET, MGET and EXISTS are quorum reads** by the node that received them: every
//!   replica is asked for its entry, the newest of the first R answers wins, stale
//!   replicas are repaired in the background ([`Replicator::read`](quorra_cluster::replication::Replicator::read)). Other reads (TTL,
//!   STRLEN, GETRANGE, ...) run at the primary.
//! - Keyspace commands count each key once: every node reports only the keys it is
//!   primary for.
//!
//! [`NodeReplicas`] is the [`Replicas`] transport: this node's own store directly, the
//! others over RPC (`Apply`, `Read`).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};

use bytes::{Bytes, BytesMut};
use quorra_cluster::membership::{ClusterView, MemberState};
use quorra_cluster::message::{Request, Response};
use quorra_cluster::replication::{Level, QuorumError, ReplicaError, Replicas};
use quorra_cluster::rpc::{BoxFuture, RpcClient};
use quorra_resp::{Protocol, encode};
use quorra_ring::NodeId;
use quorra_store::VersionedEntry;

use crate::commands::{self, CommandError};
use crate::shared::{Shared, unix_ms};

/// Replicas of this node's cluster: its own store, and the other members over RPC.
pub struct NodeReplicas {
    /// The node's state, set once it exists (it is built after the cluster machinery).
    pub shared: Arc<OnceLock<Weak<Shared>>>,
    /// Calls to the other members.
    pub rpc: RpcClient,
}

impl NodeReplicas {
    fn shared(&self, node: &NodeId) -> Result<Arc<Shared>, ReplicaError> {
        self.shared
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| ReplicaError {
                node: node.clone(),
                message: "this node is starting or stopping".into(),
                unreachable: true,
            })
    }

    /// Sends `request` to `node`; an error says whether the node was reachable.
    fn call(&self, node: &NodeId, request: Request) -> BoxFuture<Result<Response, ReplicaError>> {
        let shared = self.shared(node);
        let rpc = self.rpc.clone();
        let node = node.clone();
        Box::pin(async move {
            let shared = shared?;
            let view = shared.cluster.as_ref().map(|cluster| cluster.view());
            let Some(member) = view.as_ref().and_then(|view| view.member(&node)) else {
                return Err(ReplicaError {
                    node,
                    message: "not a member".into(),
                    unreachable: true,
                });
            };
            let started = std::time::Instant::now();
            let outcome = rpc.call(member.addresses.cluster, request.encode()).await;
            shared
                .metrics
                .rpc_done(node.as_str(), outcome.is_ok(), started.elapsed());
            let payload = outcome.map_err(|error| ReplicaError {
                node: node.clone(),
                unreachable: error.is_transient(),
                message: error.to_string(),
            })?;
            Response::decode(&payload).map_err(|error| ReplicaError {
                node,
                message: error.to_string(),
                unreachable: false,
            })
        })
    }
}

fn refused(node: &NodeId, message: String) -> ReplicaError {
    ReplicaError {
        node: node.clone(),
        message,
        unreachable: false,
    }
}

impl Replicas for NodeReplicas {
    fn apply(
        &self,
        node: &NodeId,
        entries: Vec<(Bytes, VersionedEntry)>,
    ) -> BoxFuture<Result<Vec<Result<(), ReplicaError>>, ReplicaError>> {
        let shared = match self.shared(node) {
            Ok(shared) => shared,
            Err(error) => return Box::pin(async move { Err(error) }),
        };
        let node = node.clone();
        if is_self(&shared, &node) {
            let outcomes = entries
                .into_iter()
                .map(|(key, entry)| {
                    let outcome = shared.store.apply(&key, entry);
                    outcome
                        .map(|_| ())
                        .map_err(|error| refused(&node, error.to_string()))
                })
                .collect();
            return Box::pin(async move { Ok(outcomes) });
        }
        let count = entries.len();
        let entries = entries
            .into_iter()
            .map(|(key, entry)| (key, entry.into()))
            .collect();
        let call = self.call(&node, Request::Apply { entries });
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
    ) -> BoxFuture<Result<Vec<Option<VersionedEntry>>, ReplicaError>> {
        let shared = match self.shared(node) {
            Ok(shared) => shared,
            Err(error) => return Box::pin(async move { Err(error) }),
        };
        if is_self(&shared, node) {
            let entries = keys
                .iter()
                .map(|key| shared.store.get_versioned(key))
                .collect();
            return Box::pin(async move { Ok(entries) });
        }
        let expected = keys.len();
        let call = self.call(node, Request::Read { keys });
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

fn is_self(shared: &Shared, node: &NodeId) -> bool {
    shared
        .cluster
        .as_ref()
        .is_some_and(|cluster| cluster.node_id() == node)
}

/// Copies per key under `view` (N): the configured number, capped by the cluster's
/// known members — those serving and those down, but not those that left — so that a
/// node cut off from the others still counts them and cannot make a quorum alone. 1
/// means no replication. Down members are forgotten after the dead-node grace period,
/// and the cluster then shrinks.
pub fn copies(shared: &Shared, view: &ClusterView) -> usize {
    shared.cluster.as_ref().map_or(1, |cluster| {
        let known = view
            .members
            .iter()
            .filter(|member| matches!(member.state, MemberState::Up | MemberState::Down))
            .count();
        cluster
            .consistency
            .replicas
            .min(known.max(view.ring.len()))
            .max(1)
    })
}

/// The replicas of `key`, primary first.
pub fn replicas_of(view: &ClusterView, key: &[u8], n: usize) -> Vec<NodeId> {
    view.ring
        .preference_list(key, n)
        .into_iter()
        .cloned()
        .collect()
}

/// The keys a write command wrote, from the command table's key positions.
fn written_keys(args: &[Bytes]) -> Vec<Bytes> {
    let writes = commands::lookup(&args[0]).is_some_and(|id| id.info().writes());
    if !writes {
        return Vec::new();
    }
    commands::keys_of(args).cloned().collect()
}

/// After commands ran here as their keys' primary (`writes`: each command and its
/// reply): copies the entry of every key they wrote to the key's replicas under `view`,
/// waiting for `level` of them per key. Each replica gets one request for all of them,
/// and a key written by several of the commands goes once, as it is now. One outcome
/// per command: the quorum failure of one of its keys, if any. Nothing to do for
/// read-only commands, error replies, or keys that left no entry (a DEL of a missing key).
pub async fn replicate_writes(
    shared: &Shared,
    view: &ClusterView,
    writes: &[(&[Bytes], &[u8])],
    level: Level,
) -> Vec<Result<(), QuorumError>> {
    let mut outcomes = vec![Ok(()); writes.len()];
    let Some(cluster) = shared.cluster.as_ref() else {
        return outcomes;
    };
    let n = copies(shared, view);
    if n < 2 {
        return outcomes;
    }
    // Each key once, with the commands that wrote it.
    let mut writers: Vec<(Bytes, Vec<usize>)> = Vec::new();
    let mut position: HashMap<Bytes, usize> = HashMap::new();
    for (command, (args, reply)) in writes.iter().enumerate() {
        if reply.first() == Some(&b'-') {
            continue;
        }
        for key in written_keys(args) {
            let at = *position.entry(key.clone()).or_insert_with(|| {
                writers.push((key, Vec::new()));
                writers.len() - 1
            });
            writers[at].1.push(command);
        }
    }
    let (batch, commands): (Vec<_>, Vec<_>) = writers
        .into_iter()
        .filter_map(|(key, commands)| {
            let entry = shared.store.get_versioned(&key)?;
            let targets = replicas_of(view, &key, n);
            Some(((key, entry, targets), commands))
        })
        .unzip();
    let results = cluster.replicator.write_many(batch, n, level).await;
    for (result, commands) in results.into_iter().zip(commands) {
        if let Err(error) = result {
            for command in commands {
                if outcomes[command].is_ok() {
                    outcomes[command] = Err(error.clone());
                }
            }
        }
    }
    outcomes
}

/// Runs `commands` here, in order, as their keys' primary, then replicates what they
/// wrote: one reply per command, or `NOQUORUM ...` for one whose writes too few
/// replicas took.
pub async fn run_as_primary<A: AsRef<[Bytes]>>(
    shared: &Shared,
    view: &ClusterView,
    session: &mut crate::connection::Session,
    commands: &[A],
    level: Level,
) -> Vec<Bytes> {
    let replies = commands::dispatch_each(shared, session, commands);
    let writes: Vec<(&[Bytes], &[u8])> = commands
        .iter()
        .zip(&replies)
        .map(|(args, reply)| (args.as_ref(), &reply[..]))
        .collect();
    let outcomes = replicate_writes(shared, view, &writes, level).await;
    replies
        .iter()
        .zip(outcomes)
        .map(|(reply, outcome)| match outcome {
            Ok(()) => reply.clone(),
            Err(error) => commands::error_reply(&error.to_string()),
        })
        .collect()
}

/// What a quorum read answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuorumRead {
    /// GET key
    Get,
    /// MGET key [key ...]
    Mget,
    /// EXISTS key [key ...]
    Exists,
}

/// The keys a quorum read of `args` reads, each with its replicas under `view`.
pub fn quorum_reads(
    shared: &Shared,
    view: &ClusterView,
    args: &[Bytes],
) -> Vec<(Bytes, Vec<NodeId>)> {
    let n = copies(shared, view);
    args[1..]
        .iter()
        .map(|key| (key.clone(), replicas_of(view, key, n)))
        .collect()
}

/// Writes the reply of a quorum read from the entries of its keys, in order: the first
/// quorum failure if any key had one.
pub fn write_read_reply(
    kind: QuorumRead,
    entries: Vec<Result<Option<VersionedEntry>, QuorumError>>,
    protocol: Protocol,
    out: &mut BytesMut,
) -> Result<(), CommandError> {
    let now = unix_ms();
    let mut values = Vec::with_capacity(entries.len());
    for entry in entries {
        let entry = entry.map_err(|error| CommandError::new(error.to_string()))?;
        values.push(
            entry.filter(|entry| !entry.tombstone && entry.expire_at_ms.is_none_or(|at| at > now)),
        );
    }
    match kind {
        QuorumRead::Get => match &values[0] {
            Some(entry) => encode::bulk(out, &entry.value),
            None => encode::null(out, protocol),
        },
        QuorumRead::Mget => {
            encode::array_header(out, values.len());
            for value in &values {
                match value {
                    Some(entry) => encode::bulk(out, &entry.value),
                    None => encode::null(out, protocol),
                }
            }
        }
        QuorumRead::Exists => encode::integer(
            out,
            values.iter().filter(|value| value.is_some()).count() as i64,
        ),
    }
    Ok(())
}
