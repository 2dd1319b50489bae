//! The pub/sub relay: carries the messages published on this node to every other node,
//! whose own subscribers then get them ([`crate::pubsub`]).
//!
//! Each peer has a queue and a task that sends the queue's messages in batches
//! ([`Request::Publish`]), one batch at a time: a peer receives this node's messages in
//! the order they were published, and a slow or unreachable peer holds up only its own
//! queue. A queue holds at most `client-output-buffer-limit-pubsub` bytes (the bound of
//! one subscriber's mailbox); past it, or when a batch cannot be sent, messages for that
//! peer are dropped and counted (`pubsub_relay_dropped` in INFO): delivery is at most
//! once, as in Redis Cluster.
//!
//! Peers are every member but those leaving, followed as the view changes: a node that
//! joins gets the messages published after it is seen. A member marked down is still
//! sent to ([`crate::peer::PeerClient::call_even_if_down`]): a false alarm of the failure
//! detector (a node too busy to gossip in time) then loses nothing, and sends to a node
//! that is really gone fail at once (connection refused) or at the RPC timeout, and are
//! counted as dropped. The receiver delivers one sender's
//! batches one at a time ([`crate::pubsub::PubSub::inbound_lock`]): a batch whose answer
//! comes after the sender's timeout (counted as dropped, though delivered) cannot be
//! overtaken by the next. A node that can no longer
//! see a majority of its cluster is cut off from the messages published on the far
//! side, so it disconnects its subscribers once; they reconnect (to a node they can
//! reach) knowing they may have missed messages.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use quorra_cluster::membership::{ClusterView, MemberState};
use quorra_cluster::message::{Request, WireMessage};
use quorra_ring::NodeId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cluster_node::ClusterNode;
use crate::log_limiter::LogLimiter;
use crate::pubsub::{Kind, PubSubCounters, Published, Relay};
use crate::shared::Shared;

/// Most messages sent to a peer in one request.
const BATCH: usize = 512;

struct PeerQueue {
    sender: mpsc::UnboundedSender<Published>,
    backlog: Arc<AtomicU64>,
}

/// The queues to the other nodes.
pub struct PeerQueues {
    queues: RwLock<HashMap<NodeId, PeerQueue>>,
    /// Most bytes one peer's queue holds.
    limit: u64,
    counters: Arc<PubSubCounters>,
    log: LogLimiter,
}

impl Relay for PeerQueues {
    fn relay(&self, message: &Published) {
        let size = message.size();
        for (peer, queue) in self.queues.read().iter() {
            let backlog = queue.backlog.fetch_add(size, Ordering::Relaxed) + size;
            if self.limit > 0 && backlog > self.limit {
                queue.backlog.fetch_sub(size, Ordering::Relaxed);
                self.lost(peer, 1, "its queue is full");
                continue;
            }
            if queue.sender.send(message.clone()).is_err() {
                queue.backlog.fetch_sub(size, Ordering::Relaxed);
            }
        }
    }
}

impl PeerQueues {
    fn lost(&self, peer: &NodeId, messages: u64, why: &str) {
        self.counters
            .relay_dropped
            .fetch_add(messages, Ordering::Relaxed);
        if let Some(held_back) = self.log.admit() {
            tracing::warn!(%peer, messages, not_logged_since_last_line = held_back,
                "pub/sub messages not delivered to a peer: {why}");
        }
    }

    /// Opens a queue (and its sending task) for each member that should get messages
    /// and has none; closes the queues of the others (their tasks end once drained).
    fn follow(self: &Arc<Self>, node: &Arc<ClusterNode>, view: &ClusterView) {
        let mut queues = self.queues.write();
        let wanted: Vec<&NodeId> = view
            .members
            .iter()
            .filter(|member| member.id != view.self_id && member.state != MemberState::Leaving)
            .map(|member| &member.id)
            .collect();
        queues.retain(|peer, _| wanted.contains(&peer));
        for peer in wanted {
            if queues.contains_key(peer) {
                continue;
            }
            let (sender, receiver) = mpsc::unbounded_channel();
            let backlog = Arc::new(AtomicU64::new(0));
            tokio::spawn(send_to(
                self.clone(),
                node.clone(),
                peer.clone(),
                receiver,
                backlog.clone(),
            ));
            queues.insert(peer.clone(), PeerQueue { sender, backlog });
        }
    }
}

/// Sends one peer's queue, batch by batch, until the queue is closed and empty.
async fn send_to(
    queues: Arc<PeerQueues>,
    node: Arc<ClusterNode>,
    peer: NodeId,
    mut receiver: mpsc::UnboundedReceiver<Published>,
    backlog: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        let bytes: u64 = batch.iter().map(Published::size).sum();
        let messages: Vec<WireMessage> = batch
            .drain(..)
            .map(|published| WireMessage {
                sharded: published.kind == Kind::Shard,
                channel: published.channel,
                message: published.message,
            })
            .collect();
        let count = messages.len() as u64;
        let view = node.view();
        let sent = node
            .peers
            .call_even_if_down(&view, &peer, &Request::Publish { messages })
            .await;
        backlog.fetch_sub(bytes, Ordering::Relaxed);
        match sent {
            Ok(_) => {
                queues
                    .counters
                    .relay_sent
                    .fetch_add(count, Ordering::Relaxed);
            }
            Err(error) => queues.lost(&peer, count, &error.to_string()),
        }
    }
}

/// Whether `view` shows this node a majority of the members its ring counts.
fn sees_a_majority(view: &ClusterView) -> bool {
    let counted = view.ring.len();
    let up = view.serving().count();
    up * 2 > counted
}

/// Runs the relay of `shared`'s pub/sub until `stop`: connects it to the hub and follows
/// the view.
pub async fn run(shared: Arc<Shared>, node: Arc<ClusterNode>, stop: CancellationToken) {
    let queues = Arc::new(PeerQueues {
        queues: RwLock::default(),
        limit: shared.pubsub.limit(),
        counters: shared.pubsub.counters.clone(),
        log: LogLimiter::new(10_000),
    });
    shared.pubsub.set_relay(queues.clone());
    let mut views = node.subscribe();
    let mut had_majority = false;
    loop {
        let view = views.borrow_and_update().clone();
        queues.follow(&node, &view);
        let has_majority = view.joined && sees_a_majority(&view);
        if had_majority && !has_majority {
            let closed = shared.pubsub.disconnect_all();
            if closed > 0 {
                tracing::warn!(
                    subscribers = closed,
                    "this node sees less than a majority of its cluster: its subscribers are \
                 disconnected, since messages published on the other side cannot reach them"
                );
            }
        }
        had_majority = has_majority;
        tokio::select! {
            changed = views.changed() => if changed.is_err() { break },
            () = stop.cancelled() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::in_memory_cluster::view;

    #[test]
    fn a_node_sees_a_majority_while_more_than_half_its_ring_is_up() {
        use MemberState::{Down, Up};
        assert!(sees_a_majority(&view(0, &[Up, Up, Up])));
        assert!(sees_a_majority(&view(0, &[Up, Down, Up])));
        assert!(!sees_a_majority(&view(0, &[Up, Down, Down])));
        assert!(!sees_a_majority(&view(0, &[Up, Down])));
    }
}
