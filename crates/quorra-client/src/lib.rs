//! quorra's Rust client.
//!
//! - **Straight to the primary.** It learns the cluster's members and ring from any node
//!   ([`topology`]) and sends each key's commands to the node that runs its writes, so a
//!   request costs no hop between nodes. It asks again every
//!   [`ClientConfig::refresh_every`], and at once when a node stops answering, so it
//!   follows members joining, leaving and failing.
//! - **Pooled, pipelined connections.** [`ClientConfig::connections_per_node`]
//!   connections per node, each carrying many requests at once ([`connection`]).
//! - **A near cache** (L1, [`near_cache`]) bounded in bytes, kept coherent by client
//!   tracking: the nodes tell it of every change of a key it read, wherever in the
//!   cluster the change happened, before the change is acknowledged to its writer.
//! - **Cache-aside** with [`Client::get_or_load`]: on a miss one caller per key in this
//!   process loads the value (single flight) and stores it with a TTL; the others wait for
//!   that value.
//! - **Typed commands** from [`quorra_resp::Command`]: [`Client::command`] sends any of
//!   them to the primary of its first key; [`Client::get`], [`Client::set`] and
//!   [`Client::del`] are the common ones.
//!
//! ```no_run
//! # async fn example() -> Result<(), quorra_client::Error> {
//! use std::time::Duration;
//! let client = quorra_client::Client::connect("127.0.0.1:6379".parse().unwrap(), Default::default()).await?;
//! client.set(b"greeting", b"hello", Some(Duration::from_secs(60))).await?;
//! let value = client.get(b"greeting").await?; // from the node, then from the near cache
//! # Ok(()) }
//! ```

pub mod connection;
pub mod near_cache;
pub mod topology;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use quorra_resp::command::{SetCondition, SetExpiry, SetOptions};
use quorra_resp::{Command, Frame};
use tokio::sync::watch;

use crate::connection::Connection;
use crate::near_cache::NearCache;
use crate::topology::Topology;

/// What can go wrong.
#[derive(Debug, thiserror::Error, Clone)]
pub enum Error {
    /// The network.
    #[error("i/o: {0}")]
    Io(String),
    /// The connection closed before the reply came.
    #[error("connection closed")]
    Closed,
    /// The node answered with an error.
    #[error("{0}")]
    Server(String),
    /// A reply that breaks the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The cluster's description could not be read.
    #[error("topology: {0}")]
    Topology(String),
    /// No node serves the key.
    #[error("no node serves the key")]
    NoNode,
    /// A reply of another type than the command's.
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    /// A `get_or_load` loader failed.
    #[error("loading failed: {0}")]
    Load(String),
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::Io(error.to_string())
    }
}

impl From<quorra_resp::ProtocolError> for Error {
    fn from(error: quorra_resp::ProtocolError) -> Self {
        Error::Protocol(error.to_string())
    }
}

/// How the client works.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Connections kept to each node.
    pub connections_per_node: usize,
    /// Most bytes the near cache holds; 0: no near cache (and no tracking).
    pub near_cache_bytes: u64,
    /// How often the client asks a node for the cluster's members and ring.
    pub refresh_every: Duration,
    /// Route each key to its primary; false: everything goes to the first address, as a
    /// plain client would (to compare).
    pub route_to_primary: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connections_per_node: 2,
            near_cache_bytes: 64 << 20,
            refresh_every: Duration::from_secs(1),
            route_to_primary: true,
        }
    }
}

/// A node's connections, used in turn.
struct Pool {
    connections: Vec<Arc<Connection>>,
    next: AtomicUsize,
}

/// Where the callers waiting for one load see its outcome (`None` until it is done).
type LoadWatch = watch::Receiver<Option<Result<Bytes, Error>>>;

struct Inner {
    config: ClientConfig,
    topology: RwLock<Arc<Topology>>,
    pools: Mutex<HashMap<SocketAddr, Arc<Pool>>>,
    near: Option<Arc<NearCache>>,
    /// Loads in flight by key: the later callers wait for the first one's value.
    loads: Mutex<HashMap<Bytes, LoadWatch>>,
}

