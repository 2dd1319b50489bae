//! The cluster layer of quorra.
//!
//! Today this crate holds one component, node-to-node RPC ([`rpc`]): a small binary
//! protocol over TCP that every later cluster feature rides on.
//!
//! # Components
//!
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
//! - Membership (gossip, failure detection), the live ring view, request routing,
//!   replication and rebalancing: they come later in this crate, on top of [`rpc`].
//! - Confidentiality: frames after the handshake are authenticated at connection set-up
//!   only and travel in clear. Run the cluster port on a trusted network (or add TLS).
//! - Exactly-once delivery: a call that times out or loses its connection may or may not
//!   have run on the peer.

pub mod rpc;
