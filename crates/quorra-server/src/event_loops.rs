//! The threads that serve client connections: one single-threaded tokio runtime each,
//! every connection staying on the thread it was given.
//!
//! Why not the node's multi-threaded runtime: there, a worker woken for a ready
//! connection often wakes another worker to share the work (a futex wake and a context
//! switch, 0.09 futex calls per request at pipeline 1), and tasks move between cores. A
//! thread that owns its connections is woken only by its own sockets, as Redis's event
//! loop is, and several such threads still use several cores. Measured on the 2-core
//! development machine with redis-benchmark (`docs/benchmarks.md`), server CPU per
//! million requests fell from 1.25 to 1.18 s at pipeline 16 and from 9.52 to 9.40 s at
//! pipeline 1.
//!
//! The accept loop hands each new connection to the next thread, round-robin. A thread
//! ends once the accept loop is gone (the node stopped or its runtime was dropped) and
//! its connections have ended: they end between batches when the node stops, or when
//! their clients leave.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clients::ClientInfo;
use crate::shared::Shared;

/// A connection accepted by the accept loop, for a connection thread to serve.
struct Accepted {
    stream: std::net::TcpStream,
    info: Arc<ClientInfo>,
}

/// Handles to the connection threads.
pub struct EventLoops {
    threads: Vec<mpsc::UnboundedSender<Accepted>>,
    next: usize,
}

impl EventLoops {
    /// Starts `count` connection threads. Their connections are tracked by `tasks`, so
    /// the node's shutdown waits for them, and stop at `stop`.
    pub fn start(
        count: usize,
        shared: &Arc<Shared>,
        stop: &CancellationToken,
        tasks: &TaskTracker,
    ) -> std::io::Result<EventLoops> {
        let mut threads = Vec::with_capacity(count);
        for index in 0..count.max(1) {
            let (sender, receiver) = mpsc::unbounded_channel();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (shared, stop, tasks) = (shared.clone(), stop.clone(), tasks.clone());
            std::thread::Builder::new()
                .name(format!("quorra-conn-{index}"))
                .spawn(move || runtime.block_on(serve(receiver, shared, stop, tasks)))?;
            threads.push(sender);
        }
        Ok(EventLoops { threads, next: 0 })
    }

    /// Gives the connection `stream` to the next thread.
    pub fn assign(&mut self, shared: &Shared, stream: TcpStream, info: Arc<ClientInfo>) {
        let refused = |info: &ClientInfo| {
            shared.clients.disconnect(info.id);
            shared.metrics.connected_clients.dec();
        };
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "cannot hand a connection to its thread");
                return refused(&info);
            }
        };
        let thread = &self.threads[self.next];
        self.next = (self.next + 1) % self.threads.len();
        if let Err(mpsc::error::SendError(accepted)) = thread.send(Accepted { stream, info }) {
            // The thread is gone, which happens only while the node stops.
            refused(&accepted.info);
        }
    }
}

/// One connection thread: serves what the accept loop hands it.
async fn serve(
    mut accepted: mpsc::UnboundedReceiver<Accepted>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let mine = TaskTracker::new();
    while let Some(Accepted { stream, info }) = accepted.recv().await {
        match TcpStream::from_std(stream) {
            Ok(stream) => {
                let connection =
                    crate::connection::serve(shared.clone(), stream, info, stop.clone());
                tokio::spawn(mine.track_future(tasks.track_future(connection)));
            }
            Err(error) => {
                tracing::warn!(%error, "cannot register a connection");
                shared.clients.disconnect(info.id);
                shared.metrics.connected_clients.dec();
            }
        }
    }
    mine.close();
    mine.wait().await;
}
