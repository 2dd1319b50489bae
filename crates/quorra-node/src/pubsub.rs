//! Pub/sub: who listens to which channel on this node, and delivering a message to them.
//!
//! Channels are not keys: any node takes any SUBSCRIBE, and a message published on one
//! node reaches the subscribers on every node. [`PubSub::publish`] delivers to this node's
//! subscribers and hands the message to the relay ([`crate::pubsub_relay`]), which sends
//! it to every other serving node; there [`PubSub::deliver`] delivers it again, locally
//! only. The relay keeps one ordered queue per peer, so messages from one publishing
//! connection arrive everywhere in the order they were published. Sharded channels
//! (SSUBSCRIBE, SPUBLISH) are a namespace of their own, relayed the same way: in quorra a
//! channel has no owner node for them to be pinned to.
//!
//! Each subscribing connection has a [`Mailbox`]: deliveries wait in it until the
//! connection writes them out. The bytes waiting are counted, and a subscriber whose
//! mailbox passes `client-output-buffer-limit-pubsub` is disconnected and gets nothing
//! more, as Redis's `client-output-buffer-limit pubsub` does: a subscriber that stops
//! reading costs at most that much memory.
//!
//! A peer's messages arrive in numbered batches, which a sender that got no answer sends
//! again: [`InboundStream`] has each delivered once, in order. A message the relay had
//! to drop (its queue to this node was full) is not sent again: the sender says so with
//! its next batch, and this node disconnects its subscribers, which missed it. Loss is
//! always told that way, never silent.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;
use quorra_resp::{Protocol, encode};
use quorra_store::glob::glob_match;
use tokio::sync::mpsc;

use crate::clients::ClientInfo;

/// Which family a subscription or a message belongs to; `kind as usize` indexes the
/// per-family tables (in CLIENT LIST's order: sub, psub, ssub).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SUBSCRIBE / PUBLISH.
    Channel,
    /// PSUBSCRIBE: a glob over channel names.
    Pattern,
    /// SSUBSCRIBE / SPUBLISH.
    Shard,
}

/// Bytes a delivery is counted for beyond its channel, pattern and message: the reply's
/// framing, roughly.
const DELIVERY_OVERHEAD: u64 = 48;

/// One message on its way to one connection: a published message, or an invalidation
/// of keys it tracks ([`crate::tracking`]).
#[derive(Debug, Clone)]
pub enum Delivery {
    /// A message published on a channel.
    Message {
        /// `message`, `pmessage` or `smessage`.
        kind: Kind,
        /// The pattern that matched (a `pmessage`).
        pattern: Option<Bytes>,
        /// The channel it was published on.
        channel: Bytes,
        /// What was published.
        message: Bytes,
    },
    /// Keys whose cached values are no longer valid; `None`: every key (a flush).
    Invalidation(Option<Arc<[Bytes]>>),
}

/// The channel a RESP2 connection hears invalidations on, as in Redis.
pub const INVALIDATION_CHANNEL: &[u8] = b"__redis__:invalidate";

impl Delivery {
    fn size(&self) -> u64 {
        let payload = match self {
            Delivery::Message {
                pattern,
                channel,
                message,
                ..
            } => pattern.as_ref().map_or(0, Bytes::len) + channel.len() + message.len(),
            Delivery::Invalidation(keys) => keys
                .iter()
                .flat_map(|keys| keys.iter())
                .map(Bytes::len)
                .sum(),
        };
        payload as u64 + DELIVERY_OVERHEAD
    }

    /// Writes the delivery as Redis does: a push in RESP3, an array in RESP2 (an
    /// invalidation as a message on [`INVALIDATION_CHANNEL`] whose payload is the array
    /// of keys, or null for all of them).
    pub fn encode(&self, out: &mut BytesMut, protocol: Protocol) {
        match self {
            Delivery::Message {
                kind,
                pattern,
                channel,
                message,
            } => {
                let name: &[u8] = match kind {
                    Kind::Channel => b"message",
                    Kind::Pattern => b"pmessage",
                    Kind::Shard => b"smessage",
                };
                encode::push_header(out, 3 + usize::from(pattern.is_some()), protocol);
                encode::bulk(out, name);
                if let Some(pattern) = pattern {
                    encode::bulk(out, pattern);
                }
                encode::bulk(out, channel);
                encode::bulk(out, message);
            }
            Delivery::Invalidation(keys) => {
                match protocol {
                    Protocol::Resp3 => {
                        encode::push_header(out, 2, protocol);
                        encode::bulk(out, b"invalidate");
                    }
                    Protocol::Resp2 => {
                        encode::push_header(out, 3, protocol);
                        encode::bulk(out, b"message");
                        encode::bulk(out, INVALIDATION_CHANNEL);
                    }
                }
                match keys {
                    Some(keys) => {
                        encode::array_header(out, keys.len());
                        for key in keys.iter() {
                            encode::bulk(out, key);
                        }
                    }
                    None => encode::null(out, protocol),
                }
            }
        }
    }
}

