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
//! Commands that would be refused anyway — unknown, wrong arity, not authenticated —
//! run locally so that the refusal is the local one. A forwarded command is never
//! forwarded again by the node that receives it, so two nodes whose views briefly differ
//! cannot bounce a command between them; the receiver simply runs it.
//!
//! When a node cannot be reached within the cluster timeout, the client gets
//! `CLUSTERDOWN node <id> at <addr> did not answer: <cause>`.
//!
//! Commands of one pipeline run one after another, each waiting for its reply, so a
//! pipeline through a non-owner costs one hop per forwarded command.

use std::collections::HashMap;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use quorra_cluster::membership::{ClusterView, Member};
use quorra_cluster::message::{Request, Response};
use quorra_resp::{Frame, Limits, Protocol, encode, parse_frame};
use quorra_ring::NodeId;

use crate::cluster::ClusterNode;
use crate::commands::{self, COMMANDS, CommandError};
use crate::connection::Session;
use crate::shared::Shared;

/// Bits of a cluster SCAN cursor that hold the node's own cursor.
const SCAN_NODE_SHIFT: u32 = 48;

/// The error for keys of one command that have different owners.
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same node";

/// Where a command runs.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// Here, as on a single node.
    Local,
    /// Whole, on this other node.
    Forward(NodeId),
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

/// Where the command in `args` runs, given the view. `Local` when the view has a
/// single node, for commands without keys that are not keyspace-wide, and for any
/// command that will be refused before it runs.
pub fn plan(shared: &Shared, session: &Session, view: &ClusterView, args: &[Bytes]) -> Plan {
    let Some(index) = commands::lookup(&args[0]) else {
        return Plan::Local;
    };
    let spec = &COMMANDS[index];
    let authenticated = session.authenticated || shared.settings.read().requirepass.is_none();
    if view.ring.is_empty() || !commands::arity_ok(spec.arity, args.len()) || !authenticated {
        return Plan::Local;
    }
    // The owner shared by all these keys (`Some(None)` on an empty ring), or `None`.
    fn one_owner<'v, 'k>(
        view: &'v ClusterView,
        mut keys: impl Iterator<Item = &'k Bytes>,
    ) -> Option<Option<&'v NodeId>> {
        let first = view.owner(keys.next()?);
        keys.all(|key| view.owner(key) == first).then_some(first)
    }
    let on = |owner: Option<&NodeId>| match owner {
        Some(owner) if *owner != view.self_id => Plan::Forward(owner.clone()),
        _ => Plan::Local,
    };
    match (spec.keys, spec.name) {
        ((1, 1, 1), _) => on(view.owner(&args[1])),
        ((1, 2, 1), _) => match one_owner(view, args[1..3].iter()) {
            Some(owner) => on(owner),
            None => Plan::Refuse(CROSSSLOT),
        },
        ((1, -1, step), name) => {
            let step = step as usize;
            match one_owner(view, args[1..].iter().step_by(step)) {
                Some(owner) => on(owner),
                None => match name {
                    "mget" => Plan::Split {
                        merge: Merge::Values,
                        step,
                    },
                    "mset" => Plan::Split {
                        merge: Merge::AllOk,
                        step,
                    },
                    "del" | "unlink" | "exists" | "touch" => Plan::Split {
                        merge: Merge::Sum,
                        step,
                    },
                    _ => Plan::Refuse(CROSSSLOT),
                },
            }
        }
        (_, "dbsize") => Plan::Everywhere(Merge::Sum),
        (_, "keys") => Plan::Everywhere(Merge::Values),
        (_, "flushall" | "flushdb") => Plan::Everywhere(Merge::AllOk),
        (_, "scan") => Plan::Scan,
        (_, "randomkey") => Plan::RandomKey,
        (_, "info") if commands::server::info_wants_keyspace(&args[1..]) => Plan::Info,
        _ => Plan::Local,
    }
}

