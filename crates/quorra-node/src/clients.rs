//! The client registry: what CLIENT LIST, CLIENT INFO and INFO clients report.
//!
//! Each connection owns an `Arc<ClientInfo>` and updates it with relaxed atomics (last
//! command, last interaction) or a small lock (name, library), so the hot path never
//! touches the registry; the registry's lock is taken only to connect, disconnect and list.
//!
//! The registry also keeps the sum of every client's buffer bytes (requests still
//! arriving, replies not yet sent) for the `maxmemory-clients` budget: a connection
//! reports its own figure after each read, and when the sum passes the budget the
//! client holding the most is told to close ([`ClientInfo::kill`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use quorra_resp::Protocol;
use quorra_resp::command::COMMANDS;

use crate::wall_clock::unix_ms;

/// One connected client.
#[derive(Debug)]
pub struct ClientInfo {
    /// Unique, increasing id (CLIENT ID).
    pub id: u64,
    /// Peer address.
    pub addr: SocketAddr,
    /// Local address.
    pub laddr: SocketAddr,
    /// Connect time, ms since the epoch.
    pub created_ms: u64,
    /// Last command time, ms since the epoch.
    pub last_interaction_ms: AtomicU64,
    /// Index in the command table of the last command, or `usize::MAX` for none.
    pub last_command: AtomicUsize,
    /// 2 or 3.
    pub resp: AtomicU8,
    /// The database it has selected (SELECT).
    pub db: AtomicU8,
    /// CLIENT SETNAME / HELLO SETNAME.
    pub name: Mutex<String>,
    /// CLIENT SETINFO LIB-NAME and LIB-VER.
    pub lib: Mutex<(String, String)>,
    /// Bytes its input and output buffers hold, as last reported.
    pub buffered: AtomicU64,
    /// Cancelled to make the connection close (client memory over budget).
    pub kill: CancellationToken,
    /// Its channel, pattern and shard channel subscriptions (CLIENT LIST's `sub`,
    /// `psub`, `ssub`).
    pub subscriptions: [AtomicUsize; 3],
}

impl ClientInfo {
    /// Records the protocol the client now speaks (HELLO, RESET).
    pub fn set_protocol(&self, protocol: Protocol) {
        let version = if protocol == Protocol::Resp3 { 3 } else { 2 };
        self.resp.store(version, Ordering::Relaxed);
    }

    /// The CLIENT INFO / CLIENT LIST line for this client (without the newline).
    pub fn describe(&self, now_ms: u64) -> String {
        let command = match self.last_command.load(Ordering::Relaxed) {
            usize::MAX => "NULL".to_owned(),
            index => COMMANDS[index].name.to_owned(),
        };
        let (lib_name, lib_ver) = self.lib.lock().clone();
        let [sub, psub, ssub] = self
            .subscriptions
            .each_ref()
            .map(|count| count.load(Ordering::Relaxed));
        // Redis's flags: P for a subscriber, N for none.
        let flags = if sub + psub + ssub > 0 { "P" } else { "N" };
        let mut line = String::new();
        let _ = write!(
            line,
            "id={} addr={} laddr={} name={} age={} idle={} flags={flags} db={} sub={sub} psub={psub} \
             ssub={ssub} multi=-1 cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.name.lock(),
            now_ms.saturating_sub(self.created_ms) / 1000,
            now_ms.saturating_sub(self.last_interaction_ms.load(Ordering::Relaxed)) / 1000,
            self.db.load(Ordering::Relaxed),
            command,
            self.resp.load(Ordering::Relaxed),
            lib_name,
            lib_ver,
        );
        line
    }
}

/// All connected clients.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    next_id: AtomicU64,
    clients: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
    /// The sum of every client's `buffered`.
    buffered: AtomicU64,
    /// Clients closed for holding the most when the budget was passed.
    evicted: AtomicU64,
}

impl ClientRegistry {
    /// Registers a new connection and returns its record.
    pub fn connect(&self, addr: SocketAddr, laddr: SocketAddr) -> Arc<ClientInfo> {
        let info = self.unlisted(addr, laddr);
        self.clients.lock().insert(info.id, info.clone());
        info
    }

    /// A record with a fresh id that CLIENT LIST does not show: for commands a peer
    /// node runs here on behalf of its own client.
    pub fn unlisted(&self, addr: SocketAddr, laddr: SocketAddr) -> Arc<ClientInfo> {
        let now = unix_ms();
        Arc::new(ClientInfo {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            addr,
            laddr,
            created_ms: now,
            last_interaction_ms: AtomicU64::new(now),
            last_command: AtomicUsize::new(usize::MAX),
            resp: AtomicU8::new(2),
            db: AtomicU8::new(0),
            name: Mutex::new(String::new()),
            lib: Mutex::new((String::new(), String::new())),
            buffered: AtomicU64::new(0),
            kill: CancellationToken::new(),
            subscriptions: Default::default(),
        })
    }

    /// Records that `client`'s buffers hold `bytes` now; returns the sum over all
    /// clients.
    pub fn set_buffered(&self, client: &ClientInfo, bytes: u64) -> u64 {
        let before = client.buffered.swap(bytes, Ordering::Relaxed);
        if bytes >= before {
            self.buffered.fetch_add(bytes - before, Ordering::Relaxed) + (bytes - before)
        } else {
            self.buffered.fetch_sub(before - bytes, Ordering::Relaxed) - (before - bytes)
        }
    }

    /// Bytes all clients' buffers hold.
    pub fn buffered(&self) -> u64 {
        self.buffered.load(Ordering::Relaxed)
    }

    /// Clients closed for client memory since start.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Tells the client holding the most buffer bytes (and not already told) to close,
    /// and returns it.
    pub fn evict_biggest(&self) -> Option<Arc<ClientInfo>> {
        let biggest = self
            .clients
            .lock()
            .values()
            .filter(|client| !client.kill.is_cancelled())
            .max_by_key(|client| client.buffered.load(Ordering::Relaxed))
            .cloned()?;
        biggest.kill.cancel();
        self.evicted.fetch_add(1, Ordering::Relaxed);
        Some(biggest)
    }

    /// Removes a connection's record; its buffers no longer count.
    pub fn disconnect(&self, id: u64) {
        let removed = self.clients.lock().remove(&id);
        if let Some(client) = removed {
            self.set_buffered(&client, 0);
        }
    }

    /// True if client `id` is connected.
    pub fn contains(&self, id: u64) -> bool {
        self.clients.lock().contains_key(&id)
    }

    /// Number of connected clients.
    pub fn len(&self) -> usize {
        self.clients.lock().len()
    }

    /// True when no client is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of the connected clients, by id.
    pub fn list(&self) -> Vec<Arc<ClientInfo>> {
        self.clients.lock().values().cloned().collect()
    }
}
