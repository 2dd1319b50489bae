//! Proxy routing: any node accepts any command and runs it where its keys live.
//!
//! For each command a connection reads in cluster mode, [`plan`] decides from the
//! command table's key positions and the current ring where it runs:
//!
//! - one key, or several keys with one owner: on the owner — here, or forwarded whole
//!   ([`Plan::Forward`]) and the owner's reply bytes passed back unchanged;
//! - MGET, MSET, DEL, UNLINK, EXISTS, TOUCH over several owners: split by owner, the
//!   parts run at the same time, the replies merged in the caller's order (MGET's values
//!   back into their positions, counts summed, MSET's `OK`s combined). MSET is atomic per
//!   owner, not across owners;
//! - RENAME, RENAMENX, COPY, LCS, MSETNX over keys of different owners: refused with a
//!   `CROSSSLOT` error, as Redis Cluster refuses keys in different slots;
//! - DBSIZE, KEYS, FLUSHALL, FLUSHDB, RANDOMKEY, SCAN and the keyspace section of INFO:
//!   asked of every serving node and combined. SCAN's cursor walks the nodes in id
//!   order: its top 16 bits are the node's index, the low 48 bits the node's own cursor
//!   (a store cursor never needs more: `shard << 32 | slot` with at most 2^16 shards).
//!   If membership changes during a scan, the scan may miss or repeat keys;
//! - everything else (connection and server commands) runs here.
//!
//! With replication (N > 1, see [`crate::replica`]) GET, MGET and EXISTS become quorum
//! reads by this node ([`Plan::QuorumRead`]), and writes run at the key's primary: here
//! ([`Plan::PrimaryWrite`]) or forwarded with the write level, the receiver copying what
//! it wrote to the replicas; keyspace commands count only each node's primary keys.
//!
//! Commands that would be refused anyway — unknown, wrong arity, not authenticated —
//! run locally so that the refusal is the local one. A forwarded command is never
//! forwarded again by the node that receives it, so two nodes whose views briefly differ
//! cannot bounce a command between them; the receiver simply runs it.
//!
//! When a node cannot be reached within the cluster timeout, the client gets
//! `CLUSTERDOWN node <id> at <addr> did not answer: <cause>`.
//!
//! A client's pipeline goes through a [`Pipeline`]: the forwarded commands of what one
//! read brought in travel as one request per owner, sent to every owner at once, quorum
//! reads and the copies of primary writes as one request per replica, and the replies
//! are written in the client's order. A primary runs a forwarded batch the same way:
//! every command first, then one copy request per replica for all of them.

use std::collections::HashMap;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use quorra_cluster::membership::{ClusterView, Member};
use quorra_cluster::message::{Request, Response};
use quorra_cluster::placement::Placement;
use quorra_cluster::replication::Level;
use quorra_cluster::rpc::RpcError;
use quorra_resp::{Frame, Limits, Protocol, encode, parse_frame};
use quorra_ring::{NodeId, TokenRange};

use crate::accounting::{self, Lookups, Outcome};
use crate::cluster::ClusterNode;
use crate::commands::{self, CommandError, CommandId, error_reply};
use crate::connection::Session;
use crate::replica::{self, PrimaryWrite, QuorumRead};
use crate::shared::{Shared, unix_ms};

/// What routing works with: the node, its cluster machinery and the view the batch is
/// routed by.
#[derive(Clone, Copy)]
pub struct Cx<'a> {
    /// The node's shared state.
    pub shared: &'a Shared,
    /// Its membership and RPC client.
    pub node: &'a ClusterNode,
    /// The view this batch is routed by.
    pub view: &'a ClusterView,
}

/// Bits of a cluster SCAN cursor that hold the node's own cursor.
const SCAN_NODE_SHIFT: u32 = 48;

/// The error for keys of one command that have different owners.
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same node";

/// Where a command runs.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// Here: its keys are this node's. May run before forwarded commands that came
    /// earlier in the pipeline (their keys are other nodes', so nothing can tell).
    Local,
    /// Whole, on this other node.
    Forward(NodeId),
    /// Here, after everything before it in the pipeline: commands without keys
    /// (connection and server commands, which may change the session) and commands that
    /// will be refused.
    InOrder,
    /// With replication: GET, MGET or EXISTS answered from a quorum of replicas.
    QuorumRead(QuorumRead),
    /// With replication: a write on keys this node is primary for, run here and copied
    /// to the replicas before it is answered.
    PrimaryWrite,
    /// On several nodes, after everything before it in the pipeline.
    Spread(Spread),
}

/// A command that involves several nodes.
#[derive(Debug, PartialEq)]
pub enum Spread {
    /// Split by owner; keys are every `step`-th argument from the first, each followed
    /// by `step - 1` values.
    Split {
        /// How the parts' replies combine.
        merge: Merge,
        /// Arguments per key (1, or 2 for MSET's key-value pairs).
        step: usize,
    },
    /// On every serving node.
    Everywhere(Merge),
    /// SCAN, node by node.
    Scan,
    /// RANDOMKEY: nodes in random order until one has a key.
    RandomKey,
    /// INFO with the keyspace section summed over the cluster.
    Info,
    /// Refused with this error.
    Refuse(&'static str),
}

/// How the node that runs a command runs it: for a client speaking `protocol`; with
/// replication, as the keys' primary copying writes to `replicate` replicas, and with
/// keyspace commands counting only the keys it is primary for.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    /// The client's RESP version.
    pub protocol: Protocol,
    /// The write level, when keys have several copies.
    pub replicate: Option<Level>,
    /// Keyspace commands see only the keys the running node is primary for.
    pub primary_only: bool,
}

