//! The connection handshake: version check and mutual challenge-response authentication.
//!
//! ```text
//!  client                                          server
//!    | -- Hello { version, client id, nonce_c } ---> |  version differs: Reject(Version), close
//!    | <-- Hello { version, server id, nonce_s } --- |
//!    | -- Proof { HMAC(secret, "client" ...) } ----> |  bad proof: Reject(Auth), warn!, close
//!    | <-- Accept { HMAC(secret, "server" ...) } --- |
//!    |   client checks the server's proof: a server without the secret is AuthFailed
//! ```
//!
//! The client proves first, so the server never hands a valid MAC to a peer that has not
//! shown it knows the secret.
//!
//! Each proof is `HMAC-SHA256(secret, label || version || nonce_c || nonce_s || client
//! id || server id)` (ids length-prefixed), where `label` differs per role so a proof
//! cannot be reflected back at its sender. Each side's nonce is fresh (32 random bytes
//! from the thread-local CSPRNG), so a recorded proof is useless on a new connection.
//! The secret itself never leaves the process: only nonces, ids and MACs are sent.
//! Proofs are checked with `Mac::verify_slice`, which compares in constant time.
//!
//! HMAC-SHA256 (RustCrypto `hmac` + `sha2`) rather than keyed BLAKE3: the handshake runs
//! once per connection so speed is irrelevant, and HMAC-SHA256 is the standard,
//! well-reviewed construction that anyone auditing the protocol will expect.
//!
//! `Hello` payload (its layout is frozen so that any two versions can tell each other
//! their version):
//!
//! ```text
//! +---------------+----------------+-------------+-----------+-------------------+
//! | magic "QRPC"  | version u16 BE | nonce [32]  | id len u8 | node id (UTF-8)   |
//! +---------------+----------------+-------------+-----------+-------------------+
//! ```
//!
//! `Reject` payload: reason u8 (1 = version, 2 = authentication) + the server's version
//! u16 BE. `Proof` and `Accept` payloads: the sender's 32-byte MAC. All handshake frames have
//! request id 0 and are limited to [`HANDSHAKE_MAX_FRAME_BYTES`].

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use quorra_ring::NodeId;
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::config::{HANDSHAKE_MAX_FRAME_BYTES, MAX_NODE_ID_BYTES, RpcConfig};
use super::error::RpcError;
use super::frame::{Frame, FrameError, FrameKind, FrameReader, ReadError};

/// First bytes of every Hello.
const MAGIC: &[u8; 4] = b"QRPC";
/// Bytes of a nonce.
pub(crate) const NONCE_BYTES: usize = 32;
/// Bytes of a proof (HMAC-SHA256 output).
const MAC_BYTES: usize = 32;
/// Reject reason: protocol version differs.
const REJECT_VERSION: u8 = 1;
/// Reject reason: the client's proof was wrong.
const REJECT_AUTH: u8 = 2;

type HmacSha256 = Hmac<Sha256>;

/// Which side computes a proof; part of the MAC input.
#[derive(Clone, Copy)]
enum Role {
    Client,
    Server,
}

/// A decoded Hello.
///
/// Public (re-exported by the hidden `rpc::fuzzing`) only for the fuzz targets and tests.
pub struct Hello {
    /// The sender's protocol version.
    pub version: u16,
    /// The sender's fresh nonce.
    pub nonce: [u8; NONCE_BYTES],
    /// The sender's node id (at most [`MAX_NODE_ID_BYTES`] bytes).
    pub node_id: NodeId,
}

impl Hello {
    /// The Hello frame's payload.
    pub fn encode(&self) -> Bytes {
        let id = self.node_id.as_str().as_bytes();
        let mut b = BytesMut::with_capacity(4 + 2 + NONCE_BYTES + 1 + id.len());
        b.put_slice(MAGIC);
        b.put_u16(self.version);
        b.put_slice(&self.nonce);
        b.put_u8(id.len() as u8);
        b.put_slice(id);
        b.freeze()
    }

