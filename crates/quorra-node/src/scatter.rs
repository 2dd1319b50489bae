//! Commands that involve several nodes ([`Spread`]): split by owner and merged, asked of
//! every serving node and combined, or walked node by node.
//!
//! - MGET, MSET, DEL, UNLINK, EXISTS, TOUCH over several owners: split by owner, the
//!   parts run at the same time, the replies merged in the caller's order (MGET's
//!   values back into their positions, counts summed, MSET's `OK`s combined);
//! - DBSIZE, KEYS, FLUSHALL, FLUSHDB: on every serving node, replies combined;
//! - SCAN's cursor walks the nodes in id order: its top 16 bits are the node's index,
//!   the low 48 bits the node's own cursor (a store cursor never needs more:
//!   `shard << 32 | slot` with at most 2^16 shards). If membership changes during a
//!   scan, the scan may miss or repeat keys;
//! - RANDOMKEY asks nodes in random order until one has a key;
//! - INFO's keyspace section sums every node's counts.
//!
//! With copies, keyspace commands count only each node's primary keys, so every key
//! counts once.

use std::collections::HashMap;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use quorra_cluster::membership::{ClusterView, Member};
use quorra_cluster::message::{Request, Response};
use quorra_resp::{Frame, Limits, encode, parse_frame};
use quorra_ring::NodeId;
use quorra_store::KeyspaceTally;

use crate::accounting::{self, Lookups, Outcome};
use crate::commands::{self, CommandError};
use crate::executor::{Cx, Mode, run_on, run_parts};
use crate::plan::{Merge, NO_REPLICA, Spread};
use crate::session::Session;

/// Bits of a cluster SCAN cursor that hold the node's own cursor.
const SCAN_NODE_SHIFT: u32 = 48;

/// Runs a command that involves several nodes, appends its reply to `out`, and counts
/// it.
pub async fn execute(
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

/// The serving nodes, in id order.
fn serving(view: &ClusterView) -> Vec<&Member> {
    view.serving().collect()
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
    let mut totals = KeyspaceTally::default();
    let request = Request::KeyspaceCounts { primary_only };
    let counts = join_all(
        serving(cx.view)
            .into_iter()
            .filter(|member| member.id != cx.view.self_id)
            .map(|member| cx.node.peers.call(cx.view, &member.id, &request)),
    )
    .await;
    for response in counts {
        if let Response::KeyspaceCounts { databases } = response? {
            for (db, keys, expires) in databases {
                totals.add(db, keys, expires);
            }
        }
    }
    if cx.view.is_serving(&cx.view.self_id) {
        for counts in commands::server::keyspace_counts(cx.shared, primary_only) {
            totals.add(counts.db, counts.keys, counts.expires);
        }
    }
    session.cluster_keyspace = Some(totals.databases());
    commands::dispatch(cx.shared, session, out, args);
    session.cluster_keyspace = None;
    Ok(Lookups::default())
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
