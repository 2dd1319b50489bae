//! Authenticated gossip: a chitchat transport over UDP whose every packet carries an
//! HMAC under a key derived from the cluster secret, with replay protection.
//!
//! chitchat's own UDP transport sends its messages in clear and believes whatever
//! arrives: anyone who can send a datagram to the gossip port can mark members
//! `leaving`, add members that do not exist, or advance their state. This transport
//! wraps every message as
//!
//! ```text
//! body = sent_at_ms: u64 | nonce: u64 | origin: u64 | chitchat message | tag: 16 bytes
//! tag  = HMAC-SHA256(gossip key, "quorra gossip v1" | header | message), truncated
//! ```
//!
//! and the receiver drops, and counts, a packet that
//!
//! - is not well formed (`malformed`);
//! - does not carry a valid tag (`forged`): sent without the secret, or altered;
//! - was sent more than [`REPLAY_WINDOW`] away from the receiver's clock (`stale`);
//! - repeats the nonce of a packet accepted within the window, or comes from this very
//!   socket (`origin`, random per socket: its own packets reflected back) (`replayed`).
//!
//! A captured packet can still be delivered once to each *other* node within the window:
//! it is an authentic message of its sender, which that node could have received anyway,
//! and gossip is idempotent.
//!
//! The gossip key is an HMAC of a fixed label under the cluster secret, so the secret
//! itself never travels and is used for nothing else. Nodes' clocks must agree within
//! the window (they must agree far better than that for last-writer-wins anyway).
//!
//! chitchat fills a message up to the largest UDP payload (65,507 bytes). The tag, the
//! timestamp and the nonce make such a message too long for one datagram, so a body
//! longer than [`MAX_CHUNK`] travels in fragments, `version | index | count | message
//! id | chunk`, reassembled before the tag is checked. Half-received messages are kept
//! for at most [`REASSEMBLY_TIMEOUT`] and at most [`MAX_PENDING`] at a time, so forged
//! fragments cost bounded memory.
//!
//! Cost, measured by `cargo bench -p quorra-cluster --bench gossip_auth`: see
//! `docs/benchmarks.md`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::rpc::ClusterSecret;

/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;

/// Bytes before each fragment's chunk: version, index, count, message id.
const FRAGMENT_HEADER: usize = 1 + 1 + 1 + 8;

/// Most body bytes one datagram carries.
pub const MAX_CHUNK: usize = MAX_DATAGRAM - FRAGMENT_HEADER;

/// Most fragments of one message (a chitchat message is at most one datagram long, so
/// two would do; this leaves room).
const MAX_FRAGMENTS: usize = 4;

/// The first byte of every datagram.
const VERSION: u8 = 1;

/// Bytes of the tag kept from the HMAC-SHA256 output.
const TAG_BYTES: usize = 16;

/// Bytes of the authenticated header: sent-at, nonce, origin.
const HEADER_BYTES: usize = 24;

/// Bytes of the body besides the chitchat message: header and tag.
pub const BODY_OVERHEAD: usize = HEADER_BYTES + TAG_BYTES;

/// How far a packet's sending time may be from the receiver's clock, either way.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(60);

/// How long fragments of an incomplete message are kept.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Most incomplete messages kept at once.
pub const MAX_PENDING: usize = 16;

/// Most nonces remembered for replay detection; beyond it the oldest are forgotten
/// (a node gossips a few dozen packets a second, far below this over the window).
const MAX_REMEMBERED_NONCES: usize = 200_000;

/// Domain separation for the tag.
const TAG_LABEL: &[u8] = b"quorra gossip v1";

/// Why a packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not a well-formed packet of this protocol.
    Malformed,
    /// Its tag is wrong: it was not sent by a holder of the secret, or was altered.
    Forged,
    /// Sent outside the replay window.
    Stale,
    /// A copy of a packet already accepted.
    Replayed,
}

impl Rejection {
    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::Forged => "forged",
            Rejection::Stale => "stale",
            Rejection::Replayed => "replayed",
        }
    }
}

/// Packets dropped, by reason, since the node started.
#[derive(Debug, Default)]
pub struct GossipAuthStats {
    /// [`Rejection::Malformed`].
    pub malformed: AtomicU64,
    /// [`Rejection::Forged`].
    pub forged: AtomicU64,
    /// [`Rejection::Stale`].
    pub stale: AtomicU64,
    /// [`Rejection::Replayed`].
    pub replayed: AtomicU64,
    /// Packets accepted.
    pub accepted: AtomicU64,
}

