//! The pub/sub relay: carries the messages published on this node to every other node,
//! whose own subscribers then get them ([`crate::pubsub`]).
//!
//! Each peer has a queue and a task that sends the queue's messages in batches
//! ([`Request::Publish`]), one batch at a time: a peer receives this node's messages in
//! the order they were published, and a slow or unreachable peer holds up only its own
//! queue. A batch that gets no answer (the call failed or timed out) is sent again, the
//! same batch under the same number, until the peer answers: it may have arrived, and
//! the peer delivers each number once ([`crate::pubsub::InboundStream`]). So a timeout,
//! a dropped connection or a peer busy for a while loses nothing and duplicates nothing.
//!
//! A queue holds at most `client-output-buffer-limit-pubsub` bytes (the bound of one
//! subscriber's mailbox), counting the batch being sent. Past it messages for that peer
//! are dropped, counted (`pubsub_relay_dropped` in INFO) and told to the peer with the
//! next batch, and the peer disconnects its subscribers, which missed them. A queue
//! whose peer leaves the cluster is dropped whole, likewise counted.
//!
//! Peers are every member but those leaving, followed as the view changes: a node that
//! joins gets the messages published after it is seen. A member marked down is still
//! sent to ([`crate::peer::PeerClient::call_even_if_down`]): a false alarm of the failure
//! detector (a node too busy to gossip in time) then loses nothing, and a node that is
//! really gone is tried again until it comes back or its queue fills.
//!
//! A node cut off from a majority of its cluster would leave its subscribers waiting, in
//! silence, for messages the far side cannot send it; it disconnects them once, and they
//! reconnect (to a node they can reach) knowing they may have missed messages. The
//! failure detector's word is not enough for that: a node too busy to gossip in time
//! (under CPU load) sees its peers down when they are not, and its subscribers would be
//! closed for nothing. When the view shows less than a majority, the relay pings each
//! member the view counts down ([`Request::Ping`], which a peer answers at once, however
//! busy delivering), and the node disconnects its subscribers only if enough of them
//! leave three pings in a row unanswered that those it reaches are no majority either.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use parking_lot::RwLock;
use quorra_cluster::membership::{ClusterView, MemberState};
use quorra_cluster::message::{Request, WireMessage};
use quorra_ring::NodeId;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::cluster_node::ClusterNode;
use crate::log_limiter::LogLimiter;
use crate::pubsub::{Kind, PubSubCounters, Published, Relay};
use crate::shared::Shared;

/// Most messages sent to a peer in one request.
const BATCH: usize = 512;

/// Pause before a batch that got no answer is sent again; it doubles at each failure
/// in a row, up to [`RETRY_PAUSE_MAX`]. A peer that failed at once (a refused
/// connection) is not called in a busy loop, and one that is gone costs a call a second.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Longest pause between two sends of a batch.
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(1);

/// Pings in a row a member the view counts down leaves unanswered before the relay takes
/// it for out of reach too (one timeout could be a busy moment).
const UNANSWERED_TO_CONFIRM: u32 = 3;

/// What [`PeerQueues::relay`] and a peer's sending task share besides the messages.
#[derive(Default)]
struct Backlog {
    /// Bytes queued, and in the batch being sent.
    bytes: AtomicU64,
    /// Messages dropped since the sending task last looked (the queue was full).
    dropped: AtomicU64,
    /// Wakes the sending task to tell a drop when no message follows it.
    dropped_notice: Notify,
}

struct PeerQueue {
    sender: mpsc::UnboundedSender<Published>,
    backlog: Arc<Backlog>,
}

/// The queues to the other nodes.
pub struct PeerQueues {
    queues: RwLock<HashMap<NodeId, PeerQueue>>,
    /// Most bytes one peer's queue holds.
    limit: u64,
    counters: Arc<PubSubCounters>,
    log: LogLimiter,
    /// Ends the sending tasks when the node stops.
    stop: CancellationToken,
}

