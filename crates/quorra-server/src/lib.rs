//! The quorra node: everything between a socket and the store.
//!
//! # Components
//!
//! - [`config`]: settings from a TOML file, `QUORRA_*` environment variables and flags.
//! - [`accounting`]: what the node counts about its clients' commands, in one place.
//! - [`auth_log`]: failed authentication counted, logged (rate-limited) and kept for
//!   `ACL LOG`.
//! - [`fd_limit`]: raises the open-files limit and fits `maxclients` to it.
//! - [`server`]: the listeners, the accept loop with `maxclients` and protected mode,
//!   the active-expiry ticker, graceful shutdown; [`server::start`] runs a node inside
//!   the caller's tokio runtime (tests start nodes on port 0 this way).
//! - [`connection`]: one client: read, parse every buffered command, execute, write all
//!   replies with one write (pipelining), idle timeout.
//! - [`commands`]: one handler per command of quorra-resp's command table (name, arity,
//!   flags, key positions — what COMMAND reports), with Redis's replies and error texts,
//!   and the dispatch that checks a request against the table before it runs.
//! - [`cluster`]: cluster mode — gossip membership, the RPC server that runs peers'
//!   commands, the published figures.
//! - [`routing`]: proxy routing — which node runs a command, and how the replies of a
//!   command split over several nodes merge.
//! - [`evictions`]: a key evicted for memory by one replica is evicted by all.
//! - [`replica`]: replication — the transport to replicas, copying what a primary
//!   wrote, quorum reads.
//! - [`http_listener`]: the admin port's listener: a connection cap and timeouts.
//! - [`http`]: the admin HTTP API (`/v1/keys/{key}`, `/v1/stats`, `/healthz`, `/readyz`,
//!   `/metrics`).
//! - [`metrics`]: Prometheus metrics.
//! - [`up`]: `quorra up`, a local cluster of separate node processes.
//!
//! # Non-goals (for now)
//!
//! Data types other than strings, MULTI/EXEC, Pub/Sub, Lua, persistence, ACL users other
//! than the default one.

pub mod accounting;
pub mod auth_log;
pub mod clients;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod connection;
pub mod evictions;
pub mod fd_limit;
pub mod http;
pub mod http_listener;
pub mod metrics;
pub mod replica;
pub mod routing;
pub mod server;
pub mod shared;
pub mod up;

pub use config::{Config, Settings};
pub use server::{RunningServer, start};
