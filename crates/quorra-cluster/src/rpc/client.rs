//! [`RpcClient`]: pooled, multiplexed, authenticated connections to peers.
//!
//! Per peer the client keeps `connections_per_peer` *slots*; calls pick a slot round-robin.
//! A slot holds at most one live connection, its consecutive-failure count and the instant
//! before which it will not dial again. A connection carries many calls at once: each call
//! takes a fresh request id, parks a oneshot sender in the connection's in-flight map and
//! queues its frame for the connection's writer task; the reader task completes whichever
//! call a response names, in whatever order responses arrive.
//!
//! When a connection fails (EOF, reset, oversized or malformed frame) the reader fails
//! every call still in flight on it with the cause ([`RpcError::Closed`] on a clean EOF)
//! and the slot dials again on its next call. The first re-dial is immediate; each failed
//! dial then doubles the slot's wait (see `backoff_delay` in the config module), and calls
//! that arrive during the wait fail at once with the error of the last attempt, so a dead
//! peer costs its callers nothing and is dialled at most once per wait per slot.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::{HANDSHAKE_MAX_FRAME_BYTES, RpcConfig, backoff_delay};
use super::error::RpcError;
use super::frame::{Frame, FrameKind, FrameReader, HEADER_BYTES, max_payload, write_frames};
use super::handshake;

/// A client for calling peers. Cheap to clone: clones share the pools.
///
/// Dropping the last clone closes its connections.
#[derive(Clone, Debug)]
pub struct RpcClient {
    inner: Arc<ClientInner>,
}

#[derive(Debug)]
struct ClientInner {
    config: RpcConfig,
    /// Peer pools by address. A `parking_lot` mutex: held only to look up or insert.
    peers: Mutex<HashMap<SocketAddr, Arc<PeerPool>>>,
    /// Cancelled when the client is dropped; stops every connection task.
    closed: CancellationToken,
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

#[derive(Debug)]
struct PeerPool {
    /// Round-robin cursor over `slots`.
    next: AtomicUsize,
    /// A tokio mutex: held across a dial, so concurrent calls on a slot wait for the one
    /// dial instead of each opening a connection.
    slots: Box<[tokio::sync::Mutex<Slot>]>,
}

#[derive(Debug, Default)]
struct Slot {
    conn: Option<Arc<Conn>>,
    /// Consecutive failed dials; 0 after a successful handshake.
    failures: u32,
    /// No dial before this instant; calls meanwhile get `last_error`.
    retry_at: Option<Instant>,
    last_error: Option<RpcError>,
}

/// One authenticated connection shared by many calls.
#[derive(Debug)]
struct Conn {
    peer: SocketAddr,
    /// Frames for the writer task.
    tx: mpsc::UnboundedSender<Frame>,
    in_flight: Mutex<InFlight>,
    next_id: AtomicU64,
    /// Bounds calls in flight on this connection (`max_in_flight_per_conn`).
    permits: Semaphore,
    /// Cancelled when the connection is dead; stops its reader and writer.
    dead: CancellationToken,
    /// Responses received so far: a call that times out on a connection that received
    /// nothing since the call was sent finds the connection silent, and drops it.
    responses: AtomicU64,
}

type Reply = oneshot::Sender<Result<Bytes, RpcError>>;

#[derive(Debug, Default)]
struct InFlight {
    calls: HashMap<u64, Reply>,
    /// Set once, when the connection fails: the error later registrations get.
    failed: Option<RpcError>,
}

impl Conn {
    fn register(&self) -> Result<(u64, oneshot::Receiver<Result<Bytes, RpcError>>), RpcError> {
        let (tx, rx) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut in_flight = self.in_flight.lock();
        if let Some(e) = &in_flight.failed {
            return Err(e.clone());
        }
        in_flight.calls.insert(id, tx);
        Ok((id, rx))
    }

    fn complete(&self, id: u64, result: Result<Bytes, RpcError>) {
        self.responses.fetch_add(1, Ordering::Relaxed);
        let reply = self.in_flight.lock().calls.remove(&id);
        match reply {
            // The caller may have timed out meanwhile; then nobody listens.
            Some(reply) => {
                let _ = reply.send(result);
            }
            None => {
                tracing::debug!(peer = %self.peer, id, "rpc response for a call no longer waiting")
            }
        }
    }

    /// Marks the connection dead and fails every call in flight with `error`. Idempotent:
    /// the first cause wins.
    fn fail(&self, error: RpcError) {
        let calls = {
            let mut in_flight = self.in_flight.lock();
            if in_flight.failed.is_some() {
                return;
            }
            in_flight.failed = Some(error.clone());
            std::mem::take(&mut in_flight.calls)
        };
        self.dead.cancel();
        for (_, reply) in calls {
            let _ = reply.send(Err(error.clone()));
        }
    }
}

/// Removes a call from the in-flight map if the caller gives up (timeout, cancellation).
struct InFlightGuard<'a> {
    conn: &'a Conn,
    id: u64,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.conn.in_flight.lock().calls.remove(&self.id);
    }
}