/// Where deliveries wait for one subscribing connection.
pub struct Mailbox {
    client: Arc<ClientInfo>,
    sender: mpsc::UnboundedSender<Delivery>,
    waiting_bytes: AtomicU64,
}

impl Mailbox {
    /// Queues `delivery` unless that takes the mailbox past `limit` bytes (0: no limit),
    /// in which case the client is disconnected. Whether it was queued.
    fn offer(&self, delivery: Delivery, limit: u64, hub: &PubSub) -> bool {
        if self.client.kill.is_cancelled() {
            return false;
        }
        let size = delivery.size();
        let waiting = self.waiting_bytes.fetch_add(size, Ordering::Relaxed) + size;
        if limit > 0 && waiting > limit {
            self.waiting_bytes.fetch_sub(size, Ordering::Relaxed);
            hub.counters
                .disconnected_subscribers
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(client = self.client.id, addr = %self.client.addr, waiting,
                limit, "closing a subscriber over client-output-buffer-limit-pubsub");
            self.client.kill.cancel();
            return false;
        }
        self.sender.send(delivery).is_ok()
    }
}

/// Figures INFO shows, one per hop of a message: published here, relayed to each peer
/// (sent and acknowledged, or dropped), received from a peer, delivered to a subscriber.
#[derive(Debug, Default)]
pub struct PubSubCounters {
    /// Messages published on this node (PUBLISH, SPUBLISH).
    pub published: AtomicU64,
    /// Deliveries to this node's subscribers, of messages published here or on a peer.
    pub delivered: AtomicU64,
    /// Subscribers this node closed: over the output buffer limit, or because they may
    /// have missed messages (a peer dropped messages for this node, or this node lost
    /// sight of its cluster's majority).
    pub disconnected_subscribers: AtomicU64,
    /// Messages published here that a peer acknowledged ([`crate::pubsub_relay`]), counted
    /// once per peer.
    pub relay_sent: AtomicU64,
    /// Batches sent to a peer again, because the last try got no answer (it failed, or
    /// timed out).
    pub relay_retried: AtomicU64,
    /// Messages published here and dropped for a peer, which never gets them: its queue
    /// was full, or it left the cluster.
    pub relay_dropped: AtomicU64,
    /// Messages relayed here by a peer, delivered to this node's subscribers.
    pub relay_received: AtomicU64,
    /// Messages relayed here again (their batch was sent again after it had arrived),
    /// not delivered a second time.
    pub relay_duplicates: AtomicU64,
}

/// Each name's subscribers by client id, one map per [`Kind`] (indexed by `kind as usize`).
#[derive(Default)]
struct Subscriptions([HashMap<Bytes, HashMap<u64, Arc<Mailbox>>>; 3]);

impl Subscriptions {
    fn family(&self, kind: Kind) -> &HashMap<Bytes, HashMap<u64, Arc<Mailbox>>> {
        &self.0[kind as usize]
    }

    fn of(&mut self, kind: Kind) -> &mut HashMap<Bytes, HashMap<u64, Arc<Mailbox>>> {
        &mut self.0[kind as usize]
    }
}

/// A message published on this node, on its way to the other nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// [`Kind::Channel`] or [`Kind::Shard`].
    pub kind: Kind,
    /// The channel.
    pub channel: Bytes,
    /// The message.
    pub message: Bytes,
}

impl Published {
    /// The bytes it holds while queued for a peer.
    pub fn size(&self) -> u64 {
        (self.channel.len() + self.message.len()) as u64 + DELIVERY_OVERHEAD
    }
}

/// Where the batches one peer relays to this node stand: each is delivered once, in its
/// sender's order, however many times it arrives.
#[derive(Debug, Default)]
pub struct InboundStream {
    /// The sender's stream (see
    /// [`Request::Publish`](quorra_cluster::message::Request::Publish)); none before its
    /// first batch.
    stream: Option<u64>,
    /// The number of the batch expected next in it.
    next: u64,
}