impl GossipAuthStats {
    fn count(&self, rejection: Rejection) -> u64 {
        let counter = match rejection {
            Rejection::Malformed => &self.malformed,
            Rejection::Forged => &self.forged,
            Rejection::Stale => &self.stale,
            Rejection::Replayed => &self.replayed,
        };
        counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Every dropped packet, whatever the reason.
    pub fn dropped(&self) -> u64 {
        [&self.malformed, &self.forged, &self.stale, &self.replayed]
            .iter()
            .map(|counter| counter.load(Ordering::Relaxed))
            .sum()
    }
}

/// The key gossip packets are authenticated with.
#[derive(Clone)]
pub struct GossipKey([u8; 32]);

impl GossipKey {
    /// Derives the gossip key from the cluster secret.
    pub fn derive(secret: &ClusterSecret) -> GossipKey {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(b"quorra gossip key v1");
        GossipKey(mac.finalize().into_bytes().into())
    }

    fn tag(&self, header: &[u8], message: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("32-byte key");
        mac.update(TAG_LABEL);
        mac.update(header);
        mac.update(message);
        mac
    }

    /// The body of a packet carrying `message` under `header`.
    pub fn seal(&self, header: Header, message: &[u8]) -> Vec<u8> {
        let mut body = Vec::with_capacity(message.len() + BODY_OVERHEAD);
        body.extend_from_slice(&header.sent_at_ms.to_le_bytes());
        body.extend_from_slice(&header.nonce.to_le_bytes());
        body.extend_from_slice(&header.origin.to_le_bytes());
        body.extend_from_slice(message);
        let tag = self
            .tag(&body[..HEADER_BYTES], message)
            .finalize()
            .into_bytes();
        body.extend_from_slice(&tag[..TAG_BYTES]);
        body
    }

    /// Checks a body's tag; returns its header and message.
    pub fn open<'b>(&self, body: &'b [u8]) -> Result<(Header, &'b [u8]), Rejection> {
        if body.len() < BODY_OVERHEAD {
            return Err(Rejection::Malformed);
        }
        let (header, rest) = body.split_at(HEADER_BYTES);
        let (message, tag) = rest.split_at(rest.len() - TAG_BYTES);
        // Constant-time comparison of the truncated tag.
        self.tag(header, message)
            .verify_truncated_left(tag)
            .map_err(|_| Rejection::Forged)?;
        let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
        let header = Header {
            sent_at_ms: word(0),
            nonce: word(8),
            origin: word(16),
        };
        Ok((header, message))
    }
}

/// What a packet says about itself, under the tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The sender's clock when it sent the packet, ms since the Unix epoch.
    pub sent_at_ms: u64,
    /// Random, fresh for every packet.
    pub nonce: u64,
    /// Random, fixed for the sending socket.
    pub origin: u64,
}

/// Remembers the nonces of accepted packets for the replay window.
pub struct ReplayGuard {
    /// This socket's origin: a packet that carries it was sent here, not to here.
    origin: u64,
    seen: HashSet<u64>,
    /// Nonces in the order they were accepted, with the time they may be forgotten.
    order: VecDeque<(u64, u64)>,
}