impl Relay for PeerQueues {
    fn relay(&self, message: &Published) {
        let size = message.size();
        for (peer, queue) in self.queues.read().iter() {
            let backlog = &queue.backlog;
            let bytes = backlog.bytes.fetch_add(size, Ordering::Relaxed) + size;
            if self.limit > 0 && bytes > self.limit {
                backlog.bytes.fetch_sub(size, Ordering::Relaxed);
                backlog.dropped.fetch_add(1, Ordering::Relaxed);
                backlog.dropped_notice.notify_one();
                self.lost(peer, 1, "its queue is full");
                continue;
            }
            if queue.sender.send(message.clone()).is_err() {
                // The sending task is gone: the node is stopping.
                backlog.bytes.fetch_sub(size, Ordering::Relaxed);
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
                "pub/sub messages dropped for a peer: {why}");
        }
    }

    /// Opens a queue (and its sending task) for each member that should get messages
    /// and has none; closes the queues of the others (their tasks send what is left, or
    /// drop it once the peer fails to answer).
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
            let backlog = Arc::new(Backlog::default());
            let sending = PeerSender {
                queues: self.clone(),
                node: node.clone(),
                peer: peer.clone(),
                receiver,
                backlog: backlog.clone(),
            };
            tokio::spawn(self.stop.clone().run_until_cancelled_owned(sending.run()));
            queues.insert(peer.clone(), PeerQueue { sender, backlog });
        }
    }
}

/// One peer's sending task: its queue's messages, batch by batch.
struct PeerSender {
    queues: Arc<PeerQueues>,
    node: Arc<ClusterNode>,
    peer: NodeId,
    receiver: mpsc::UnboundedReceiver<Published>,
    backlog: Arc<Backlog>,
}

impl PeerSender {
    /// Sends the queue until it is closed and empty, or the peer left with messages
    /// still to send (they are dropped).
    async fn run(mut self) {
        // A new stream for the peer: it numbers these batches apart from any it had
        // from this node's earlier life.
        let stream = rand::random();
        let mut batch = 0;
        let mut pending = Vec::with_capacity(BATCH);
        loop {
            let closed = tokio::select! {
                received = self.receiver.recv_many(&mut pending, BATCH) => received == 0,
                () = self.backlog.dropped_notice.notified() => false,
            };
            let dropped = self.backlog.dropped.swap(0, Ordering::Relaxed);
            if closed {
                break;
            }
            if pending.is_empty() && dropped == 0 {
                continue;
            }
            let bytes: u64 = pending.iter().map(Published::size).sum();
            let messages: Vec<WireMessage> = pending
                .drain(..)
                .map(|published| WireMessage {
                    sharded: published.kind == Kind::Shard,
                    channel: published.channel,
                    message: published.message,
                })
                .collect();
            let count = messages.len() as u64;
            let request = Request::Publish {
                stream,
                batch,
                dropped,
                messages,
            };
            let answered = self.send_until_answered(&request).await;
            self.backlog.bytes.fetch_sub(bytes, Ordering::Relaxed);
            if !answered {
                self.give_up(count);
                return;
            }
            self.queues
                .counters
                .relay_sent
                .fetch_add(count, Ordering::Relaxed);
            batch += 1;
        }
    }

    /// Sends `request` until the peer answers; false if its queue was closed meanwhile
    /// (the peer left the cluster).
    async fn send_until_answered(&self, request: &Request) -> bool {
        let mut pause = RETRY_PAUSE;
        loop {
            let view = self.node.view();
            let sent = self
                .node
                .peers
                .call_even_if_down(&view, &self.peer, request)
                .await;
            let Err(error) = sent else { return true };
            if self.receiver.is_closed() {
                return false;
            }
            let queues = &self.queues;
            queues
                .counters
                .relay_retried
                .fetch_add(1, Ordering::Relaxed);
            if let Some(held_back) = queues.log.admit() {
                tracing::warn!(peer = %self.peer, %error, not_logged_since_last_line = held_back,
                    "a pub/sub batch got no answer from a peer: sending it again");
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_PAUSE_MAX);
        }
    }

