//! The `QUORRA` command family: the cluster and the namespaces as this node sees them.
//!
//! - `QUORRA NODES`: one line per known member, as Redis's `CLUSTER NODES` prints one per
//!   node: `<id> <state> resp=<addr> http=<addr> cluster=<addr> zone=<zone or -> ...`,
//!   this node marked `myself`.
//! - `QUORRA RING`: the ring's version, then one line per node with its vnodes and its
//!   share of the token space (the fraction of keys it is expected to own).
//! - `QUORRA OWNERS key`: the node ids that hold `key`'s copies, in preference order
//!   (the first that serves is the primary).
//! - `QUORRA FORGET node`: removes a member that is down for good from the roster, so
//!   quorums and replica sets stop counting it (see `docs/consistency.md`). A member
//!   that is up, joining or leaving is refused.
//! - `QUORRA LEAVE`: this node leaves its cluster gracefully and its process stops, as
//!   on SIGTERM: it replies `OK` first.
//! - `QUORRA CONSISTENCY`: this connection's copies and levels, as a map; `QUORRA
//!   CONSISTENCY level` sets the write and the read level of this connection,
//!   `QUORRA CONSISTENCY WRITE level [READ level]` (or `READ level`) one of them, and
//!   `QUORRA CONSISTENCY DEFAULT` goes back to the node's. A level is `ONE`, `QUORUM`,
//!   `ALL` or a number of replicas.
//! - `QUORRA HOTKEYS`: the cluster-wide hot set ([`crate::hot_keys::seen_from`]), hottest
//!   first: per key a map of `key`, `db`, `ops_per_sec` (summed over the nodes that find
//!   it hot), `since_ms` (when the first of them did) and `nodes`. It works on a single
//!   node too.
//! - `QUORRA HOT key`: whether `key` is in the cluster-wide hot set, pinned here, and
//!   copied here, as a map. `QUORRA HOT key ON` pins it hot on every node (it runs on
//!   each, [`crate::plan`]): it is copied to every node whatever its rate, until `QUORRA
//!   HOT key OFF`. Pinning a key that does not exist is refused with `ERR no such key`.
//! - `QUORRA NAMESPACES`: one map per namespace ([`quorra_origin::Origins::report`]):
//!   its policy, its origin's health and this node's figures. An empty array without
//!   namespaces; it works on a single node too.
//!
//! The other subcommands, on a node without `--cluster-port`, answer
//! `ERR cluster mode is off ...`.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use quorra_cluster::membership::{ClusterView, Degraded};
use quorra_cluster::replication::Level;
use quorra_resp::encode;
use quorra_ring::NodeId;

use super::{CommandError, Ctx, is};

/// The error for cluster introspection on a single node.
pub const CLUSTER_MODE_OFF: &str =
    "ERR cluster mode is off (start the node with --cluster-port and --cluster-secret)";