impl RpcClient {
    /// A client with no connections yet; they are made on first use.
    pub fn new(config: RpcConfig) -> RpcClient {
        RpcClient {
            inner: Arc::new(ClientInner {
                config,
                peers: Mutex::new(HashMap::new()),
                closed: CancellationToken::new(),
            }),
        }
    }

    /// The client's configuration.
    pub fn config(&self) -> &RpcConfig {
        &self.inner.config
    }

    /// Calls `peer` with `payload` and the configured
    /// [`call_timeout`](RpcConfig::call_timeout); see [`call_timeout`](Self::call_timeout).
    pub async fn call(&self, peer: SocketAddr, payload: Bytes) -> Result<Bytes, RpcError> {
        self.call_timeout(peer, payload, self.inner.config.call_timeout)
            .await
    }

    /// Calls `peer` with `payload`, returning the handler's response.
    ///
    /// `timeout` bounds everything: waiting for a pooled connection (or dialling one), for
    /// an in-flight slot, and for the response. On expiry it returns
    /// [`RpcError::Timeout`]; the connection stays usable and a late response is dropped.
    /// A payload larger than the frame limit fails with [`RpcError::FrameTooLarge`]
    /// without touching the network.
    pub async fn call_timeout(
        &self,
        peer: SocketAddr,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let max = self.inner.config.max_frame_bytes;
        if payload.len() > max_payload(max) {
            return Err(RpcError::FrameTooLarge {
                peer,
                len: payload.len() + HEADER_BYTES,
                max,
            });
        }
        let mut sent_on = None;
        match tokio::time::timeout(timeout, self.call_inner(peer, payload, &mut sent_on)).await {
            Ok(result) => result,
            Err(_) => {
                let error = RpcError::Timeout {
                    peer,
                    after: timeout,
                };
                // Nothing came back on the connection since the request went out: the
                // peer or the path to it is gone (a cut link gives no reset, and TCP may
                // take many seconds to notice), so the next call should dial afresh.
                if let Some((conn, responses)) = sent_on {
                    if conn.responses.load(Ordering::Relaxed) == responses {
                        tracing::warn!(%peer, ?timeout, "rpc connection silent, dropping it");
                        conn.fail(error.clone());
                    }
                }
                Err(error)
            }
        }
    }

    /// The call without its timeout; `sent_on` is set to the connection and its response
    /// count when the request is queued, so the caller can tell a silent connection.
    async fn call_inner(
        &self,
        peer: SocketAddr,
        payload: Bytes,
        sent_on: &mut Option<(Arc<Conn>, u64)>,
    ) -> Result<Bytes, RpcError> {
        let conn = self.connection(peer).await?;
        let _permit = conn.permits.acquire().await.expect("never closed");
        let (id, rx) = conn.register()?;
        let _guard = InFlightGuard { conn: &conn, id };
        *sent_on = Some((conn.clone(), conn.responses.load(Ordering::Relaxed)));
        if conn
            .tx
            .send(Frame::new(FrameKind::Request, id, payload))
            .is_err()
        {
            return Err(RpcError::Closed { peer });
        }
        rx.await.unwrap_or(Err(RpcError::Closed { peer }))
    }

    fn pool(&self, peer: SocketAddr) -> Arc<PeerPool> {
        let n = self.inner.config.connections_per_peer.max(1);
        self.inner
            .peers
            .lock()
            .entry(peer)
            .or_insert_with(|| {
                Arc::new(PeerPool {
                    next: AtomicUsize::new(0),
                    slots: (0..n).map(|_| Default::default()).collect(),
                })
            })
            .clone()
    }

