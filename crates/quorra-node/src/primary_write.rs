//! Writes with copies: a command runs at its keys' primary, exactly as on a single
//! node, so read-modify-write commands (INCR, APPEND, SET NX, GETSET, ...) see one
//! sequence of values; then what it wrote is copied to the key's replicas.
//!
//! [`run_primary_write`] runs a command here as its keys' primary — or refuses it
//! unrun when too few of its keys' replicas serve for the write level
//! ([`quorum_out_of_reach`]). [`replicate_writes`] then sends the resulting entry of
//! every key the commands wrote — value or tombstone, absolute expiry, version — to all
//! N replicas, one request per replica for all of them (a key written twice goes once,
//! as it is now), and answers once W of them (the primary included) hold it; otherwise
//! the client gets `NOQUORUM ...`, and a write that no other replica took is undone.
//! If the primary cannot be connected to at all, [`crate::executor`] asks the next
//! replica to act as primary; a primary that times out is not bypassed, since it may
//! have run the command.
//!
//! A command that updates hashes, sets or sorted sets element by element runs under the
//! store's capture: what it wrote travels as a delta (the changed elements), and the
//! same journal undoes it, so a write to a big collection costs neither a copy of it
//! here nor its size on the network (`quorra_store::store::delta`). A transaction's
//! writes, which each replica stores in one step, go whole.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use quorra_cluster::membership::ClusterView;
use quorra_cluster::placement::Placement;
use quorra_cluster::replication::{Level, QuorumError, ReplicaWrite};
use quorra_resp::encode;
use quorra_ring::NodeId;
use quorra_store::{Changes, KeyChange, KeyType, Version, VersionedEntry};

use crate::accounting::{Lookups, Outcome};
use crate::commands::{self, CommandId, Ran};
use crate::session::Session;
use crate::shared::Shared;

/// True for a command that changes the hashes, sets and sorted sets among its keys in
/// place, element by element, so that the store's journal of its changes can undo it
/// (the STORE commands replace their destination instead).
fn updates_elements_in_place(id: CommandId) -> bool {
    use CommandId::*;
    matches!(id.info().group, "hash" | "set" | "sorted-set")
        && !matches!(id, Sinterstore | Sunionstore | Sdiffstore | Zrangestore)
}

/// What a key held before a command this node ran as its primary wrote it: what to
/// put back if no other replica takes the write.
enum Before {
    /// The entry (`None`: no entry), copied.
    Entry(Option<VersionedEntry>),
    /// A hash, set or sorted set, which the command updated in place: not copied,
    /// since the capture's journal undoes the command.
    Journaled,
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
    /// Each key it writes with what it held before.
    before: Vec<(Bytes, Before)>,
    /// What it wrote, as the store's capture saw it (the deltas to send).
    changes: Changes,
    /// A script: what it wrote reaches each replica in one step.
    atomic: bool,
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
    commands::written_keys(args).find_map(|key| {
        let serving = placement.serving_replicas(&key);
        (serving < required).then_some(QuorumError {
            required,
            answered: serving,
            level,
        })
    })
}

