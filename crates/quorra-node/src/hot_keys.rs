//! Hot-key detection: which keys take an outsized share of this node's load.
//!
//! One popular key sends all of its traffic to the few nodes that hold it. To find such
//! keys without counting every key, the store calls [`HotKeys`] on every keyed access
//! (its [`AccessObserver`] hook, before any lock); one access in [`SAMPLE_EVERY`] per
//! thread goes, weighted, into a frequent-items sketch (Apache DataSketches' space-saving
//! sketch, `datasketches`), which keeps the heavy hitters of a stream in bounded memory
//! with a known error. Every [`WINDOW`] the node's task ends the window
//! ([`HotKeys::end_window`]): a key whose estimated rate is at least `min_ops_per_sec`
//! *and* at least `min_share_permille` of the node's accesses in the window is hot; one
//! that falls below half of either threshold cools down (the gap keeps a key near a
//! threshold from flapping). Turning hot and cooling down are logged.
//!
//! Each node publishes its hot keys in gossip with its other figures
//! ([`encode`] / [`decode`]); [`seen_from`] merges what every member published
//! into the cluster-wide hot set that `QUORRA HOTKEYS`, `GET /v1/hotkeys` and the metrics
//! show.
//!
//! Accesses counted are the store's: the reads and writes a node runs as a key's
//! primary or replica (a forwarded command counts where it runs, not where it came in),
//! and replication's own reads of a key it copies.
//!
//! A key can also be pinned by hand (`QUORRA HOT key ON`, which runs on every node): a
//! pinned key is in the node's hot set whatever its rate, published and copied like a
//! detected one, until `QUORRA HOT key OFF`. Pins are kept in memory, at most
//! `hot-key-max-pinned` per node; a restarted node has none.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use datasketches::frequencies::{ErrorType, FrequentItemsSketch};
use parking_lot::Mutex;
use quorra_cluster::membership::{ClusterView, MemberState};
use quorra_store::{AccessKind, AccessObserver};

/// One access in this many, per thread, goes into the sketch (with this weight): the
/// sketch's lock, hashing and purges are paid that rarely, and a key at the default
/// 1,000 accesses per second still gives about 16 samples a second. What detection
/// costs per request is measured in `docs/benchmarks.md` ("Hot-key detection").
pub const SAMPLE_EVERY: u32 = 64;

/// Length of a detection window.
pub const WINDOW: Duration = Duration::from_secs(1);

/// Keys the sketch tracks (a power of two): its error on a key's count is about 3.5 /
/// this of the window's accesses.
const SKETCH_SIZE: usize = 1024;

/// Most hot keys a node reports (the hottest first).
pub const MAX_HOT_KEYS: usize = 16;

/// Longest key published in gossip; a longer hot key is detected and logged on its node
/// but not shared.
pub const MAX_PUBLISHED_KEY: usize = 256;

/// When a key is hot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Accesses per second at least.
    pub min_ops_per_sec: u64,
    /// And at least this share of the node's accesses, per mille.
    pub min_share_permille: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_ops_per_sec: 1000,
            min_share_permille: 10,
        }
    }
}

/// A key this node finds hot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotKey {
    /// The key (stored form).
    pub key: Bytes,
    /// Its accesses per second here in the last window.
    pub ops_per_sec: u64,
    /// Its share of this node's accesses then, per mille.
    pub share_permille: u64,
    /// When it turned hot here, ms since the epoch.
    pub since_ms: u64,
}

thread_local! {
    /// Accesses this thread made since it last sampled one.
    static SINCE_SAMPLE: Cell<u32> = const { Cell::new(0) };
}

/// The detector of one node.
pub struct HotKeys {
    thresholds: Mutex<Thresholds>,
    /// Keys pinned hot by hand, with since when (ms since the epoch).
    pinned: Mutex<BTreeMap<Bytes, u64>>,
    /// Most keys pinned at once.
    max_pinned: usize,
    /// The window's sampled accesses.
    sketch: Mutex<FrequentItemsSketch<Vec<u8>>>,
    /// The hot keys found at the end of the last window, hottest first.
    hot: Mutex<Vec<HotKey>>,
}

impl AccessObserver for HotKeys {
    fn on_access(&self, _hash: u64, key: &[u8], _kind: AccessKind) {
        self.count(key);
    }
}

impl HotKeys {
    /// Counts one access of `key` (sampled, see [`SAMPLE_EVERY`]). The store's accesses
    /// come through its hook; a GET answered from a hot copy is counted here directly.
    pub fn count(&self, key: &[u8]) {
        let sampled = SINCE_SAMPLE.with(|since| {
            let next = since.get() + 1;
            since.set(if next == SAMPLE_EVERY { 0 } else { next });
            next == SAMPLE_EVERY
        });
        if sampled {
            self.sketch
                .lock()
                .update_with_count_ref(key, u64::from(SAMPLE_EVERY));
        }
    }
}