/// `QUORRA NODES | RING | OWNERS key | FORGET node | LEAVE | CONSISTENCY ... | HOTKEYS |
/// HOT key [ON|OFF] | NAMESPACES`
pub fn quorra(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let sub = &args[1];
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(CommandError::new(format!(
                "ERR wrong number of arguments for 'quorra|{}' command",
                String::from_utf8_lossy(sub).to_lowercase()
            )))
        }
    };
    let view = || -> Result<Arc<ClusterView>, CommandError> {
        ctx.shared
            .cluster
            .as_ref()
            .map(|node| node.view())
            .ok_or_else(|| CommandError::new(CLUSTER_MODE_OFF))
    };
    if is(sub, "NODES") {
        arity(2)?;
        let text = nodes_text(&*view()?);
        encode::verbatim_text(ctx.out, text.as_bytes(), ctx.protocol());
    } else if is(sub, "RING") {
        arity(2)?;
        let text = ring_text(&*view()?);
        encode::verbatim_text(ctx.out, text.as_bytes(), ctx.protocol());
    } else if is(sub, "OWNERS") {
        arity(3)?;
        let view = view()?;
        let node = ctx
            .shared
            .cluster
            .as_ref()
            .expect("view() checked cluster mode");
        let owners = node.placement(&view).replicas(&args[2]);
        ctx.array(owners.len());
        for owner in owners {
            ctx.bulk(owner.as_str().as_bytes());
        }
    } else if is(sub, "FORGET") {
        arity(3)?;
        view()?;
        let node = ctx
            .shared
            .cluster
            .as_ref()
            .expect("view() checked cluster mode");
        let id = NodeId::from(String::from_utf8_lossy(&args[2]).as_ref());
        let membership = node.membership.as_ref().ok_or_else(|| {
            CommandError::new("ERR this node's membership is not gossiped; nothing to forget")
        })?;
        membership
            .forget(&id)
            .map_err(|error| CommandError::new(format!("ERR {error}")))?;
        ctx.ok();
    } else if is(sub, "LEAVE") {
        arity(2)?;
        view()?;
        tracing::info!(client = %ctx.session.info.addr, "QUORRA LEAVE: leaving the cluster");
        ctx.shared.leave_requested.cancel();
        ctx.ok();
    } else if is(sub, "CONSISTENCY") {
        view()?;
        consistency(ctx, &args[2..])?;
    } else if is(sub, "HOTKEYS") {
        arity(2)?;
        let view = ctx.shared.cluster.as_ref().map(|node| node.view());
        let hot = crate::hot_keys::seen_from(ctx.shared.hot_keys.hot(), view.as_deref());
        ctx.array(hot.len());
        for key in hot {
            let (db, user_key) = quorra_ring::database::split(&key.key);
            ctx.map(5);
            ctx.bulk(b"key");
            ctx.bulk(user_key);
            ctx.bulk(b"db");
            ctx.int(i64::from(db));
            ctx.bulk(b"ops_per_sec");
            ctx.int(key.ops_per_sec as i64);
            ctx.bulk(b"since_ms");
            ctx.int(key.since_ms as i64);
            ctx.bulk(b"nodes");
            ctx.array(key.nodes.len());
            for node in &key.nodes {
                ctx.bulk(node.as_bytes());
            }
        }
    } else if is(sub, "HOT") {
        hot(ctx, &args[2..])?;
    } else if is(sub, "NAMESPACES") {
        arity(2)?;
        let reports = ctx
            .shared
            .origins
            .as_ref()
            .map(|origins| origins.report(ctx.shared.store.now_ms()))
            .unwrap_or_default();
        ctx.array(reports.len());
        for report in reports {
            ctx.map(report.fields.len());
            for (field, value) in &report.fields {
                ctx.bulk(field.as_bytes());
                ctx.bulk(value.as_bytes());
            }
        }
    } else {
        return Err(CommandError::new(format!(
            "ERR unknown subcommand '{}'. Try QUORRA NODES, RING, OWNERS key, FORGET node, LEAVE, CONSISTENCY or NAMESPACES.",
            String::from_utf8_lossy(sub)
        )));
    }
    Ok(())
}

/// `QUORRA HOT key [ON|OFF]`: the key's hot-key status here, or pins it (here: a
/// cluster runs the pin on every node, having checked on the key's replicas that it
/// exists, [`crate::pipeline`]).
fn hot(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let (key, switch) = match args {
        [key] => (key, None),
        [key, switch] if is(switch, "ON") || is(switch, "OFF") => (key, Some(is(switch, "ON"))),
        [_, _] => return Err(CommandError::syntax()),
        _ => return Err(CommandError::arity("quorra|hot")),
    };
    let stored = crate::databases::stored(ctx.session.db, key);
    let hot_keys = &ctx.shared.hot_keys;
    match switch {
        Some(true) => {
            // In a cluster the node that took the command checked the key first.
            if ctx.shared.cluster.is_none() && ctx.shared.store.exists(&[&stored]) == 0 {
                return Err(CommandError::new("ERR no such key"));
            }
            hot_keys
                .pin(stored, crate::wall_clock::unix_ms())
                .map_err(|most| {
                    CommandError::new(format!(
                        "ERR {most} keys are pinned hot already (hot-key-max-pinned)"
                    ))
                })?;
            ctx.ok();
        }
        Some(false) => {
            hot_keys.unpin(&stored);
            ctx.ok();
        }
        None => {
            let view = ctx.shared.cluster.as_ref().map(|node| node.view());
            let hot = crate::hot_keys::seen_from(hot_keys.hot(), view.as_deref())
                .iter()
                .any(|hot| hot.key == stored);
            let pinned = hot_keys.is_pinned(&stored);
            let copied = ctx.shared.hot_cache.holds(&stored);
            ctx.map(4);
            ctx.bulk(b"key");
            ctx.bulk(key);
            for (name, value) in [("hot", hot), ("pinned", pinned), ("copied", copied)] {
                ctx.bulk(name.as_bytes());
                ctx.int(i64::from(value));
            }
        }
    }
    Ok(())
}

