//! The node's listeners and background tasks, and how they start and stop.
//!
//! [`start`] binds the RESP and HTTP ports (port 0 picks free ones, which is how tests run
//! many nodes at once), spawns the accept loop, the HTTP server and the active-expiry
//! ticker, and returns a [`RunningServer`] handle. [`RunningServer::shutdown`] stops
//! accepting, lets every connection finish the batch it is executing, and waits for them.
//!
//! Admission, in order: `maxclients` (Redis's `-ERR max number of clients reached`), then
//! protected mode — with no password set, a client from an address other than loopback
//! is refused with a message that says how to fix it, as Redis does.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quorra_cluster::tls::{TlsError, TlsMaterial};
use quorra_origin::Origins;
use quorra_origin::origins::Health;
use quorra_ring::NodeId;
use quorra_store::Clock;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use quorra_node::cluster_node::{ClientPorts, ClusterParts, resolve_node_id};
use quorra_node::config::Config;
use quorra_node::log_limiter::LogLimiter;
use quorra_node::peer_handler::HandlerSlot;
use quorra_node::shared::{NodeParts, ServerCounters, Shared};

/// Sent to a client refused by protected mode, before the connection is closed.
pub const PROTECTED_MODE_MESSAGE: &str = "-DENIED quorra is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to quorra you may adopt one of the following solutions: 1) Set a password with --requirepass (or 'CONFIG SET requirepass <password>' from the loopback interface) and use AUTH. 2) Disable protected mode with 'CONFIG SET protected-mode no' from the loopback interface, making sure quorra is not reachable from the internet. 3) Restart the server with '--protected-mode false'. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.\r\n";

/// How long the accept loop waits after an accept error (out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Limits the log lines about accept errors, for every node of the process.
static ACCEPT_ERRORS_LOG: LogLimiter = LogLimiter::new(10_000);

/// Why a new connection is turned away, if it is.
pub fn refusal(shared: &Shared, peer: IpAddr) -> Option<&'static str> {
    let settings = shared.settings.read();
    if shared.clients.len() >= settings.maxclients {
        Some("-ERR max number of clients reached\r\n")
    } else if settings.protected_mode && settings.requirepass.is_none() && !peer.is_loopback() {
        Some(PROTECTED_MODE_MESSAGE)
    } else {
        None
    }
}

/// A node running in the current tokio runtime.
pub struct RunningServer {
    /// The RESP address actually bound (the TLS one with `tls-only`).
    pub resp_addr: SocketAddr,
    /// The RESP-over-TLS address actually bound, if any.
    pub tls_addr: Option<SocketAddr>,
    /// The HTTP address actually bound.
    pub http_addr: SocketAddr,
    /// The node's shared state (store, counters), for tests and embedding.
    pub shared: Arc<Shared>,
    tls: Option<Arc<TlsMaterial>>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl RunningServer {
    /// Stops accepting, closes every connection between batches, and waits for all tasks.
    /// In cluster mode the node first leaves the cluster: peers drop it from their rings
    /// at once instead of waiting for failure detection.
    pub async fn shutdown(self) {
        self.stop_with(true).await;
    }

    /// Stops without telling the peers, as a crash looks to them: they find out through
    /// failure detection. For tests of node failure.
    pub async fn crash(self) {
        self.stop_with(false).await;
    }

    async fn stop_with(self, leave: bool) {
        if leave {
            // Write-behind: what this node holds reaches the origin before it leaves.
            quorra_node::write_behind::flush_all(&self.shared).await;
        }
        if let Some(node) = &self.shared.cluster {
            node.stop(leave).await;
        }
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Reads the TLS certificate, key and CA files again (on SIGHUP): new connections use
    /// them. If they are unusable, the node keeps the ones it has and says why. `Ok`
    /// without TLS.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        match &self.tls {
            Some(tls) => tls.reload(),
            None => Ok(()),
        }
    }

    /// A token that stops the server when cancelled (for signal handlers).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }
}