/// What ending a window changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Transitions {
    /// Keys that turned hot.
    pub turned_hot: Vec<Bytes>,
    /// Keys that cooled down.
    pub cooled: Vec<Bytes>,
}

impl HotKeys {
    /// A detector with these thresholds, holding at most `max_pinned` pins.
    pub fn new(thresholds: Thresholds, max_pinned: usize) -> HotKeys {
        HotKeys {
            thresholds: Mutex::new(thresholds),
            pinned: Mutex::new(BTreeMap::new()),
            max_pinned,
            sketch: Mutex::new(new_sketch()),
            hot: Mutex::new(Vec::new()),
        }
    }

    /// The thresholds.
    pub fn thresholds(&self) -> Thresholds {
        *self.thresholds.lock()
    }

    /// Changes the thresholds (CONFIG SET); they apply from the next window's end.
    pub fn set_thresholds(&self, thresholds: Thresholds) {
        *self.thresholds.lock() = thresholds;
    }

    /// This node's hot keys, hottest first, then the pinned keys not detected hot.
    pub fn hot(&self) -> Vec<HotKey> {
        let mut hot = self.hot.lock().clone();
        for (key, &since_ms) in self.pinned.lock().iter() {
            if !hot.iter().any(|detected| detected.key == *key) {
                hot.push(HotKey {
                    key: key.clone(),
                    ops_per_sec: 0,
                    share_permille: 0,
                    since_ms,
                });
            }
        }
        hot
    }

    /// Pins `key` hot at `now_ms`; an error when [`max_pinned`](Self::new) keys are
    /// pinned already (pinning a pinned key again is no error).
    pub fn pin(&self, key: Bytes, now_ms: u64) -> Result<(), usize> {
        let mut pinned = self.pinned.lock();
        if !pinned.contains_key(&key) && pinned.len() >= self.max_pinned {
            return Err(self.max_pinned);
        }
        pinned.entry(key).or_insert(now_ms);
        Ok(())
    }

    /// Unpins `key`; whether it was pinned.
    pub fn unpin(&self, key: &[u8]) -> bool {
        self.pinned.lock().remove(key).is_some()
    }

    /// True if `key` is pinned here.
    pub fn is_pinned(&self, key: &[u8]) -> bool {
        self.pinned.lock().contains_key(key)
    }

    /// Ends the window that lasted `elapsed` and started a new one: recomputes the hot
    /// set at `now_ms`, logs what turned hot or cooled down, and returns it.
    pub fn end_window(&self, elapsed: Duration, now_ms: u64) -> Transitions {
        let sketch = std::mem::replace(&mut *self.sketch.lock(), new_sketch());
        let thresholds = self.thresholds();
        let seconds = elapsed.as_secs_f64().max(0.001);
        let total = sketch.total_weight();
        let rate = |count: u64| (count as f64 / seconds) as u64;
        let share = |count: u64| count.saturating_mul(1000) / total.max(1);
        let mut hot = self.hot.lock();
        let was: BTreeMap<Bytes, u64> = hot.iter().map(|k| (k.key.clone(), k.since_ms)).collect();
        // Keys over the cooling thresholds (half the hot ones) are candidates; a key
        // not hot yet must pass the full ones.
        let floor = (thresholds.min_ops_per_sec as f64 * seconds / 2.0) as u64;
        let mut next: Vec<HotKey> = sketch
            .frequent_items_with_threshold(ErrorType::NoFalsePositives, floor)
            .into_iter()
            .filter_map(|row| {
                let (key, count) = (Bytes::from(row.item().clone()), row.lower_bound());
                let (ops_per_sec, share_permille) = (rate(count), share(count));
                let over = |factor: u64| {
                    ops_per_sec * factor >= thresholds.min_ops_per_sec
                        && share_permille * factor >= thresholds.min_share_permille
                };
                let since_ms = match was.get(&key) {
                    Some(&since) if over(2) => since,
                    None if over(1) => now_ms,
                    _ => return None,
                };
                Some(HotKey {
                    key,
                    ops_per_sec,
                    share_permille,
                    since_ms,
                })
            })
            .collect();
        next.sort_by(|a, b| b.ops_per_sec.cmp(&a.ops_per_sec).then(a.key.cmp(&b.key)));
        next.truncate(MAX_HOT_KEYS);
        let mut transitions = Transitions::default();
        for key in &next {
            if !was.contains_key(&key.key) {
                tracing::info!(
                    key = %String::from_utf8_lossy(&key.key),
                    ops_per_sec = key.ops_per_sec,
                    share_permille = key.share_permille,
                    "key turned hot"
                );
                transitions.turned_hot.push(key.key.clone());
            }
        }
        for key in was.keys() {
            if !next.iter().any(|k| k.key == *key) {
                tracing::info!(key = %String::from_utf8_lossy(key), "hot key cooled down");
                transitions.cooled.push(key.clone());
            }
        }
        *hot = next;
        transitions
    }
}

