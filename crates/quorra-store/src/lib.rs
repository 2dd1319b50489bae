//! `quorra-store`: one node's data for the quorra cache.
//!
//! # Purpose
//!
//! Holds keys with Redis semantics — strings, hashes, lists, sets, sorted sets — under
//! a memory limit, with TTLs and with the per-entry versions and tombstones the
//! replication layer needs. It does no I/O and reads time only from an injected
//! [`Clock`], so every behaviour can be tested deterministically.
//!
//! # Components
//!
//! * [`store`] — [`Store`]: the sharded map and the Redis commands (GET, SET and its
//!   options, INCR family, APPEND, GETRANGE/SETRANGE, EXPIRE family, SCAN, RENAME,
//!   COPY, ...), replication entry points ([`Store::apply`], [`Store::visit_range`]),
//!   eviction, stats.
//! * `shard` (private, see [`store`](crate::store#sharding)) — slab of 56-byte slots, `hashbrown::HashTable<u32>`
//!   index, O(1) intrusive LRU (`lru`), deadline vector for TTLs and tombstones.
//! * [`collection`] — hashes (with field TTLs), lists, sets and sorted sets, the values
//!   a key can hold besides a string, and their exact accounting.
//! * [`memory`] — the global reserve-before-write budget and [`ENTRY_OVERHEAD`].
//! * [`expiry`] — the active expiry cycle driven by [`Store::tick`].
//! * [`version`] — [`Version`] and the [`HybridClock`] issuing them.
//! * [`clock`] — [`Clock`], [`SystemClock`], [`MockClock`].
//! * [`glob`] — Redis's glob matcher for KEYS and SCAN MATCH.
//! * [`numeric`] — Redis's integer and float parsing/formatting.
//! * [`stats`] — lock-free counters.
//!
//! # Guarantees
//!
//! * Accounted bytes (key + value + [`ENTRY_OVERHEAD`] per entry or tombstone) never
//!   exceed `maxmemory`: growth is reserved atomically before it is written.
//! * Within a shard, eviction is exact LRU; across shards it is approximate (see
//!   [`store`]).
//! * An expired key is never returned, whether or not the active cycle has run.
//! * Local writes carry strictly increasing versions; [`Store::apply`] is last-writer-wins
//!   and idempotent; a tombstone blocks older writes until purged.
//! * SCAN returns every key that exists for the whole scan at least once.
//! * Operations on one key are atomic; MSET, MSETNX, RENAME and COPY are atomic across
//!   shards. MGET, EXISTS, DEL and TOUCH on several keys are not snapshots.
//!
//! # Non-goals
//!
//! Streams; persistence; keyspace notifications; Redis's LFU and
//! volatile-* eviction policies; multiple databases (SELECT).

pub mod clock;
pub mod collection;
pub mod entry;
pub mod error;
pub mod expiry;
pub mod glob;
mod lru;
pub mod memory;
pub mod numeric;
mod shard;
pub mod stats;
pub mod store;
mod sync;
pub mod version;

pub use clock::{Clock, MockClock, SystemClock};
pub use entry::{
    AccessKind, AccessObserver, ApplyOutcome, EntryView, ExpireCycleReport, ExpireFlags,
    GetExExpiry, KeyType, RemovalObserver, SetCondition, SetExpiry, SetOptions, SetOutcome,
    VersionedEntry,
};
pub use error::StoreError;
pub use memory::ENTRY_OVERHEAD;
pub use stats::{DatabaseCounts, KeyspaceTally, ShardStatsSnapshot, StoreStats};
pub use store::delta::{Changes, DeltaOutcome, EntryDelta, KeyChange};
pub use store::{MAX_KEY_LEN, MaxmemoryPolicy, Store, StoreConfig};
pub use version::{HybridClock, Version};