/// Binds the ports and starts the node, whose store reads time from `clock` (the
/// binary passes the system clock; tests pass one they move). Fails if a port cannot be
/// bound. In cluster mode the node gossips from here on and joins the ring (`up`) once
/// it serves.
pub async fn start(mut config: Config, clock: Arc<dyn Clock>) -> std::io::Result<RunningServer> {
    config.maxclients =
        quorra_node::fd_limit::fit(config.maxclients, config.http_max_connections).maxclients;
    let tls = match &config.tls {
        Some(tls) => Some(Arc::new(
            TlsMaterial::load(tls.files.clone(), tls.client_certificates, tls.cluster)
                .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?,
        )),
        None => None,
    };
    let plain_listener = match &config.tls {
        Some(tls) if tls.only => None,
        _ => Some(TcpListener::bind((config.bind, config.port)).await?),
    };
    let tls_listener = match config.tls.as_ref().and_then(|tls| tls.port) {
        Some(port) => Some(TcpListener::bind((config.bind, port)).await?),
        None => None,
    };
    let http_listener = TcpListener::bind((config.bind, config.http_port)).await?;
    let tls_addr = tls_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let resp_addr = match (&plain_listener, tls_addr) {
        (Some(listener), _) => listener.local_addr()?,
        (None, Some(addr)) => addr,
        (None, None) => unreachable!("tls-only is refused without a TLS port"),
    };
    let http_addr = http_listener.local_addr()?;
    let node_id = match &config.cluster {
        Some(cluster) => Some(NodeId::from(resolve_node_id(cluster)?)),
        None => None,
    };
    let parts = NodeParts::new(&config, node_id.as_ref(), clock);
    // Peers' requests need the node's state, which holds the cluster machinery: the RPC
    // server starts with a handler that answers once the state exists.
    let peer_handler = HandlerSlot::default();
    let cluster = match (&config.cluster, node_id) {
        (Some(cluster), Some(node_id)) => {
            let cluster_tls = tls
                .clone()
                .filter(|_| config.tls.as_ref().is_some_and(|t| t.cluster));
            let cluster_parts = ClusterParts {
                store: parts.store.clone(),
                metrics: parts.metrics.clone(),
                timeout: cluster.timeout,
                consistency: cluster.consistency,
                max_hints: cluster.max_hints,
            };
            let node = quorra_node::cluster_node::start(
                &config,
                cluster,
                node_id,
                ClientPorts {
                    resp: resp_addr,
                    http: http_addr,
                },
                cluster_tls,
                cluster_parts,
                peer_handler.handler(),
            )
            .await?;
            Some(Arc::new(node))
        }
        _ => None,
    };
    let shared = Arc::new(Shared::new(config, resp_addr, parts, cluster.clone()));
    peer_handler.serve(&shared);
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();

    if let Some(listener) = plain_listener {
        tasks.spawn(accept_loop(
            shared.clone(),
            listener,
            None,
            stop.clone(),
            tasks.clone(),
        ));
    }
    if let Some(listener) = tls_listener {
        tasks.spawn(accept_loop(
            shared.clone(),
            listener,
            tls.clone(),
            stop.clone(),
            tasks.clone(),
        ));
    }
    tasks.spawn(expiry_ticker(shared.clone(), stop.clone()));
    if let Some(origins) = &shared.origins {
        tasks.spawn(watch_origins(origins.clone(), stop.clone()));
        tasks.spawn(quorra_node::read_through::refresh_stale(
            shared.clone(),
            stop.clone(),
        ));
        tasks.spawn(quorra_node::write_behind::flush_loop(
            shared.clone(),
            stop.clone(),
        ));
    }
    if !shared.config.bind.is_loopback() && shared.config.http_token.is_none() {
        tracing::warn!(%http_addr, "the admin HTTP API refuses clients on other hosts (only /healthz \
            and /readyz answer them) because no --http-token is set");
    }
    let https = tls
        .clone()
        .filter(|_| shared.config.tls.as_ref().is_some_and(|t| t.http));
    tasks.spawn(crate::http_listener::serve(
        http_listener,
        crate::http::router(shared.clone()),
        https,
        shared.config.http_max_connections,
        shared.config.http_request_timeout,
        stop.clone(),
        tasks.clone(),
    ));
    tasks.spawn(quorra_node::cluster_tasks::measure(
        shared.clone(),
        cluster.clone(),
        stop.clone(),
    ));
    tasks.spawn(quorra_node::cluster_tasks::raise_removals(
        shared.clone(),
        stop.clone(),
    ));
    if let Some(node) = &cluster {
        tasks.spawn(quorra_node::pubsub_relay::run(
            shared.clone(),
            node.clone(),
            stop.clone(),
        ));
        tasks.spawn(quorra_node::cluster_tasks::replay_hints(
            node.clone(),
            stop.clone(),
        ));
        tasks.spawn(quorra_node::cluster_tasks::refresh_hot_copies(
            shared.clone(),
            node.clone(),
            stop.clone(),
        ));
        tasks.spawn(quorra_node::cluster_tasks::send_invalidations(
            shared.clone(),
            node.clone(),
            stop.clone(),
        ));
        tasks.spawn(quorra_node::cluster_tasks::follow_views(
            shared.clone(),
            node.clone(),
            stop.clone(),
        ));
        if let Some(feed) = &shared.evictions {
            tasks.spawn(quorra_node::evictions::propagate(
                feed.clone(),
                node.clone(),
                stop.clone(),
            ));
        }
        if let Some(interval) = shared
            .config
            .cluster
            .as_ref()
            .and_then(|c| c.anti_entropy_interval)
        {
            tasks.spawn(quorra_node::cluster_tasks::anti_entropy(
                shared.clone(),
                node.clone(),
                interval,
                stop.clone(),
            ));
        }
        tasks.spawn(quorra_node::cluster_tasks::serve_when_joined(
            node.clone(),
            stop.clone(),
        ));
    }
    tracing::info!(%resp_addr, ?tls_addr, %http_addr, "quorra node started");
    Ok(RunningServer {
        resp_addr,
        tls_addr,
        http_addr,
        shared,
        tls,
        stop,
        tasks,
    })
}

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts RESP clients on `listener`, over TLS with `tls`, until `stop`.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<Arc<TlsMaterial>>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning, and
                // say so at most once every ten seconds.
                if let Some(held_back) = ACCEPT_ERRORS_LOG.admit() {
                    tracing::warn!(%error, not_logged_since_last_line = held_back, "accept failed");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        ServerCounters::bump(&shared.counters.connections_received);
        shared.metrics.connections.inc();
        let refused = refusal(&shared, peer.ip());
        if refused.is_some() {
            ServerCounters::bump(&shared.counters.rejected_connections);
        }
        let laddr = stream.local_addr().unwrap_or(shared.resp_addr);
        let (shared, stop) = (shared.clone(), stop.clone());
        match &tls {
            None => tasks.spawn(admit(shared, stream, peer, laddr, refused, stop)),
            Some(tls) => {
                let acceptor = tls.client_acceptor();
                tasks.spawn(async move {
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    let stream = tokio::select! {
                        handshake = handshake => match handshake {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, %error, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        },
                        () = stop.cancelled() => return,
                    };
                    admit(shared, stream, peer, laddr, refused, stop).await;
                })
            }
        };
    }
}