/// Runs a command whose plan is not [`Plan::Local`] and appends its reply to `out`.
pub async fn execute(
    shared: &Shared,
    node: &ClusterNode,
    view: &ClusterView,
    session: &mut Session,
    args: &[Bytes],
    plan: Plan,
    out: &mut BytesMut,
) {
    let started = Instant::now();
    let result = match plan {
        Plan::Local => {
            commands::dispatch(shared, session, out, args);
            return;
        }
        Plan::Forward(owner) => run_on(shared, node, view, session, &owner, args.to_vec())
            .await
            .map(|reply| out.extend_from_slice(&reply)),
        Plan::Split { merge, step } => {
            split(shared, node, view, session, args, merge, step, out).await
        }
        Plan::Everywhere(merge) => everywhere(shared, node, view, session, args, merge, out).await,
        Plan::Scan => scan(shared, node, view, session, args, out).await,
        Plan::RandomKey => random_key(shared, node, view, session, args, out).await,
        Plan::Info => info(shared, node, view, session, args, out).await,
        Plan::Refuse(text) => Err(CommandError::new(text)),
    };
    if let Err(error) = result {
        encode::error(out, &error.0);
    }
    if let Some(index) = commands::lookup(&args[0]) {
        shared.metrics.command_done(index, true, started.elapsed());
    }
}

/// Runs `args` on `target`: here through [`commands::dispatch`], elsewhere over RPC.
/// Returns the reply bytes (which may be an error reply).
async fn run_on(
    shared: &Shared,
    node: &ClusterNode,
    view: &ClusterView,
    session: &mut Session,
    target: &NodeId,
    args: Vec<Bytes>,
) -> Result<Bytes, CommandError> {
    if *target == view.self_id {
        let mut reply = BytesMut::new();
        commands::dispatch(shared, session, &mut reply, &args);
        return Ok(reply.freeze());
    }
    forward(shared, node, view, target, args, session.protocol).await
}

/// Runs `args` on the other node `target` over RPC; returns its reply bytes.
async fn forward(
    shared: &Shared,
    node: &ClusterNode,
    view: &ClusterView,
    target: &NodeId,
    args: Vec<Bytes>,
    protocol: Protocol,
) -> Result<Bytes, CommandError> {
    let request = Request::Execute {
        resp3: protocol == Protocol::Resp3,
        args,
    };
    match call(shared, node, view, target, request).await? {
        Response::Reply(reply) => Ok(reply),
        other => Err(peer_error(
            view,
            target,
            format!("unexpected answer {other:?}"),
        )),
    }
}

/// For the HTTP API: runs the one-key command `args` on the key's owner if that is
/// another node, returning its RESP2 reply; `None` if the key is local (or the node is
/// not in cluster mode), so the caller serves it from its own store.
pub async fn at_owner(shared: &Shared, args: Vec<Bytes>) -> Option<Result<Frame, CommandError>> {
    let node = shared.cluster.as_ref()?;
    let view = node.view();
    let owner = view
        .owner(&args[1])
        .filter(|owner| **owner != view.self_id)?
        .clone();
    let reply = forward(shared, node, &view, &owner, args, Protocol::Resp2).await;
    Some(reply.and_then(|reply| parse_reply(&reply)))
}

