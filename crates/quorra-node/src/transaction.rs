//! Transactions in cluster mode: MULTI ... EXEC and WATCH when a client's keys may live
//! on other nodes and have copies. The commands themselves and their Redis semantics
//! are [`commands::transactions`]'s; this module decides where a transaction runs and
//! copies its writes.
//!
//! - **One primary.** Every key of a transaction — the keys it watches and the keys of
//!   its queued commands — must have the same replicas (hash tags make that easy:
//!   `{user1}:a`, `{user1}:b`). A command whose keys do not is refused when it is
//!   queued, with Redis Cluster's `CROSSSLOT` text, and EXEC then answers `EXECABORT`:
//!   nothing runs, never part of it. Commands that run on every node (DBSIZE, KEYS,
//!   SCAN, FLUSHALL, ...) are refused inside a transaction the same way.
//! - **WATCH** reads each key's version at the key's primary (here, or with one request
//!   to it).
//! - **EXEC** runs at the keys' primary: here, or sent whole to it as one
//!   [`Request::Exec`] with the watched versions. With copies, a primary that could not
//!   even be connected to (so certainly did not run it) is stood in for by the next
//!   serving replica, as for single writes. There the queued commands run inside
//!   the store's exclusive section; with copies, each as its key's primary would run
//!   it ([`primary_write`]), and what they wrote goes to every replica in one atomic
//!   apply, so no replica, reader or anti-entropy pass sees part of it. A write level
//!   out of reach refuses the whole EXEC before anything runs.
//!
//! Commands queued in a cluster transaction without keys (PING, ECHO, ...) run at the
//! primary with the others.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use quorra_cluster::membership::ClusterView;
use quorra_cluster::message::Request;
use quorra_cluster::replication::Level;
use quorra_resp::Protocol;
use quorra_resp::encode;
use quorra_ring::NodeId;
use quorra_store::Version;

use crate::accounting::{self, Lookups, Outcome};
use crate::commands::transactions::{self, EXECABORT, ExecRefusal};
use crate::commands::{self, CommandError, CommandId, error_reply, keys_of, lookup};
use crate::executor::{
    Answer, Cx, call_for_replies, deadline_ms, one, peer_failure, protocol_of, settle,
};
use crate::peer::PeerError;
use crate::plan::{CROSSSLOT, NO_REPLICA, Plan, plan};
use crate::primary_write::{self, PrimaryWrite};
use crate::session::{Session, Transaction, Watched};
use crate::shared::Shared;

/// True if the client command `args` is this module's to run: anything inside MULTI,
/// and EXEC and WATCH. A byte comparison, not a table lookup: every pipelined command
/// asks.
pub fn concerns(session: &Session, args: &[Bytes]) -> bool {
    session.transaction.is_some()
        || args[0].eq_ignore_ascii_case(b"EXEC")
        || args[0].eq_ignore_ascii_case(b"WATCH")
}

/// Runs a client's command that [`concerns`] transactions, in cluster mode, writing
/// its reply to `out` and counting it.
pub async fn run(cx: Cx<'_>, session: &mut Session, args: &[Bytes], out: &mut BytesMut) {
    let started = Instant::now();
    let authenticated = session.authenticated || cx.shared.settings.read().requirepass.is_none();
    let checked = lookup(&args[0])
        .filter(|id| authenticated && commands::arity_ok(id.info().arity, args.len()));
    let reply = match checked {
        Some(CommandId::Exec) if session.transaction.is_some() => exec(cx, session).await,
        Some(CommandId::Watch) if session.transaction.is_none() => watch(cx, session, args).await,
        Some(id) if session.transaction.is_some() && !commands::runs_inside_multi(id) => {
            match check_placement(cx, session, args) {
                Ok(()) => None,
                Err(refusal) => {
                    transactions::refuse(session);
                    Some((error_reply(&refusal.0), Lookups::default()))
                }
            }
        }
        _ => None,
    };
    match reply {
        Some((reply, lookups)) => {
            let took = started.elapsed();
            accounting::command(cx.shared, checked, Outcome::of_reply(&reply), took);
            accounting::lookups(cx.shared, lookups);
            out.extend_from_slice(&reply);
        }
        // Queued, or a command that runs here in any case (MULTI, DISCARD, refusals).
        None => commands::dispatch(cx.shared, session, out, args),
    }
}

/// The key a transaction's other keys must share replicas with: the first watched
/// key, or else the first key of a queued command.
fn anchor(session: &Session) -> Option<&Bytes> {
    session
        .watched
        .first()
        .map(|watched| &watched.key)
        .or_else(|| {
            let queued = session.transaction.as_ref()?;
            queued.queued.iter().find_map(|args| keys_of(args).next())
        })
}