/// `QUORRA CONSISTENCY [DEFAULT | level | WRITE level | READ level ...]`
fn consistency(ctx: &mut Ctx<'_>, options: &[Bytes]) -> Result<(), CommandError> {
    let node = ctx.shared.cluster.as_ref().expect("checked by the caller");
    let level = |arg: &Bytes| {
        std::str::from_utf8(arg)
            .ok()
            .and_then(Level::parse)
            .ok_or_else(|| {
                CommandError::new(format!(
                    "ERR invalid level '{}' (use ONE, QUORUM, ALL or a number of replicas)",
                    String::from_utf8_lossy(arg)
                ))
            })
    };
    match options {
        [] => {
            let view = node.view();
            let pairs = [
                ("replicas", node.consistency.replicas.to_string()),
                ("copies", node.placement(&view).copies().to_string()),
                (
                    "write",
                    ctx.session.write_level(&node.consistency).to_string(),
                ),
                (
                    "read",
                    ctx.session.read_level(&node.consistency).to_string(),
                ),
            ];
            ctx.map(pairs.len());
            for (name, value) in pairs {
                ctx.bulk(name.as_bytes());
                ctx.bulk(value.as_bytes());
            }
            return Ok(());
        }
        [reset] if is(reset, "DEFAULT") => {
            ctx.session.write_level = None;
            ctx.session.read_level = None;
        }
        [both] => {
            let both = level(both)?;
            ctx.session.write_level = Some(both);
            ctx.session.read_level = Some(both);
        }
        pairs if pairs.len() % 2 == 0 => {
            let (mut write, mut read) = (ctx.session.write_level, ctx.session.read_level);
            for pair in pairs.chunks(2) {
                if is(&pair[0], "WRITE") {
                    write = Some(level(&pair[1])?);
                } else if is(&pair[0], "READ") {
                    read = Some(level(&pair[1])?);
                } else {
                    return Err(CommandError::syntax());
                }
            }
            ctx.session.write_level = write;
            ctx.session.read_level = read;
        }
        _ => return Err(CommandError::syntax()),
    }
    ctx.ok();
    Ok(())
}

fn nodes_text(view: &ClusterView) -> String {
    let mut text = String::new();
    for member in &view.members {
        let _ = writeln!(
            text,
            "{} {}{} resp={} http={} cluster={} zone={} generation={} used_memory={} keys={} ops_per_sec={} health={} cpu_percent={:.1} rss={}",
            member.id,
            member.state,
            if member.id == view.self_id {
                ",myself"
            } else {
                ""
            },
            member.addresses.resp,
            member.addresses.http,
            member.addresses.cluster,
            member.zone.as_deref().unwrap_or("-"),
            member.generation,
            member.stats.used_memory,
            member.stats.keys,
            member.stats.ops_per_sec,
            health_text(member.stats.degraded),
            member.stats.cpu_permille as f64 / 10.0,
            member.stats.rss_bytes,
        );
    }
    text
}

/// `ok`, or `degraded:` and the reasons (`degraded:memory,cpu`).
fn health_text(degraded: u8) -> String {
    match Degraded::reasons(degraded).join(",") {
        reasons if reasons.is_empty() => "ok".to_owned(),
        reasons => format!("degraded:{reasons}"),
    }
}

fn ring_text(view: &ClusterView) -> String {
    let ring = &view.ring;
    let mut text = format!(
        "version={} nodes={} vnodes={}\n",
        view.ring_version,
        ring.len(),
        ring.vnode_count()
    );
    for (member, share) in ring.members().iter().zip(ring.token_shares()) {
        let _ = writeln!(
            text,
            "{} vnodes={} share={:.4} zone={}",
            member.id(),
            member.vnodes(),
            share,
            member.zone().unwrap_or("-"),
        );
    }
    text
}