    /// Parses a Hello frame's payload, refusing anything but exactly one well-formed Hello.
    pub fn decode(p: &[u8]) -> Result<Hello, String> {
        let fixed = 4 + 2 + NONCE_BYTES + 1;
        if p.len() < fixed || &p[..4] != MAGIC {
            return Err("malformed hello".into());
        }
        let version = u16::from_be_bytes([p[4], p[5]]);
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(&p[6..6 + NONCE_BYTES]);
        let id_len = p[fixed - 1] as usize;
        let id = p
            .get(fixed..fixed + id_len)
            .filter(|_| p.len() == fixed + id_len)
            .ok_or("malformed hello: bad node id length")?;
        if id.is_empty() {
            return Err("malformed hello: empty node id".into());
        }
        let id = std::str::from_utf8(id).map_err(|_| "malformed hello: node id not UTF-8")?;
        Ok(Hello {
            version,
            nonce,
            node_id: NodeId::from(id),
        })
    }
}

/// The MAC a side sends to prove it knows the secret.
fn mac(secret: &[u8], role: Role, version: u16, client: &Hello, server: &Hello) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    m.update(match role {
        Role::Client => b"quorra-rpc client",
        Role::Server => b"quorra-rpc server",
    });
    m.update(&version.to_be_bytes());
    m.update(&client.nonce);
    m.update(&server.nonce);
    for id in [&client.node_id, &server.node_id] {
        m.update(&[id.as_str().len() as u8]);
        m.update(id.as_str().as_bytes());
    }
    m
}

fn fresh_hello(config: &RpcConfig) -> Hello {
    let id = config.node_id.as_str();
    assert!(
        id.len() <= MAX_NODE_ID_BYTES,
        "node id longer than MAX_NODE_ID_BYTES"
    );
    Hello {
        version: config.protocol_version,
        nonce: rand::random(),
        node_id: config.node_id.clone(),
    }
}

/// Maps the end of a frame stream to the error a caller sees.
pub(crate) fn read_error(peer: SocketAddr, e: ReadError) -> RpcError {
    match e {
        ReadError::Eof => RpcError::Closed { peer },
        ReadError::Io(e) => RpcError::Unreachable {
            peer,
            source: Arc::new(e),
        },
        ReadError::Frame(FrameError::TooLarge { len, max }) => {
            RpcError::FrameTooLarge { peer, len, max }
        }
        ReadError::Frame(e) => RpcError::Protocol {
            peer,
            detail: e.to_string(),
        },
    }
}

async fn send<W: AsyncWrite + Unpin>(
    w: &mut W,
    peer: SocketAddr,
    frames: &[Frame],
) -> Result<(), RpcError> {
    let mut buf = BytesMut::new();
    for f in frames {
        f.encode(&mut buf);
    }
    w.write_all(&buf).await.map_err(|e| RpcError::Unreachable {
        peer,
        source: Arc::new(e),
    })
}

fn frame(kind: FrameKind, payload: Bytes) -> Frame {
    Frame::new(kind, 0, payload)
}

fn protocol(peer: SocketAddr, detail: impl Into<String>) -> RpcError {
    RpcError::Protocol {
        peer,
        detail: detail.into(),
    }
}

fn reject_payload(reason: u8, version: u16) -> Bytes {
    let mut b = BytesMut::with_capacity(3);
    b.put_u8(reason);
    b.put_u16(version);
    b.freeze()
}

/// Runs the client side. Returns the server's node id once it has accepted us.
///
/// The reader must be fresh; it is left at the configured frame limit on success.
pub(crate) async fn client<R, W>(
    rd: &mut FrameReader<R>,
    wr: &mut W,
    config: &RpcConfig,
    peer: SocketAddr,
) -> Result<NodeId, RpcError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    rd.set_max_frame_bytes(HANDSHAKE_MAX_FRAME_BYTES);
    let ours = fresh_hello(config);
    send(wr, peer, &[frame(FrameKind::Hello, ours.encode())]).await?;

    let f = rd.next().await.map_err(|e| read_error(peer, e))?;
    let theirs = match f.kind {
        FrameKind::Hello => Hello::decode(&f.payload).map_err(|d| protocol(peer, d))?,
        FrameKind::Reject => return Err(rejection(peer, config, &f.payload)),
        k => return Err(protocol(peer, format!("expected hello, got {k:?}"))),
    };
    if theirs.version != config.protocol_version {
        return Err(RpcError::VersionMismatch {
            peer,
            ours: config.protocol_version,
            theirs: theirs.version,
        });
    }
    let secret = config.secret.as_bytes();
    let proof = mac(secret, Role::Client, ours.version, &ours, &theirs).finalize();
    send(
        wr,
        peer,
        &[frame(
            FrameKind::Proof,
            Bytes::copy_from_slice(&proof.into_bytes()),
        )],
    )
    .await?;

    let f = rd.next().await.map_err(|e| read_error(peer, e))?;
    match f.kind {
        FrameKind::Accept => {
            mac(secret, Role::Server, theirs.version, &ours, &theirs)
                .verify_slice(&f.payload)
                .map_err(|_| RpcError::AuthFailed { peer })?;
            rd.set_max_frame_bytes(config.max_frame_bytes);
            Ok(theirs.node_id)
        }
        FrameKind::Reject => Err(rejection(peer, config, &f.payload)),
        k => Err(protocol(peer, format!("expected accept, got {k:?}"))),
    }
}