/// What to do with a batch a peer relayed ([`InboundStream::admit`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Deliver it. `missed`: batches of its stream before it never came, so this node's
    /// subscribers missed their messages.
    Deliver {
        /// Batches were skipped.
        missed: bool,
    },
    /// Delivered already: its sender sent it again, not knowing.
    Duplicate,
}

impl InboundStream {
    /// Takes batch number `batch` of `stream`. The first batch of a stream not seen
    /// before starts it wherever it starts: a sender that restarted, or that this node
    /// had not heard from since it started, has nothing older for its subscribers.
    pub fn admit(&mut self, stream: u64, batch: u64) -> Admission {
        let known = self.stream == Some(stream);
        if known && batch < self.next {
            return Admission::Duplicate;
        }
        let missed = known && batch > self.next;
        self.stream = Some(stream);
        self.next = batch + 1;
        Admission::Deliver { missed }
    }
}

/// Receives what [`PubSub::publish`] hands to the other nodes.
pub trait Relay: Send + Sync {
    /// Queues `message` for every other serving node.
    fn relay(&self, message: &Published);
}

/// This node's subscriptions.
pub struct PubSub {
    subscriptions: RwLock<Subscriptions>,
    /// Per node that relays messages here, where its batches stand, behind a lock: they
    /// are delivered one at a time, each once, even when a batch outlives its sender's
    /// timeout and arrives again, sent again, while it is still being delivered.
    inbound: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<InboundStream>>>>,
    /// Most bytes waiting in one subscriber's mailbox (0: no limit).
    limit: u64,
    relay: std::sync::OnceLock<Arc<dyn Relay>>,
    /// Every connection's mailbox that has one, by client id: where client tracking
    /// sends invalidations ([`crate::tracking`]), to the tracking client or the one it
    /// redirects them to.
    mailboxes: RwLock<HashMap<u64, Weak<Mailbox>>>,
    /// What INFO reports.
    pub counters: Arc<PubSubCounters>,
}

impl PubSub {
    /// No subscriptions yet; a subscriber may hold `limit` bytes of undelivered messages
    /// (0: no limit).
    pub fn new(limit: u64) -> PubSub {
        PubSub {
            subscriptions: RwLock::default(),
            inbound: parking_lot::Mutex::default(),
            limit,
            relay: std::sync::OnceLock::new(),
            mailboxes: RwLock::default(),
            counters: Arc::default(),
        }
    }

    /// Queues an invalidation of `keys` (`None`: all keys) for client `client`, if it is
    /// connected and has a mailbox; whether it was queued.
    pub fn invalidate(&self, client: u64, keys: Option<Arc<[Bytes]>>) -> bool {
        let mailbox = self.mailboxes.read().get(&client).and_then(Weak::upgrade);
        mailbox.is_some_and(|mailbox| mailbox.offer(Delivery::Invalidation(keys), self.limit, self))
    }

    /// The most bytes a subscriber's undelivered messages may hold.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Connects the relay to the other nodes (cluster mode; once).
    pub fn set_relay(&self, relay: Arc<dyn Relay>) {
        let _ = self.relay.set(relay);
    }

    /// Publishes `message` on `channel` (a [`Kind::Channel`] or [`Kind::Shard`]): delivers
    /// it to this node's subscribers and relays it to the other nodes. The number of this
    /// node's subscribers that got it, which PUBLISH answers (Redis Cluster also counts
    /// only the node's own).
    pub fn publish(&self, kind: Kind, channel: Bytes, message: Bytes) -> usize {
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        let published = Published {
            kind,
            channel,
            message,
        };
        if let Some(relay) = self.relay.get() {
            relay.relay(&published);
        }
        self.deliver(published)
    }

    /// Where the batches relayed by node `from` stand; held while one is delivered.
    pub fn inbound(&self, from: &str) -> Arc<tokio::sync::Mutex<InboundStream>> {
        self.inbound
            .lock()
            .entry(from.to_owned())
            .or_default()
            .clone()
    }