impl Mode {
    /// The mode for `session`'s commands under `cx`; `keyspace` for the commands that
    /// enumerate or count keys.
    pub fn of(cx: Cx<'_>, session: &Session, keyspace: bool) -> Mode {
        let replicated = cx.node.placement(cx.view).replicated();
        Mode {
            protocol: session.protocol,
            replicate: replicated.then(|| session.write_level(cx.node)),
            primary_only: replicated && keyspace,
        }
    }
}

/// How the replies of the parts of a split or scattered command combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Arrays: MGET's values go back to their keys' positions; KEYS's are concatenated.
    Values,
    /// Integers are added (DEL, EXISTS, TOUCH, DBSIZE).
    Sum,
    /// Every part answers `OK` (MSET, FLUSHALL).
    AllOk,
}

/// The refusal of key commands on a node that has not joined its cluster yet.
pub const NOT_JOINED: &str = "LOADING this node has not joined its cluster yet";

/// The refusal of a command on a key none of whose replicas serves.
pub const NO_REPLICA: &str = "CLUSTERDOWN no replica of the key is serving";

/// Where the command in `args` runs, given the view. [`Plan::InOrder`] for commands
/// without keys that are not keyspace-wide and for any command that will be refused
/// before it runs (unknown, wrong arity, not authenticated), so the refusal is this
/// node's. On a node that has not joined its cluster, commands on keys are refused
/// ([`NOT_JOINED`]): it cannot tell which keys are its own.
pub fn plan(cx: Cx<'_>, session: &Session, args: &[Bytes]) -> Plan {
    let plan = plan_in_cluster(cx, session, args);
    if !cx.view.joined && !matches!(plan, Plan::InOrder | Plan::Spread(Spread::Info)) {
        return Plan::Spread(Spread::Refuse(NOT_JOINED));
    }
    plan
}

fn plan_in_cluster(cx: Cx<'_>, session: &Session, args: &[Bytes]) -> Plan {
    let Some(id) = commands::lookup(&args[0]) else {
        return Plan::InOrder;
    };
    let (shared, view) = (cx.shared, cx.view);
    let spec = id.info();
    let authenticated = session.authenticated || shared.settings.read().requirepass.is_none();
    if !commands::arity_ok(spec.arity, args.len()) || !authenticated {
        return Plan::InOrder;
    }
    let placement = cx.node.placement(view);
    // The primary shared by all these keys: `Err` with the refusal if they have several
    // or one has none.
    fn one_primary<'v, 'k>(
        placement: &Placement<'v>,
        mut keys: impl Iterator<Item = &'k Bytes>,
    ) -> Result<&'v NodeId, &'static str> {
        let first = placement
            .primary(keys.next().ok_or(CROSSSLOT)?)
            .ok_or(NO_REPLICA)?;
        for key in keys {
            if placement.primary(key).ok_or(NO_REPLICA)? != first {
                return Err(CROSSSLOT);
            }
        }
        Ok(first)
    }
    let replicated = placement.replicated();
    if replicated {
        match spec.name {
            "get" => return Plan::QuorumRead(QuorumRead::Get),
            "mget" => return Plan::QuorumRead(QuorumRead::Mget),
            "exists" => return Plan::QuorumRead(QuorumRead::Exists),
            _ => {}
        }
    }
    let writes = spec.writes();
    let on = |owner: &NodeId| {
        if *owner != view.self_id {
            Plan::Forward(owner.clone())
        } else if replicated && writes {
            Plan::PrimaryWrite
        } else {
            Plan::Local
        }
    };
    let spread = match (spec.keys, spec.name) {
        ((1, 1, 1), _) => match placement.primary(&args[1]) {
            Some(owner) => return on(owner),
            None => Spread::Refuse(NO_REPLICA),
        },
        ((1, 2, 1), _) => match one_primary(&placement, args[1..3].iter()) {
            Ok(owner) => return on(owner),
            Err(refusal) => Spread::Refuse(refusal),
        },
        ((1, -1, step), name) => {
            let step = step as usize;
            match one_primary(&placement, args[1..].iter().step_by(step)) {
                Ok(owner) => return on(owner),
                Err(NO_REPLICA) => return Plan::Spread(Spread::Refuse(NO_REPLICA)),
                Err(_) => {}
            }
            match name {
                "mget" => Spread::Split {
                    merge: Merge::Values,
                    step,
                },
                "mset" => Spread::Split {
                    merge: Merge::AllOk,
                    step,
                },
                "del" | "unlink" | "exists" | "touch" => Spread::Split {
                    merge: Merge::Sum,
                    step,
                },
                _ => Spread::Refuse(CROSSSLOT),
            }
        }
        (_, "dbsize") => Spread::Everywhere(Merge::Sum),
        (_, "keys") => Spread::Everywhere(Merge::Values),
        (_, "flushall" | "flushdb") => Spread::Everywhere(Merge::AllOk),
        (_, "scan") => Spread::Scan,
        (_, "randomkey") => Spread::RandomKey,
        (_, "info") if commands::server::info_wants_keyspace(&args[1..]) => Spread::Info,
        _ => return Plan::InOrder,
    };
    Plan::Spread(spread)
}

