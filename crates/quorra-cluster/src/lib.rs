//! The cluster layer of quorra: who is in the cluster, how nodes talk, what they say.
//!
//! # Components
//!
//! - [`membership`]: gossip ([`chitchat`]) with phi-accrual failure detection; every node
//!   publishes its addresses, zone, state and a few figures, and keeps a
//!   [`ClusterView`](membership::ClusterView) — the members and the ring of the live,
//!   serving ones — that is rebuilt on every change.
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
//! - Authenticated gossip: see [`membership`]'s security section.
//! - Confidentiality: frames after the handshake are authenticated at connection set-up
//!   only and travel in clear. Run the cluster port on a trusted network (or add TLS).
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