    /// Drops what is left for a peer that left: the batch it did not answer (`count`
    /// messages) and the queue.
    fn give_up(mut self, count: u64) {
        self.receiver.close();
        let mut left = count;
        while let Ok(published) = self.receiver.try_recv() {
            self.backlog
                .bytes
                .fetch_sub(published.size(), Ordering::Relaxed);
            left += 1;
        }
        self.queues.lost(&self.peer, left, "it left the cluster");
    }
}

/// Whether `view` shows this node a majority of the members its ring counts.
fn sees_a_majority(view: &ClusterView) -> bool {
    let counted = view.ring.len();
    let up = view.serving().count();
    up * 2 > counted
}

/// Connects `shared`'s pub/sub to the other nodes, at once (a message published from
/// now on is relayed), and returns the task that follows the view until `stop`.
pub fn run(
    shared: Arc<Shared>,
    node: Arc<ClusterNode>,
    stop: CancellationToken,
) -> impl Future<Output = ()> + Send {
    let queues = Arc::new(PeerQueues {
        queues: RwLock::default(),
        limit: shared.pubsub.limit(),
        counters: shared.pubsub.counters.clone(),
        log: LogLimiter::new(10_000),
        stop: stop.clone(),
    });
    let views = node.subscribe();
    let view = views.borrow().clone();
    queues.follow(&node, &view);
    shared.pubsub.set_relay(queues.clone());
    let has_majority = view.joined && sees_a_majority(&view);
    follow_views(shared, node, queues, views, has_majority, stop)
}

/// Follows the view until `stop`: opens and closes the peers' queues, and disconnects
/// the subscribers when this node loses sight of its cluster's majority (which it had,
/// if `had_majority`) and the relay confirms it.
async fn follow_views(
    shared: Arc<Shared>,
    node: Arc<ClusterNode>,
    queues: Arc<PeerQueues>,
    mut views: watch::Receiver<Arc<ClusterView>>,
    mut had_majority: bool,
    stop: CancellationToken,
) {
    // Checking that this node is cut off, from when the view showed it (views change at
    // every gossiped figure: a check restarted with each would never end).
    let mut confirming = None;
    loop {
        let view = views.borrow_and_update().clone();
        queues.follow(&node, &view);
        let has_majority = view.joined && sees_a_majority(&view);
        if had_majority && !has_majority {
            confirming = Some(Box::pin(confirm_cut_off(node.clone(), view.clone())));
        } else if has_majority {
            confirming = None;
        }
        had_majority = has_majority;
        let confirmed = tokio::select! {
            changed = views.changed() => if changed.is_err() { break } else { false },
            () = async { confirming.as_mut().expect("checked").await }, if confirming.is_some() => true,
            () = stop.cancelled() => break,
        };
        if confirmed {
            confirming = None;
            let closed = shared.pubsub.disconnect_all();
            if closed > 0 {
                tracing::warn!(
                    subscribers = closed,
                    "this node reaches less than a majority of its cluster: its subscribers \
                     are disconnected, since messages published on the other side cannot \
                     reach them"
                );
            }
        }
    }
}

/// Returns once the relay confirms what `view` shows, that this node reaches less than a
/// majority of the members it counts: too many of the members it counts down leave
/// [`UNANSWERED_TO_CONFIRM`] pings in a row unanswered. Finding otherwise (the failure
/// detector's false alarm), it checks again [`RETRY_PAUSE_MAX`] later.
async fn confirm_cut_off(node: Arc<ClusterNode>, view: Arc<ClusterView>) {
    let down: Vec<&NodeId> = view
        .ring
        .members()
        .iter()
        .map(|spec| spec.id())
        .filter(|id| **id != view.self_id && !view.is_serving(id))
        .collect();
    // Itself and the members serving.
    let reached_anyway = view.ring.len() - down.len();
    loop {
        let answers = join_all(down.iter().map(|peer| answers_a_ping(&node, &view, peer))).await;
        let reached = reached_anyway + answers.into_iter().filter(|answered| *answered).count();
        if reached * 2 <= view.ring.len() {
            return;
        }
        tokio::time::sleep(RETRY_PAUSE_MAX).await;
    }
}

