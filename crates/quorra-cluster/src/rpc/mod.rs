//! Node-to-node RPC: length-delimited frames over TCP, multiplexed, authenticated.
//!
//! # Wire format
//!
//! After the handshake both directions carry a stream of frames:
//!
//! ```text
//!  byte 0               4        5                          13
//! +--------------------+--------+----------------------------+--------------------------+
//! | length: u32 BE     | kind   | request id: u64 BE         | payload: length - 9 bytes|
//! +--------------------+--------+----------------------------+--------------------------+
//!   counts kind + id + payload     0 request  1 response  2 error (payload = UTF-8 text)
//!                                 16..19: handshake (Hello, Proof, Accept, Reject)
//! ```
//!
//! The payload is opaque to this module. A receiver refuses a length above
//! [`RpcConfig::max_frame_bytes`] (default [`DEFAULT_MAX_FRAME_BYTES`]) after reading only
//! the four length bytes, and drops the connection: [`RpcError::FrameTooLarge`] on the
//! client, a `warn!` on the server. Nothing is allocated for the refused frame.
//!
//! # Handshake
//!
//! Before any request, client and server exchange `Hello { version, node id, nonce }`,
//! then prove to each other that they know the cluster secret with an HMAC-SHA256 over
//! both nonces, both node ids and the version (client first). The secret never travels.
//! A version mismatch gives [`RpcError::VersionMismatch`], a bad proof
//! [`RpcError::AuthFailed`] on the client, and a `warn!` naming the peer address on the
//! server. Handshake frames are limited to [`HANDSHAKE_MAX_FRAME_BYTES`] and must finish
//! within [`RpcConfig::handshake_timeout`]. The exact messages are in the `handshake`
//! module's source docs.
//!
//! # Multiplexing
//!
//! A connection carries many calls at once. Each call gets a request id unique on its
//! connection; the server runs each request in its own task and answers in completion
//! order, and the client's reader hands each response to the call waiting for its id.
//! Per peer the client pools [`RpcConfig::connections_per_peer`] connections and spreads
//! calls round-robin over them. At most [`RpcConfig::max_in_flight_per_conn`] calls are in
//! flight per connection; beyond that the client waits for a slot and the server stops
//! reading the connection.
//!
//! # Timeouts and backoff
//!
//! - Each call has a timeout ([`RpcClient::call_timeout`], or
//!   [`RpcConfig::call_timeout`], default [`DEFAULT_CALL_TIMEOUT`]) covering connect,
//!   queueing and the response: [`RpcError::Timeout`]. A timed-out call frees its id and
//!   a late response is discarded. If the connection received no response at all since
//!   the call was sent, it is taken for dead and dropped (its other calls fail with the
//!   timeout), so the next call dials again: a cut link sends no reset, and TCP can take
//!   many seconds to resume an old connection after the link returns.
//! - Dialling (TCP connect + handshake) is bounded by [`RpcConfig::connect_timeout`].
//! - When a connection dies, its in-flight calls fail at once with the cause
//!   ([`RpcError::Closed`], [`RpcError::Unreachable`], ...). The next call on that pool
//!   slot dials again immediately; if that fails, the slot waits
//!   `min(backoff_max, backoff_base * 2^(failures-1))`, jittered uniformly into its upper
//!   half, before dialling again (defaults [`DEFAULT_BACKOFF_BASE`],
//!   [`DEFAULT_BACKOFF_MAX`]). Calls during the wait fail at once with the last dial's
//!   error, so a dead peer is neither hammered nor allowed to stall its callers.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use quorra_cluster::rpc::{ClusterSecret, RpcClient, RpcConfig, RpcServer};
//! use quorra_ring::NodeId;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = ClusterSecret::new("correct horse battery staple");
//! let server = RpcServer::bind(
//!     "127.0.0.1:0",
//!     RpcConfig::new("node-b", secret.clone()),
//!     |_from: NodeId, payload: Bytes| async move { Ok::<_, String>(payload) },
//! )
//! .await?;
//! let client = RpcClient::new(RpcConfig::new("node-a", secret));
//! let reply = client.call(server.local_addr(), Bytes::from_static(b"ping")).await?;
//! assert_eq!(reply, "ping");
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod client;
mod config;
mod error;
mod frame;
mod handshake;
mod server;
#[cfg(test)]
mod tests;

pub use client::RpcClient;
pub use config::{
    ClusterSecret, DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX, DEFAULT_CALL_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_CONNECTIONS_PER_PEER, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_IN_FLIGHT_PER_CONN, DEFAULT_SHUTDOWN_GRACE,
    HANDSHAKE_MAX_FRAME_BYTES, MAX_NODE_ID_BYTES, PROTOCOL_VERSION, RpcConfig,
};
pub use error::RpcError;
pub use server::{BoxFuture, Handler, RpcServer};

/// Internals made public for the fuzz targets (`crates/quorra-cluster/fuzz`) and tests:
/// the frame codec, the handshake's `Hello` and the handshake run over a fixed byte
/// stream. Not part of the supported API.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::frame::{Frame, FrameError, FrameKind, parse};
    pub use super::handshake::{Hello, client_over_bytes, server_over_bytes};
}