/// Runs the command `args` here as its keys' primary — or, for a write whose quorum is
/// out of reach ([`quorum_out_of_reach`]), refuses it without running it. The result
/// waits for [`replicate_writes`]: with `deltas`, its element updates travel as deltas;
/// without (a transaction's commands), every key it wrote goes whole.
pub fn run_primary_write(
    shared: &Shared,
    view: &ClusterView,
    session: &mut Session,
    args: &[Bytes],
    level: Level,
    deltas: bool,
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
    let mut changes = Changes::default();
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
            let in_place =
                deltas && commands::lookup(&args[0]).is_some_and(updates_elements_in_place);
            before = commands::written_keys(args)
                .map(|key| {
                    let journaled = in_place
                        && matches!(
                            shared.store.key_type(&key),
                            KeyType::Hash | KeyType::Set | KeyType::SortedSet
                        );
                    let before = match journaled {
                        true => Before::Journaled,
                        false => Before::Entry(shared.store.get_versioned(&key)),
                    };
                    (key, before)
                })
                .collect();
            let ran;
            (ran, changes) = shared
                .store
                .capture(|| commands::run(shared, session, &mut reply, args));
            ran
        }
    };
    PrimaryWrite {
        args: args.to_vec(),
        reply: reply.freeze(),
        ran,
        before,
        changes,
        atomic: commands::lookup(&args[0]).is_some_and(|id| id.info().has_flag("may_replicate")),
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
///
/// With `atomic` (a transaction's writes), or when one of `writes` is a script, each
/// replica stores all of them in one step
/// ([`Replicator::write_many`](quorra_cluster::replication::Replicator::write_many)).
pub async fn replicate_writes(
    shared: &Shared,
    view: &ClusterView,
    writes: &[PrimaryWrite],
    level: Level,
    atomic: bool,
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
    let atomic = atomic || writes.iter().any(|write| write.atomic);
    // What the commands did to each key, in order: element updates that follow one
    // another make one delta.
    let mut changes = Changes::default();
    for write in writes {
        changes.extend(&write.changes);
    }
    let (batch, commands): (Vec<_>, Vec<_>) = writers
        .into_iter()
        .filter_map(|(key, commands)| {
            let delta = match atomic {
                true => None,
                false => changes
                    .get(&key)
                    .and_then(|change| shared.store.delta(&key, change)),
            };
            let write = match delta {
                Some(delta) => ReplicaWrite::Delta(delta),
                None => ReplicaWrite::Whole(shared.store.get_versioned(&key)?),
            };
            let targets: Vec<NodeId> = placement.replicas(&key).into_iter().cloned().collect();
            Some(((key, write, targets), commands))
        })
        .unzip();
    let written: Vec<(Bytes, Version, Vec<NodeId>)> = batch
        .iter()
        .map(|(key, write, targets)| (key.clone(), write.version(), targets.clone()))
        .collect();
    let results = cluster
        .replicator
        .write_many(batch, placement.copies(), level, atomic)
        .await;
    for ((result, commands), (key, version, targets)) in
        results.into_iter().zip(commands).zip(written)
    {
        let Err(error) = result else {
            continue;
        };
        if error.answered <= 1 {
            let steps = commands.iter().filter_map(|&command| {
                let write = &writes[command];
                let before = write
                    .before
                    .iter()
                    .find_map(|(written, before)| (*written == key).then_some(before))?;
                Some((before, write.changes.get(&key)))
            });
            undo(shared, &key, version, steps.collect());
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

/// Undoes what the commands of a batch that wrote `key` did to it, which no other
/// replica took; `steps` holds, for each of them in order, what the key held before it
/// and what the capture saw it change. From the last to the first, each command's write
/// is undone — the entry it replaced put back, or, for an in-place update of a
/// collection, the elements it changed — while the key still holds what that command
/// left (starting from `version`). A write another client made in between stops the
/// walk: it was acknowledged on its own and stays, with what came before it.
fn undo(shared: &Shared, key: &[u8], version: Version, steps: Vec<(&Before, Option<&KeyChange>)>) {
    let mut holds = version;
    for (before, change) in steps.into_iter().rev() {
        // The version the key has once this command is undone, if it was.
        let undone = match (before, change) {
            (Before::Entry(entry), _) => shared
                .store
                .revert(key, holds, entry.as_ref())
                .map(|done| done.then(|| entry.as_ref().map(|e| e.version))),
            (Before::Journaled, Some(change @ KeyChange::Elements { base, .. })) => shared
                .store
                .revert_change(key, change)
                .map(|done| done.then_some(Some(*base))),
            // The command left the key as it was.
            (Before::Journaled, None) => Ok(Some(Some(holds))),
            (Before::Journaled, Some(KeyChange::Whole)) => Ok(None),
        };
        match undone {
            Ok(Some(Some(previous))) => holds = previous,
            // Undone back to no entry: nothing earlier can still be there.
            Ok(Some(None)) => return,
            Ok(None) => {
                tracing::debug!("a write that failed its quorum was written over; left as is");
                return;
            }
            Err(store_error) => {
                tracing::warn!(%store_error, "could not undo a write that failed its quorum");
                return;
            }
        }
    }
}

/// Runs `commands` here, in order, as their keys' primary, then replicates what they
/// wrote: one reply per command (see [`replicate_writes`]), and the keyspace reads they
/// made. Nothing is counted here; the caller accounts for them.
pub async fn run_as_primary<A: AsRef<[Bytes]>>(
    shared: &Shared,
    view: &ClusterView,
    session: &mut Session,
    commands: &[A],
    level: Level,
) -> (Vec<Bytes>, Lookups) {
    let writes: Vec<PrimaryWrite> = commands
        .iter()
        .map(|args| run_primary_write(shared, view, session, args.as_ref(), level, true))
        .collect();
    let mut lookups = Lookups::default();
    for write in &writes {
        lookups.add(write.ran.lookups);
    }
    (
        replicate_writes(shared, view, &writes, level, false).await,
        lookups,
    )
}
