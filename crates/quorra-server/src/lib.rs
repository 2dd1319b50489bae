//! The quorra server: a node's edges — its listeners, its client connections, the admin
//! HTTP API, the settings of the binary, and `quorra up`. Everything between a parsed
//! command and the store is [`quorra_node`]'s.
//!
//! # Components
//!
//! - [`server`]: the listeners, the accept loop with `maxclients` and protected mode,
//!   the active-expiry ticker, the cluster's background tasks, graceful shutdown;
//!   [`server::start`] runs a node inside the caller's tokio runtime, on the clock it is
//!   given (tests start nodes on port 0, some on a mock clock).
//! - [`resp_client`]: one RESP client: read, parse every buffered command, run them
//!   ([`quorra_node::commands`] on a single node, [`quorra_node::pipeline`] in a
//!   cluster), write all replies with one write, idle timeout, client memory.
//! - [`http_listener`], [`http`]: the admin HTTP API (`/v1/keys/{key}`, `/v1/stats`,
//!   `/healthz`, `/readyz`, `/metrics`), its access rules and security headers;
//!   [`admin_api`]: its cluster routes beyond single keys (overview, key scans, the
//!   console, node actions); [`api`]: what both share (JSON errors, running a command).
//! - [`settings`]: settings from a TOML file, `QUORRA_*` environment variables and flags.
//! - [`up`]: `quorra up`, a local cluster of separate node processes.

pub mod admin_api;
pub mod api;
pub mod dashboard;
pub mod http;
pub mod http_listener;
pub mod resp_client;
pub mod server;
pub mod settings;
pub mod up;

pub use quorra_node::config::Config;
pub use server::{RunningServer, start};
pub use settings::Settings;