/// Runs the client side against a server that sends exactly `input` and then closes;
/// what the client sends is discarded. Exists for fuzzing and tests: it drives the real
/// handshake over peer-controlled bytes without a socket.
pub async fn client_over_bytes(config: &RpcConfig, input: &[u8]) -> Result<NodeId, RpcError> {
    let mut rd = FrameReader::new(input, HANDSHAKE_MAX_FRAME_BYTES);
    client(&mut rd, &mut tokio::io::sink(), config, fuzz_peer()).await
}

/// Runs the server side against a client that sends exactly `input` and then closes;
/// what the server sends is discarded. Exists for fuzzing and tests: it drives the real
/// handshake over peer-controlled bytes without a socket.
pub async fn server_over_bytes(config: &RpcConfig, input: &[u8]) -> Result<NodeId, RpcError> {
    let mut rd = FrameReader::new(input, HANDSHAKE_MAX_FRAME_BYTES);
    server(&mut rd, &mut tokio::io::sink(), config, fuzz_peer()).await
}

/// The peer address [`client_over_bytes`] and [`server_over_bytes`] put in their errors.
fn fuzz_peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn rejection(peer: SocketAddr, config: &RpcConfig, p: &[u8]) -> RpcError {
    match p {
        [REJECT_VERSION, hi, lo] => RpcError::VersionMismatch {
            peer,
            ours: config.protocol_version,
            theirs: u16::from_be_bytes([*hi, *lo]),
        },
        [REJECT_AUTH, ..] => RpcError::AuthFailed { peer },
        _ => protocol(peer, "malformed reject"),
    }
}