/// Most forwarded commands a [`Pipeline`] holds before it sends them.
pub const PIPELINE_MAX_COMMANDS: usize = 512;

/// Most argument bytes of forwarded commands a [`Pipeline`] holds before it sends them.
pub const PIPELINE_MAX_BYTES: usize = 4 << 20;

/// The commands of one client pipeline in cluster mode, run with as few round trips as
/// order allows.
///
/// Forwarded commands are queued per owner and sent as one request per owner, every
/// owner at the same time, when the pipeline is flushed: at the end of what the client
/// sent, before a command that must run in order ([`Plan::InOrder`], [`Plan::Spread`]),
/// or when [`PIPELINE_MAX_COMMANDS`] or [`PIPELINE_MAX_BYTES`] is reached. A command on
/// this node's own keys runs at once, its reply kept for its place. With replication, a
/// write this node is primary for runs at once too, and its copying to the replicas is
/// deferred to the flush, as are quorum reads, so that all of a pipeline's round trips
/// overlap — unless the command shares a key with a queued forward or a deferred
/// operation, which then is flushed first. The client sees the replies in the order it
/// sent the commands; commands on one key run in that order; commands on different keys
/// cannot observe their interleaving.
#[derive(Default)]
pub struct Pipeline {
    /// One entry per command since the first queued forward, in the client's order.
    slots: Vec<Slot>,
    /// Per owner, the queued commands in order.
    batches: Vec<(NodeId, Vec<Vec<Bytes>>)>,
    queued_bytes: usize,
    /// Scratch buffer for the replies of local commands run while forwards are queued.
    local: BytesMut,
    /// Replicated operations whose round trips wait for the flush.
    deferred: Vec<Deferred>,
}

/// A replicated operation of a pipeline, run when the pipeline is flushed.
enum Deferred {
    /// A quorum read of `args`' keys.
    Read(QuorumRead, Vec<Bytes>),
    /// Copying what a command wrote here to the replicas.
    Replicate(PrimaryWrite),
}

impl Deferred {
    fn args(&self) -> &[Bytes] {
        match self {
            Deferred::Read(_, args) => args,
            Deferred::Replicate(write) => &write.args,
        }
    }
}

enum Slot {
    /// The reply of a command that ran here (and was counted then).
    Local(Bytes),
    /// The next reply of this batch.
    Forwarded(usize, Pending),
    /// The outcome of this deferred operation.
    Deferred(usize, Pending),
}

/// A client's command whose reply comes with the flush, to be counted then.
struct Pending {
    id: Option<CommandId>,
    started: Instant,
}

impl Pending {
    fn of(args: &[Bytes]) -> Pending {
        Pending {
            id: commands::lookup(&args[0]),
            started: Instant::now(),
        }
    }

    /// Counts the command, whose reply is `reply`, as ended `now`.
    fn account(&self, shared: &Shared, reply: &[u8], now: Instant) {
        let took = now.duration_since(self.started);
        accounting::command(shared, self.id, Outcome::of_reply(reply), took);
    }
}

impl Pipeline {
    /// Routes and runs (or queues) one command; replies that can be written already go
    /// to `out`.
    pub async fn run(
        &mut self,
        cx: Cx<'_>,
        session: &mut Session,
        args: &[Bytes],
        out: &mut BytesMut,
    ) {
        match plan(cx, session, args) {
            Plan::Local if self.slots.is_empty() => {
                commands::dispatch(cx.shared, session, out, args)
            }
            Plan::Local => {
                commands::dispatch(cx.shared, session, &mut self.local, args);
                self.slots.push(Slot::Local(self.local.split().freeze()));
            }
            Plan::Forward(_) if self.touches_deferred(args) => {
                self.flush(cx, session, out).await;
                Box::pin(self.run(cx, session, args, out)).await;
            }
            Plan::Forward(owner) => {
                let batch = match self.batches.iter().position(|(o, _)| *o == owner) {
                    Some(batch) => batch,
                    None => {
                        self.batches.push((owner, Vec::new()));
                        self.batches.len() - 1
                    }
                };
                self.batches[batch].1.push(args.to_vec());
                self.slots.push(Slot::Forwarded(batch, Pending::of(args)));
                self.flush_if_full(cx, session, args, out).await;
            }
            Plan::InOrder => {
                self.flush(cx, session, out).await;
                commands::dispatch(cx.shared, session, out, args);
            }
            Plan::PrimaryWrite | Plan::QuorumRead(_) if self.touches(args) => {
                self.flush(cx, session, out).await;
                Box::pin(self.run(cx, session, args, out)).await;
            }
            Plan::PrimaryWrite => {
                let pending = Pending::of(args);
                let level = session.write_level(cx.node);
                let write = replica::run_primary_write(cx.shared, cx.view, session, args, level);
                self.defer(Deferred::Replicate(write), pending);
                self.flush_if_full(cx, session, args, out).await;
            }
            Plan::QuorumRead(kind) => {
                self.defer(Deferred::Read(kind, args.to_vec()), Pending::of(args));
                self.flush_if_full(cx, session, args, out).await;
            }
            Plan::Spread(spread) => {
                self.flush(cx, session, out).await;
                execute(cx, session, args, spread, out).await;
            }
        }
    }

