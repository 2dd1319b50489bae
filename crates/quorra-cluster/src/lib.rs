//! The cluster layer of quorra: who is in the cluster, how nodes talk, what they say.
//!
//! # Components
//!
//! - [`membership`]: gossip ([`chitchat`]) with phi-accrual failure detection; every node
//!   publishes its addresses, zone, state and a few figures, and keeps a
//!   [`ClusterView`](membership::ClusterView) — the members, and the ring of the counted
//!   ones — that is rebuilt on every change.
//! - [`roster`]: the members the cluster counts, up or down, until they leave or are
//!   forgotten; gossiped and kept on disk, so quorums never shrink by forgetting.
//! - [`placement`]: which nodes hold a key's copies and which of them is its primary —
//!   the one rule routing, replication and anti-entropy share.
//! - [`gossip_auth`]: the authenticated UDP transport gossip runs over (HMAC under the
//!   cluster secret, replay protection).
//! - [`replication`]: N copies per key — quorum writes and reads over any transport,
//!   read repair, hinted handoff.
//! - [`antientropy`]: the periodic comparison of two replicas by bucket digests, which
//!   copies only the entries that differ.
//! - [`message`]: the requests nodes send each other (run this command on your store;
//!   count your keys), encoded with postcard.
//! - [`rpc`]: authenticated, multiplexed request/response between nodes.
//!   [`RpcServer`](rpc::RpcServer) accepts peers and runs a [`Handler`](rpc::Handler) for
//!   each request; [`RpcClient`](rpc::RpcClient) keeps a small pool of connections per
//!   peer and calls them with per-call timeouts. Payloads are opaque [`bytes::Bytes`]:
//!   the layers above choose their own message encoding (postcard, per the design brief).
//! - [`tls`]: certificates from PEM files, reloadable, for the client ports and for
//!   mutual TLS between nodes (`tls-cluster`).
//!
//! # Guarantees
//!
//! - A peer that does not know the cluster secret, or speaks another protocol version, is
//!   refused during the handshake, before any request is read; the secret never travels.
//! - Every call ends within its timeout with a response or a typed
//!   [`RpcError`](rpc::RpcError) that names the peer.
//! - Everything a peer controls is bounded: frame size, handshake size and duration, and
//!   requests in flight per connection.
//!
//! # Non-goals (for now)
//!
//! - Rebalancing: when a node joins, the copies it should now hold reach it through read
//!   repair and anti-entropy, not through a range transfer.
//! - Confidentiality without `tls-cluster`: RPC frames after the handshake travel in
//!   clear, and gossip (authenticated, not encrypted) always does.
//! - Exactly-once delivery: a call that times out or loses its connection may or may not
//!   have run on the peer.

pub mod antientropy;
pub mod gossip_auth;
pub mod membership;
pub mod message;
pub mod placement;
pub mod replication;
pub mod roster;
pub mod rpc;
pub mod tls;