    /// A live connection to `peer` from the next slot, dialling if the slot has none and
    /// is not waiting out a backoff.
    async fn connection(&self, peer: SocketAddr) -> Result<Arc<Conn>, RpcError> {
        let pool = self.pool(peer);
        let i = pool.next.fetch_add(1, Ordering::Relaxed) % pool.slots.len();
        let mut slot = pool.slots[i].lock().await;
        if let Some(conn) = &slot.conn {
            if !conn.dead.is_cancelled() {
                return Ok(conn.clone());
            }
            slot.conn = None;
        }
        if let (Some(at), Some(e)) = (slot.retry_at, &slot.last_error) {
            if Instant::now() < at {
                return Err(e.clone());
            }
        }
        let config = &self.inner.config;
        let dialled = match tokio::time::timeout(config.connect_timeout, self.dial(peer)).await {
            Ok(r) => r,
            Err(_) => Err(RpcError::Unreachable {
                peer,
                source: Arc::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "connect and handshake took longer than {:?}",
                        config.connect_timeout
                    ),
                )),
            }),
        };
        match dialled {
            Ok(conn) => {
                *slot = Slot {
                    conn: Some(conn.clone()),
                    ..Slot::default()
                };
                Ok(conn)
            }
            Err(e) => {
                slot.failures = slot.failures.saturating_add(1);
                let wait = backoff_delay(config.backoff_base, config.backoff_max, slot.failures);
                slot.retry_at = Some(Instant::now() + wait);
                slot.last_error = Some(e.clone());
                tracing::warn!(peer = %peer, error = %e, failures = slot.failures, retry_in = ?wait, "rpc connect failed");
                Err(e)
            }
        }
    }

    /// Opens a TCP connection, runs the handshake and starts the connection's tasks.
    async fn dial(&self, peer: SocketAddr) -> Result<Arc<Conn>, RpcError> {
        let config = &self.inner.config;
        let unreachable = |e| RpcError::Unreachable {
            peer,
            source: Arc::new(e),
        };
        let stream = TcpStream::connect(peer).await.map_err(unreachable)?;
        stream.set_nodelay(true).map_err(unreachable)?;
        // Closing a connection (it went silent, or the client stops) resets it and drops
        // whatever is still queued to send: a request whose caller gave up must not be
        // delivered when the network comes back.
        stream.set_zero_linger().map_err(unreachable)?;
        let (rd, mut wr) = match config.tls.as_ref().and_then(|tls| tls.cluster_connector()) {
            None => tcp_halves(stream),
            Some(connector) => tls_halves(
                connector
                    .connect(crate::tls::peer_name(peer), stream)
                    .await
                    .map_err(unreachable)?,
            ),
        };
        let mut reader = FrameReader::new(rd, HANDSHAKE_MAX_FRAME_BYTES);
        let server_id = handshake::client(&mut reader, &mut wr, config, peer).await?;
        tracing::debug!(peer = %peer, node = %server_id, "rpc connection established");

        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Arc::new(Conn {
            peer,
            tx,
            in_flight: Mutex::new(InFlight::default()),
            next_id: AtomicU64::new(1),
            permits: Semaphore::new(config.max_in_flight_per_conn.max(1)),
            dead: self.inner.closed.child_token(),
            responses: AtomicU64::new(0),
        });
        let writer_conn = conn.clone();
        tokio::spawn(async move {
            let result = write_frames(wr, rx, writer_conn.dead.clone()).await;
            let error = match result {
                Ok(()) => RpcError::Closed { peer },
                Err(e) => RpcError::Unreachable {
                    peer,
                    source: Arc::new(e),
                },
            };
            writer_conn.fail(error);
        });
        tokio::spawn(read_responses(reader, conn.clone()));
        Ok(conn)
    }
}

/// The reading half of a connection to a peer, plain or TLS.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;

/// The writing half of a connection to a peer, plain or TLS.
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Splits a plain connection into halves the reader and writer tasks own (without the
/// lock a generic split takes on every read and write).
pub(crate) fn tcp_halves(stream: TcpStream) -> (ReadHalf, WriteHalf) {
    let (read, write) = stream.into_split();
    (Box::new(read), Box::new(write))
}

/// Splits a TLS connection into halves the reader and writer tasks own.
pub(crate) fn tls_halves<S>(stream: S) -> (ReadHalf, WriteHalf)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    (Box::new(read), Box::new(write))
}

/// The connection's reader task: completes calls until the connection fails.
async fn read_responses(mut reader: FrameReader<ReadHalf>, conn: Arc<Conn>) {
    let peer = conn.peer;
    loop {
        let frame = tokio::select! {
            _ = conn.dead.cancelled() => {
                conn.fail(RpcError::Closed { peer });
                return;
            }
            f = reader.next() => f,
        };
        match frame {
            Ok(f) => match f.kind {
                FrameKind::Response => conn.complete(f.id, Ok(f.payload)),
                FrameKind::Error => {
                    let message = String::from_utf8_lossy(&f.payload).into_owned();
                    conn.complete(f.id, Err(RpcError::Remote { peer, message }));
                }
                kind => {
                    let e = RpcError::Protocol {
                        peer,
                        detail: format!("unexpected {kind:?} frame from server"),
                    };
                    tracing::warn!(peer = %peer, error = %e, "dropping rpc connection");
                    conn.fail(e);
                    return;
                }
            },
            Err(e) => {
                let e = handshake::read_error(peer, e);
                if matches!(e, RpcError::Closed { .. }) {
                    tracing::debug!(peer = %peer, "rpc connection closed by peer");
                } else {
                    tracing::warn!(peer = %peer, error = %e, "dropping rpc connection");
                }
                conn.fail(e);
                return;
            }
        }
    }
}