    /// Delivers a message to this node's subscribers only (one published on a peer, or
    /// here by [`publish`](Self::publish)); how many got it.
    pub fn deliver(&self, published: Published) -> usize {
        let Published {
            kind,
            channel,
            message,
        } = published;
        let subscriptions = self.subscriptions.read();
        let mut delivered = 0;
        for mailbox in subscriptions
            .family(kind)
            .get(&channel)
            .into_iter()
            .flat_map(HashMap::values)
        {
            let delivery = Delivery::Message {
                kind,
                pattern: None,
                channel: channel.clone(),
                message: message.clone(),
            };
            delivered += usize::from(mailbox.offer(delivery, self.limit, self));
        }
        if kind == Kind::Channel {
            for (pattern, mailboxes) in subscriptions.family(Kind::Pattern) {
                if !glob_match(pattern, &channel) {
                    continue;
                }
                for mailbox in mailboxes.values() {
                    let delivery = Delivery::Message {
                        kind: Kind::Pattern,
                        pattern: Some(pattern.clone()),
                        channel: channel.clone(),
                        message: message.clone(),
                    };
                    delivered += usize::from(mailbox.offer(delivery, self.limit, self));
                }
            }
        }
        self.counters
            .delivered
            .fetch_add(delivered as u64, Ordering::Relaxed);
        delivered
    }

    /// Active channels of `kind` ([`Kind::Channel`] or [`Kind::Shard`]) matching
    /// `pattern` (all without one): PUBSUB CHANNELS and SHARDCHANNELS.
    pub fn channels(&self, kind: Kind, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.subscriptions
            .read()
            .family(kind)
            .keys()
            .filter(|channel| pattern.is_none_or(|pattern| glob_match(pattern, channel)))
            .cloned()
            .collect()
    }

    /// Subscribers of `channel` in family `kind`: PUBSUB NUMSUB and SHARDNUMSUB.
    pub fn subscribers(&self, kind: Kind, channel: &[u8]) -> usize {
        let subscriptions = self.subscriptions.read();
        subscriptions
            .family(kind)
            .get(channel)
            .map_or(0, HashMap::len)
    }

    /// Channels (or patterns) of `kind` with at least one subscriber: PUBSUB NUMPAT,
    /// INFO's `pubsub_channels`.
    pub fn channel_count(&self, kind: Kind) -> usize {
        self.subscriptions.read().family(kind).len()
    }

    /// Every client subscribed to anything is disconnected (they reconnect, and learn
    /// that they may have missed messages). Returns how many.
    pub fn disconnect_all(&self) -> usize {
        let subscriptions = self.subscriptions.read();
        let mut clients = HashSet::new();
        for family in &subscriptions.0 {
            for mailbox in family.values().flat_map(HashMap::values) {
                if clients.insert(mailbox.client.id) {
                    mailbox.client.kill.cancel();
                }
            }
        }
        self.counters
            .disconnected_subscribers
            .fetch_add(clients.len() as u64, Ordering::Relaxed);
        clients.len()
    }

    fn add(&self, kind: Kind, name: &Bytes, mailbox: &Arc<Mailbox>) {
        self.subscriptions
            .write()
            .of(kind)
            .entry(name.clone())
            .or_default()
            .insert(mailbox.client.id, mailbox.clone());
    }

    fn remove(&self, kind: Kind, name: &[u8], client: u64) {
        let mut subscriptions = self.subscriptions.write();
        let family = subscriptions.of(kind);
        if let Some(mailboxes) = family.get_mut(name) {
            mailboxes.remove(&client);
            if mailboxes.is_empty() {
                family.remove(name);
            }
        }
    }
}

/// One connection's subscriptions and its mailbox; leaving them all when dropped.
pub struct Subscriber {
    hub: Arc<PubSub>,
    mailbox: Arc<Mailbox>,
    receiver: mpsc::UnboundedReceiver<Delivery>,
    /// What it is subscribed to, one set per [`Kind`] (indexed by `kind as usize`).
    names: [HashSet<Bytes>; 3],
}

impl Subscriber {
    /// A connection that subscribes for the first time.
    pub fn new(hub: Arc<PubSub>, client: Arc<ClientInfo>) -> Subscriber {
        let (sender, receiver) = mpsc::unbounded_channel();
        let mailbox = Arc::new(Mailbox {
            client,
            sender,
            waiting_bytes: AtomicU64::new(0),
        });
        hub.mailboxes
            .write()
            .insert(mailbox.client.id, Arc::downgrade(&mailbox));
        Subscriber {
            hub,
            mailbox,
            receiver,
            names: Default::default(),
        }
    }