    /// Counts the arguments of a command just queued or deferred, and flushes once the
    /// pipeline holds [`PIPELINE_MAX_COMMANDS`] commands or [`PIPELINE_MAX_BYTES`] of
    /// arguments: the requests to peers and the memory held for them stay bounded
    /// however much a client pipelines.
    async fn flush_if_full(
        &mut self,
        cx: Cx<'_>,
        session: &Session,
        args: &[Bytes],
        out: &mut BytesMut,
    ) {
        self.queued_bytes += args.iter().map(Bytes::len).sum::<usize>();
        if self.slots.len() >= PIPELINE_MAX_COMMANDS || self.queued_bytes >= PIPELINE_MAX_BYTES {
            self.flush(cx, session, out).await;
        }
    }

    fn defer(&mut self, operation: Deferred, pending: Pending) {
        self.slots
            .push(Slot::Deferred(self.deferred.len(), pending));
        self.deferred.push(operation);
    }

    /// True if a queued forward or a deferred operation shares a key with the command
    /// `args`.
    fn touches(&self, args: &[Bytes]) -> bool {
        let queued = self
            .batches
            .iter()
            .flat_map(|(_, commands)| commands.iter());
        shares_a_key(args, queued.map(Vec::as_slice)) || self.touches_deferred(args)
    }

    /// True if a deferred operation shares a key with the command `args`. (A forward
    /// needs only this check: forwards to one owner keep their order in its batch.)
    fn touches_deferred(&self, args: &[Bytes]) -> bool {
        shares_a_key(args, self.deferred.iter().map(Deferred::args))
    }

    /// Sends the queued commands, one request per owner, all at once, and writes every
    /// kept reply to `out` in order, counting each command as it is answered. A batch
    /// whose owner did not answer gives each of its commands the error — unless keys are
    /// replicated and the owner could not even be connected to: then each command is run
    /// by the next replica that can be.
    pub async fn flush(&mut self, cx: Cx<'_>, session: &Session, out: &mut BytesMut) {
        if self.slots.is_empty() {
            return;
        }
        let mode = Mode::of(cx, session, false);
        let batches = std::mem::take(&mut self.batches);
        let deferred = std::mem::take(&mut self.deferred);
        let deferred = run_deferred(cx, session, mode, deferred);
        let forwarded = join_all(batches.into_iter().map(|(owner, commands)| async move {
            match forward(cx, &owner, commands.clone(), mode).await {
                Ok(replies) => Ok(replies),
                Err(error) if error.not_run && mode.replicate.is_some() => {
                    let owner = &owner;
                    let fallbacks = commands
                        .into_iter()
                        .map(|args| forward_to_replicas(cx, owner, args, mode));
                    let mut lookups = Lookups::default();
                    let replies = join_all(fallbacks)
                        .await
                        .into_iter()
                        .map(|(reply, reads)| {
                            lookups.add(reads);
                            reply
                        })
                        .collect();
                    Ok((replies, lookups))
                }
                Err(error) => Err(error.error),
            }
        }));
        let (results, (deferred, deferred_lookups)) = futures_util::join!(forwarded, deferred);
        let mut lookups = deferred_lookups;
        let mut results: Vec<_> = results
            .into_iter()
            .map(|result| {
                result.map(|(replies, reads)| {
                    lookups.add(reads);
                    replies.into_iter()
                })
            })
            .collect();
        let now = Instant::now();
        for slot in self.slots.drain(..) {
            match slot {
                Slot::Local(reply) => out.extend_from_slice(&reply),
                Slot::Forwarded(batch, pending) => match &mut results[batch] {
                    Ok(replies) => {
                        let reply = replies.next().expect("one reply per command");
                        pending.account(cx.shared, &reply, now);
                        out.extend_from_slice(&reply);
                    }
                    Err(error) => {
                        let start = out.len();
                        encode::error(out, &error.0);
                        pending.account(cx.shared, &out[start..], now);
                    }
                },
                Slot::Deferred(index, pending) => {
                    pending.account(cx.shared, &deferred[index], now);
                    out.extend_from_slice(&deferred[index]);
                }
            }
        }
        accounting::lookups(cx.shared, lookups);
        self.queued_bytes = 0;
    }
}

