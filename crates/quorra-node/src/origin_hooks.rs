//! The namespaces' hooks around a command that runs here, at its keys' owner (their
//! primary with copies): [`crate::write_through`] before it, [`crate::read_through`]
//! (a miss loaded, a stale hit refreshed) and [`crate::write_behind`]'s mark (a write
//! that succeeded) after it. Every place that runs a client's
//! command at its owner — a single node's connection, the pipeline's local commands,
//! the executor's `run_here` for forwarded ones — goes through here when the node has
//! namespaces, and straight to [`commands`] when it has none.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use quorra_cluster::membership::ClusterView;
use quorra_cluster::replication::Level;

use crate::accounting::{self, Lookups, Outcome};
use crate::commands::{self, error_reply};
use crate::primary_write;
use crate::read_through;
use crate::session::Session;
use crate::shared::Shared;
use crate::write_behind;
use crate::write_through;

/// Runs one command of this node's client here, as [`commands::dispatch_timed`] does
/// (counted, its reply written to `out`), with the namespaces' hooks around it; returns
/// when it ended. `view` is `None` on a single node; `replicate` the write level when
/// keys have copies.
pub async fn dispatch(
    shared: &Shared,
    view: Option<&ClusterView>,
    replicate: Option<Level>,
    session: &mut Session,
    out: &mut BytesMut,
    args: &[Bytes],
    started: Instant,
) -> Instant {
    if session.transaction.is_some() {
        // Queued, not run: the hooks have nothing to do yet (see
        // `commands::transactions` for what a transaction does with namespace keys).
        return commands::dispatch_timed(shared, session, out, args, started);
    }
    // Refusals (password, arity) are the command's own, before the origin is touched.
    let authenticated = session.authenticated || shared.settings.read().requirepass.is_none();
    let prepared = match authenticated {
        true => write_through::before(shared, args).await,
        false => Ok(None),
    };
    let rewritten = match prepared {
        Ok(rewritten) => rewritten,
        Err(error) => {
            out.extend_from_slice(&error_reply(&error.0));
            let ended = Instant::now();
            let id = commands::lookup(&args[0]);
            accounting::command(shared, id, Outcome::Failed, ended.duration_since(started));
            return ended;
        }
    };
    let args = rewritten.as_deref().unwrap_or(args);
    let start = out.len();
    let ended = commands::dispatch_timed(shared, session, out, args, started);
    if out.get(start) != Some(&b'-') {
        write_behind::mark_written(shared, args);
    }
    read_through::complete_in(shared, view, replicate, session, out, start, args).await;
    ended
}

/// Runs `commands` here one after another without counting them, as
/// [`commands::run_each`] (or, with copies, [`primary_write::run_as_primary`] at
/// `replicate`) does, with the namespaces' hooks around each.
pub async fn run_each<A: AsRef<[Bytes]>>(
    shared: &Shared,
    view: &ClusterView,
    replicate: Option<Level>,
    session: &mut Session,
    commands: &[A],
) -> (Vec<Bytes>, Lookups) {
    let writes_namespace_keys = commands
        .iter()
        .any(|args| write_through::concerns(shared, args.as_ref()));
    if !writes_namespace_keys {
        // The common batch: run (and with copies, replicate) it whole, as without
        // namespaces; only misses and stale hits of namespace keys need a hook.
        let (mut replies, lookups) = run_plain(shared, view, replicate, session, commands).await;
        for (args, reply) in commands.iter().zip(replies.iter_mut()) {
            let ran = std::mem::take(reply);
            *reply =
                read_through::complete(shared, Some(view), replicate, session, args.as_ref(), ran)
                    .await;
        }
        return (replies, lookups);
    }
    let mut replies = Vec::with_capacity(commands.len());
    let mut lookups = Lookups::default();
    for args in commands {
        let args = args.as_ref();
        let rewritten = match write_through::before(shared, args).await {
            Ok(rewritten) => rewritten,
            Err(error) => {
                replies.push(error_reply(&error.0));
                continue;
            }
        };
        let args = rewritten.as_deref().unwrap_or(args);
        let (mut ran, reads) = run_plain(shared, view, replicate, session, &[args]).await;
        lookups.add(reads);
        let reply = ran.pop().expect("one reply per command");
        if reply.first() != Some(&b'-') {
            write_behind::mark_written(shared, args);
        }
        let reply =
            read_through::complete(shared, Some(view), replicate, session, args, reply).await;
        replies.push(reply);
    }
    (replies, lookups)
}

/// Runs `commands` here without hooks: with copies, as their primary at `replicate`.
pub async fn run_plain<A: AsRef<[Bytes]>>(
    shared: &Shared,
    view: &ClusterView,
    replicate: Option<Level>,
    session: &mut Session,
    commands: &[A],
) -> (Vec<Bytes>, Lookups) {
    match replicate {
        Some(level) => primary_write::run_as_primary(shared, view, session, commands, level).await,
        None => commands::run_each(shared, session, commands),
    }
}
