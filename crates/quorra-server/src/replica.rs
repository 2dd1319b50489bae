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
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};

use bytes::{Bytes, BytesMut};
use quorra_cluster::membership::{ClusterView, MemberState};
use quorra_cluster::message::{Request, Response};
use quorra_cluster::placement::Placement;
use quorra_cluster::replication::{Level, QuorumError, ReplicaError, Replicas};
use quorra_cluster::rpc::{BoxFuture, RpcClient};
use quorra_resp::{Protocol, encode};
use quorra_ring::NodeId;
use quorra_store::{Version, VersionedEntry};

use crate::accounting::{Lookups, Outcome};
use crate::commands::{self, CommandError, Ran};
use crate::shared::Shared;

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
            // Failure detection has judged it dead: do not wait for a timeout to agree.
            if member.state == MemberState::Down {
                return Err(ReplicaError {
                    node,
                    message: "is down".into(),
                    unreachable: true,
                });
            }
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
        promote: bool,
    ) -> BoxFuture<Result<Vec<Option<VersionedEntry>>, ReplicaError>> {
        let shared = match self.shared(node) {
            Ok(shared) => shared,
            Err(error) => return Box::pin(async move { Err(error) }),
        };
        if is_self(&shared, node) {
            let entries = keys
                .iter()
                .map(|key| read_entry(&shared.store, key, promote))
                .collect();
            return Box::pin(async move { Ok(entries) });
        }
        let expected = keys.len();
        let call = self.call(node, Request::Read { keys, promote });
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

/// A replica's entry for `key`, promoted in its LRU if the read is a client's.
pub fn read_entry(
    store: &quorra_store::Store,
    key: &[u8],
    promote: bool,
) -> Option<VersionedEntry> {
    match promote {
        true => store.read_versioned(key),
        false => store.get_versioned(key),
    }
}

fn is_self(shared: &Shared, node: &NodeId) -> bool {
    shared
        .cluster
        .as_ref()
        .is_some_and(|cluster| cluster.node_id() == node)
}

/// The keys a write command writes, from the command table's key positions; none for a
/// command that does not write.
fn written_keys(args: &[Bytes]) -> impl Iterator<Item = &Bytes> {
    let writes = commands::lookup(&args[0]).is_some_and(|id| id.info().writes());
    commands::keys_of(args).filter(move |_| writes)
}

/// A command this node ran as its keys' primary, whose writes wait to be copied to the
/// replicas.
pub struct PrimaryWrite {
    /// The command.
    pub args: Vec<Bytes>,
    /// Its reply, as the client gets it if the copies succeed.
    pub reply: Bytes,
    /// How running it went, and its keyspace reads.
    pub ran: Ran,
    /// Each key it writes with the entry the key held before it ran (`None`: no
    /// entry), to put back if no other replica takes the write.
    before: Vec<(Bytes, Option<VersionedEntry>)>,
}

/// The quorum failure the write command `args` is bound to meet, found before it runs:
/// fewer of one of its keys' replicas serve than `level` needs. Such a write is refused
/// instead of run, so that it leaves nothing on this node that could later overwrite
/// writes acknowledged on the other side of a partition. (A replica that failed but is
/// not yet known to be down is still counted: a write in that window runs here, and is
/// undone if no other replica takes it; see [`replicate_writes`].)
pub fn quorum_out_of_reach(
    placement: &Placement<'_>,
    args: &[Bytes],
    level: Level,
) -> Option<QuorumError> {
    if !placement.replicated() {
        return None;
    }
    let required = level.required(placement.copies());
    written_keys(args).find_map(|key| {
        let serving = placement.serving_replicas(key);
        (serving < required).then_some(QuorumError {
            required,
            answered: serving,
            level,
        })
    })
}

/// Runs the command `args` here as its keys' primary — or, for a write whose quorum is
/// out of reach ([`quorum_out_of_reach`]), refuses it without running it. The result
/// waits for [`replicate_writes`].
pub fn run_primary_write(
    shared: &Shared,
    view: &ClusterView,
    session: &mut crate::connection::Session,
    args: &[Bytes],
    level: Level,
) -> PrimaryWrite {
    let mut reply = BytesMut::new();
    let refusal = shared.cluster.as_ref().and_then(|node| {
        let refusal = quorum_out_of_reach(&node.placement(view), args, level)?;
        node.replicator
            .stats()
            .quorum_failures
            .fetch_add(1, Ordering::Relaxed);
        Some(refusal)
    });
    let mut before = Vec::new();
    let ran = match refusal {
        Some(error) => {
            encode::error(&mut reply, &error.to_string());
            Ran {
                id: commands::lookup(&args[0]),
                outcome: Outcome::Failed,
                lookups: Lookups::default(),
            }
        }
        None => {
            before = written_keys(args)
                .map(|key| (key.clone(), shared.store.get_versioned(key)))
                .collect();
            commands::run(shared, session, &mut reply, args)
        }
    };
    PrimaryWrite {
        args: args.to_vec(),
        reply: reply.freeze(),
        ran,
        before,
    }
}

/// Copies the entry of every key that `writes` (commands run here as their keys'
/// primary) wrote to the key's replicas under `view`, waiting for `level` of them per
/// key, and returns each command's final reply: its own, or `NOQUORUM ...` if one of its
/// keys reached too few replicas. Each replica gets one request for all of them, and a
/// key written by several of the commands goes once, as it is now. Nothing to do for
/// read-only commands, error replies, or keys that left no entry (a DEL of a missing
/// key).
///
/// A write that failed and that no replica but this one stored is undone: the key's
/// previous entry is put back and the hints for the others are dropped, so the client
/// that was told it failed never sees it win over writes acknowledged elsewhere.
pub async fn replicate_writes(
    shared: &Shared,
    view: &ClusterView,
    writes: &[PrimaryWrite],
    level: Level,
) -> Vec<Bytes> {
    let mut replies: Vec<Bytes> = writes.iter().map(|write| write.reply.clone()).collect();
    let Some(cluster) = shared.cluster.as_ref() else {
        return replies;
    };
    let placement = cluster.placement(view);
    if !placement.replicated() {
        return replies;
    }
    // Each key once, with the commands that wrote it (the first one's `before` is the
    // entry to put back).
    let mut writers: Vec<(Bytes, Vec<usize>)> = Vec::new();
    let mut position: HashMap<Bytes, usize> = HashMap::new();
    for (command, write) in writes.iter().enumerate() {
        if write.reply.first() == Some(&b'-') {
            continue;
        }
        for (key, _) in &write.before {
            let at = *position.entry(key.clone()).or_insert_with(|| {
                writers.push((key.clone(), Vec::new()));
                writers.len() - 1
            });
            writers[at].1.push(command);
        }
    }
    let (batch, commands): (Vec<_>, Vec<_>) = writers
        .into_iter()
        .filter_map(|(key, commands)| {
            let entry = shared.store.get_versioned(&key)?;
            let targets: Vec<NodeId> = placement.replicas(&key).into_iter().cloned().collect();
            Some(((key, entry, targets), commands))
        })
        .unzip();
    let written: Vec<(Bytes, Version, Vec<NodeId>)> = batch
        .iter()
        .map(|(key, entry, targets)| (key.clone(), entry.version, targets.clone()))
        .collect();
    let results = cluster
        .replicator
        .write_many(batch, placement.copies(), level)
        .await;
    for ((result, commands), (key, version, targets)) in
        results.into_iter().zip(commands).zip(written)
    {
        let Err(error) = result else {
            continue;
        };
        if error.answered <= 1 {
            let before = writes[commands[0]]
                .before
                .iter()
                .find(|(written, _)| *written == key)
                .and_then(|(_, before)| before.as_ref());
            if let Err(store_error) = shared.store.revert(&key, version, before) {
                tracing::warn!(%store_error, "could not undo a write that failed its quorum");
            }
            cluster.replicator.withdraw(&key, version, &targets);
        }
        let refusal = commands::error_reply(&error.to_string());
        for command in commands {
            if !replies[command].starts_with(b"-") {
                replies[command] = refusal.clone();
            }
        }
    }
    replies
}

/// Runs `commands` here, in order, as their keys' primary, then replicates what they
/// wrote: one reply per command (see [`replicate_writes`]), and the keyspace reads they
/// made. Nothing is counted here; the caller accounts for them.
pub async fn run_as_primary<A: AsRef<[Bytes]>>(
    shared: &Shared,
    view: &ClusterView,
    session: &mut crate::connection::Session,
    commands: &[A],
    level: Level,
) -> (Vec<Bytes>, Lookups) {
    let writes: Vec<PrimaryWrite> = commands
        .iter()
        .map(|args| run_primary_write(shared, view, session, args.as_ref(), level))
        .collect();
    let mut lookups = Lookups::default();
    for write in &writes {
        lookups.add(write.ran.lookups);
    }
    (
        replicate_writes(shared, view, &writes, level).await,
        lookups,
    )
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

impl QuorumRead {
    /// Whether the read promotes its keys in the replicas' LRU and counts as keyspace
    /// hits and misses, as the command does on a single node (GET and MGET do, EXISTS
    /// does not).
    pub fn promotes(self) -> bool {
        self != QuorumRead::Exists
    }
}

/// The keys a quorum read of `args` reads, each with its replicas.
pub fn quorum_reads(placement: &Placement<'_>, args: &[Bytes]) -> Vec<(Bytes, Vec<NodeId>)> {
    args[1..]
        .iter()
        .map(|key| {
            let replicas = placement.replicas(key).into_iter().cloned().collect();
            (key.clone(), replicas)
        })
        .collect()
}

/// Writes the reply of a quorum read from the entries of its keys, in order, judging
/// expiry at `now_ms` (the store's clock, by the one rule of
/// [`VersionedEntry::is_live`]); returns the keyspace reads it counts (none for
/// EXISTS), or the first quorum failure if any key had one.
pub fn write_read_reply(
    kind: QuorumRead,
    entries: Vec<Result<Option<VersionedEntry>, QuorumError>>,
    protocol: Protocol,
    now_ms: u64,
    out: &mut BytesMut,
) -> Result<Lookups, CommandError> {
    let mut values = Vec::with_capacity(entries.len());
    for entry in entries {
        let entry = entry.map_err(|error| CommandError::new(error.to_string()))?;
        values.push(entry.filter(|entry| entry.is_live(now_ms)));
    }
    let mut lookups = Lookups::default();
    let mut bulk = |value: &Option<VersionedEntry>, out: &mut BytesMut| {
        lookups.found(value.is_some());
        match value {
            Some(entry) => encode::bulk(out, &entry.value),
            None => encode::null(out, protocol),
        }
    };
    match kind {
        QuorumRead::Get => bulk(&values[0], out),
        QuorumRead::Mget => {
            encode::array_header(out, values.len());
            for value in &values {
                bulk(value, out);
            }
        }
        QuorumRead::Exists => {
            let found = values.iter().filter(|value| value.is_some()).count();
            encode::integer(out, found as i64);
            return Ok(Lookups::default());
        }
    }
    Ok(lookups)
}