/// Runs a flush's deferred operations together and returns their replies in order, with
/// the keyspace reads they made: the quorum reads as one
/// [`Replicator::read_many`](quorra_cluster::replication::Replicator::read_many) (one
/// request per replica; GET and MGET promote the keys on the replicas, EXISTS does not,
/// as on a single node), and the copying of writes as one
/// [`Replicator::write_many`](quorra_cluster::replication::Replicator::write_many)
/// (one request per replica too), side by side.
async fn run_deferred(
    cx: Cx<'_>,
    session: &Session,
    mode: Mode,
    deferred: Vec<Deferred>,
) -> (Vec<Bytes>, Lookups) {
    let (read_level, protocol) = (session.read_level(cx.node), session.protocol);
    let placement = cx.node.placement(cx.view);
    let (mut promoting, mut plain) = (Vec::new(), Vec::new());
    let mut writes = Vec::new();
    // Per operation: a read's kind and key count, or `None` for a write.
    let mut order = Vec::with_capacity(deferred.len());
    for operation in deferred {
        match operation {
            Deferred::Read(kind, args) => {
                let reads = replica::quorum_reads(&placement, &args);
                match kind.promotes() {
                    true => promoting.extend(reads),
                    false => plain.extend(reads),
                }
                order.push(Some((kind, args.len() - 1)));
            }
            Deferred::Replicate(write) => {
                writes.push(write);
                order.push(None);
            }
        }
    }
    let replicator = &cx.node.replicator;
    let copies = placement.copies();
    let read_promoting = replicator.read_many(promoting, copies, read_level, true);
    let read_plain = replicator.read_many(plain, copies, read_level, false);
    let level = mode.replicate.unwrap_or(Level::One);
    let replicate_all = replica::replicate_writes(cx.shared, cx.view, &writes, level);
    let (promoted, unpromoted, replicated) =
        futures_util::join!(read_promoting, read_plain, replicate_all);
    let (mut promoted, mut unpromoted) = (promoted.into_iter(), unpromoted.into_iter());
    let mut replicated = replicated.into_iter();
    let mut lookups = Lookups::default();
    for write in &writes {
        lookups.add(write.ran.lookups);
    }
    let now = cx.shared.store.now_ms();
    let replies = order
        .into_iter()
        .map(|operation| match operation {
            Some((kind, keys)) => {
                let entries = match kind.promotes() {
                    true => promoted.by_ref(),
                    false => unpromoted.by_ref(),
                };
                let mine: Vec<_> = entries.take(keys).collect();
                let mut reply = BytesMut::new();
                match replica::write_read_reply(kind, mine, protocol, now, &mut reply) {
                    Ok(reads) => {
                        lookups.add(reads);
                        reply.freeze()
                    }
                    Err(error) => error_reply(&error.0),
                }
            }
            None => replicated.next().expect("one reply per write"),
        })
        .collect();
    (replies, lookups)
}

/// True if the command `args` and one of `others` have a key in common.
fn shares_a_key<'a>(args: &[Bytes], mut others: impl Iterator<Item = &'a [Bytes]>) -> bool {
    let keys: Vec<&Bytes> = commands::keys_of(args).collect();
    !keys.is_empty()
        && others.any(|command| commands::keys_of(command).any(|key| keys.contains(&key)))
}

/// Runs a command that involves several nodes, appends its reply to `out`, and counts
/// it.
async fn execute(
    cx: Cx<'_>,
    session: &mut Session,
    args: &[Bytes],
    spread: Spread,
    out: &mut BytesMut,
) {
    let started = Instant::now();
    let result = match spread {
        Spread::Split { merge, step } => split(cx, session, args, merge, step, out).await,
        Spread::Everywhere(merge) => everywhere(cx, session, args, merge, out).await,
        Spread::Scan => scan(cx, session, args, out).await,
        Spread::RandomKey => random_key(cx, session, args, out).await,
        Spread::Info => info(cx, session, args, out).await,
        Spread::Refuse(text) => Err(CommandError::new(text)),
    };
    let outcome = match result {
        Ok(lookups) => {
            accounting::lookups(cx.shared, lookups);
            Outcome::Ok
        }
        Err(error) => {
            encode::error(out, &error.0);
            Outcome::Failed
        }
    };
    let id = commands::lookup(&args[0]);
    accounting::command(cx.shared, id, outcome, started.elapsed());
}

/// A reply to one command, with the keyspace reads it made.
type Answer = (Bytes, Lookups);

/// Runs `args` on `target` in `mode`: here through [`run_here`], elsewhere over RPC.
async fn run_on(
    cx: Cx<'_>,
    session: &mut Session,
    target: &NodeId,
    args: Vec<Bytes>,
    mode: Mode,
) -> Result<Answer, CommandError> {
    if *target == cx.view.self_id {
        return Ok(one(
            run_here(cx.shared, cx.view, session, &[args], mode).await
        ));
    }
    Ok(forward_one(cx, target, args, mode).await?)
}

/// Runs `commands` on this node, in order, in `mode`, as [`Request::Execute`] runs them
/// for a peer: as the keys' primary when writes are replicated (their writes copied
/// together after all of them ran), with keyspace commands limited to the keys this
/// node is primary for when asked. One reply per command, and the keyspace reads they
/// made; nothing is counted here (the caller accounts for them).
pub async fn run_here<A: AsRef<[Bytes]>>(
    shared: &Shared,
    view: &ClusterView,
    session: &mut Session,
    commands: &[A],
    mode: Mode,
) -> (Vec<Bytes>, Lookups) {
    session.primary_only = mode.primary_only;
    let replies = match mode.replicate {
        Some(level) => replica::run_as_primary(shared, view, session, commands, level).await,
        None => commands::run_each(shared, session, commands),
    };
    session.primary_only = false;
    replies
}

/// The reply of a batch of one.
fn one((mut replies, lookups): (Vec<Bytes>, Lookups)) -> Answer {
    (replies.pop().expect("one reply per command"), lookups)
}

/// Why a call to another node failed, and whether it can have run there.
#[derive(Debug)]
struct CallError {
    /// The error for the client.
    error: CommandError,
    /// The node could not be connected to, so the request did not run: safe to ask
    /// another replica.
    not_run: bool,
}

impl From<CallError> for CommandError {
    fn from(error: CallError) -> Self {
        error.error
    }
}

