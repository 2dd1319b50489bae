//! Active expiry: reclaiming expired keys nobody touches, in the style of Redis's
//! `activeExpireCycle`, plus tombstone purge.
//!
//! Lazy expiry (every access checks the deadline and removes a stale entry) is exact
//! but leaves untouched expired keys in memory forever. The server therefore calls
//! [`crate::Store::tick`] periodically (every 100 ms by default). One tick visits the
//! shards round-robin, starting where the previous tick stopped, and for each shard:
//!
//! 1. takes the shard lock and examines the next [`ACTIVE_EXPIRE_KEYS_PER_LOOP`]
//!    entries of the shard's deadline vector (live keys with a TTL, and tombstones with
//!    their purge time), continuing from a per-shard cursor so that successive samples
//!    sweep the whole vector. Entries whose deadline is before `now` are removed:
//!    expired keys count as expirations, tombstones past their grace period are purged.
//!    Removal is a swap-remove, O(1); the entry moved into the hole is examined next.
//! 2. releases the lock, and repeats step 1 while more than
//!    [`ACTIVE_EXPIRE_STALE_PERCENT`] % of the sample was stale: a high stale share means
//!    the shard probably holds many more.
//!
//! Stop conditions: a shard is left when a sample is mostly fresh (or empty); the
//! whole cycle stops when [`ACTIVE_EXPIRE_CYCLE_BUDGET_MS`] of clock time have passed
//! since it started, or when one shard has run [`ACTIVE_EXPIRE_MAX_LOOPS_PER_SHARD`]
//! loops (an iteration budget, which is what bounds the work when the clock does not
//! move, e.g. a mock clock in tests); the next tick resumes at that shard.
//!
//! Failure modes: if keys expire faster than the budget can remove them, memory holds
//! expired keys longer (they are still invisible to reads and are evicted first only
//! if they are also least recently used); the lock is held for one sample at a time, so
//! a cycle adds at most one sample's work to a writer's latency.

use crate::shard::{Shard, State};

/// Entries examined per sample (Redis: `ACTIVE_EXPIRE_CYCLE_KEYS_PER_LOOP`), count.
pub const ACTIVE_EXPIRE_KEYS_PER_LOOP: usize = 20;
/// Repeat on a shard while more than this share of a sample was stale, percent.
pub const ACTIVE_EXPIRE_STALE_PERCENT: u64 = 25;
/// Clock time one tick may spend, milliseconds (25% of the default 100 ms period).
pub const ACTIVE_EXPIRE_CYCLE_BUDGET_MS: u64 = 25;
/// Samples one shard may take in one tick, count.
pub const ACTIVE_EXPIRE_MAX_LOOPS_PER_SHARD: usize = 1_000;
/// Hashes with field TTLs one shard visits per tick to remove their expired fields
/// (each visit walks the hash's fields once), count. At 10 ticks a second, a shard's
/// volatile hashes are all visited within `count / 160` seconds.
pub const FIELD_EXPIRY_HASHES_PER_CYCLE: usize = 16;

/// What one sample did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Step {
    pub(crate) sampled: u64,
    pub(crate) expired: u64,
    pub(crate) purged: u64,
}

/// Examines up to [`ACTIVE_EXPIRE_KEYS_PER_LOOP`] deadlines of `sh` from its cursor and
/// calls `remove(sh, slot, was_live)` for each one before `now_ms`.
pub(crate) fn sample_shard(
    sh: &mut Shard,
    now_ms: u64,
    mut remove: impl FnMut(&mut Shard, u32, bool),
) -> Step {
    let mut step = Step::default();
    let budget = ACTIVE_EXPIRE_KEYS_PER_LOOP.min(sh.deadlines().len());
    for _ in 0..budget {
        let len = sh.deadlines().len();
        if len == 0 {
            break;
        }
        if sh.expire_cursor >= len {
            sh.expire_cursor = 0;
        }
        let d = sh.deadlines()[sh.expire_cursor];
        step.sampled += 1;
        if d.at_ms < now_ms {
            let live = sh.slot(d.slot).state() == State::Live;
            if live {
                step.expired += 1;
            } else {
                step.purged += 1;
            }
            // Swap-remove: another entry takes this position; examine it next.
            remove(sh, d.slot, live);
        } else {
            sh.expire_cursor += 1;
        }
    }
    step
}

/// Whether the stale share of `step` calls for another sample of the same shard.
pub(crate) fn should_repeat(step: &Step) -> bool {
    step.sampled > 0
        && (step.expired + step.purged) * 100 > step.sampled * ACTIVE_EXPIRE_STALE_PERCENT
}
