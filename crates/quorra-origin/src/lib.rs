//! Namespaces with origins: the cache layer in front of a database (or a service).
//!
//! A namespace is a key prefix with a policy ([`namespace`]): which origin backs it, the
//! query that loads a key, how long a loaded value lives and how much that lifetime is
//! jittered, how long past it a stale value is served while it is refreshed, how long
//! the origin's "no such row" is remembered. On a miss, the key's
//! primary loads it from the origin once, however many clients wait
//! ([`flight::SingleFlight`]), stores it like any write and answers every waiter. With
//! `write = "through"`, SET and DEL reach the origin before the cache.
//!
//! The crate is in two parts:
//!
//! - the core, with no I/O: the checked configuration ([`config`], [`namespace`]),
//!   single-flight ([`flight`]), the negative cache ([`negative`]) and TTL jitter.
//!   Time comes in as an argument, so it is tested deterministically;
//! - the edge: the [`origin::Origin`] trait and its drivers, [`sqlite`] (embedded, via
//!   rusqlite), [`postgres`] (pooled tokio-postgres) and [`http`] (a GET of a URL
//!   template, hyper's client), and [`origins::Origins`], which
//!   holds a node's drivers, flights, negative cache, refresh queue and origin health.
//!
//! Where a load runs, how its value is stored and replicated, and what the client sees
//! is the node's business (quorra-node's `read_through`): this crate decides and loads.

pub mod config;
pub mod flight;
pub mod http;
pub mod namespace;
pub mod negative;
pub mod origin;
pub mod origins;
pub mod postgres;
pub mod sqlite;
pub mod write_behind;

pub use config::{ConfigError, NamespaceSpec, OriginSpec};
pub use namespace::{Catalog, Namespace, OriginConfig, OriginKind, WriteBehindPolicy, WriteMode};
pub use origin::{Origin, OriginError};
pub use origins::Origins;