/// A client of a quorra cluster (or of one node). Cheap to clone; clones share
/// connections and the near cache.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// Connects through the node at `seed`: learns the cluster from it, and keeps
    /// following it until the client is dropped.
    pub async fn connect(seed: SocketAddr, config: ClientConfig) -> Result<Client, Error> {
        let near = (config.near_cache_bytes > 0)
            .then(|| Arc::new(NearCache::new(config.near_cache_bytes)));
        let inner = Arc::new(Inner {
            topology: RwLock::new(Arc::new(Topology::single(seed))),
            pools: Mutex::new(HashMap::new()),
            near,
            loads: Mutex::new(HashMap::new()),
            config,
        });
        let client = Client { inner };
        client.refresh_topology().await?;
        let weak = Arc::downgrade(&client.inner);
        let every = client.inner.config.refresh_every;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                if let Err(error) = (Client { inner }).refresh_topology().await {
                    tracing::debug!(%error, "could not refresh the cluster's topology");
                }
            }
        });
        Ok(client)
    }

    /// Asks the known nodes, in turn, for the cluster's members and ring.
    pub async fn refresh_topology(&self) -> Result<(), Error> {
        let addresses = self.inner.topology.read().addresses.clone();
        let mut last = Error::NoNode;
        for addr in addresses {
            match self.describe(addr).await {
                Ok(topology) => {
                    let mut current = self.inner.topology.write();
                    if current.serving() != topology.serving() {
                        // Connections to nodes no longer serving are dropped.
                        let serving = topology.serving();
                        self.inner
                            .pools
                            .lock()
                            .retain(|addr, _| serving.contains(addr));
                    }
                    *current = Arc::new(topology);
                    return Ok(());
                }
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// The topology as the node at `addr` describes it.
    async fn describe(&self, addr: SocketAddr) -> Result<Topology, Error> {
        let connection = self.connection_to(addr).await?;
        let ask = |args: &[&[u8]]| {
            let mut out = BytesMut::new();
            quorra_resp::encode::command(&mut out, args);
            connection.call(out.freeze(), None)
        };
        let nodes = match ask(&[b"QUORRA", b"NODES"]).await? {
            Frame::Error(_) => return Ok(Topology::single(addr)),
            nodes => text(nodes)?,
        };
        let ring = text(ask(&[b"QUORRA", b"RING"]).await?)?;
        let copies = match ask(&[b"QUORRA", b"CONSISTENCY"]).await? {
            Frame::Map(fields) => fields
                .into_iter()
                .find(|(name, _)| *name == Frame::Bulk(Bytes::from_static(b"copies")))
                .and_then(|(_, value)| text(value).ok()?.parse().ok()),
            _ => None,
        }
        .ok_or_else(|| Error::Topology("no copies in QUORRA CONSISTENCY".into()))?;
        Topology::parse(&nodes, &ring, copies)
    }

    /// A connection to `addr`, opening the pool on first use and replacing closed
    /// connections.
    async fn connection_to(&self, addr: SocketAddr) -> Result<Arc<Connection>, Error> {
        let pool = self.inner.pools.lock().get(&addr).cloned();
        if let Some(pool) = pool {
            let turn = pool.next.fetch_add(1, Ordering::Relaxed) % pool.connections.len();
            let connection = &pool.connections[turn];
            if connection.is_open() {
                return Ok(connection.clone());
            }
        }
        // No pool yet, or a connection closed: a fresh pool.
        let mut connections = Vec::with_capacity(self.inner.config.connections_per_node);
        for _ in 0..self.inner.config.connections_per_node.max(1) {
            connections.push(Arc::new(
                Connection::open(addr, self.inner.near.clone()).await?,
            ));
        }
        let pool = Arc::new(Pool {
            connections,
            next: AtomicUsize::new(1),
        });
        let first = pool.connections[0].clone();
        self.inner.pools.lock().insert(addr, pool);
        Ok(first)
    }

    /// The address that serves `key`.
    fn route(&self, key: &[u8]) -> Result<SocketAddr, Error> {
        let topology = self.inner.topology.read();
        match self.inner.config.route_to_primary {
            true => topology.primary(key).ok_or(Error::NoNode),
            false => topology.addresses.first().copied().ok_or(Error::NoNode),
        }
    }

    /// Sends `bytes` to the node that serves `key` and returns the reply (an error reply
    /// as [`Error::Server`]); with `cache_as`, a value reply goes to the near cache. A
    /// node that cannot be reached makes the client learn the cluster again and try once
    /// more.
    async fn call(
        &self,
        key: &[u8],
        bytes: Bytes,
        cache_as: Option<Bytes>,
    ) -> Result<Frame, Error> {
        let mut retried = false;
        loop {
            let attempt = async {
                let connection = self.connection_to(self.route(key)?).await?;
                connection.call(bytes.clone(), cache_as.clone()).await
            };
            match attempt.await {
                Ok(Frame::Error(text)) => {
                    return Err(Error::Server(String::from_utf8_lossy(&text).into_owned()));
                }
                Ok(reply) => return Ok(reply),
                Err(Error::Io(_) | Error::Closed | Error::NoNode) if !retried => {
                    retried = true;
                    let _ = self.refresh_topology().await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Sends a typed command to the primary of its first key (any node for one
    /// without keys) and returns the reply.
    pub async fn command(&self, command: &Command<'_>) -> Result<Frame, Error> {
        let mut out = BytesMut::new();
        command.encode(&mut out);
        let key = first_key(command);
        self.call(key, out.freeze(), None).await
    }

    /// `GET key`: from the near cache when it holds the key, else from the key's primary
    /// (and then kept in the near cache).
    pub async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, Error> {
        if let Some(value) = self.inner.near.as_ref().and_then(|near| near.get(key)) {
            return Ok(Some(value));
        }
        let mut out = BytesMut::new();
        Command::Get { key }.encode(&mut out);
        let cache_as = self
            .inner
            .near
            .as_ref()
            .map(|_| Bytes::copy_from_slice(key));
        match self.call(key, out.freeze(), cache_as).await? {
            Frame::Bulk(value) => Ok(Some(value)),
            Frame::Null => Ok(None),
            other => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    /// `SET key value [PX ttl]`.
    pub async fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), Error> {
        let expiry = match ttl {
            Some(ttl) => SetExpiry::Px(ttl.as_millis().max(1) as i64),
            None => SetExpiry::None,
        };
        let command = Command::Set {
            key,
            value,
            options: SetOptions {
                condition: SetCondition::Always,
                expiry,
                get: false,
            },
        };
        self.command(&command).await.map(|_| ())
    }

    /// `DEL key`: whether it existed.
    pub async fn del(&self, key: &[u8]) -> Result<bool, Error> {
        match self.command(&Command::Del { keys: &[key] }).await? {
            Frame::Integer(n) => Ok(n > 0),
            other => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    /// Cache-aside: the value of `key` from the near cache or the cluster; on a miss,
    /// `load` computes it (one caller per key at a time in this process — the others
    /// wait for its value), and it is stored with `ttl` before it is returned.
    pub async fn get_or_load<F, Fut, E>(
        &self,
        key: &[u8],
        ttl: Duration,
        load: F,
    ) -> Result<Bytes, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        if let Some(value) = self.get(key).await? {
            return Ok(value);
        }
        let key = Bytes::copy_from_slice(key);
        let (sender, mut waiter) = {
            let mut loads = self.inner.loads.lock();
            match loads.get(&key) {
                Some(waiter) => (None, waiter.clone()),
                None => {
                    let (sender, waiter) = watch::channel(None);
                    loads.insert(key.clone(), waiter.clone());
                    (Some(sender), waiter)
                }
            }
        };
        let Some(sender) = sender else {
            // Another caller loads it: wait for its value.
            let outcome = waiter
                .wait_for(Option::is_some)
                .await
                .map_err(|_| Error::Load("the loading caller was cancelled".into()))?;
            return outcome.clone().expect("waited for a value");
        };
        let outcome = match load().await {
            Ok(value) => self.set(&key, &value, Some(ttl)).await.map(|()| value),
            Err(error) => Err(Error::Load(error.to_string())),
        };
        self.inner.loads.lock().remove(&key);
        let _ = sender.send(Some(outcome.clone()));
        outcome
    }

    /// The near cache's entries and their counted bytes (zeros without one).
    pub fn near_cache_size(&self) -> (usize, u64) {
        self.inner.near.as_ref().map_or((0, 0), |near| near.size())
    }
}

/// The first key of `command` (none: routed as an empty key, to some node).
fn first_key<'a>(command: &Command<'a>) -> &'a [u8] {
    match command {
        Command::Get { key }
        | Command::GetDel { key }
        | Command::Set { key, .. }
        | Command::Expire { key, .. }
        | Command::Ttl { key, .. }
        | Command::IncrBy { key, .. } => key,
        Command::MGet { keys } | Command::Del { keys } | Command::Exists { keys } => {
            keys.first().copied().unwrap_or_default()
        }
        Command::MSet { pairs } => pairs.first().map(|(key, _)| *key).unwrap_or_default(),
        Command::Ping | Command::Auth { .. } | Command::Hello { .. } => b"",
    }
}

/// A text reply's text.
fn text(frame: Frame) -> Result<String, Error> {
    match frame {
        Frame::Bulk(bytes) | Frame::Simple(bytes) | Frame::Verbatim { text: bytes, .. } => {
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        Frame::Error(text) => Err(Error::Server(String::from_utf8_lossy(&text).into_owned())),
        other => Err(Error::Unexpected(format!("{other:?}"))),
    }
}
