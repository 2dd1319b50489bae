//! The `QUORRA` command family: the cluster as this node sees it.
//!
//! - `QUORRA NODES`: one line per known member, as Redis's `CLUSTER NODES` prints one per
//!   node: `<id> <state> resp=<addr> http=<addr> cluster=<addr> zone=<zone or -> ...`,
//!   this node marked `myself`.
//! - `QUORRA RING`: the ring's version, then one line per node with its vnodes and its
//!   share of the token space (the fraction of keys it is expected to own).
//! - `QUORRA OWNERS key`: the node ids that own `key`, primary first.
//!
//! A node without `--cluster-port` answers `ERR cluster mode is off ...`.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use quorra_cluster::membership::ClusterView;
use quorra_resp::encode;

use super::{CommandError, Ctx, is};

/// The error for cluster introspection on a single node.
pub const CLUSTER_MODE_OFF: &str =
    "ERR cluster mode is off (start the node with --cluster-port and --cluster-secret)";

/// `QUORRA NODES | RING | OWNERS key`
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
        let owners: Vec<&str> = view
            .owner(&args[2])
            .map(|id| id.as_str())
            .into_iter()
            .collect();
        ctx.array(owners.len());
        for owner in owners {
            ctx.bulk(owner.as_bytes());
        }
    } else {
        return Err(CommandError::new(format!(
            "ERR unknown subcommand '{}'. Try QUORRA NODES, QUORRA RING or QUORRA OWNERS key.",
            String::from_utf8_lossy(sub)
        )));
    }
    Ok(())
}

fn nodes_text(view: &ClusterView) -> String {
    let mut text = String::new();
    for member in &view.members {
        let _ = writeln!(
            text,
            "{} {}{} resp={} http={} cluster={} zone={} generation={} used_memory={} keys={} ops_per_sec={}",
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
        );
    }
    text
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
