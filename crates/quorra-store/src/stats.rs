//! Counters, cheap to read: relaxed atomics, one set per shard, summed on demand.
//!
//! `entries`, `tombstones`, `used_bytes`, `volatile` and `entries_outside_db0` are
//! written under the shard's lock (stored, not added, so they equal the shard's own counters when it is unlocked); the event
//! counters are `fetch_add`s. Reading never takes a lock, so a snapshot taken while
//! writers run mixes slightly different instants across shards.

use std::sync::atomic::Ordering::Relaxed;

use crate::sync::AtomicU64;

/// The counters of one shard.
#[derive(Debug, Default)]
pub(crate) struct ShardStats {
    pub(crate) entries: AtomicU64,
    pub(crate) tombstones: AtomicU64,
    pub(crate) used_bytes: AtomicU64,
    pub(crate) volatile: AtomicU64,
    pub(crate) entries_outside_db0: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) expirations: AtomicU64,
}

impl ShardStats {
    pub(crate) fn evicted(&self) {
        self.evictions.fetch_add(1, Relaxed);
    }
    pub(crate) fn expired(&self) {
        self.expirations.fetch_add(1, Relaxed);
    }
    pub(crate) fn snapshot(&self) -> ShardStatsSnapshot {
        ShardStatsSnapshot {
            entries: self.entries.load(Relaxed),
            tombstones: self.tombstones.load(Relaxed),
            used_bytes: self.used_bytes.load(Relaxed),
            volatile: self.volatile.load(Relaxed),
            entries_outside_db0: self.entries_outside_db0.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            expirations: self.expirations.load(Relaxed),
        }
    }
}

/// A copy of one shard's counters (or their sum over all shards).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStatsSnapshot {
    /// Live (visible) entries.
    pub entries: u64,
    /// Tombstones awaiting purge.
    pub tombstones: u64,
    /// Accounted bytes of live entries and tombstones.
    pub used_bytes: u64,
    /// Live entries with a TTL (INFO keyspace's `expires`).
    pub volatile: u64,
    /// Live entries of databases other than 0 (counted in `entries` too).
    pub entries_outside_db0: u64,
    /// Entries removed to make room.
    pub evictions: u64,
    /// Entries removed because their TTL had passed (lazily or by the active cycle).
    pub expirations: u64,
}

impl ShardStatsSnapshot {
    fn add(&mut self, o: &ShardStatsSnapshot) {
        self.entries += o.entries;
        self.tombstones += o.tombstones;
        self.used_bytes += o.used_bytes;
        self.volatile += o.volatile;
        self.entries_outside_db0 += o.entries_outside_db0;
        self.evictions += o.evictions;
        self.expirations += o.expirations;
    }
}

/// The keys of one database, as INFO keyspace lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseCounts {
    /// The database number.
    pub db: u8,
    /// Its live keys.
    pub keys: u64,
    /// Its live keys with a TTL.
    pub expires: u64,
}

/// Keys and keys with a TTL added up per database, listed in database order: how a
/// store's pass, a node's primary-only pass and the cluster's sum of nodes count.
#[derive(Debug, Default)]
pub struct KeyspaceTally(std::collections::BTreeMap<u8, DatabaseCounts>);

impl KeyspaceTally {
    /// Adds `keys` keys of database `db`, `expires` of them with a TTL.
    pub fn add(&mut self, db: u8, keys: u64, expires: u64) {
        let counts = self.0.entry(db).or_insert(DatabaseCounts {
            db,
            keys: 0,
            expires: 0,
        });
        counts.keys += keys;
        counts.expires += expires;
    }

    /// The databases counted, in order.
    pub fn databases(self) -> Vec<DatabaseCounts> {
        self.0.into_values().collect()
    }
}

/// Store-wide statistics, as returned by [`crate::Store::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Sum over all shards.
    pub total: ShardStatsSnapshot,
    /// Per shard, by shard index.
    pub shards: Vec<ShardStatsSnapshot>,
    /// `maxmemory`, bytes (0 = unlimited).
    pub maxmemory: u64,
    /// The global accounted total (reserved + committed), bytes.
    pub accounted_bytes: u64,
}

impl StoreStats {
    pub(crate) fn from_shards(
        shards: Vec<ShardStatsSnapshot>,
        maxmemory: u64,
        accounted: u64,
    ) -> Self {
        let mut total = ShardStatsSnapshot::default();
        for s in &shards {
            total.add(s);
        }
        Self {
            total,
            shards,
            maxmemory,
            accounted_bytes: accounted,
        }
    }
}