/// Runs the server side. Returns the client's node id once it has proved it knows the
/// secret. On a version mismatch or a bad proof it tells the client why (so the client
/// gets a typed error) before returning the error; the caller logs and closes.
pub(crate) async fn server<R, W>(
    rd: &mut FrameReader<R>,
    wr: &mut W,
    config: &RpcConfig,
    peer: SocketAddr,
) -> Result<NodeId, RpcError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    rd.set_max_frame_bytes(HANDSHAKE_MAX_FRAME_BYTES);
    let f = rd.next().await.map_err(|e| read_error(peer, e))?;
    if f.kind != FrameKind::Hello {
        return Err(protocol(peer, format!("expected hello, got {:?}", f.kind)));
    }
    let theirs = Hello::decode(&f.payload).map_err(|d| protocol(peer, d))?;
    if theirs.version != config.protocol_version {
        let reject = reject_payload(REJECT_VERSION, config.protocol_version);
        // Best effort: the client may already be gone.
        let _ = send(wr, peer, &[frame(FrameKind::Reject, reject)]).await;
        return Err(RpcError::VersionMismatch {
            peer,
            ours: config.protocol_version,
            theirs: theirs.version,
        });
    }
    let ours = fresh_hello(config);
    send(wr, peer, &[frame(FrameKind::Hello, ours.encode())]).await?;

    let f = rd.next().await.map_err(|e| read_error(peer, e))?;
    if f.kind != FrameKind::Proof {
        return Err(protocol(peer, format!("expected proof, got {:?}", f.kind)));
    }
    let secret = config.secret.as_bytes();
    if f.payload.len() != MAC_BYTES
        || mac(secret, Role::Client, ours.version, &theirs, &ours)
            .verify_slice(&f.payload)
            .is_err()
    {
        let reject = reject_payload(REJECT_AUTH, config.protocol_version);
        let _ = send(wr, peer, &[frame(FrameKind::Reject, reject)]).await;
        return Err(RpcError::AuthFailed { peer });
    }
    let proof = mac(secret, Role::Server, ours.version, &theirs, &ours).finalize();
    let proof = Bytes::copy_from_slice(&proof.into_bytes());
    send(wr, peer, &[frame(FrameKind::Accept, proof)]).await?;
    rd.set_max_frame_bytes(config.max_frame_bytes);
    Ok(theirs.node_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::config::{ClusterSecret, PROTOCOL_VERSION};

    fn cfg(id: &str, secret: &str) -> RpcConfig {
        RpcConfig::new(id, ClusterSecret::new(secret))
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    async fn run(
        c: RpcConfig,
        s: RpcConfig,
    ) -> (Result<NodeId, RpcError>, Result<NodeId, RpcError>) {
        let (a, b) = tokio::io::duplex(4096);
        let (ar, mut aw) = tokio::io::split(a);
        let (br, mut bw) = tokio::io::split(b);
        let client = async move {
            let mut rd = FrameReader::new(ar, 1024);
            client(&mut rd, &mut aw, &c, addr()).await
        };
        let server = async move {
            let mut rd = FrameReader::new(br, 1024);
            let r = server(&mut rd, &mut bw, &s, addr()).await;
            drop(bw);
            r
        };
        tokio::join!(client, server)
    }

    #[tokio::test]
    async fn same_secret_authenticates_both_ways() {
        let (c, s) = run(cfg("a", "k"), cfg("b", "k")).await;
        assert_eq!(c.unwrap().as_str(), "b");
        assert_eq!(s.unwrap().as_str(), "a");
    }

    #[tokio::test]
    async fn wrong_secret_fails_on_both_sides() {
        let (c, s) = run(cfg("a", "k1"), cfg("b", "k2")).await;
        assert!(matches!(c, Err(RpcError::AuthFailed { .. })), "{c:?}");
        assert!(matches!(s, Err(RpcError::AuthFailed { .. })), "{s:?}");
    }

    #[tokio::test]
    async fn version_mismatch_is_typed_on_both_sides() {
        let mut c = cfg("a", "k");
        let (current, next) = (PROTOCOL_VERSION, PROTOCOL_VERSION + 1);
        c.protocol_version = next;
        let (c, s) = run(c, cfg("b", "k")).await;
        assert!(
            matches!(
                c,
                Err(RpcError::VersionMismatch { ours, theirs, .. }) if ours == next && theirs == current
            ),
            "{c:?}"
        );
        assert!(matches!(
            s,
            Err(RpcError::VersionMismatch { ours, theirs, .. }) if ours == current && theirs == next
        ));
    }

    #[tokio::test]
    async fn client_refuses_a_server_that_cannot_prove_the_secret() {
        // An impostor that accepts anyone but does not know the secret.
        let (a, b) = tokio::io::duplex(4096);
        let (ar, mut aw) = tokio::io::split(a);
        let (br, mut bw) = tokio::io::split(b);
        let impostor = async move {
            let mut rd = FrameReader::new(br, 1024);
            let _hello = rd.next().await.unwrap();
            let ours = fresh_hello(&cfg("evil", "guess"));
            send(&mut bw, addr(), &[frame(FrameKind::Hello, ours.encode())])
                .await
                .unwrap();
            let _proof = rd.next().await.unwrap();
            let fake = Bytes::from_static(&[7; MAC_BYTES]);
            send(&mut bw, addr(), &[frame(FrameKind::Accept, fake)])
                .await
                .unwrap();
            bw
        };
        let client = async move {
            let mut rd = FrameReader::new(ar, 1024);
            client(&mut rd, &mut aw, &cfg("a", "k"), addr()).await
        };
        let (c, _bw) = tokio::join!(client, impostor);
        assert!(matches!(c, Err(RpcError::AuthFailed { .. })), "{c:?}");
    }

    #[test]
    fn hello_round_trips_and_rejects_garbage() {
        let h = Hello {
            version: 7,
            nonce: [3; NONCE_BYTES],
            node_id: NodeId::from("node-1"),
        };
        let d = Hello::decode(&h.encode()).unwrap();
        assert_eq!(
            (d.version, d.nonce, d.node_id),
            (7, [3; NONCE_BYTES], h.node_id.clone())
        );
        assert!(Hello::decode(b"QRPC").is_err());
        let mut bad = h.encode().to_vec();
        bad.push(0);
        assert!(Hello::decode(&bad).is_err());
        let nameless = Hello {
            node_id: NodeId::from(""),
            ..h
        };
        assert_eq!(
            Hello::decode(&nameless.encode()).err().as_deref(),
            Some("malformed hello: empty node id")
        );
    }
}
