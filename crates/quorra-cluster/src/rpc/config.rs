//! Tuning constants, the cluster secret and [`RpcConfig`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use quorra_ring::NodeId;

use crate::tls::TlsMaterial;

/// Version of the wire protocol spoken after the handshake. Peers with a different
/// version are refused ([`RpcError::VersionMismatch`](super::RpcError::VersionMismatch)).
/// The `Hello` frame's layout never changes, so any two versions can tell each other so.
pub const PROTOCOL_VERSION: u16 = 5;

/// Default largest frame, in bytes counted by the length prefix (kind + id + payload),
/// accepted from or sent to a peer: 16 MiB, well above the largest value plus overhead.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Largest frame accepted during the handshake, in bytes. The peer is not yet
/// authenticated, so it may not make us buffer more than a Hello needs.
pub const HANDSHAKE_MAX_FRAME_BYTES: usize = 512;

/// Default cap on requests in flight on one connection. The server stops reading a
/// connection at the cap (TCP back-pressure); the client waits for a slot.
pub const DEFAULT_MAX_IN_FLIGHT_PER_CONN: usize = 1024;

/// Default number of pooled connections the client keeps to each peer.
pub const DEFAULT_CONNECTIONS_PER_PEER: usize = 2;

/// Default bound on one call, from its start to the response, when the caller gives none.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Default bound on a TCP connect plus handshake made by the client.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Default time the server gives an accepted connection to finish its handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default first reconnect delay after a failed connect; it doubles per failure.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(50);

/// Default ceiling of the reconnect delay.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Default time a shutting-down server waits for running handlers before it closes.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Longest node id, in bytes (it travels with a one-byte length).
pub const MAX_NODE_ID_BYTES: usize = 255;

/// The shared cluster secret. Its `Debug` output is redacted; it is only ever used as an
/// HMAC key and never written to a socket.
#[derive(Clone)]
pub struct ClusterSecret(Arc<[u8]>);

impl ClusterSecret {
    /// Wraps the secret's bytes.
    pub fn new(secret: impl AsRef<[u8]>) -> ClusterSecret {
        ClusterSecret(secret.as_ref().into())
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The cluster id gossip messages carry: `quorra-` and 16 hex digits of an HMAC of a
    /// fixed label under the secret. Nodes with different secrets get different ids, and
    /// chitchat drops messages for another cluster; the id reveals nothing of the secret.
    pub fn gossip_cluster_id(&self) -> String {
        use hmac::{Hmac, Mac};
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(b"quorra gossip cluster id v1");
        let digest = mac.finalize().into_bytes();
        let mut id = String::from("quorra-");
        for byte in &digest[..8] {
            id.push_str(&format!("{byte:02x}"));
        }
        id
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

/// Everything the RPC layer needs: who we are, the secret, and the limits.
///
/// Build one with [`RpcConfig::new`] and adjust the public fields. The same config type
/// serves [`RpcClient`](super::RpcClient) and [`RpcServer`](super::RpcServer); each
/// reads the fields that concern it.
#[derive(Clone, Debug)]
pub struct RpcConfig {
    /// This node's id, sent in the handshake and covered by the proofs.
    pub node_id: NodeId,
    /// The shared cluster secret.
    pub secret: ClusterSecret,
    /// Largest frame (length-counted bytes) we send or accept after the handshake. A peer
    /// announcing more is disconnected. Default [`DEFAULT_MAX_FRAME_BYTES`].
    pub max_frame_bytes: usize,
    /// Requests in flight per connection. Default [`DEFAULT_MAX_IN_FLIGHT_PER_CONN`].
    pub max_in_flight_per_conn: usize,
    /// Client: pooled connections per peer (at least 1). Default
    /// [`DEFAULT_CONNECTIONS_PER_PEER`].
    pub connections_per_peer: usize,
    /// Client: timeout of [`RpcClient::call`](super::RpcClient::call). Default
    /// [`DEFAULT_CALL_TIMEOUT`].
    pub call_timeout: Duration,
    /// Client: bound on connect + handshake. Default [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// Server: bound on an accepted connection's handshake. Default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// Client: first reconnect delay. Default [`DEFAULT_BACKOFF_BASE`].
    pub backoff_base: Duration,
    /// Client: largest reconnect delay. Default [`DEFAULT_BACKOFF_MAX`].
    pub backoff_max: Duration,
    /// Server: how long shutdown waits for running handlers. Default
    /// [`DEFAULT_SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
    /// Mutual TLS with peers (`tls-cluster`): both sides present a certificate signed by
    /// the cluster's CA, under the secret-based handshake. `None`: plain TCP.
    pub tls: Option<Arc<TlsMaterial>>,
    /// The protocol version we speak; differs from [`PROTOCOL_VERSION`] only in tests.
    pub(crate) protocol_version: u16,
}

impl RpcConfig {
    /// A config with every limit at its default.
    pub fn new(node_id: impl Into<NodeId>, secret: ClusterSecret) -> RpcConfig {
        RpcConfig {
            node_id: node_id.into(),
            secret,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_in_flight_per_conn: DEFAULT_MAX_IN_FLIGHT_PER_CONN,
            connections_per_peer: DEFAULT_CONNECTIONS_PER_PEER,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            tls: None,
            protocol_version: PROTOCOL_VERSION,
        }
    }
}

/// Reconnect delay after `failures` consecutive failed attempts (`failures >= 1`):
/// `min(max, base * 2^(failures-1))`, then "equal jitter": a uniform draw from the upper
/// half, `[d/2, d]`, so peers that lost a node together do not reconnect in lockstep
/// while the delay still grows.
pub(crate) fn backoff_delay(base: Duration, max: Duration, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    let d = base.saturating_mul(1u32 << exp).min(max);
    let half = d / 2;
    let jitter_nanos = d.as_nanos().saturating_sub(half.as_nanos()) as u64;
    half + Duration::from_nanos(rand::random_range(0..=jitter_nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(50);
        let max = Duration::from_secs(5);
        for failures in 1..40 {
            let ideal = base.saturating_mul(1u32 << (failures - 1).min(30)).min(max);
            let d = backoff_delay(base, max, failures);
            assert!(
                d <= ideal && d >= ideal / 2,
                "{failures}: {d:?} vs {ideal:?}"
            );
        }
    }

    #[test]
    fn gossip_cluster_id_differs_by_secret_and_hides_it() {
        let a = ClusterSecret::new("alpha").gossip_cluster_id();
        assert_eq!(a, ClusterSecret::new("alpha").gossip_cluster_id());
        assert_ne!(a, ClusterSecret::new("beta").gossip_cluster_id());
        assert!(a.starts_with("quorra-") && a.len() == 23 && !a.contains("alpha"));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = ClusterSecret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