impl ReplayGuard {
    /// A guard for the socket whose packets carry `origin`.
    pub fn new(origin: u64) -> ReplayGuard {
        ReplayGuard {
            origin,
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Accepts a packet with `header`, received at `now_ms`, unless it is outside the
    /// window, its nonce was seen within it, or this socket sent it.
    pub fn admit(&mut self, now_ms: u64, header: Header) -> Result<(), Rejection> {
        let Header {
            sent_at_ms,
            nonce,
            origin,
        } = header;
        let window = REPLAY_WINDOW.as_millis() as u64;
        if sent_at_ms.abs_diff(now_ms) > window {
            return Err(Rejection::Stale);
        }
        if origin == self.origin {
            return Err(Rejection::Replayed);
        }
        while let Some(&(forget_at, old)) = self.order.front() {
            if forget_at > now_ms && self.order.len() < MAX_REMEMBERED_NONCES {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&old);
        }
        if !self.seen.insert(nonce) {
            return Err(Rejection::Replayed);
        }
        // A copy sent later than `sent_at + window` is stale anyway; until then the
        // nonce must be remembered.
        self.order
            .push_back((sent_at_ms.max(now_ms).saturating_add(window), nonce));
        Ok(())
    }
}

/// Splits a body into datagrams of at most 65,507 bytes (the largest UDP payload).
pub fn fragments(message_id: u64, body: &[u8]) -> Vec<Vec<u8>> {
    let chunks: Vec<&[u8]> = body.chunks(MAX_CHUNK).collect();
    let count = chunks.len().max(1);
    (0..count)
        .map(|index| {
            let chunk = chunks.get(index).copied().unwrap_or_default();
            let mut datagram = Vec::with_capacity(FRAGMENT_HEADER + chunk.len());
            datagram.push(VERSION);
            datagram.push(index as u8);
            datagram.push(count as u8);
            datagram.extend_from_slice(&message_id.to_le_bytes());
            datagram.extend_from_slice(chunk);
            datagram
        })
        .collect()
}

/// Collects the fragments of messages, per sender.
#[derive(Default)]
pub struct Reassembly {
    pending: HashMap<(SocketAddr, u64), Pending>,
}

struct Pending {
    started: Instant,
    chunks: Vec<Option<Vec<u8>>>,
}

impl Reassembly {
    /// Takes one datagram from `from`; returns the whole body once every fragment of its
    /// message has arrived.
    pub fn take(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<Option<Vec<u8>>, Rejection> {
        if datagram.len() < FRAGMENT_HEADER || datagram[0] != VERSION {
            return Err(Rejection::Malformed);
        }
        let (index, count) = (usize::from(datagram[1]), usize::from(datagram[2]));
        if count == 0 || count > MAX_FRAGMENTS || index >= count {
            return Err(Rejection::Malformed);
        }
        let message_id = u64::from_le_bytes(datagram[3..11].try_into().expect("8 bytes"));
        let chunk = &datagram[FRAGMENT_HEADER..];
        if count == 1 {
            return Ok(Some(chunk.to_vec()));
        }
        self.pending
            .retain(|_, pending| pending.started.elapsed() < REASSEMBLY_TIMEOUT);
        let key = (from, message_id);
        if !self.pending.contains_key(&key) && self.pending.len() >= MAX_PENDING {
            return Err(Rejection::Malformed);
        }
        let pending = self.pending.entry(key).or_insert_with(|| Pending {
            started: Instant::now(),
            chunks: vec![None; count],
        });
        if pending.chunks.len() != count {
            self.pending.remove(&key);
            return Err(Rejection::Malformed);
        }
        pending.chunks[index] = Some(chunk.to_vec());
        if pending.chunks.iter().any(Option::is_none) {
            return Ok(None);
        }
        let pending = self.pending.remove(&key).expect("present");
        Ok(Some(
            pending.chunks.into_iter().flatten().flatten().collect(),
        ))
    }
}

/// The chitchat transport over authenticated UDP.
pub struct AuthenticatedUdp {
    key: GossipKey,
    stats: Arc<GossipAuthStats>,
}

impl AuthenticatedUdp {
    /// A transport whose packets are authenticated with `secret`'s gossip key; what it
    /// drops is counted in `stats`.
    pub fn new(secret: &ClusterSecret, stats: Arc<GossipAuthStats>) -> AuthenticatedUdp {
        AuthenticatedUdp {
            key: GossipKey::derive(secret),
            stats,
        }
    }
}

#[async_trait::async_trait]
impl Transport for AuthenticatedUdp {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = tokio::net::UdpSocket::bind(listen_addr)
            .await
            .with_context(|| format!("failed to bind to {listen_addr}/UDP for gossip"))?;
        let origin = rand::random();
        Ok(Box::new(AuthenticatedSocket {
            socket,
            key: self.key.clone(),
            stats: self.stats.clone(),
            origin,
            replay: ReplayGuard::new(origin),
            reassembly: Reassembly::default(),
            buffer: vec![0; MAX_DATAGRAM + 1].into_boxed_slice(),
            last_warning: None,
        }))
    }
}

struct AuthenticatedSocket {
    socket: tokio::net::UdpSocket,
    key: GossipKey,
    stats: Arc<GossipAuthStats>,
    /// Sent in every packet; see [`Header::origin`].
    origin: u64,
    replay: ReplayGuard,
    reassembly: Reassembly,
    buffer: Box<[u8]>,
    /// When a dropped packet was last logged: at most one line per
    /// [`WARNING_INTERVAL`], so a flood of forged packets cannot flood the log.
    last_warning: Option<Instant>,
}

/// Least time between two log lines about dropped packets.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

impl AuthenticatedSocket {
    /// The message in one datagram from `from`, once complete and authentic.
    fn accept(
        &mut self,
        from: SocketAddr,
        len: usize,
    ) -> Result<Option<ChitchatMessage>, Rejection> {
        let Some(body) = self.reassembly.take(from, &self.buffer[..len])? else {
            return Ok(None);
        };
        let (header, message) = self.key.open(&body)?;
        self.replay.admit(unix_ms(), header)?;
        let mut bytes = message;
        let message = ChitchatMessage::deserialize(&mut bytes).map_err(|_| Rejection::Malformed)?;
        Ok(Some(message))
    }

    fn note_rejection(&mut self, from: SocketAddr, rejection: Rejection) {
        let total = self.stats.count(rejection);
        let quiet = self
            .last_warning
            .is_some_and(|at| at.elapsed() < WARNING_INTERVAL);
        if !quiet {
            self.last_warning = Some(Instant::now());
            tracing::warn!(%from, reason = rejection.as_str(), dropped_so_far = total,
                "gossip packet dropped (not from a member holding the cluster secret, or replayed)");
        }
    }
}

#[async_trait::async_trait]
impl Socket for AuthenticatedSocket {
    async fn send(&mut self, to: SocketAddr, message: ChitchatMessage) -> anyhow::Result<()> {
        let mut payload = Vec::with_capacity(message.serialized_len());
        message.serialize(&mut payload);
        let header = Header {
            sent_at_ms: unix_ms(),
            nonce: rand::random(),
            origin: self.origin,
        };
        let body = self.key.seal(header, &payload);
        for datagram in fragments(rand::random(), &body) {
            self.socket
                .send_to(&datagram, to)
                .await
                .context("failed to send a gossip packet")?;
        }
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let (len, from) = self
                .socket
                .recv_from(&mut self.buffer)
                .await
                .context("failed to receive a gossip packet")?;
            match self.accept(from, len) {
                Ok(Some(message)) => {
                    self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                    return Ok((from, message));
                }
                Ok(None) => {}
                Err(rejection) => self.note_rejection(from, rejection),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> GossipKey {
        GossipKey::derive(&ClusterSecret::new(secret))
    }

    fn header(sent_at_ms: u64, nonce: u64) -> Header {
        Header {
            sent_at_ms,
            nonce,
            origin: 77,
        }
    }

    #[test]
    fn a_sealed_message_opens_only_with_the_same_key_and_unaltered() {
        let body = key("s").seal(header(1_000, 7), b"hello");
        assert_eq!(key("s").open(&body), Ok((header(1_000, 7), &b"hello"[..])));
        assert_eq!(key("other").open(&body), Err(Rejection::Forged));
        for position in 0..body.len() {
            let mut altered = body.clone();
            altered[position] ^= 1;
            assert_eq!(
                key("s").open(&altered),
                Err(Rejection::Forged),
                "byte {position}"
            );
        }
        assert_eq!(key("s").open(&body[..10]), Err(Rejection::Malformed));
    }

    #[test]
    fn replays_and_stale_packets_are_refused() {
        let mut guard = ReplayGuard::new(1);
        let now = 10_000_000;
        assert_eq!(guard.admit(now, header(now - 5, 1)), Ok(()));
        assert_eq!(
            guard.admit(now + 10, header(now - 5, 1)),
            Err(Rejection::Replayed)
        );
        assert_eq!(
            guard.admit(now, header(now + 5, 2)),
            Ok(()),
            "a little clock skew"
        );
        let window = REPLAY_WINDOW.as_millis() as u64;
        assert_eq!(
            guard.admit(now, header(now - window - 1, 3)),
            Err(Rejection::Stale)
        );
        assert_eq!(
            guard.admit(now, header(now + window + 1, 4)),
            Err(Rejection::Stale)
        );
        // A packet this socket sent, reflected back to it.
        let reflected = Header {
            origin: 1,
            ..header(now, 5)
        };
        assert_eq!(guard.admit(now, reflected), Err(Rejection::Replayed));
        // Once outside the window the nonce may be forgotten: a copy is stale by then.
        let later = now + 3 * window;
        assert_eq!(
            guard.admit(later, header(now - 5, 1)),
            Err(Rejection::Stale)
        );
        assert_eq!(guard.admit(later, header(later, 9)), Ok(()));
        assert!(
            guard.seen.len() <= 2,
            "old nonces forgotten: {}",
            guard.seen.len()
        );
    }

    #[test]
    fn a_body_longer_than_a_datagram_travels_in_fragments() {
        let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let body: Vec<u8> = (0..MAX_CHUNK + 500).map(|i| i as u8).collect();
        let datagrams = fragments(42, &body);
        assert_eq!(datagrams.len(), 2);
        assert!(datagrams.iter().all(|d| d.len() <= MAX_DATAGRAM));
        let mut reassembly = Reassembly::default();
        // Out of order, with another sender's fragment in between.
        assert_eq!(reassembly.take(from, &datagrams[1]), Ok(None));
        let other: SocketAddr = "127.0.0.1:2".parse().unwrap();
        assert_eq!(reassembly.take(other, &datagrams[0]), Ok(None));
        assert_eq!(reassembly.take(from, &datagrams[0]), Ok(Some(body.clone())));
        let small = fragments(43, b"tiny");
        assert_eq!(reassembly.take(from, &small[0]), Ok(Some(b"tiny".to_vec())));
        assert_eq!(reassembly.take(from, b"junk"), Err(Rejection::Malformed));
        let mut wrong_count = datagrams[0].clone();
        wrong_count[2] = 9;
        assert_eq!(
            reassembly.take(from, &wrong_count),
            Err(Rejection::Malformed)
        );
    }

    #[test]
    fn forged_fragments_cannot_hold_unbounded_memory() {
        let mut reassembly = Reassembly::default();
        let body = vec![0u8; MAX_CHUNK + 1];
        for id in 0..MAX_PENDING as u64 {
            let first = &fragments(id, &body)[0];
            assert_eq!(
                reassembly.take("127.0.0.1:1".parse().unwrap(), first),
                Ok(None)
            );
        }
        let one_more = &fragments(999, &body)[0];
        assert_eq!(
            reassembly.take("127.0.0.1:1".parse().unwrap(), one_more),
            Err(Rejection::Malformed)
        );
        assert_eq!(reassembly.pending.len(), MAX_PENDING);
    }

    #[tokio::test]
    async fn sockets_exchange_messages_and_drop_a_captured_replay() {
        let stats = Arc::new(GossipAuthStats::default());
        let transport = AuthenticatedUdp::new(&ClusterSecret::new("s"), stats.clone());
        let mut receiver = transport
            .open("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        // Capture what a sender writes on the wire with a plain socket in between.
        let tap = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut sender = transport
            .open("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let message = ChitchatMessage::BadCluster;
        sender
            .send(tap.local_addr().unwrap(), message)
            .await
            .unwrap();
        let mut captured = vec![0u8; MAX_DATAGRAM];
        let (len, _) = tap.recv_from(&mut captured).await.unwrap();
        captured.truncate(len);
        // The captured packet, delivered twice, is accepted once.
        let target = bound_address(&mut receiver, &tap).await;
        tap.send_to(&captured, target).await.unwrap();
        tap.send_to(&captured, target).await.unwrap();
        tap.send_to(b"\x01\x00\x01forged!!junk", target)
            .await
            .unwrap();
        let (_, received) = receiver.recv().await.unwrap();
        assert_eq!(received, ChitchatMessage::BadCluster);
        // Nothing else gets through; the counters say why.
        let next = tokio::time::timeout(Duration::from_millis(300), receiver.recv()).await;
        assert!(next.is_err(), "a second message was accepted");
        assert_eq!(stats.replayed.load(Ordering::Relaxed), 1);
        assert_eq!(
            stats.malformed.load(Ordering::Relaxed) + stats.forged.load(Ordering::Relaxed),
            1
        );
    }

    /// The address `socket` listens on, learnt from a packet it sends to `tap`.
    async fn bound_address(
        socket: &mut Box<dyn Socket>,
        tap: &tokio::net::UdpSocket,
    ) -> SocketAddr {
        socket
            .send(tap.local_addr().unwrap(), ChitchatMessage::BadCluster)
            .await
            .unwrap();
        let mut buffer = vec![0u8; MAX_DATAGRAM];
        let (_, from) = tap.recv_from(&mut buffer).await.unwrap();
        from
    }
}
