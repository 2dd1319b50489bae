//! The executor: runs commands where the plan put them — on this node, or on another
//! over the [`PeerClient`](crate::peer::PeerClient) — and returns their replies with the
//! keyspace reads they made. Nothing is counted here: the node that answers the client
//! accounts for its commands ([`crate::accounting`]).
//!
//! A command runs on a node in a [`Mode`]: for a client of some RESP version; with
//! copies, as its keys' primary, copying what it wrote to the replicas
//! ([`crate::primary_write`]); for keyspace commands, seeing only the keys the node is
//! primary for, so that each key is counted once over the cluster. [`run_here`] runs a
//! batch on this node in a mode — for its own pipeline, and for a peer's
//! [`Request::Execute`] alike; [`forward`] sends a batch to another node, which runs it
//! with [`run_here`] too. A forwarded command is never forwarded again by the node that
//! receives it, so two nodes whose views briefly differ cannot bounce a command between
//! them; the receiver simply runs it.
//!
//! When a node cannot be reached within the cluster timeout, the client gets
//! `CLUSTERDOWN node <id> at <addr> did not answer: <cause>`. With copies, when a key's
//! primary certainly did not run the command (it could not be connected to), the next
//! serving replica runs it as acting primary ([`forward_to_replicas`]).

use bytes::Bytes;
use futures_util::future::join_all;
use quorra_cluster::membership::ClusterView;
use quorra_cluster::message::{Request, Response};
use quorra_cluster::replication::Level;
use quorra_resp::Protocol;
use quorra_ring::NodeId;
use quorra_store::VersionedEntry;

use crate::accounting::Lookups;
use crate::cluster_node::ClusterNode;
use crate::commands::{CommandError, error_reply};
use crate::node_replicas::read_entries;
use crate::origin_hooks;
use crate::peer::PeerError;
use crate::session::Session;
use crate::shared::Shared;
use crate::wall_clock::unix_ms;

/// What the executor works with: the node, its cluster machinery and the view the
/// batch is routed by.
#[derive(Clone, Copy)]
pub struct Cx<'a> {
    /// The node's shared state.
    pub shared: &'a Shared,
    /// Its cluster machinery.
    pub node: &'a ClusterNode,
    /// The view this batch is routed by.
    pub view: &'a ClusterView,
}

/// How the node that runs a command runs it: for a client speaking `protocol`; with
/// copies, as the keys' primary copying writes to `replicate` replicas, and with
/// keyspace commands counting only the keys it is primary for.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    /// The client's RESP version.
    pub protocol: Protocol,
    /// The client's database (SELECT).
    pub db: u8,
    /// The write level, when keys have several copies.
    pub replicate: Option<Level>,
    /// Keyspace commands see only the keys the running node is primary for.
    pub primary_only: bool,
    /// The client tracks its reads (CLIENT TRACKING): the node that runs them tells
    /// this one when a key they read changes ([`crate::tracking`]).
    pub track: bool,
}

impl Mode {
    /// The mode for `session`'s commands under `cx`; `keyspace` for the commands that
    /// enumerate or count keys.
    pub fn of(cx: Cx<'_>, session: &Session, keyspace: bool) -> Mode {
        let replicated = cx.node.placement(cx.view).replicated();
        Mode {
            protocol: session.protocol,
            db: session.db,
            replicate: replicated.then(|| session.write_level(&cx.node.consistency)),
            primary_only: replicated && keyspace,
            track: session.tracking.is_some(),
        }
    }
}

/// A reply to one command, with the keyspace reads it made.
pub type Answer = (Bytes, Lookups);

/// The client-facing error of a call to a peer that failed.
pub fn peer_failure(error: &PeerError) -> CommandError {
    CommandError::new(format!("CLUSTERDOWN {error}"))
}

impl From<PeerError> for CommandError {
    fn from(error: PeerError) -> Self {
        peer_failure(&error)
    }
}

