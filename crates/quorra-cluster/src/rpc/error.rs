//! [`RpcError`]: what can go wrong with a call, and what the caller should do about it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Why a call failed. Every variant names the peer so a log line or a client-facing error
/// can say which node misbehaved.
///
/// What to do, by variant:
/// - [`Timeout`](Self::Timeout), [`Closed`](Self::Closed): the request may or may not
///   have run on the peer; retry only if it is idempotent, or try another replica.
/// - [`Unreachable`](Self::Unreachable): it did not run; try another replica. The client
///   reconnects with backoff on a later call.
/// - [`AuthFailed`](Self::AuthFailed), [`VersionMismatch`](Self::VersionMismatch):
///   configuration error; retrying will not help until an operator fixes it.
/// - [`FrameTooLarge`](Self::FrameTooLarge), [`Protocol`](Self::Protocol): a bug or a
///   hostile peer; the connection was dropped.
/// - [`Remote`](Self::Remote): the peer's handler answered with an error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    /// No response within the call's timeout.
    #[error("rpc to {peer} timed out after {after:?}")]
    Timeout {
        /// The peer called.
        peer: SocketAddr,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The peer could not be connected to (or is in reconnect backoff after failing).
    #[error("peer {peer} unreachable: {source}")]
    Unreachable {
        /// The peer called.
        peer: SocketAddr,
        /// The connect error (shared: the same failure is reported to every waiting call).
        #[source]
        source: Arc<io::Error>,
    },
    /// The handshake failed: the peer does not know our cluster secret, or refused ours.
    #[error("authentication with peer {peer} failed (cluster secrets differ)")]
    AuthFailed {
        /// The peer called.
        peer: SocketAddr,
    },
    /// The peer speaks another protocol version.
    #[error("peer {peer} speaks rpc protocol version {theirs}, we speak {ours}")]
    VersionMismatch {
        /// The peer called.
        peer: SocketAddr,
        /// Our version.
        ours: u16,
        /// The peer's version.
        theirs: u16,
    },
    /// A frame exceeded the size limit: ours to send (nothing was sent), or one the peer
    /// announced (the connection was dropped without reading it).
    #[error("frame of {len} bytes for peer {peer} exceeds the limit of {max}")]
    FrameTooLarge {
        /// The peer.
        peer: SocketAddr,
        /// The frame's length-counted size.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The peer broke the protocol (unknown frame kind, unexpected frame); the connection
    /// was dropped.
    #[error("protocol error from peer {peer}: {detail}")]
    Protocol {
        /// The peer.
        peer: SocketAddr,
        /// What was wrong.
        detail: String,
    },
    /// The connection closed while the call was in flight.
    #[error("connection to peer {peer} closed")]
    Closed {
        /// The peer.
        peer: SocketAddr,
    },
    /// The peer's handler returned an error.
    #[error("peer {peer} answered with an error: {message}")]
    Remote {
        /// The peer.
        peer: SocketAddr,
        /// The handler's message.
        message: String,
    },
}

impl RpcError {
    /// The peer the error is about.
    pub fn peer(&self) -> SocketAddr {
        match self {
            RpcError::Timeout { peer, .. }
            | RpcError::Unreachable { peer, .. }
            | RpcError::AuthFailed { peer }
            | RpcError::VersionMismatch { peer, .. }
            | RpcError::FrameTooLarge { peer, .. }
            | RpcError::Protocol { peer, .. }
            | RpcError::Closed { peer }
            | RpcError::Remote { peer, .. } => *peer,
        }
    }

    /// True when the failure is about reaching the peer rather than configuration or the
    /// request itself, so another replica (or a later retry) may succeed: `Timeout`,
    /// `Unreachable` and `Closed`.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RpcError::Timeout { .. } | RpcError::Unreachable { .. } | RpcError::Closed { .. }
        )
    }
}
