//! [`RpcServer`]: accepts peers, authenticates them, and runs their requests concurrently.
//!
//! One task per connection reads frames; each request runs in its own task, so a slow
//! request does not hold up the ones behind it and responses go back in completion order.
//! Before reading the next frame the reader takes one of `max_in_flight_per_conn`
//! permits, so a peer that floods requests is slowed by TCP back-pressure instead of
//! growing our task count. A connection that sends an oversized, malformed or unexpected
//! frame is dropped with a `warn!` naming its address; so is one that fails the handshake.
//!
//! Shutdown (a cancelled [`RpcServer::shutdown_token`], or [`RpcServer::shutdown`]): stop
//! accepting, stop reading requests, give running handlers up to `shutdown_grace` to
//! answer, then close every connection. Clients see
//! [`RpcError::Closed`](super::RpcError::Closed) for calls that
//! did not finish.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quorra_ring::NodeId;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::client::{tcp_halves, tls_halves};
use super::config::{HANDSHAKE_MAX_FRAME_BYTES, RpcConfig};
use super::frame::{Frame, FrameKind, FrameReader, ReadError, max_payload, write_frames};
use super::handshake;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again, so
/// the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A boxed, sendable future: what a [`Handler`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Serves requests. `Err(message)` reaches the caller as
/// [`RpcError::Remote`](super::RpcError::Remote).
///
/// Implemented for every `Fn(NodeId, Bytes) -> impl Future<Output = Result<Bytes,
/// String>>`, where the `NodeId` is the authenticated caller:
///
/// ```
/// use bytes::Bytes;
/// use quorra_cluster::rpc::Handler;
/// use quorra_ring::NodeId;
///
/// fn echo() -> impl Handler {
///     |_from: NodeId, payload: Bytes| async move { Ok::<_, String>(payload) }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Handles one request from the peer `from`.
    fn handle(&self, from: &NodeId, payload: Bytes) -> BoxFuture<Result<Bytes, String>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(NodeId, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, String>> + Send + 'static,
{
    fn handle(&self, from: &NodeId, payload: Bytes) -> BoxFuture<Result<Bytes, String>> {
        Box::pin(self(from.clone(), payload))
    }
}

/// A listening RPC server. Dropping it shuts it down in the background.
#[derive(Debug)]
pub struct RpcServer {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl RpcServer {
    /// Binds `addr` and starts accepting peers that know `config.secret`.
    ///
    /// Returns once the socket is listening (use port 0 and
    /// [`local_addr`](Self::local_addr) in tests). Must be called inside a tokio runtime.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        config: RpcConfig,
        handler: impl Handler,
    ) -> io::Result<RpcServer> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let shared = Arc::new(Shared {
            config,
            handler: Arc::new(handler),
            shutdown: shutdown.clone(),
        });
        tasks.spawn(accept_loop(listener, shared, tasks.clone()));
        tracing::info!(addr = %local_addr, "rpc server listening");
        Ok(RpcServer {
            local_addr,
            shutdown,
            tasks,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A token that shuts the server down when cancelled (e.g. from a signal handler).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Shuts down gracefully and returns when every connection is closed: at most about
    /// `shutdown_grace` after the call, plus the time to flush the last responses.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// What every connection task of one server shares.
struct Shared {
    config: RpcConfig,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tasks: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, addr)) => {
                tasks.spawn(serve_connection(stream, addr, shared.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "rpc accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, addr: SocketAddr, shared: Arc<Shared>) {
    let config = &shared.config;
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(peer = %addr, error = %e, "set_nodelay failed");
    }
    let (rd, mut wr) = match config.tls.as_ref().and_then(|tls| tls.cluster_acceptor()) {
        None => tcp_halves(stream),
        Some(acceptor) => {
            let accepted = tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                accepted = tokio::time::timeout(config.handshake_timeout, acceptor.accept(stream)) => accepted,
            };
            match accepted {
                Ok(Ok(stream)) => tls_halves(stream),
                Ok(Err(e)) => {
                    tracing::warn!(peer = %addr, error = %e, "rpc peer refused: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::warn!(peer = %addr, "rpc peer refused: TLS handshake timed out");
                    return;
                }
            }
        }
    };
    let mut reader = FrameReader::new(rd, HANDSHAKE_MAX_FRAME_BYTES);
    let handshake = tokio::time::timeout(
        config.handshake_timeout,
        handshake::server(&mut reader, &mut wr, config, addr),
    );
    let from = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        r = handshake => match r {
            Ok(Ok(from)) => from,
            Ok(Err(e)) => {
                tracing::warn!(peer = %addr, error = %e, "rpc peer refused");
                return;
            }
            Err(_) => {
                tracing::warn!(peer = %addr, after = ?config.handshake_timeout, "rpc peer refused: handshake timed out");
                return;
            }
        },
    };
    tracing::debug!(peer = %addr, node = %from, "rpc peer authenticated");

    // Cancelled when the connection is over: stops handlers whose answer has nowhere to go.
    let done = CancellationToken::new();
    // Cancelled to stop writing at once (peer gone, or not reading our last responses).
    let stop_writer = CancellationToken::new();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut writer = tokio::spawn(write_frames(wr, rx, stop_writer.clone()));
    let permits = Arc::new(Semaphore::new(config.max_in_flight_per_conn.max(1)));
    let handlers = TaskTracker::new();
    let max_response = max_payload(config.max_frame_bytes);

    loop {
        let permit = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => p.expect("never closed"),
        };
        let frame = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            f = reader.next() => f,
        };
        let request = match frame {
            Ok(f) if f.kind == FrameKind::Request => f,
            Ok(f) => {
                tracing::warn!(peer = %addr, kind = ?f.kind, "rpc peer dropped: unexpected frame");
                done.cancel();
                break;
            }
            Err(ReadError::Eof) => {
                tracing::debug!(peer = %addr, "rpc peer disconnected");
                done.cancel();
                break;
            }
            Err(e) => {
                let e = handshake::read_error(addr, e);
                tracing::warn!(peer = %addr, error = %e, "rpc peer dropped");
                done.cancel();
                break;
            }
        };
        let work = shared.handler.handle(&from, request.payload);
        let tx = tx.clone();
        let done = done.clone();
        handlers.spawn(async move {
            let _permit = permit;
            let result = tokio::select! {
                _ = done.cancelled() => return,
                r = work => r,
            };
            let reply = match result {
                Ok(payload) if payload.len() <= max_response => {
                    Frame::new(FrameKind::Response, request.id, payload)
                }
                Ok(payload) => Frame::new(
                    FrameKind::Error,
                    request.id,
                    Bytes::from(format!(
                        "response of {} bytes exceeds the frame limit",
                        payload.len()
                    )),
                ),
                Err(message) => {
                    let mut message = message.into_bytes();
                    message.truncate(max_response);
                    Frame::new(FrameKind::Error, request.id, Bytes::from(message))
                }
            };
            let _ = tx.send(reply);
        });
    }

    // Shutting down or the peer is gone: let running handlers finish (bounded by the
    // grace period when shutting down; at once when the connection is already dead).
    handlers.close();
    if !done.is_cancelled() {
        let _ = tokio::time::timeout(config.shutdown_grace, handlers.wait()).await;
    }
    done.cancel();
    handlers.wait().await;
    // Flush what the handlers answered, then close; a peer that does not read gets cut.
    drop(tx);
    if tokio::time::timeout(config.shutdown_grace, &mut writer)
        .await
        .is_err()
    {
        stop_writer.cancel();
        let _ = writer.await;
    }
}