/// Sends `request` to another node, counting the call in the metrics.
async fn call(
    shared: &Shared,
    node: &ClusterNode,
    view: &ClusterView,
    target: &NodeId,
    request: Request,
) -> Result<Response, CommandError> {
    let member = view
        .member(target)
        .ok_or_else(|| peer_error(view, target, "is not a member".to_owned()))?;
    let started = Instant::now();
    let outcome = node
        .rpc
        .call(member.addresses.cluster, request.encode())
        .await;
    shared
        .metrics
        .rpc_done(target.as_str(), outcome.is_ok(), started.elapsed());
    let payload = outcome.map_err(|error| peer_error(view, target, error.to_string()))?;
    Response::decode(&payload).map_err(|error| peer_error(view, target, error.to_string()))
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

/// Runs one part per target at once (the local one, if any, inline) and returns the
/// replies in the order of `parts`.
async fn run_parts(
    shared: &Shared,
    node: &ClusterNode,
    view: &ClusterView,
    session: &mut Session,
    parts: Vec<(NodeId, Vec<Bytes>)>,
) -> Result<Vec<Bytes>, CommandError> {
    let resp3 = session.protocol == Protocol::Resp3;
    let mut local = None;
    let mut remote = Vec::new();
    for (position, (target, args)) in parts.into_iter().enumerate() {
        if target == view.self_id {
            local = Some((position, args));
        } else {
            remote.push((position, target, Request::Execute { resp3, args }));
        }
    }
    let calls = join_all(
        remote
            .into_iter()
            .map(|(position, target, request)| async move {
                let response = call(shared, node, view, &target, request).await;
                (position, target, response)
            }),
    );
    let local_reply = local.map(|(position, args)| {
        let mut reply = BytesMut::new();
        commands::dispatch(shared, session, &mut reply, &args);
        (position, reply.freeze())
    });
    let mut replies: Vec<(usize, Bytes)> = local_reply.into_iter().collect();
    for (position, target, response) in calls.await {
        match response? {
            Response::Reply(reply) => replies.push((position, reply)),
            other => {
                return Err(peer_error(
                    view,
                    &target,
                    format!("unexpected answer {other:?}"),
                ));
            }
        }
    }
    replies.sort_by_key(|(position, _)| *position);
    Ok(replies.into_iter().map(|(_, reply)| reply).collect())
}

#[allow(clippy::too_many_arguments)]
async fn split(
    shared: &Shared,
    node: &ClusterNode,
    view: &ClusterView,
    session: &mut Session,
    args: &[Bytes],
    merge: Merge,
    step: usize,
    out: &mut BytesMut,
) -> Result<(), CommandError> {
    // Per owner: the sub-command and the positions of its keys in the caller's order.
    let mut by_owner: HashMap<NodeId, (Vec<Bytes>, Vec<usize>)> = HashMap::new();
    for (position, chunk) in args[1..].chunks(step).enumerate() {
        let Some(owner) = view.owner(&chunk[0]) else {
            return Err(CommandError::new("CLUSTERDOWN the ring is empty"));
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
    let replies = run_parts(shared, node, view, session, parts).await?;
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
            Ok(())
        }
        merge => combine(&replies, merge, out),
    }
}

async fn everywhere(
    shared: &Shared,
    node: &ClusterNode,
    view: &ClusterView,
    session: &mut Session,
    args: &[Bytes],
    merge: Merge,
    out: &mut BytesMut,
) -> Result<(), CommandError> {
    let parts = serving(view)
        .into_iter()
        .map(|member| (member.id.clone(), args.to_vec()))
        .collect();
    let replies = run_parts(shared, node, view, session, parts).await?;
    combine(&replies, merge, out)
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
    shared: &Shared,
    node: &ClusterNode,
    view: &ClusterView,
    session: &mut Session,
    args: &[Bytes],
    out: &mut BytesMut,
) -> Result<(), CommandError> {
    let Some(cursor) = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
    else {
        // Not a number: the local SCAN gives Redis's error.
        commands::dispatch(shared, session, out, args);
        return Ok(());
    };
    let nodes = serving(view);
    let index = (cursor >> SCAN_NODE_SHIFT) as usize;
    let Some(member) = nodes.get(index) else {
        // A cursor from before the cluster shrank: the scan is over.
        write_scan_reply(out, 0, &[]);
        return Ok(());
    };
    let mut sub = args.to_vec();
    let local_cursor = cursor & ((1 << SCAN_NODE_SHIFT) - 1);
    sub[1] = Bytes::from(local_cursor.to_string());
    let reply = run_on(shared, node, view, session, &member.id, sub).await?;
    if reply.first() == Some(&b'-') {
        out.extend_from_slice(&reply);
        return Ok(());
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
    Ok(())
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
    shared: &Shared,
    node: &ClusterNode,
    view: &ClusterView,
    session: &mut Session,
    args: &[Bytes],
    out: &mut BytesMut,
) -> Result<(), CommandError> {
    let mut nodes = serving(view);
    let start = rand::random_range(0..nodes.len().max(1));
    nodes.rotate_left(start);
    for member in nodes {
        let reply = run_on(shared, node, view, session, &member.id, args.to_vec()).await?;
        if parse_reply(&reply)? != Frame::Null {
            out.extend_from_slice(&reply);
            return Ok(());
        }
    }
    encode::null(out, session.protocol);
    Ok(())
}

async fn info(
    shared: &Shared,
    node: &ClusterNode,
    view: &ClusterView,
    session: &mut Session,
    args: &[Bytes],
    out: &mut BytesMut,
) -> Result<(), CommandError> {
    let mut totals = (0u64, 0u64);
    let counts = join_all(
        serving(view)
            .into_iter()
            .filter(|member| member.id != view.self_id)
            .map(|member| call(shared, node, view, &member.id, Request::KeyspaceCounts)),
    )
    .await;
    for response in counts {
        if let Response::KeyspaceCounts { keys, expires } = response? {
            totals.0 += keys;
            totals.1 += expires;
        }
    }
    if view.ring.member(&view.self_id).is_some() {
        let stats = shared.store.stats().total;
        totals.0 += stats.entries;
        totals.1 += stats.volatile;
    }
    session.cluster_keyspace = Some(totals);
    commands::dispatch(shared, session, out, args);
    session.cluster_keyspace = None;
    Ok(())
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