/// Checks that `keys` have the replicas of the session's transaction (its [`anchor`],
/// or else the first of them): `CROSSSLOT` otherwise.
fn check_keys<'k>(
    cx: Cx<'_>,
    session: &Session,
    mut keys: impl Iterator<Item = &'k Bytes>,
) -> Result<(), CommandError> {
    let placement = cx.node.placement(cx.view);
    let Some(first) = anchor(session).or_else(|| keys.next()) else {
        return Ok(());
    };
    let replicas = placement.replicas(first);
    match keys.all(|key| placement.replicas(key) == replicas) {
        true => Ok(()),
        false => Err(CommandError::new(CROSSSLOT)),
    }
}

/// Checks, before a command is queued, that it can be part of the transaction: its
/// keys have the transaction's replicas, and it is not a command that runs on every
/// node.
fn check_placement(cx: Cx<'_>, session: &Session, args: &[Bytes]) -> Result<(), CommandError> {
    if keys_of(args).next().is_some() {
        return check_keys(cx, session, keys_of(args));
    }
    match plan(args, true, &cx.node.placement(cx.view)) {
        Plan::Spread(_) => Err(CommandError::new(format!(
            "ERR '{}' runs on every node of the cluster and cannot be part of a transaction",
            String::from_utf8_lossy(&args[0]).to_lowercase()
        ))),
        _ => Ok(()),
    }
}

/// WATCH in a cluster: the keys' versions read at their primary. `None` to leave the
/// command to its handler (the primary is this node).
async fn watch(cx: Cx<'_>, session: &mut Session, args: &[Bytes]) -> Option<Answer> {
    let keys = &args[1..];
    let refusal = |error: CommandError| Some((error_reply(&error.0), Lookups::default()));
    if let Err(error) = check_keys(cx, session, keys.iter()) {
        return refusal(error);
    }
    let placement = cx.node.placement(cx.view);
    let Some(primary) = placement.primary(&keys[0]) else {
        return refusal(CommandError::new(NO_REPLICA));
    };
    if *primary == cx.view.self_id {
        return None;
    }
    let replicas = cx.node.replicator.replicas();
    let versions = match replicas.read(primary, keys.to_vec(), false).await {
        Ok(entries) => entries
            .into_iter()
            .map(|entry| entry.map(|entry| entry.version))
            .collect(),
        Err(error) => {
            return refusal(CommandError::new(format!("CLUSTERDOWN {error}")));
        }
    };
    match transactions::record_watch(cx.shared, session, keys, versions) {
        Ok(()) => Some((Bytes::from_static(b"+OK\r\n"), Lookups::default())),
        Err(error) => refusal(error),
    }
}

/// EXEC in a cluster: the transaction run at its keys' primary — or, with copies, when
/// the primary certainly did not run it (it could not be connected to), at the next
/// serving replica that can be reached, as acting primary, as single writes are.
async fn exec(cx: Cx<'_>, session: &mut Session) -> Option<Answer> {
    let placement = cx.node.placement(cx.view);
    let anchor = anchor(session).cloned();
    let target = match &anchor {
        None => &cx.view.self_id,
        Some(key) => match placement.primary(key) {
            Some(primary) => primary,
            None => {
                session.transaction = None;
                session.watched.clear();
                return Some((error_reply(NO_REPLICA), Lookups::default()));
            }
        },
    };
    let replicate = placement
        .replicated()
        .then(|| session.write_level(&cx.node.consistency));
    if *target == cx.view.self_id {
        return Some(exec_here(cx.shared, cx.view, session, replicate).await);
    }
    let transaction = session.transaction.take().unwrap_or_default();
    let watched = std::mem::take(&mut session.watched);
    if transaction.refused {
        return Some((error_reply(EXECABORT), Lookups::default()));
    }
    let request = Request::Exec {
        resp3: session.protocol == Protocol::Resp3,
        db: session.db,
        commands: transaction.queued,
        watched: watched
            .into_iter()
            .map(|watched| {
                let version = watched.version.map(|version| (version.hlc, version.node));
                (watched.key, version)
            })
            .collect(),
        replicate,
        deadline_ms: deadline_ms(cx),
    };
    let stand_ins = anchor
        .iter()
        .flat_map(|key| placement.replicas(key))
        .filter(|id| *id != target && cx.view.is_serving(id) && placement.replicated());
    let mut failure = match send_exec(cx, target, &request).await {
        Ok(answer) => return Some(answer),
        Err(error) if error.may_have_run() => return Some(failed(&error)),
        Err(error) => error,
    };
    for stand_in in stand_ins {
        if *stand_in == cx.view.self_id {
            return Some(exec_request(cx.shared, cx.view, request).await);
        }
        let sent = send_exec(cx, stand_in, &request).await;
        match sent {
            Ok(answer) => return Some(answer),
            Err(error) if error.may_have_run() => return Some(failed(&error)),
            Err(error) => failure = error,
        }
    }
    Some(failed(&failure))
}