/// Runs `commands` in order on the other node `target` over RPC; returns one reply's
/// bytes per command, and the keyspace reads they made there.
async fn forward(
    cx: Cx<'_>,
    target: &NodeId,
    commands: Vec<Vec<Bytes>>,
    mode: Mode,
) -> Result<(Vec<Bytes>, Lookups), CallError> {
    let expected = commands.len();
    let request = Request::Execute {
        resp3: mode.protocol == Protocol::Resp3,
        commands,
        replicate: mode.replicate,
        primary_only: mode.primary_only,
        deadline_ms: unix_ms() + cx.node.timeout.as_millis() as u64,
    };
    match call(cx, target, request).await? {
        Response::Replies {
            replies,
            hits,
            misses,
        } if replies.len() == expected => Ok((replies, Lookups { hits, misses })),
        other => Err(CallError {
            error: peer_error(cx.view, target, format!("unexpected answer {other:?}")),
            not_run: false,
        }),
    }
}

/// [`forward`] for one command.
async fn forward_one(
    cx: Cx<'_>,
    target: &NodeId,
    args: Vec<Bytes>,
    mode: Mode,
) -> Result<Answer, CallError> {
    Ok(one(forward(cx, target, vec![args], mode).await?))
}

/// With replication, when the key's primary (`failed`) could not be reached at all:
/// runs the command on the next serving replica that can be, as acting primary (it
/// copies the write to the others, leaving a hint for the primary).
async fn forward_to_replicas(cx: Cx<'_>, failed: &NodeId, args: Vec<Bytes>, mode: Mode) -> Answer {
    let placement = cx.node.placement(cx.view);
    let mut last = None;
    let standing_in = placement
        .replicas(&args[1])
        .into_iter()
        .filter(|id| *id != failed && cx.view.is_serving(id));
    for target in standing_in {
        let outcome = if *target == cx.view.self_id {
            let mut session = Session::new(cx.shared.peer_client.clone(), false);
            session.protocol = mode.protocol;
            let level = mode.replicate.unwrap_or(Level::One);
            return one(
                replica::run_as_primary(cx.shared, cx.view, &mut session, &[args], level).await,
            );
        } else {
            forward_one(cx, target, args.clone(), mode).await
        };
        match outcome {
            Ok(answer) => return answer,
            Err(error) if error.not_run => last = Some(error.error),
            Err(error) => return (error_reply(&error.error.0), Lookups::default()),
        }
    }
    let last = last.unwrap_or_else(|| CommandError::new("CLUSTERDOWN no replica answered"));
    (error_reply(&last.0), Lookups::default())
}

/// Runs one command the way a client's connection would (through a [`Pipeline`] in
/// cluster mode, so with the same routing and consistency, and counted once) and
/// returns its RESP2 reply. The admin HTTP API's key routes use it.
pub async fn run_one(shared: &Shared, args: Vec<Bytes>) -> Bytes {
    let mut session = Session::new(shared.peer_client.clone(), false);
    let mut out = BytesMut::new();
    match &shared.cluster {
        Some(node) => {
            let view = node.view();
            let cx = Cx {
                shared,
                node,
                view: &view,
            };
            let mut pipeline = Pipeline::default();
            pipeline.run(cx, &mut session, &args, &mut out).await;
            pipeline.flush(cx, &session, &mut out).await;
        }
        None => commands::dispatch(shared, &mut session, &mut out, &args),
    }
    out.freeze()
}

/// Sends `request` to another node, counting the call in the metrics.
async fn call(cx: Cx<'_>, target: &NodeId, request: Request) -> Result<Response, CallError> {
    let member = cx.view.member(target).ok_or_else(|| CallError {
        error: peer_error(cx.view, target, "is not a member".to_owned()),
        not_run: true,
    })?;
    let started = Instant::now();
    let outcome = cx
        .node
        .rpc
        .call(member.addresses.cluster, request.encode())
        .await;
    cx.shared
        .metrics
        .rpc_done(target.as_str(), outcome.is_ok(), started.elapsed());
    let payload = outcome.map_err(|error| CallError {
        not_run: matches!(error, RpcError::Unreachable { .. }),
        error: peer_error(cx.view, target, error.to_string()),
    })?;
    Response::decode(&payload).map_err(|error| CallError {
        error: peer_error(cx.view, target, error.to_string()),
        not_run: false,
    })
}

fn peer_error(view: &ClusterView, target: &NodeId, cause: String) -> CommandError {
    let at = view.member(target).map_or_else(String::new, |member| {
        format!(" at {}", member.addresses.cluster)
    });
    CommandError::new(format!(
        "CLUSTERDOWN node {target}{at} did not answer: {cause}"
    ))
}

/// The serving nodes, in id order.
fn serving(view: &ClusterView) -> Vec<&Member> {
    view.serving().collect()
}

