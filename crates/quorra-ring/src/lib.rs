//! The consistent-hash ring: which nodes own a key.
//!
//! Every later piece of quorra asks this crate the same question — the server when it
//! routes a command, replication when it picks the replicas of a key, the smart client
//! when it routes directly, rebalancing when membership changes — so the answer must be
//! fast, balanced, identical in every process, and stable across versions.
//!
//! # Components
//!
//! - [`placement`]: the two hashes that fix where things sit on the `u64` ring: a key at
//!   [`key_token`] (xxh3-64 of its bytes, or of its `{hash tag}` when it has one) and a
//!   node's virtual nodes at [`vnode_token`].
//!   They never change; a golden test pins them.
//! - [`database`]: how a key of a database other than 0 is stored, and that placement
//!   skips that prefix.
//! - [`Ring`]: the members, each with a number of virtual nodes (default
//!   [`DEFAULT_VNODES`], configurable per ring and per node, so bigger nodes can carry
//!   more weight) and an optional zone. [`Ring::lookup`] finds a key's owner by binary
//!   search; [`Ring::preference_list`] finds the first `n` distinct physical nodes
//!   clockwise, spread over zones when zones are set.
//! - [`ownership_diff`]: given an old and a new ring, the token ranges whose preference
//!   list changed, with who held them before and who holds them after — the input to
//!   rebalancing.
//!
//! # Guarantees
//!
//! - Determinism: a ring depends only on its set of members (id, zone, vnode count), never
//!   on the order they were added in; rings built from the same members compare equal.
//! - Minimal movement: adding a node only moves keys to that node; removing a node only
//!   moves the keys it owned.
//! - No panics on bad input: adding a node twice, removing an unknown node, invalid vnode
//!   counts are [`RingError`]s; an empty ring owns nothing (`None`, empty lists); `n = 0`
//!   asks for nothing and gets an empty list.
//!
//! # Non-goals
//!
//! The ring does no I/O and knows nothing about liveness: the cluster layer decides who
//! is a member and builds a new ring when that changes. It is not Redis Cluster's hash
//! slots; clients need no redirects because any node proxies.
//!
//! ```
//! use quorra_ring::{NodeSpec, Ring};
//!
//! let mut ring = Ring::new();
//! for id in ["node-a", "node-b", "node-c"] {
//!     ring.add_node(NodeSpec::new(id)).unwrap();
//! }
//! let owner = ring.lookup(b"user:42").unwrap();
//! let replicas = ring.preference_list(b"user:42", 2);
//! assert_eq!(replicas[0], owner);
//! assert_ne!(replicas[0], replicas[1]);
//! ```

pub mod database;
mod diff;
mod error;
mod node;
pub mod placement;
mod ring;

pub use diff::{RangeChange, TokenRange, ownership_diff};
pub use error::RingError;
pub use node::{NodeId, NodeSpec};
pub use placement::{Token, hash_tag, key_hash, key_token, key_token_from_hash, vnode_token};
pub use ring::{DEFAULT_VNODES, MAX_VNODES_PER_NODE, Member, Ring};