/// Runs `commands` on this node, in order, in `mode`, as [`Request::Execute`] runs them
/// for a peer: as the keys' primary when writes are replicated (their writes copied
/// together after all of them ran), with keyspace commands limited to the keys this
/// node is primary for when asked. One reply per command, and the keyspace reads they
/// made.
pub async fn run_here<A: AsRef<[Bytes]>>(
    shared: &Shared,
    view: &ClusterView,
    session: &mut Session,
    commands: &[A],
    mode: Mode,
) -> (Vec<Bytes>, Lookups) {
    session.primary_only = mode.primary_only;
    session.select(mode.db);
    let replies = match &shared.origins {
        // This node is the keys' owner: the namespaces' hooks run here.
        Some(_) => {
            Box::pin(origin_hooks::run_each(
                shared,
                view,
                mode.replicate,
                session,
                commands,
            ))
            .await
        }
        None => origin_hooks::run_plain(shared, view, mode.replicate, session, commands).await,
    };
    session.primary_only = false;
    replies
}

/// The reply of a batch of one.
pub fn one((mut replies, lookups): (Vec<Bytes>, Lookups)) -> Answer {
    (replies.pop().expect("one reply per command"), lookups)
}

/// Runs `args` on `target` in `mode`: here through [`run_here`], elsewhere through
/// [`forward`].
pub async fn run_on(
    cx: Cx<'_>,
    session: &mut Session,
    target: &NodeId,
    args: Vec<Bytes>,
    mode: Mode,
) -> Result<Answer, PeerError> {
    if *target == cx.view.self_id {
        return Ok(one(
            run_here(cx.shared, cx.view, session, &[args], mode).await
        ));
    }
    forward_one(cx, target, args, mode).await
}

/// Runs `commands` in order on the other node `target`, which runs them with
/// [`run_here`]; returns one reply's bytes per command, and the keyspace reads they made
/// there. The request carries a deadline: a peer that receives it too late to answer in
/// time does not run it.
pub async fn forward(
    cx: Cx<'_>,
    target: &NodeId,
    commands: Vec<Vec<Bytes>>,
    mode: Mode,
) -> Result<(Vec<Bytes>, Lookups), PeerError> {
    let expected = commands.len();
    let request = Request::Execute {
        resp3: mode.protocol == Protocol::Resp3,
        db: mode.db,
        commands,
        replicate: mode.replicate,
        primary_only: mode.primary_only,
        deadline_ms: deadline_ms(cx),
        track: mode.track,
    };
    call_for_replies(cx, target, &request, expected).await
}

/// The RESP version a peer's request names.
pub fn protocol_of(resp3: bool) -> Protocol {
    match resp3 {
        true => Protocol::Resp3,
        false => Protocol::Resp2,
    }
}

/// When a request sent now stops being worth running, ms since the epoch: the cluster
/// timeout from now.
pub fn deadline_ms(cx: Cx<'_>) -> u64 {
    unix_ms() + cx.node.timeout.as_millis() as u64
}

/// Sends `request` to `target` and returns its `expected` replies, with the keyspace
/// reads they made there; any other answer is an error naming the peer.
pub async fn call_for_replies(
    cx: Cx<'_>,
    target: &NodeId,
    request: &Request,
    expected: usize,
) -> Result<(Vec<Bytes>, Lookups), PeerError> {
    match cx.node.peers.call(cx.view, target, request).await? {
        Response::Replies {
            replies,
            hits,
            misses,
        } if replies.len() == expected => Ok((replies, Lookups { hits, misses })),
        other => Err(unexpected_answer(cx, target, &other)),
    }
}

/// The error for an answer of `target` that does not fit its request.
fn unexpected_answer(cx: Cx<'_>, target: &NodeId, answer: &Response) -> PeerError {
    let addr = cx
        .view
        .member(target)
        .map(|member| member.addresses.cluster);
    PeerError::unexpected(target, addr, answer)
}

/// The entries of `keys` at `target`, which from now on tells this node when one of
/// them changes there ([`Request::Read`] with `follow`): for hot-key copies, and for a
/// tracking client's read that is not sent to the keys' primary. Read here, with nothing
/// to follow, when `target` is this node.
pub async fn read_following(
    cx: Cx<'_>,
    target: &NodeId,
    keys: Vec<Bytes>,
) -> Result<Vec<Option<VersionedEntry>>, PeerError> {
    if *target == cx.view.self_id {
        return Ok(read_entries(&cx.shared.store, &keys, false));
    }
    let expected = keys.len();
    let request = Request::Read {
        keys,
        promote: false,
        follow: true,
    };
    match cx.node.peers.call(cx.view, target, &request).await? {
        Response::Entries(entries) if entries.len() == expected => Ok(entries
            .into_iter()
            .map(|entry| entry.map(VersionedEntry::from))
            .collect()),
        other => Err(unexpected_answer(cx, target, &other)),
    }
}