/// Runs one part per target at once (the local one, if any, alongside) and returns the
/// replies in the order of `parts`.
async fn run_parts(
    cx: Cx<'_>,
    session: &mut Session,
    parts: Vec<(NodeId, Vec<Bytes>)>,
    mode: Mode,
) -> Result<(Vec<Bytes>, Lookups), CommandError> {
    let mut local = None;
    let mut remote = Vec::new();
    for (position, (target, args)) in parts.into_iter().enumerate() {
        if target == cx.view.self_id {
            local = Some((position, args));
        } else {
            remote.push((position, target, args));
        }
    }
    let calls = join_all(
        remote
            .into_iter()
            .map(|(position, target, args)| async move {
                let reply = forward_one(cx, &target, args, mode).await;
                (position, reply)
            }),
    );
    let here = async {
        match local {
            Some((position, args)) => Some((
                position,
                one(run_here(cx.shared, cx.view, session, &[args], mode).await),
            )),
            None => None,
        }
    };
    let (remote_replies, local_reply) = futures_util::join!(calls, here);
    let mut replies: Vec<(usize, Answer)> = local_reply.into_iter().collect();
    for (position, reply) in remote_replies {
        replies.push((position, reply?));
    }
    replies.sort_by_key(|(position, _)| *position);
    let mut lookups = Lookups::default();
    let replies = replies
        .into_iter()
        .map(|(_, (reply, reads))| {
            lookups.add(reads);
            reply
        })
        .collect();
    Ok((replies, lookups))
}

async fn split(
    cx: Cx<'_>,
    session: &mut Session,
    args: &[Bytes],
    merge: Merge,
    step: usize,
    out: &mut BytesMut,
) -> Result<Lookups, CommandError> {
    // Per owner: the sub-command and the positions of its keys in the caller's order.
    let mut by_owner: HashMap<NodeId, (Vec<Bytes>, Vec<usize>)> = HashMap::new();
    let placement = cx.node.placement(cx.view);
    for (position, chunk) in args[1..].chunks(step).enumerate() {
        let Some(owner) = placement.primary(&chunk[0]) else {
            return Err(CommandError::new(NO_REPLICA));
        };
        let (sub, positions) = by_owner
            .entry(owner.clone())
            .or_insert_with(|| (vec![args[0].clone()], Vec::new()));
        sub.extend_from_slice(chunk);
        positions.push(position);
    }
    let (parts, positions): (Vec<_>, Vec<_>) = by_owner
        .into_iter()
        .map(|(owner, (sub, positions))| ((owner, sub), positions))
        .unzip();
    let mode = Mode::of(cx, session, false);
    let (replies, lookups) = run_parts(cx, session, parts, mode).await?;
    match merge {
        Merge::Values => {
            let mut values = vec![Bytes::new(); args[1..].len() / step];
            for (reply, positions) in replies.iter().zip(&positions) {
                let elements = array_elements(reply)?;
                if elements.len() != positions.len() {
                    return Err(CommandError::new(
                        "ERR a node answered MGET with a wrong count",
                    ));
                }
                for (element, &position) in elements.into_iter().zip(positions) {
                    values[position] = element;
                }
            }
            encode::array_header(out, values.len());
            values.iter().for_each(|value| out.extend_from_slice(value));
            Ok(lookups)
        }
        merge => combine(&replies, merge, out).map(|()| lookups),
    }
}

async fn everywhere(
    cx: Cx<'_>,
    session: &mut Session,
    args: &[Bytes],
    merge: Merge,
    out: &mut BytesMut,
) -> Result<Lookups, CommandError> {
    let parts = serving(cx.view)
        .into_iter()
        .map(|member| (member.id.clone(), args.to_vec()))
        .collect();
    let mode = Mode::of(cx, session, true);
    let (replies, lookups) = run_parts(cx, session, parts, mode).await?;
    combine(&replies, merge, out).map(|()| lookups)
}

/// Combines whole replies: concatenated arrays, summed integers, or one `OK`. The first
/// error reply among them wins.
fn combine(replies: &[Bytes], merge: Merge, out: &mut BytesMut) -> Result<(), CommandError> {
    if let Some(error) = replies.iter().find(|reply| reply.first() == Some(&b'-')) {
        out.extend_from_slice(error);
        return Ok(());
    }
    match merge {
        Merge::Values => {
            let mut all = Vec::new();
            for reply in replies {
                all.extend(array_elements(reply)?);
            }
            encode::array_header(out, all.len());
            all.iter()
                .for_each(|element| out.extend_from_slice(element));
        }
        Merge::Sum => {
            let mut total = 0i64;
            for reply in replies {
                match parse_reply(reply)? {
                    Frame::Integer(n) => total = total.saturating_add(n),
                    _ => return Err(unexpected_reply()),
                }
            }
            encode::integer(out, total);
        }
        Merge::AllOk => out.extend_from_slice(b"+OK\r\n"),
    }
    Ok(())
}

async fn scan(
    cx: Cx<'_>,
    session: &mut Session,
    args: &[Bytes],
    out: &mut BytesMut,
) -> Result<Lookups, CommandError> {
    let Some(cursor) = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
    else {
        // Not a number: the local SCAN gives Redis's error.
        commands::dispatch(cx.shared, session, out, args);
        return Ok(Lookups::default());
    };
    let nodes = serving(cx.view);
    let index = (cursor >> SCAN_NODE_SHIFT) as usize;
    let Some(member) = nodes.get(index) else {
        // A cursor from before the cluster shrank: the scan is over.
        write_scan_reply(out, 0, &[]);
        return Ok(Lookups::default());
    };
    let mut sub = args.to_vec();
    let local_cursor = cursor & ((1 << SCAN_NODE_SHIFT) - 1);
    sub[1] = Bytes::from(local_cursor.to_string());
    let mode = Mode::of(cx, session, true);
    let (reply, _) = run_on(cx, session, &member.id, sub, mode).await?;
    if reply.first() == Some(&b'-') {
        out.extend_from_slice(&reply);
        return Ok(Lookups::default());
    }
    let Frame::Array(mut parts) = parse_reply(&reply)? else {
        return Err(unexpected_reply());
    };
    let (Some(Frame::Array(keys)), Some(Frame::Bulk(next))) = (parts.pop(), parts.pop()) else {
        return Err(unexpected_reply());
    };
    let next: u64 = std::str::from_utf8(&next)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(unexpected_reply)?;
    let next = if next != 0 {
        ((index as u64) << SCAN_NODE_SHIFT) | next
    } else if index + 1 < nodes.len() {
        ((index + 1) as u64) << SCAN_NODE_SHIFT
    } else {
        0
    };
    write_scan_reply(out, next, &keys);
    Ok(Lookups::default())
}