    /// Subscribes to `name`; the count SUBSCRIBE answers with after it.
    pub fn subscribe(&mut self, kind: Kind, name: &Bytes) -> usize {
        if self.names[kind as usize].insert(name.clone()) {
            self.hub.add(kind, name, &self.mailbox);
            self.show_count(kind);
        }
        self.count(kind)
    }

    /// Unsubscribes from `name`; the count UNSUBSCRIBE answers with after it.
    pub fn unsubscribe(&mut self, kind: Kind, name: &[u8]) -> usize {
        if self.names[kind as usize].remove(name) {
            self.hub.remove(kind, name, self.mailbox.client.id);
            self.show_count(kind);
        }
        self.count(kind)
    }

    /// Publishes the count of `kind` for CLIENT LIST.
    fn show_count(&self, kind: Kind) {
        let count = self.names[kind as usize].len();
        self.mailbox.client.subscriptions[kind as usize].store(count, Ordering::Relaxed);
    }

    /// What `kind` is subscribed to now (for UNSUBSCRIBE without arguments).
    pub fn subscribed(&self, kind: Kind) -> Vec<Bytes> {
        self.names[kind as usize].iter().cloned().collect()
    }

    /// The count a (un)subscribe reply of `kind` carries: channels and patterns together,
    /// shard channels apart, as in Redis.
    pub fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Shard => self.names[Kind::Shard as usize].len(),
            _ => {
                self.names[Kind::Channel as usize].len() + self.names[Kind::Pattern as usize].len()
            }
        }
    }

    /// Whether it is subscribed to anything (RESP2's subscribed mode).
    pub fn active(&self) -> bool {
        self.names.iter().any(|names| !names.is_empty())
    }

    /// Waits for the next delivery and writes it, then whatever else is waiting, into
    /// `out` until it holds `budget` bytes.
    pub async fn receive_into(&mut self, out: &mut BytesMut, protocol: Protocol, budget: usize) {
        let Some(delivery) = self.receiver.recv().await else {
            // The mailbox's sender lives as long as this subscriber: never reached.
            return std::future::pending().await;
        };
        self.write(&delivery, out, protocol);
        self.drain_into(out, protocol, budget);
    }

    /// Writes what is waiting into `out`, until it holds `budget` bytes.
    pub fn drain_into(&mut self, out: &mut BytesMut, protocol: Protocol, budget: usize) {
        while out.len() < budget {
            match self.receiver.try_recv() {
                Ok(delivery) => self.write(&delivery, out, protocol),
                Err(_) => break,
            }
        }
    }

    fn write(&self, delivery: &Delivery, out: &mut BytesMut, protocol: Protocol) {
        self.mailbox
            .waiting_bytes
            .fetch_sub(delivery.size(), Ordering::Relaxed);
        // As in Redis, a RESP2 connection hears invalidations only in subscribed mode.
        if matches!(delivery, Delivery::Invalidation(_))
            && protocol == Protocol::Resp2
            && !self.active()
        {
            return;
        }
        delivery.encode(out, protocol);
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let client = self.mailbox.client.id;
        self.hub.mailboxes.write().remove(&client);
        for kind in [Kind::Channel, Kind::Pattern, Kind::Shard] {
            for name in std::mem::take(&mut self.names[kind as usize]) {
                self.hub.remove(kind, &name, client);
            }
            self.show_count(kind);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::ClientRegistry;

    fn client(registry: &ClientRegistry) -> Arc<ClientInfo> {
        let addr = "127.0.0.1:1".parse().unwrap();
        registry.unlisted(addr, addr)
    }

    fn received(subscriber: &mut Subscriber) -> Vec<u8> {
        let mut out = BytesMut::new();
        while let Ok(delivery) = subscriber.receiver.try_recv() {
            subscriber.write(&delivery, &mut out, Protocol::Resp2);
        }
        out.to_vec()
    }

    #[test]
    fn a_message_reaches_channel_and_pattern_subscribers_once_each() {
        let hub = Arc::new(PubSub::new(0));
        let registry = ClientRegistry::default();
        let mut exact = Subscriber::new(hub.clone(), client(&registry));
        let mut by_pattern = Subscriber::new(hub.clone(), client(&registry));
        let mut sharded = Subscriber::new(hub.clone(), client(&registry));
        assert_eq!(exact.subscribe(Kind::Channel, &Bytes::from("news")), 1);
        assert_eq!(exact.subscribe(Kind::Channel, &Bytes::from("news")), 1);
        assert_eq!(by_pattern.subscribe(Kind::Pattern, &Bytes::from("n*")), 1);
        assert_eq!(sharded.subscribe(Kind::Shard, &Bytes::from("news")), 1);
        let got = hub.publish(Kind::Channel, "news".into(), "hi".into());
        assert_eq!(got, 2);
        assert_eq!(
            received(&mut exact),
            b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        );
        assert_eq!(
            received(&mut by_pattern),
            b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        );
        assert!(received(&mut sharded).is_empty(), "a namespace of its own");
        assert_eq!(hub.publish(Kind::Shard, "news".into(), "s".into()), 1);
        assert_eq!(
            received(&mut sharded),
            b"*3\r\n$8\r\nsmessage\r\n$4\r\nnews\r\n$1\r\ns\r\n"
        );
        assert_eq!(hub.subscribers(Kind::Channel, b"news"), 1);
        assert_eq!(hub.channel_count(Kind::Pattern), 1);
        drop(exact);
        assert_eq!(
            hub.subscribers(Kind::Channel, b"news"),
            0,
            "gone when dropped"
        );
        assert!(hub.channels(Kind::Channel, None).is_empty());
        assert_eq!(hub.publish(Kind::Channel, "news".into(), "x".into()), 1);
    }

    #[test]
    fn a_subscriber_past_the_limit_is_disconnected_and_gets_nothing_more() {
        let hub = Arc::new(PubSub::new(1_000));
        let registry = ClientRegistry::default();
        let info = client(&registry);
        let mut slow = Subscriber::new(hub.clone(), info.clone());
        slow.subscribe(Kind::Channel, &Bytes::from("c"));
        let message = Bytes::from(vec![b'x'; 200]);
        let mut reached = 0;
        for _ in 0..10 {
            reached += hub.publish(Kind::Channel, "c".into(), message.clone());
        }
        assert_eq!(reached, 4, "4 deliveries of 249 bytes fit in 1,000");
        assert!(info.kill.is_cancelled());
        assert_eq!(
            hub.counters
                .disconnected_subscribers
                .load(Ordering::Relaxed),
            1
        );
        assert!(slow.mailbox.waiting_bytes.load(Ordering::Relaxed) <= 1_000);
        received(&mut slow);
        assert_eq!(slow.mailbox.waiting_bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_relayed_batch_is_delivered_once_and_a_skipped_one_is_told() {
        let mut inbound = InboundStream::default();
        let deliver = Admission::Deliver { missed: false };
        assert_eq!(inbound.admit(9, 4), deliver, "a new stream starts anywhere");
        assert_eq!(inbound.admit(9, 5), deliver);
        assert_eq!(inbound.admit(9, 5), Admission::Duplicate, "sent again");
        assert_eq!(inbound.admit(9, 3), Admission::Duplicate);
        assert_eq!(inbound.admit(9, 7), Admission::Deliver { missed: true });
        assert_eq!(inbound.admit(9, 8), deliver);
        assert_eq!(inbound.admit(2, 0), deliver, "the sender restarted");
        assert_eq!(inbound.admit(2, 0), Admission::Duplicate);
    }

    #[test]
    fn unsubscribing_counts_down_and_a_resp3_client_gets_pushes() {
        let hub = Arc::new(PubSub::new(0));
        let registry = ClientRegistry::default();
        let mut subscriber = Subscriber::new(hub.clone(), client(&registry));
        subscriber.subscribe(Kind::Channel, &Bytes::from("a"));
        assert_eq!(subscriber.subscribe(Kind::Pattern, &Bytes::from("b*")), 2);
        assert_eq!(subscriber.subscribe(Kind::Shard, &Bytes::from("s")), 1);
        assert_eq!(subscriber.unsubscribe(Kind::Channel, b"a"), 1);
        assert_eq!(subscriber.unsubscribe(Kind::Channel, b"never"), 1);
        assert!(subscriber.active());
        hub.publish(Kind::Channel, "bee".into(), "m".into());
        let delivery = subscriber.receiver.try_recv().unwrap();
        let mut out = BytesMut::new();
        delivery.encode(&mut out, Protocol::Resp3);
        assert!(out.starts_with(b">4\r\n$8\r\npmessage\r\n"));
    }
}
