//! A client's session: the state its commands read and change (protocol, authentication,
//! consistency levels), whether the client came over RESP, over HTTP, or is a peer
//! whose client this node runs commands for.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use quorra_cluster::replication::{Consistency, Level};
use quorra_resp::Protocol;
use quorra_resp::command::CommandId;
use quorra_ring::NodeId;
use quorra_store::{DatabaseCounts, Version};

use crate::clients::ClientInfo;
use crate::pubsub::Subscriber;
use crate::tracking::{TrackingOn, Unsettled};
use crate::wall_clock::unix_ms;

/// Per-connection state that commands read and change.
pub struct Session {
    /// RESP2 until HELLO 3.
    pub protocol: Protocol,
    /// The database its keys belong to (SELECT): 0 until it selects another.
    pub db: u8,
    /// Whether the client may run commands other than AUTH, HELLO and QUIT.
    pub authenticated: bool,
    /// This client's entry in the registry.
    pub info: Arc<ClientInfo>,
    /// Set by QUIT: close after this batch's replies are written.
    pub close: bool,
    /// Each database's keys and keys with a TTL over the whole cluster, set by routing
    /// while INFO runs.
    pub cluster_keyspace: Option<Vec<DatabaseCounts>>,
    /// Set while a keyspace command runs for a peer that wants each replicated key
    /// counted once: only keys this node is primary for are seen.
    pub primary_only: bool,
    /// This connection's write level (QUORRA CONSISTENCY), over the node's default.
    pub write_level: Option<Level>,
    /// This connection's read level, over the node's default.
    pub read_level: Option<Level>,
    /// Failed AUTH attempts on this connection.
    pub auth_failures: u32,
    /// The open transaction: after MULTI, until EXEC or DISCARD.
    pub transaction: Option<Transaction>,
    /// The keys WATCH is watching, each with the version it had.
    pub watched: Vec<Watched>,
    /// Set while EXEC runs this session's queued commands inside the store's exclusive
    /// section, which they must not try to enter again as shared.
    pub in_exclusive_section: bool,
    /// Its pub/sub subscriptions and mailbox, from its first (P|S)SUBSCRIBE or from
    /// CLIENT TRACKING ON (the mailbox carries invalidations too).
    pub pubsub: Option<Subscriber>,
    /// Client tracking, while it is on (CLIENT TRACKING).
    pub tracking: Option<TrackingOn>,
    /// CLIENT CACHING YES|NO was sent: applies to the next command.
    pub caching: bool,
    /// A peer's session whose client tracks what it reads: the node that follows the
    /// keys its reads read ([`crate::tracking`]).
    pub tracked_for: Option<NodeId>,
    /// What its writes must tell other nodes before they are acknowledged.
    pub unsettled: Option<Unsettled>,
}

/// A transaction being queued: the commands between MULTI and EXEC.
#[derive(Debug, Default)]
pub struct Transaction {
    /// The commands, in order.
    pub queued: Vec<Vec<Bytes>>,
    /// Their argument bytes.
    pub bytes: usize,
    /// A command was refused while queuing: EXEC answers `EXECABORT` and runs nothing.
    pub refused: bool,
}

/// A WATCHed key and the version it had when watched (`None`: it had no entry). EXEC
/// runs only if it still has that version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// The key.
    pub key: Bytes,
    /// Its version then.
    pub version: Option<Version>,
}

impl Session {
    /// A fresh session: authenticated if no password is required.
    pub fn new(info: Arc<ClientInfo>, password_required: bool) -> Self {
        Session {
            protocol: Protocol::Resp2,
            db: 0,
            authenticated: !password_required,
            info,
            close: false,
            cluster_keyspace: None,
            primary_only: false,
            write_level: None,
            read_level: None,
            auth_failures: 0,
            transaction: None,
            watched: Vec::new(),
            in_exclusive_section: false,
            pubsub: None,
            tracking: None,
            caching: false,
            tracked_for: None,
            unsettled: None,
        }
    }

    /// Records that command `id` is running, for CLIENT LIST's `cmd`.
    pub fn note_command(&mut self, id: CommandId) {
        self.info.last_command.store(id.index(), Ordering::Relaxed);
    }

    /// Records that the client sent something now, for CLIENT LIST's `idle`. Once per
    /// read, not per command: `idle` counts whole seconds.
    pub fn note_interaction(&mut self) {
        self.info
            .last_interaction_ms
            .store(unix_ms(), Ordering::Relaxed);
    }

    /// The write level of this connection's commands.
    pub fn write_level(&self, defaults: &Consistency) -> Level {
        self.write_level.unwrap_or(defaults.write)
    }

    /// The read level of this connection's commands.
    pub fn read_level(&self, defaults: &Consistency) -> Level {
        self.read_level.unwrap_or(defaults.read)
    }

    /// Runs `f` — the commands of a transaction or a script — with the session marked as
    /// holding the store's exclusive section, so that they do not try to enter it again;
    /// the mark is put back as it was afterwards.
    pub fn inside_exclusive_section<R>(&mut self, f: impl FnOnce(&mut Session) -> R) -> R {
        let was = std::mem::replace(&mut self.in_exclusive_section, true);
        let result = f(self);
        self.in_exclusive_section = was;
        result
    }

    /// Selects database `db` (SELECT, RESET).
    pub fn select(&mut self, db: u8) {
        self.db = db;
        self.info.db.store(db, Ordering::Relaxed);
    }

    /// Switches the protocol (HELLO, RESET).
    pub fn set_protocol(&mut self, protocol: Protocol) {
        self.protocol = protocol;
        self.info.set_protocol(protocol);
    }
}
