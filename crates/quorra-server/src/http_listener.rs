//! The admin HTTP port's listener: bounded connections and timeouts in front of the
//! router in [`crate::http`].
//!
//! - At most `http-max-connections` connections are served at once. The loop accepts a
//!   connection only when one of them is free, so the others wait in the kernel's listen
//!   queue and cost the node no file descriptor: a flood of idle or half-sent requests
//!   cannot take the descriptors the RESP port needs.
//! - A request's headers must arrive within `http-request-timeout-ms` (hyper's header
//!   timeout), and so must its body ([`crate::http`] bounds the handling of each request
//!   by the same time), or the connection is closed.
//! - Each request carries the peer's address ([`axum::extract::ConnectInfo`]), which the
//!   router's access check uses.
//!
//! - With `tls-http`, each connection is HTTPS: its TLS handshake is bounded like the
//!   headers.
//!
//! On shutdown the loop stops accepting and each connection finishes its request in
//! flight, then closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use quorra_cluster::tls::TlsMaterial;

use quorra_node::log_limiter::LogLimiter;

/// How long the loop waits after an accept error (out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Limits the log lines about accept errors on HTTP ports, for every node of the process.
static ACCEPT_ERRORS_LOG: LogLimiter = LogLimiter::new(10_000);

/// Serves `app` on `listener` (HTTPS with `tls`) with at most `max_connections` at once
/// and headers bounded by `header_timeout`, until `stop`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<TlsMaterial>>,
    max_connections: usize,
    header_timeout: Duration,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = stop.cancelled() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                if let Some(held_back) = ACCEPT_ERRORS_LOG.admit() {
                    tracing::warn!(%error, not_logged_since_last_line = held_back, "HTTP accept failed");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let app = app.clone();
        let stop = stop.clone();
        let acceptor = tls.as_ref().map(|tls| tls.admin_acceptor());
        tasks.spawn(async move {
            let _slot = slot;
            match acceptor {
                None => serve_connection(stream, peer, app, header_timeout, stop).await,
                Some(acceptor) => {
                    // The handshake is bounded like the headers that follow it.
                    let accepted =
                        tokio::time::timeout(header_timeout, acceptor.accept(stream)).await;
                    if let Ok(Ok(stream)) = accepted {
                        serve_connection(stream, peer, app, header_timeout, stop).await;
                    }
                }
            }
        });
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