fn write_scan_reply(out: &mut BytesMut, cursor: u64, keys: &[Frame]) {
    encode::array_header(out, 2);
    encode::bulk(out, cursor.to_string().as_bytes());
    encode::array_header(out, keys.len());
    for key in keys {
        if let Frame::Bulk(key) = key {
            encode::bulk(out, key);
        }
    }
}

async fn random_key(
    cx: Cx<'_>,
    session: &mut Session,
    args: &[Bytes],
    out: &mut BytesMut,
) -> Result<Lookups, CommandError> {
    let mut nodes = serving(cx.view);
    let start = rand::random_range(0..nodes.len().max(1));
    nodes.rotate_left(start);
    let mode = Mode::of(cx, session, true);
    for member in nodes {
        let (reply, _) = run_on(cx, session, &member.id, args.to_vec(), mode).await?;
        if parse_reply(&reply)? != Frame::Null {
            out.extend_from_slice(&reply);
            return Ok(Lookups::default());
        }
    }
    encode::null(out, session.protocol);
    Ok(Lookups::default())
}

async fn info(
    cx: Cx<'_>,
    session: &mut Session,
    args: &[Bytes],
    out: &mut BytesMut,
) -> Result<Lookups, CommandError> {
    let primary_only = Mode::of(cx, session, true).primary_only;
    let mut totals = (0u64, 0u64);
    let counts = join_all(
        serving(cx.view)
            .into_iter()
            .filter(|member| member.id != cx.view.self_id)
            .map(|member| call(cx, &member.id, Request::KeyspaceCounts { primary_only })),
    )
    .await;
    for response in counts {
        if let Response::KeyspaceCounts { keys, expires } = response? {
            totals.0 += keys;
            totals.1 += expires;
        }
    }
    if cx.view.is_serving(&cx.view.self_id) {
        let (keys, expires) = keyspace_counts(cx.shared, primary_only);
        totals.0 += keys;
        totals.1 += expires;
    }
    session.cluster_keyspace = Some(totals);
    commands::dispatch(cx.shared, session, out, args);
    session.cluster_keyspace = None;
    Ok(Lookups::default())
}

/// This node's live keys and keys with a TTL; with `primary_only`, only those it is the
/// primary for (a pass over the store, instead of reading two counters).
pub fn keyspace_counts(shared: &Shared, primary_only: bool) -> (u64, u64) {
    match shared.cluster.as_ref().filter(|_| primary_only) {
        None => {
            let stats = shared.store.stats().total;
            (stats.entries, stats.volatile)
        }
        Some(node) => {
            let view = node.view();
            let placement = node.placement(&view);
            let mut counts = (0, 0);
            let whole_ring = TokenRange { start: 0, end: 0 };
            shared.store.visit_range(whole_ring, |entry| {
                if !entry.tombstone && placement.primary(entry.key) == Some(&view.self_id) {
                    counts.0 += 1;
                    counts.1 += u64::from(entry.expire_at_ms.is_some());
                }
            });
            counts
        }
    }
}

/// The raw bytes of each element of an array reply; an error reply is returned as the
/// error it is.
fn array_elements(reply: &Bytes) -> Result<Vec<Bytes>, CommandError> {
    if reply.first() == Some(&b'-') {
        return Err(CommandError::new(
            String::from_utf8_lossy(&reply[1..]).trim_end().to_owned(),
        ));
    }
    let header_end = reply
        .windows(2)
        .position(|pair| pair == b"\r\n")
        .ok_or_else(unexpected_reply)?;
    if reply.first() != Some(&b'*') {
        return Err(unexpected_reply());
    }
    let count: usize = std::str::from_utf8(&reply[1..header_end])
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(unexpected_reply)?;
    let limits = Limits::default();
    let mut offset = header_end + 2;
    let mut elements = Vec::with_capacity(count);
    for _ in 0..count {
        let (_, used) = parse_frame(&reply[offset..], &limits)
            .ok()
            .flatten()
            .ok_or_else(unexpected_reply)?;
        elements.push(reply.slice(offset..offset + used));
        offset += used;
    }
    Ok(elements)
}

fn parse_reply(reply: &[u8]) -> Result<Frame, CommandError> {
    match parse_frame(reply, &Limits::default()) {
        Ok(Some((frame, _))) => Ok(frame),
        _ => Err(unexpected_reply()),
    }
}

fn unexpected_reply() -> CommandError {
    CommandError::new("ERR a node sent a reply this node cannot read")
}