/// Whether `peer` answers one of [`UNANSWERED_TO_CONFIRM`] pings in a row.
async fn answers_a_ping(node: &ClusterNode, view: &ClusterView, peer: &NodeId) -> bool {
    let mut pause = RETRY_PAUSE;
    for _ in 0..UNANSWERED_TO_CONFIRM {
        if node
            .peers
            .call_even_if_down(view, peer, &Request::Ping)
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
    false
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use quorra_resp::Protocol;

    use super::*;
    use crate::clients::ClientInfo;
    use crate::in_memory_cluster::{InMemoryCluster, view};
    use crate::pubsub::Subscriber;

    /// A cluster of `size` whose relays run until the returned token is cancelled, each
    /// node's settings changed by `adjust`.
    fn relaying(
        size: usize,
        adjust: impl Fn(&mut crate::config::Config),
    ) -> (InMemoryCluster, CancellationToken) {
        let cluster = InMemoryCluster::configured(size, 1, adjust);
        let stop = CancellationToken::new();
        for shared in &cluster.nodes {
            let node = shared.cluster.clone().expect("cluster node");
            tokio::spawn(run(shared.clone(), node, stop.clone()));
        }
        (cluster, stop)
    }

    /// A subscriber to `feed` on node `shared`, and its connection.
    fn subscriber(shared: &Shared) -> (Subscriber, Arc<ClientInfo>) {
        let addr = "127.0.0.1:1".parse().unwrap();
        let client = shared.clients.unlisted(addr, addr);
        let mut subscriber = Subscriber::new(shared.pubsub.clone(), client.clone());
        subscriber.subscribe(Kind::Channel, &Bytes::from("feed"));
        (subscriber, client)
    }

    /// The payloads of the messages waiting for `subscriber`, in order.
    fn received(subscriber: &mut Subscriber) -> Vec<String> {
        let mut out = BytesMut::new();
        subscriber.drain_into(&mut out, Protocol::Resp2, usize::MAX);
        let text = String::from_utf8(out.to_vec()).unwrap();
        // Each message is 7 lines: *3, $7, message, $4, feed, $n, the payload.
        text.split("\r\n")
            .skip(6)
            .step_by(7)
            .map(str::to_owned)
            .collect()
    }

    /// Waits until `done` holds (a relay works in tasks of its own); fails if it never
    /// does rather than hang.
    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}: not reached");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Publishes the numbers in `range` on `feed` at node `shared`.
    fn publish(shared: &Shared, range: std::ops::Range<usize>) {
        for seq in range {
            let message = seq.to_string().into();
            shared.pubsub.publish(Kind::Channel, "feed".into(), message);
        }
    }

    fn numbers(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|seq| seq.to_string()).collect()
    }

    fn load(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn a_batch_whose_answer_is_lost_is_sent_again_and_delivered_once_in_order() {
        let (cluster, stop) = relaying(2, |_| {});
        let (publisher, receiver) = (&cluster.nodes[0], &cluster.nodes[1]);
        let (mut listening, _) = subscriber(receiver);
        // Node 1 gets the batches but its answers are lost, as when the sender's call
        // times out: the sender cannot tell whether they arrived, and sends them again.
        cluster.lose_answers(1);
        publish(publisher, 0..100);
        until("a batch sent again", || {
            load(&publisher.pubsub.counters.relay_retried) >= 2
        })
        .await;
        publish(publisher, 100..200);
        cluster.heal();
        until("every message acknowledged", || {
            load(&publisher.pubsub.counters.relay_sent) == 200
        })
        .await;
        assert_eq!(received(&mut listening), numbers(0..200));
        let counters = &receiver.pubsub.counters;
        assert!(
            load(&counters.relay_duplicates) >= 100,
            "the batch came again"
        );
        assert_eq!(load(&counters.relay_received), 200);
        assert_eq!(load(&publisher.pubsub.counters.relay_dropped), 0);
        stop.cancel();
    }

    #[tokio::test]
    async fn a_peer_out_of_reach_gets_its_messages_when_it_comes_back() {
        let (cluster, stop) = relaying(2, |_| {});
        let (publisher, receiver) = (&cluster.nodes[0], &cluster.nodes[1]);
        let (mut listening, _) = subscriber(receiver);
        cluster.cut(1);
        publish(publisher, 0..50);
        until("a batch sent again", || {
            load(&publisher.pubsub.counters.relay_retried) >= 2
        })
        .await;
        cluster.heal();
        until("every message acknowledged", || {
            load(&publisher.pubsub.counters.relay_sent) == 50
        })
        .await;
        assert_eq!(received(&mut listening), numbers(0..50));
        stop.cancel();
    }

    #[tokio::test]
    async fn messages_dropped_for_a_full_queue_disconnect_the_subscribers_that_missed_them() {
        // A queue of 1,000 bytes holds 18 of these messages and drops the others.
        let (cluster, stop) =
            relaying(2, |config| config.client_output_buffer_limit_pubsub = 1_000);
        let (publisher, receiver) = (&cluster.nodes[0], &cluster.nodes[1]);
        let (_listening, connection) = subscriber(receiver);
        cluster.cut(1);
        publish(publisher, 0..100);
        let dropped = load(&publisher.pubsub.counters.relay_dropped);
        assert!(dropped > 0, "the queue is full");
        cluster.heal();
        // Nothing is published after the drop: the sender tells it all the same.
        until("the subscriber disconnected", || {
            connection.kill.is_cancelled()
        })
        .await;
        assert_eq!(load(&receiver.pubsub.counters.disconnected_subscribers), 1);
        until("the rest acknowledged", || {
            load(&publisher.pubsub.counters.relay_sent) == 100 - dropped
        })
        .await;
        stop.cancel();
    }

    #[test]
    fn a_node_sees_a_majority_while_more_than_half_its_ring_is_up() {
        use MemberState::{Down, Up};
        assert!(sees_a_majority(&view(0, &[Up, Up, Up])));
        assert!(sees_a_majority(&view(0, &[Up, Down, Up])));
        assert!(!sees_a_majority(&view(0, &[Up, Down, Down])));
        assert!(!sees_a_majority(&view(0, &[Up, Down])));
    }

    #[tokio::test]
    async fn a_false_alarm_of_the_failure_detector_keeps_the_subscribers() {
        let (mut cluster, stop) = relaying(3, |_| {});
        let (_listening, connection) = subscriber(&cluster.nodes[0]);
        // Nodes 1 and 2 are taken for down, as by a node too busy to gossip in time, but
        // they answer: node 0 sees no majority, and its relay finds one.
        cluster.set_state(1, MemberState::Down);
        cluster.set_state(2, MemberState::Down);
        let publisher = &cluster.nodes[0];
        publish(publisher, 0..1);
        until("both peers acknowledged", || {
            load(&publisher.pubsub.counters.relay_sent) == 2
        })
        .await;
        assert!(!connection.kill.is_cancelled());
        assert_eq!(load(&publisher.pubsub.counters.disconnected_subscribers), 0);
        stop.cancel();
    }

    #[tokio::test]
    async fn a_node_cut_off_from_its_majority_disconnects_its_subscribers() {
        let (mut cluster, stop) = relaying(3, |_| {});
        let (_listening, connection) = subscriber(&cluster.nodes[0]);
        cluster.cut(0);
        cluster.set_state(1, MemberState::Down);
        cluster.set_state(2, MemberState::Down);
        // Nothing is published: the relay probes the members taken for down.
        until("node 0's subscriber disconnected", || {
            connection.kill.is_cancelled()
        })
        .await;
        let counters = &cluster.nodes[0].pubsub.counters;
        assert_eq!(load(&counters.disconnected_subscribers), 1);
        stop.cancel();
    }
}
