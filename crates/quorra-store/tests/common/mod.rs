//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use quorra_store::{MaxmemoryPolicy, MockClock, Store, StoreConfig};

/// Start time of every mock clock: 2026-01-01T00:00:00Z in ms.
pub const T0: u64 = 1_767_225_600_000;

/// A store with `config` and a mock clock at [`T0`].
pub fn store_with(config: StoreConfig) -> (Store, MockClock) {
    let clock = MockClock::new(T0);
    (Store::new(config, Arc::new(clock.clone())), clock)
}

/// A default store with a mock clock.
pub fn store() -> (Store, MockClock) {
    store_with(StoreConfig::default())
}

/// A store with a memory limit, LRU eviction and no tombstones.
pub fn small_store(maxmemory: u64, shards: usize) -> (Store, MockClock) {
    store_with(StoreConfig {
        shards,
        maxmemory,
        policy: MaxmemoryPolicy::AllKeysLru,
        tombstone_grace_ms: 0,
        ..StoreConfig::default()
    })
}
