//! Calls to other nodes, through one client.
//!
//! Everything a node asks a peer goes through [`PeerClient::call`]: forwarded commands,
//! replica reads and writes, evictions, anti-entropy. It finds the peer in the view,
//! refuses at once to call a member the failure detector judged down (waiting for a
//! timeout would only agree with it), times the call into the `quorra_rpc_*` metrics,
//! and decodes the answer. A failure is a [`PeerError`] naming the peer and its address,
//! which says whether the request may have run there ([`PeerError::may_have_run`]:
//! only then is retrying it elsewhere unsafe) and whether the peer was unreachable
//! ([`PeerError::is_unreachable`]: a hint can carry a write later).
//!
//! The bytes travel over a [`Transport`]: the authenticated RPC client in a running
//! node, an in-memory one in tests, which lets routing and the pipeline be tested
//! without sockets, with links cut and healed at will.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use quorra_cluster::membership::{ClusterView, MemberState};
use quorra_cluster::message::{Request, Response};
use quorra_cluster::rpc::{BoxFuture, RpcClient, RpcError};
use quorra_ring::NodeId;

use crate::metrics::Metrics;

/// How a request's bytes reach the node listening on a cluster address.
pub trait Transport: Send + Sync + 'static {
    /// Sends `payload` to the node at `addr` and returns its answer.
    fn send(&self, addr: SocketAddr, payload: Bytes) -> BoxFuture<Result<Bytes, RpcError>>;
}

impl Transport for RpcClient {
    fn send(&self, addr: SocketAddr, payload: Bytes) -> BoxFuture<Result<Bytes, RpcError>> {
        let client = self.clone();
        Box::pin(async move { client.call(addr, payload).await })
    }
}

/// The client every request to a peer goes through. Cheap to clone.
#[derive(Clone)]
pub struct PeerClient {
    transport: Arc<dyn Transport>,
    metrics: Arc<Metrics>,
}

/// Why a call to a peer failed.
#[derive(Debug)]
pub enum PeerFailure {
    /// The view has no such member.
    NotMember,
    /// The failure detector judges it down; it was not called.
    Down,
    /// The call failed.
    Rpc(RpcError),
    /// It answered something that is not an answer to the request.
    UnexpectedAnswer(String),
}

impl fmt::Display for PeerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerFailure::NotMember => f.write_str("is not a member"),
            PeerFailure::Down => f.write_str("is down"),
            PeerFailure::Rpc(error) => error.fmt(f),
            PeerFailure::UnexpectedAnswer(answer) => write!(f, "unexpected answer {answer}"),
        }
    }
}

/// A call to `node` that failed, and why.
#[derive(Debug)]
pub struct PeerError {
    /// The peer.
    pub node: NodeId,
    /// Its cluster address, if it is a member.
    pub addr: Option<SocketAddr>,
    /// What went wrong.
    pub failure: PeerFailure,
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}", self.node)?;
        if let Some(addr) = self.addr {
            write!(f, " at {addr}")?;
        }
        write!(f, " did not answer: {}", self.failure)
    }
}

impl std::error::Error for PeerError {}

impl PeerError {
    /// An answer of the wrong kind from `node` at `addr`.
    pub fn unexpected(node: &NodeId, addr: Option<SocketAddr>, answer: &Response) -> PeerError {
        PeerError {
            node: node.clone(),
            addr,
            failure: PeerFailure::UnexpectedAnswer(format!("{answer:?}")),
        }
    }

    /// Whether the request may have run on the peer: the call timed out, the connection
    /// broke while it was in flight, or the answer made no sense. When false the peer
    /// certainly did not run it (not called, not connected, refused before running), so
    /// another replica may.
    pub fn may_have_run(&self) -> bool {
        match &self.failure {
            PeerFailure::NotMember | PeerFailure::Down => false,
            PeerFailure::Rpc(error) => matches!(
                error,
                RpcError::Timeout { .. } | RpcError::Closed { .. } | RpcError::Protocol { .. }
            ),
            PeerFailure::UnexpectedAnswer(_) => true,
        }
    }

    /// Whether the peer could not be reached or did not answer in time (rather than
    /// answering with a refusal): a write for it is worth a hint.
    pub fn is_unreachable(&self) -> bool {
        match &self.failure {
            PeerFailure::NotMember | PeerFailure::Down => true,
            PeerFailure::Rpc(error) => error.is_transient(),
            PeerFailure::UnexpectedAnswer(_) => false,
        }
    }
}

impl PeerClient {
    /// A client sending over `transport`, timing calls into `metrics`.
    pub fn new(transport: Arc<dyn Transport>, metrics: Arc<Metrics>) -> PeerClient {
        PeerClient { transport, metrics }
    }

    /// Sends `request` to `node`, found in `view`, and decodes its answer.
    pub fn call(
        &self,
        view: &ClusterView,
        node: &NodeId,
        request: &Request,
    ) -> impl Future<Output = Result<Response, PeerError>> + Send + use<> {
        self.call_member(view, node, request, true)
    }

    /// [`call`](Self::call), also to a member the failure detector judged down: for
    /// requests that lose nothing by waiting for a timeout, and would lose their content
    /// if a false alarm (a node too busy to gossip in time) refused them (pub/sub's relay).
    pub fn call_even_if_down(
        &self,
        view: &ClusterView,
        node: &NodeId,
        request: &Request,
    ) -> impl Future<Output = Result<Response, PeerError>> + Send + use<> {
        self.call_member(view, node, request, false)
    }

    fn call_member(
        &self,
        view: &ClusterView,
        node: &NodeId,
        request: &Request,
        refuse_down: bool,
    ) -> impl Future<Output = Result<Response, PeerError>> + Send + use<> {
        let member = view.member(node);
        let addr = member.map(|member| member.addresses.cluster);
        let fail = move |node: NodeId, failure| PeerError {
            node,
            addr,
            failure,
        };
        let node = node.clone();
        let sent = match member {
            None => Err(fail(node.clone(), PeerFailure::NotMember)),
            Some(member) if refuse_down && member.state == MemberState::Down => {
                Err(fail(node.clone(), PeerFailure::Down))
            }
            Some(member) => Ok(self
                .transport
                .send(member.addresses.cluster, request.encode())),
        };
        let metrics = self.metrics.clone();
        async move {
            let started = Instant::now();
            let outcome = sent?.await;
            metrics.rpc_done(&node, outcome.is_ok(), started.elapsed());
            let payload = outcome.map_err(|error| fail(node.clone(), PeerFailure::Rpc(error)))?;
            Response::decode(&payload).map_err(|error| {
                fail(
                    node,
                    PeerFailure::UnexpectedAnswer(format!("that does not decode: {error}")),
                )
            })
        }
    }
}