/// Serves a client that connected on `stream` (TCP or TLS), or refuses it with
/// `refused`'s message.
async fn admit<S: AsyncRead + AsyncWrite + Unpin>(
    shared: Arc<Shared>,
    mut stream: S,
    peer: SocketAddr,
    laddr: SocketAddr,
    refused: Option<&'static str>,
    stop: CancellationToken,
) {
    if let Some(message) = refused {
        let _ = stream.write_all(message.as_bytes()).await;
        let _ = stream.shutdown().await;
        return;
    }
    let info = shared.clients.connect(peer, laddr);
    shared.metrics.connected_clients.inc();
    crate::resp_client::serve(shared, stream, info, stop).await;
}

/// How often every origin is asked whether it answers.
const ORIGIN_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Checks every origin at start and every [`ORIGIN_CHECK_INTERVAL`], logging each
/// change of health, so that `/readyz`, INFO and metrics say which origin is down.
async fn watch_origins(origins: Arc<Origins>, stop: CancellationToken) {
    loop {
        let before = origins.health();
        origins.check_all().await;
        for ((name, now), (_, then)) in origins.health().into_iter().zip(before) {
            match (now, then) {
                (now, then) if now == then => {}
                (Health::Up, _) => tracing::info!(origin = name, "origin answers"),
                (Health::Down(reason), _) => {
                    tracing::warn!(origin = name, %reason, "origin is down")
                }
                (Health::Unknown, _) => {}
            }
        }
        tokio::select! {
            () = tokio::time::sleep(ORIGIN_CHECK_INTERVAL) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Runs the store's active expiry cycle `hz` times a second.
async fn expiry_ticker(shared: Arc<Shared>, stop: CancellationToken) {
    let mut interval =
        tokio::time::interval(Duration::from_millis(1000 / u64::from(shared.config.hz)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = stop.cancelled() => return,
        }
        shared.store.tick(shared.store.now_ms());
    }
}
