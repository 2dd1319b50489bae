//! The quorra node: everything between a parsed request and the store — the one path
//! every command takes, whether it came over RESP or HTTP, runs here or on a peer, reads
//! a quorum or writes copies.
//!
//! # The path of a command
//!
//! - [`session`]: the state a client's commands read and change.
//! - [`databases`]: where a command's keys take the stored form of the session's
//!   database (SELECT), and where keys handed back lose it.
//! - [`pipeline`]: in cluster mode, a client's commands planned, run with as few round
//!   trips as order allows, answered in order; [`pipeline::run_one`] for one command.
//! - [`plan`]: where a command runs — a pure function of the command, whether its client
//!   is authenticated, and the placement of keys.
//! - [`executor`]: runs commands here or on a peer, in a mode (as the keys' primary,
//!   counting only primary keys).
//! - [`scatter`]: commands over several nodes, split and merged.
//! - [`quorum_read`], [`primary_write`]: reads and writes with copies.
//! - [`transaction`]: MULTI ... EXEC and WATCH in a cluster — run at the keys' one
//!   primary, atomically, their writes copied as one batch.
//! - [`lua`]: the Lua 5.1 engine behind EVAL (`commands::scripting`), sandboxed, with
//!   Redis's `redis` library and conversions; scripts run through the same path.
//! - [`origin_hooks`]: the namespaces' hooks around a command run at its keys' owner:
//!   [`write_through`] before it (SET and DEL reach the origin first), [`read_through`]
//!   after it (a miss loaded once at the key's primary; a stale value refreshed), and
//!   [`write_behind`] (writes marked on every replica, flushed by the primary). The
//!   policy and the drivers are quorra-origin's.
//! - [`commands`]: one handler per command of quorra-resp's command table, with Redis's
//!   replies and error texts, and the dispatch that checks a request against the table
//!   before it runs.
//! - [`accounting`]: what the node counts about its clients' commands, in one place.
//!
//! # Around it
//!
//! - [`cluster_node`]: cluster mode's machinery — membership, the view, the replicator.
//! - [`peer`]: the one client every request to a peer goes through, and its typed error.
//! - [`peer_handler`]: what the node answers its peers.
//! - [`node_replicas`]: how the replicator reaches a key's replicas.
//! - [`evictions`]: a key evicted for memory by one replica is evicted by all;
//!   [`removal_queue`]: the bounded queue between the store's removal hook and a task.
//! - [`pubsub`]: channels and their subscribers on this node; [`pubsub_relay`]: every
//!   message published here carried to the other nodes, in order; [`notifications`]:
//!   keyspace events published on it.
//! - [`cluster_tasks`]: anti-entropy, hint delivery, published figures.
//! - [`health`]: the process's CPU and memory, and when a node is degraded.
//! - [`shared`]: the state every task of a node shares.
//! - [`config`]: a node's checked configuration and its defaults.
//! - [`clients`]: the client registry; [`auth_log`]: failed authentication counted and
//!   kept for `ACL LOG`; [`log_limiter`]: rate-limited log lines; [`wall_clock`]:
//!   wall-clock time; [`fd_limit`]: the open-files limit and `maxclients`.
//! - [`metrics`]: Prometheus metrics.
//!
//! The listeners, the connection loop, the HTTP API and the binary are quorra-server's.
//!
//! # Non-goals (for now)
//!
//! Data types other than strings, persistence, ACL users other than the default one.

pub mod accounting;
pub mod auth_log;
pub mod clients;
pub mod cluster_node;
pub mod cluster_tasks;
#[cfg(test)]
mod collection_tests;
pub mod commands;
pub mod config;
pub mod databases;
pub mod evictions;
pub mod executor;
pub mod fd_limit;
pub mod health;
pub mod hot_cache;
pub mod hot_keys;
#[cfg(test)]
mod in_memory_cluster;
pub mod log_limiter;
pub mod lua;
pub mod metrics;
pub mod node_replicas;
pub mod notifications;
pub mod origin_hooks;
pub mod peer;
pub mod peer_handler;
pub mod pipeline;
#[cfg(test)]
mod pipeline_tests;
pub mod plan;
pub mod primary_write;
pub mod pubsub;
pub mod pubsub_relay;
pub mod quorum_read;
pub mod read_through;
pub mod removal_queue;
pub mod scatter;
pub mod session;
pub mod shared;
pub mod tracking;
pub mod transaction;
#[cfg(test)]
mod transaction_tests;
pub mod wall_clock;
pub mod write_behind;
pub mod write_through;