fn new_sketch() -> FrequentItemsSketch<Vec<u8>> {
    FrequentItemsSketch::new(SKETCH_SIZE).expect("a power of two in the sketch's range")
}

/// A hot key as a node publishes it: the key, its accesses per second there, and since
/// when it is hot there (ms since the epoch).
pub type PublishedKey = (Bytes, u64, u64);

/// A node's hot keys as gossip carries them: `hex(key):ops_per_sec:since_ms`, separated
/// by `;`. Keys longer than [`MAX_PUBLISHED_KEY`] are left out.
pub fn encode(hot: &[HotKey]) -> String {
    hot.iter()
        .filter(|k| k.key.len() <= MAX_PUBLISHED_KEY)
        .map(|k| format!("{}:{}:{}", hex(&k.key), k.ops_per_sec, k.since_ms))
        .collect::<Vec<_>>()
        .join(";")
}

/// What [`encode`] gave: (key, ops per second, since ms) per hot key; malformed parts
/// (a member speaking another version) are skipped.
pub fn decode(text: &str) -> Vec<PublishedKey> {
    text.split(';')
        .filter(|part| !part.is_empty())
        .filter_map(|part| {
            let mut fields = part.split(':');
            let key = unhex(fields.next()?)?;
            let ops_per_sec = fields.next()?.parse().ok()?;
            let since_ms = fields.next()?.parse().ok()?;
            Some((Bytes::from(key), ops_per_sec, since_ms))
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

/// A key hot somewhere in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterHotKey {
    /// The key (stored form).
    pub key: Bytes,
    /// Its accesses per second, summed over the nodes that find it hot.
    pub ops_per_sec: u64,
    /// Since when, ms since the epoch: the earliest of those nodes.
    pub since_ms: u64,
    /// The nodes that find it hot, sorted.
    pub nodes: Vec<String>,
}

/// The cluster-wide hot set from what each node published (node id, its hot keys),
/// hottest first.
pub fn cluster_hot_keys<'a>(
    published: impl IntoIterator<Item = (String, &'a [PublishedKey])>,
) -> Vec<ClusterHotKey> {
    let mut merged: BTreeMap<Bytes, ClusterHotKey> = BTreeMap::new();
    for (node, keys) in published {
        for (key, ops_per_sec, since_ms) in keys {
            let entry = merged.entry(key.clone()).or_insert_with(|| ClusterHotKey {
                key: key.clone(),
                ops_per_sec: 0,
                since_ms: *since_ms,
                nodes: Vec::new(),
            });
            entry.ops_per_sec += ops_per_sec;
            entry.since_ms = entry.since_ms.min(*since_ms);
            entry.nodes.push(node.clone());
        }
    }
    let mut hot: Vec<ClusterHotKey> = merged.into_values().collect();
    for key in &mut hot {
        key.nodes.sort();
    }
    hot.sort_by(|a, b| b.ops_per_sec.cmp(&a.ops_per_sec).then(a.key.cmp(&b.key)));
    hot
}

/// The cluster-wide hot set as a node sees it: its `own` hot keys as of its last
/// window, and what every other member of its `view` last published in gossip. On a
/// single node (no view), its own alone.
pub fn seen_from(own: Vec<HotKey>, view: Option<&ClusterView>) -> Vec<ClusterHotKey> {
    let own: Vec<PublishedKey> = own
        .into_iter()
        .map(|k| (k.key, k.ops_per_sec, k.since_ms))
        .collect();
    let Some(view) = view else {
        return cluster_hot_keys([("self".to_owned(), &own[..])]);
    };
    let others: Vec<(String, Vec<PublishedKey>)> = view
        .members
        .iter()
        .filter(|member| member.id != view.self_id && member.state != MemberState::Down)
        .map(|member| (member.id.as_str().to_owned(), decode(&member.hot_keys)))
        .collect();
    cluster_hot_keys(
        std::iter::once((view.self_id.as_str().to_owned(), &own[..]))
            .chain(others.iter().map(|(node, keys)| (node.clone(), &keys[..]))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` accesses of `key` through the observer hook.
    fn access(hot: &HotKeys, key: &str, count: u32) {
        for _ in 0..count {
            hot.on_access(0, key.as_bytes(), AccessKind::Read);
        }
    }

    fn keys(hot: &HotKeys) -> Vec<String> {
        hot.hot()
            .iter()
            .map(|k| String::from_utf8_lossy(&k.key).into_owned())
            .collect()
    }

    #[test]
    fn a_key_over_both_thresholds_turns_hot_and_cools_below_half_of_one() {
        let hot = HotKeys::new(
            Thresholds {
                min_ops_per_sec: 1000,
                min_share_permille: 100,
            },
            16,
        );
        // 4,000 accesses of one key among 20,000 spread over 2,000 others, in 1 s.
        access(&hot, "popular", 4000);
        for n in 0..2000 {
            access(&hot, &format!("k{n}"), 8);
        }
        let t = hot.end_window(Duration::from_secs(1), 1_000);
        assert_eq!(t.turned_hot, vec![Bytes::from("popular")]);
        assert_eq!(keys(&hot), ["popular"]);
        let popular = &hot.hot()[0];
        assert!(
            (3_900..=4_100).contains(&popular.ops_per_sec),
            "{popular:?}"
        );
        assert!((180..=220).contains(&popular.share_permille), "{popular:?}");
        assert_eq!(popular.since_ms, 1_000);

        // Busy enough but too small a share (69 per mille): not hot. The popular key,
        // at 64 per mille (over half the share), stays hot since it first was.
        access(&hot, "popular", 1100);
        access(&hot, "busy", 1200);
        for n in 0..1875 {
            access(&hot, &format!("k{n}"), 8);
        }
        let t = hot.end_window(Duration::from_secs(1), 2_000);
        assert_eq!(t, Transitions::default());
        assert_eq!(hot.hot()[0].since_ms, 1_000);

        // Below half the rate: cooled.
        access(&hot, "popular", 400);
        let t = hot.end_window(Duration::from_secs(1), 3_000);
        assert_eq!(t.cooled, vec![Bytes::from("popular")]);
        assert!(hot.hot().is_empty());
    }

    #[test]
    fn a_pinned_key_is_hot_whatever_its_rate_until_unpinned_within_the_bound() {
        let hot = HotKeys::new(Thresholds::default(), 2);
        hot.pin(Bytes::from("a"), 5).unwrap();
        hot.pin(Bytes::from("a"), 9).unwrap();
        hot.pin(Bytes::from("b"), 7).unwrap();
        assert_eq!(hot.pin(Bytes::from("c"), 8), Err(2), "at most two pins");
        hot.end_window(Duration::from_secs(1), 1_000);
        let listed: Vec<(Bytes, u64)> =
            hot.hot().into_iter().map(|k| (k.key, k.since_ms)).collect();
        assert_eq!(listed, vec![(Bytes::from("a"), 5), (Bytes::from("b"), 7)]);
        assert!(hot.unpin(b"a") && !hot.unpin(b"a") && !hot.is_pinned(b"a"));
        assert_eq!(hot.hot().len(), 1);
    }

    #[test]
    fn a_rate_is_per_second_of_the_window() {
        let hot = HotKeys::new(Thresholds::default(), 16);
        access(&hot, "k", 1600);
        hot.end_window(Duration::from_millis(500), 0);
        let k = &hot.hot()[0];
        assert!((3_100..=3_300).contains(&k.ops_per_sec), "{k:?}");
        assert_eq!(k.share_permille, 1000);
    }

    #[test]
    fn gossip_carries_hot_keys_and_the_cluster_merges_them() {
        let published = [
            HotKey {
                key: Bytes::from_static(b"a\x00:;b"),
                ops_per_sec: 5000,
                share_permille: 500,
                since_ms: 20,
            },
            HotKey {
                key: Bytes::from(vec![b'x'; MAX_PUBLISHED_KEY + 1]),
                ops_per_sec: 9000,
                share_permille: 900,
                since_ms: 20,
            },
        ];
        let text = encode(&published);
        let decoded = decode(&text);
        assert_eq!(decoded, vec![(Bytes::from_static(b"a\x00:;b"), 5000, 20)]);
        assert!(
            decode("zz:1:2;ab:x:3;ab:1").is_empty(),
            "malformed parts are skipped"
        );
        let other = [
            (Bytes::from_static(b"a\x00:;b"), 3000, 10),
            (Bytes::from_static(b"c"), 9000, 30),
        ];
        let merged = cluster_hot_keys([
            ("node-1".to_owned(), &decoded[..]),
            ("node-0".to_owned(), &other[..]),
        ]);
        assert_eq!(
            merged,
            vec![
                ClusterHotKey {
                    key: Bytes::from_static(b"c"),
                    ops_per_sec: 9000,
                    since_ms: 30,
                    nodes: vec!["node-0".into()],
                },
                ClusterHotKey {
                    key: Bytes::from_static(b"a\x00:;b"),
                    ops_per_sec: 8000,
                    since_ms: 10,
                    nodes: vec!["node-0".into(), "node-1".into()],
                },
            ]
        );
    }
}