/// Tells `follower` that `keys` changed here ([`Request::Invalidate`]), and waits for its
/// answer or the cluster timeout.
pub async fn invalidate_at(
    node: &ClusterNode,
    view: &ClusterView,
    follower: &NodeId,
    keys: Vec<Bytes>,
) {
    let request = Request::Invalidate { keys };
    if let Err(error) = node.peers.call(view, follower, &request).await {
        tracing::debug!(%error, node = %follower, "could not send invalidations");
    }
}

/// Tells every other serving node the BCAST prefixes of this node's tracking clients
/// ([`Request::FollowPrefixes`]), and waits for their answers (or the cluster timeout).
/// Nothing to tell without BCAST clients.
pub async fn announce_prefixes(shared: &Shared, node: &ClusterNode, view: &ClusterView) {
    let prefixes = shared.tracking.prefixes_to_announce();
    if prefixes.is_empty() {
        return;
    }
    let request = Request::FollowPrefixes { prefixes };
    let others = view
        .serving()
        .filter(|member| member.id != view.self_id)
        .map(|member| {
            let request = &request;
            async move {
                if let Err(error) = node.peers.call(view, &member.id, request).await {
                    tracing::debug!(%error, node = %member.id, "could not announce tracking prefixes");
                }
            }
        });
    join_all(others).await;
}

/// Sends the invalidations the session's writes made to the nodes that follow their keys
/// (client tracking, hot-key copies; [`crate::tracking`]) and waits for their answers,
/// before the writes' replies go out: a write is acknowledged once every serving node
/// that cached its keys has dropped them. A node that does not answer holds the reply up
/// to the cluster timeout, which is longer than a hot-key copy's lease
/// ([`crate::hot_cache::HotCache::lease`]): by then its copy is no longer served.
pub async fn settle(shared: &Shared, session: &mut Session) {
    let Some(unsettled) = session.unsettled.as_mut() else {
        return;
    };
    let nodes = unsettled.take();
    let Some(node) = shared.cluster.as_ref() else {
        return;
    };
    if nodes.is_empty() {
        return;
    }
    let view = node.view();
    let sends = nodes
        .into_iter()
        .filter(|(follower, _)| *follower != view.self_id && view.is_serving(follower))
        .map(|(follower, keys)| {
            let view = &view;
            async move { invalidate_at(node, view, &follower, keys).await }
        });
    join_all(sends).await;
}

/// [`forward`] for one command.
pub async fn forward_one(
    cx: Cx<'_>,
    target: &NodeId,
    args: Vec<Bytes>,
    mode: Mode,
) -> Result<Answer, PeerError> {
    Ok(one(forward(cx, target, vec![args], mode).await?))
}

/// With copies, when the key's primary (`failed`) certainly did not run the command:
/// runs it on the next serving replica that can be reached, as acting primary (it
/// copies the write to the others, leaving a hint for the primary).
pub async fn forward_to_replicas(
    cx: Cx<'_>,
    failed: &NodeId,
    args: Vec<Bytes>,
    mode: Mode,
) -> Answer {
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
            let mode = Mode {
                replicate: Some(mode.replicate.unwrap_or(Level::One)),
                ..mode
            };
            // As a forwarded command runs: with the namespaces' hooks.
            return one(Box::pin(run_here(cx.shared, cx.view, &mut session, &[args], mode)).await);
        } else {
            forward_one(cx, target, args.clone(), mode).await
        };
        match outcome {
            Ok(answer) => return answer,
            Err(error) if !error.may_have_run() => last = Some(peer_failure(&error)),
            Err(error) => return (error_reply(&peer_failure(&error).0), Lookups::default()),
        }
    }
    let last = last.unwrap_or_else(|| CommandError::new("CLUSTERDOWN no replica answered"));
    (error_reply(&last.0), Lookups::default())
}

/// Runs one part per target at once (the local one, if any, alongside) and returns the
/// replies in the order of `parts`.
pub async fn run_parts(
    cx: Cx<'_>,
    session: &mut Session,
    parts: Vec<(NodeId, Vec<Bytes>)>,
    mode: Mode,
) -> Result<(Vec<Bytes>, Lookups), PeerError> {
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