/// EXEC's answer when the node it was sent to failed.
fn failed(error: &PeerError) -> Answer {
    (error_reply(&peer_failure(error).0), Lookups::default())
}

/// Sends a transaction to `target` and returns its EXEC reply.
async fn send_exec(cx: Cx<'_>, target: &NodeId, request: &Request) -> Result<Answer, PeerError> {
    Ok(one(call_for_replies(cx, target, request, 1).await?))
}

/// Runs a transaction sent as a [`Request::Exec`] — by a peer, or to this node standing
/// in for the keys' primary — as its keys' primary: EXEC's reply and its keyspace reads.
pub async fn exec_request(shared: &Shared, view: &ClusterView, request: Request) -> Answer {
    let Request::Exec {
        resp3,
        db,
        commands,
        watched,
        replicate,
        ..
    } = request
    else {
        return (error_reply("ERR not a transaction"), Lookups::default());
    };
    let mut session = Session::new(shared.peer_client.clone(), false);
    session.protocol = protocol_of(resp3);
    session.select(db);
    session.transaction = Some(Transaction {
        queued: commands,
        ..Transaction::default()
    });
    session.watched = watched
        .into_iter()
        .map(|(key, version)| Watched {
            key,
            version: version.map(|(hlc, node)| Version { hlc, node }),
        })
        .collect();
    let answer = exec_here(shared, view, &mut session, replicate).await;
    settle(shared, &mut session).await;
    answer
}

/// Runs the session's transaction here, as its keys' primary: without copies through
/// EXEC's handler; with copies, each queued command as its key's primary would run it,
/// all inside the store's exclusive section, then their writes copied to the replicas
/// as one atomic batch.
async fn exec_here(
    shared: &Shared,
    view: &ClusterView,
    session: &mut Session,
    replicate: Option<Level>,
) -> Answer {
    let mut reply = BytesMut::new();
    let Some(level) = replicate else {
        let ran = commands::run(shared, session, &mut reply, &[Bytes::from_static(b"EXEC")]);
        return (reply.freeze(), ran.lookups);
    };
    let writes = match run_queued_as_primary(shared, view, session, level) {
        Ok(writes) => writes,
        Err(refusal) => {
            if let Err(error) = refusal.answer(&mut reply, session.protocol) {
                encode::error(&mut reply, &error.0);
            }
            return (reply.freeze(), Lookups::default());
        }
    };
    let mut lookups = Lookups::default();
    for write in &writes {
        lookups.add(write.ran.lookups);
    }
    let replies = primary_write::replicate_writes(shared, view, &writes, level, true).await;
    encode::array_header(&mut reply, replies.len());
    for one in replies {
        reply.extend_from_slice(&one);
    }
    (reply.freeze(), lookups)
}

/// Why a replicated EXEC ran nothing: EXEC's own refusals, or an error (the write level
/// out of reach, `BUSY`).
enum Refusal {
    Exec(ExecRefusal),
    Error(String),
}

impl Refusal {
    fn answer(self, out: &mut BytesMut, protocol: Protocol) -> Result<(), CommandError> {
        match self {
            Refusal::Exec(refusal) => refusal.answer(out, protocol),
            Refusal::Error(text) => Err(CommandError::new(text)),
        }
    }
}

/// The queued commands run here as their keys' primary, inside the store's exclusive
/// section; all of them, or none when EXEC may not run or a write's level is out of
/// reach.
fn run_queued_as_primary(
    shared: &Shared,
    view: &ClusterView,
    session: &mut Session,
    level: Level,
) -> Result<Vec<PrimaryWrite>, Refusal> {
    let _section =
        commands::enter_exclusive(shared).map_err(|busy| Refusal::Error(busy.0.into()))?;
    let queued = transactions::take_for_exec(shared, session).map_err(Refusal::Exec)?;
    if let Some(cluster) = &shared.cluster {
        let placement = cluster.placement(view);
        let out_of_reach = queued
            .iter()
            .find_map(|args| primary_write::quorum_out_of_reach(&placement, args, level));
        if let Some(error) = out_of_reach {
            return Err(Refusal::Error(error.to_string()));
        }
    }
    let writes = session.inside_exclusive_section(|session| {
        queued
            .iter()
            .map(|args| primary_write::run_primary_write(shared, view, session, args, level, false))
            .collect()
    });
    Ok(writes)
}
