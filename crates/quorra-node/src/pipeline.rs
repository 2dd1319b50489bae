//! A client's pipeline in cluster mode: its commands planned one by one, run with as few
//! round trips as order allows, answered in the client's order and counted once each.
//!
//! [`Pipeline::run`] plans each command ([`crate::plan`]) and runs it at once, queues it
//! or defers it; [`Pipeline::flush`] sends everything queued — one request per owner
//! and one per replica, all at the same time — and writes every reply in order. The
//! connection flushes after each read; the HTTP API runs single commands through
//! [`run_one`]. See [`Pipeline`] for the ordering rules.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use quorra_cluster::replication::Level;
use quorra_resp::encode;
use quorra_ring::NodeId;

use crate::accounting::{self, Lookups, Outcome};
use crate::commands::{self, CommandId, error_reply};
use crate::databases;
use crate::executor::{
    Cx, Mode, announce_prefixes, forward, forward_to_replicas, peer_failure, read_following, settle,
};
use crate::origin_hooks;
use crate::plan::{Plan, QuorumRead, pins_a_hot_key, plan, read_at_primary};
use crate::primary_write::{self, PrimaryWrite};
use crate::quorum_read;
use crate::read_through;
use crate::scatter;
use crate::session::Session;
use crate::shared::Shared;
use crate::tracking::Tracker;
use crate::transaction;
use crate::write_behind;
use crate::write_through;

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
        let resolved = resolve_script(cx.shared, args);
        let args = resolved.as_deref().unwrap_or(args);
        if transaction::concerns(session, args) {
            // Inside MULTI nothing runs until EXEC, and EXEC runs at its keys' primary:
            // everything before it is answered first.
            self.flush(cx, session, out).await;
            Box::pin(transaction::run(cx, session, args, out)).await;
            return;
        }
        let authenticated =
            session.authenticated || cx.shared.settings.read().requirepass.is_none();
        if authenticated && let Some(reply) = hot_copy(cx, session, args) {
            self.push_local(reply, out);
            return;
        }
        if authenticated && pins_a_hot_key(args) && args[3].eq_ignore_ascii_case(b"ON") {
            self.flush(cx, session, out).await;
            if !Box::pin(key_exists(cx, session, &args[2])).await {
                let reply = error_reply("ERR no such key");
                Pending::of(args).account(cx.shared, &reply, Instant::now());
                out.extend_from_slice(&reply);
                return;
            }
        }
        let placement = cx.node.placement(cx.view);
        let mut planned = plan(args, authenticated, &placement);
        if matches!(planned, Plan::QuorumRead(_)) && watches_a_key_of(session, args) {
            planned = read_at_primary(args, &placement).unwrap_or(planned);
        }
        if session.tracking.is_some() && !matches!(planned, Plan::Local) {
            if tracks_read(session, args) {
                planned = Box::pin(track_read(cx, session, args, planned)).await;
            }
            // CLIENT CACHING applies to one command (a local one clears it as it runs).
            if commands::lookup(&args[0]) != Some(CommandId::Client) {
                session.caching = false;
            }
        }
        match planned {
            Plan::Local => {
                let out = match self.slots.is_empty() {
                    true => out,
                    false => &mut self.local,
                };
                match cx.shared.origins {
                    None => commands::dispatch(cx.shared, session, out, args),
                    Some(_) => {
                        let started = Instant::now();
                        let view = Some(cx.view);
                        // Boxed: its future is large, and keeping it out of this
                        // one's keeps nodes without namespaces as fast as before.
                        Box::pin(origin_hooks::dispatch(
                            cx.shared, view, None, session, out, args, started,
                        ))
                        .await;
                    }
                }
                if !self.slots.is_empty() {
                    self.slots.push(Slot::Local(self.local.split().freeze()));
                }
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
                if session.tracking.as_ref().is_some_and(|on| on.options.bcast)
                    && args.len() > 2
                    && args[0].eq_ignore_ascii_case(b"CLIENT")
                    && args[1].eq_ignore_ascii_case(b"TRACKING")
                {
                    // Every node must know the prefixes before the client is told OK
                    // (written after this), or a change elsewhere could go untold.
                    announce_prefixes(cx.shared, cx.node, cx.view).await;
                }
            }
            Plan::PrimaryWrite | Plan::QuorumRead(_) if self.touches(args) => {
                self.flush(cx, session, out).await;
                Box::pin(self.run(cx, session, args, out)).await;
            }
            Plan::PrimaryWrite => {
                let pending = Pending::of(args);
                let level = session.write_level(&cx.node.consistency);
                let prepared = match cx.shared.origins {
                    None => Ok(None),
                    Some(_) => Box::pin(write_through::before(cx.shared, args)).await,
                };
                let rewritten = match prepared {
                    Ok(rewritten) => rewritten,
                    Err(error) => {
                        // Refused before it ran: answered in its place, like a local
                        // command.
                        let reply = error_reply(&error.0);
                        pending.account(cx.shared, &reply, Instant::now());
                        self.push_local(reply, out);
                        return;
                    }
                };
                let args = rewritten.as_deref().unwrap_or(args);
                let write = primary_write::run_primary_write(
                    cx.shared, cx.view, session, args, level, true,
                );
                self.defer(Deferred::Replicate(write), pending);
                self.flush_if_full(cx, session, args, out).await;
            }
            Plan::QuorumRead(kind) => {
                self.defer(Deferred::Read(kind, args.to_vec()), Pending::of(args));
                self.flush_if_full(cx, session, args, out).await;
            }
            Plan::Spread(spread) => {
                self.flush(cx, session, out).await;
                scatter::execute(cx, session, args, spread, out).await;
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

    /// A reply ready now: written to `out` if nothing before it waits, kept for its
    /// place otherwise.
    fn push_local(&mut self, reply: Bytes, out: &mut BytesMut) {
        match self.slots.is_empty() {
            true => out.extend_from_slice(&reply),
            false => self.slots.push(Slot::Local(reply)),
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
                Err(error) if !error.may_have_run() && mode.replicate.is_some() => {
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
                Err(error) => Err(peer_failure(&error)),
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
    if deferred.is_empty() {
        // Most flushes without copies: no replica to ask or copy to.
        return (Vec::new(), Lookups::default());
    }
    let (read_level, protocol) = (session.read_level(&cx.node.consistency), session.protocol);
    let placement = cx.node.placement(cx.view);
    let (mut promoting, mut plain) = (Vec::new(), Vec::new());
    let mut writes = Vec::new();
    // Per operation: a read's kind and command, or `None` for a write.
    let mut order = Vec::with_capacity(deferred.len());
    for operation in deferred {
        match operation {
            Deferred::Read(kind, args) => {
                let reads = quorum_read::quorum_reads(&placement, &args);
                match kind.promotes() {
                    true => promoting.extend(reads),
                    false => plain.extend(reads),
                }
                order.push(Some((kind, args)));
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
    let replicate_all = primary_write::replicate_writes(cx.shared, cx.view, &writes, level, false);
    let (promoted, unpromoted, replicated) =
        futures_util::join!(read_promoting, read_plain, replicate_all);
    let (mut promoted, mut unpromoted) = (promoted.into_iter(), unpromoted.into_iter());
    let mut replicated = replicated.into_iter();
    let mut lookups = Lookups::default();
    for write in &writes {
        lookups.add(write.ran.lookups);
    }
    let now = cx.shared.store.now_ms();
    let mut written = writes.iter();
    let mut replies = Vec::with_capacity(order.len());
    for operation in order {
        let reply = match operation {
            Some((kind, args)) => {
                let entries = match kind.promotes() {
                    true => promoted.by_ref(),
                    false => unpromoted.by_ref(),
                };
                let mut mine: Vec<_> = entries.take(args.len() - 1).collect();
                if kind.promotes() {
                    // This node asked itself too; if it is a key's primary, a stale
                    // value queues its refresh here (other primaries saw the read).
                    for (key, entry) in args[1..].iter().zip(&mine) {
                        if let Ok(entry) = entry {
                            read_through::note_stale_entry(cx.shared, key, entry.as_ref(), now);
                        }
                    }
                }
                // Keyspace reads count what the cache had, before read-through.
                let reads = quorum_read::lookups_of(kind, &mine, now);
                let filled = match (kind.promotes(), &cx.shared.origins) {
                    (true, Some(_)) => {
                        Box::pin(quorum_read::fill_from_primaries(cx, &args, &mut mine, now)).await
                    }
                    _ => Ok(()),
                };
                let mut reply = BytesMut::new();
                match filled.map_err(commands::CommandError::new).and_then(|()| {
                    quorum_read::write_read_reply(kind, mine, protocol, now, &mut reply)
                }) {
                    Ok(()) => {
                        lookups.add(reads);
                        reply.freeze()
                    }
                    Err(error) => error_reply(&error.0),
                }
            }
            None => {
                let reply = replicated.next().expect("one reply per write");
                let write = written.next().expect("one write per reply");
                if reply.first() != Some(&b'-') {
                    // Acknowledged by its quorum: a write-behind key's primary marks it.
                    write_behind::mark_written(cx.shared, &write.args);
                }
                reply
            }
        };
        replies.push(reply);
    }
    (replies, lookups)
}

/// EVALSHA of a script this node has, as the EVAL of its source: the client loaded it
/// here (SCRIPT LOAD, or an EVAL), but it may run at its keys' primary, which may not
/// have it. `None` for any other command, and for a SHA1 this node does not know (the
/// primary may; otherwise it answers `NOSCRIPT`).
fn resolve_script(shared: &Shared, args: &[Bytes]) -> Option<Vec<Bytes>> {
    let name = &args[0];
    let read_only = if name.eq_ignore_ascii_case(b"EVALSHA") {
        false
    } else if name.eq_ignore_ascii_case(b"EVALSHA_RO") {
        true
    } else {
        return None;
    };
    let body = shared.scripts.get(args.get(1)?)?;
    let eval: &'static [u8] = if read_only { b"EVAL_RO" } else { b"EVAL" };
    let mut resolved = Vec::with_capacity(args.len());
    resolved.push(Bytes::from_static(eval));
    resolved.push(body);
    resolved.extend_from_slice(&args[2..]);
    Some(resolved)
}

/// Hot-key mitigation's two hooks ([`crate::hot_cache`]): a GET of a key this node
/// holds a copy of is answered from it (counted as the command and a hit, and as an
/// access for hot-key detection), unless the connection WATCHes it; a write drops
/// this node's copies of its keys before it runs, so that what follows it on this
/// connection reads it.
fn hot_copy(cx: Cx<'_>, session: &Session, args: &[Bytes]) -> Option<Bytes> {
    let cache = &cx.shared.hot_cache;
    if !cache.enabled() || cache.is_idle() {
        return None;
    }
    let id = commands::lookup(&args[0])?;
    if id.info().writes() {
        for key in commands::keys_of(args) {
            cache.invalidate(&cx.shared.store, key);
        }
        return None;
    }
    // A tracking client's reads go to the primary, which follows them for it.
    if id != CommandId::Get
        || args.len() != 2
        || watches_a_key_of(session, args)
        || session.tracking.is_some()
    {
        return None;
    }
    // A namespace's keys keep their origin's read path (read-through, stale-while-
    // revalidate, negative entries).
    if let Some(origins) = cx.shared.origins.as_ref()
        && origins.catalog().namespace_of(&args[1]).is_some()
    {
        return None;
    }
    let pending = Pending::of(args);
    let value = cache.get(&args[1], cx.shared.store.now_ms(), Instant::now())?;
    cx.shared.hot_keys.count(&args[1]);
    let mut reply = BytesMut::new();
    encode::bulk(&mut reply, &value);
    let reply = reply.freeze();
    let mut lookups = Lookups::default();
    lookups.found(true);
    accounting::lookups(cx.shared, lookups);
    pending.account(cx.shared, &reply, Instant::now());
    Some(reply)
}

/// True if the client's `key` exists, read as the session reads (before `QUORRA HOT key
/// ON` pins it on every node). The EXISTS counts as a command of its own.
async fn key_exists(cx: Cx<'_>, session: &mut Session, key: &Bytes) -> bool {
    let mut exists = vec![Bytes::from_static(b"EXISTS"), key.clone()];
    databases::enter(session.db, &mut exists);
    let mut reply = BytesMut::new();
    let mut probe = Pipeline::default();
    probe.run(cx, session, &exists, &mut reply).await;
    probe.flush(cx, session, &mut reply).await;
    &reply[..] == b":1\r\n"
}

/// True if `args` is a read whose keys the session's client tracking follows.
fn tracks_read(session: &Session, args: &[Bytes]) -> bool {
    session
        .tracking
        .as_ref()
        .is_some_and(|on| on.options.tracks_read(session.caching))
        && commands::lookup(&args[0]).is_some_and(|id| id.info().has_flag("readonly"))
        && commands::keys_of(args).next().is_some()
}

/// A tracking client's read that does not run here ([`crate::tracking`]): its keys are
/// followed here for the client, and read at their primary, where every write of them
/// runs, which follows them for this node in the same step as the read (the forward
/// carries [`Mode::track`]). A read of keys of several primaries stays a quorum read,
/// after each primary was asked to follow its keys.
async fn track_read(cx: Cx<'_>, session: &Session, args: &[Bytes], planned: Plan) -> Plan {
    let placement = cx.node.placement(cx.view);
    let planned = match planned {
        Plan::QuorumRead(_) => read_at_primary(args, &placement).unwrap_or(planned),
        other => other,
    };
    if matches!(planned, Plan::Local) {
        // Followed as it runs ([`commands::run`]).
        return planned;
    }
    let client = Tracker::Client(session.info.id);
    cx.shared
        .tracking
        .follow(&cx.shared.pubsub, &client, commands::keys_of(args));
    if matches!(planned, Plan::QuorumRead(_)) {
        let mut by_primary: Vec<(NodeId, Vec<Bytes>)> = Vec::new();
        for key in commands::keys_of(args) {
            let Some(primary) = placement.primary(key) else {
                continue;
            };
            match by_primary.iter_mut().find(|(node, _)| node == primary) {
                Some((_, keys)) => keys.push(key.clone()),
                None => by_primary.push((primary.clone(), vec![key.clone()])),
            }
        }
        join_all(by_primary.into_iter().map(|(primary, keys)| async move {
            if let Err(error) = read_following(cx, &primary, keys).await {
                tracing::debug!(%error, "could not ask a primary to follow tracked keys");
            }
        }))
        .await;
    }
    planned
}

/// True if the session WATCHes one of the keys of `args`.
fn watches_a_key_of(session: &Session, args: &[Bytes]) -> bool {
    !session.watched.is_empty()
        && commands::keys_of(args).any(|key| session.watched.iter().any(|w| w.key == key))
}

/// True if the command `args` and one of `others` have a key in common.
fn shares_a_key<'a>(args: &[Bytes], mut others: impl Iterator<Item = &'a [Bytes]>) -> bool {
    let keys: Vec<&Bytes> = commands::keys_of(args).collect();
    !keys.is_empty()
        && others.any(|command| commands::keys_of(command).any(|key| keys.contains(&key)))
}

/// Runs one command the way a client's connection would (through a [`Pipeline`] in
/// cluster mode, so with the same routing and consistency, and counted once) and
/// returns its RESP2 reply. The admin HTTP API's key routes use it.
pub async fn run_one(shared: &Shared, mut args: Vec<Bytes>) -> Bytes {
    let mut session = Session::new(shared.peer_client.clone(), false);
    databases::enter(session.db, &mut args);
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
            settle(shared, &mut session).await;
        }
        None => {
            let started = Instant::now();
            origin_hooks::dispatch(shared, None, None, &mut session, &mut out, &args, started)
                .await;
        }
    }
    out.freeze()
}
