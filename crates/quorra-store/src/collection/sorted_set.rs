//! Sorted sets: members with scores, ordered by (score, member) as Redis orders them.
//!
//! Two structures: the element table maps each member to its score (ZSCORE, ZADD's
//! lookups, O(1)), and a `BTreeSet` of (score, member) keeps the order for the range
//! commands. A rank (ZRANK, ZRANGE by index) walks the ordered set from one end, O(rank):
//! the standard library has no order-statistic tree, and Redis's skiplist spans would
//! be a hand-written structure; a leaderboard's top ranks are cheap, deep ranks of very
//! large sets are not (`docs/collections.md`).

use std::collections::BTreeSet;
use std::ops::Bound;

use super::table::{Element, Table};

/// Accounted bytes of one entry of the ordered set on top of its member's bytes: the
/// 24-byte (score, pointer) pair in a B-tree node at the tree's fill, and the member
/// copy's allocation header and rounding.
///
/// Measured with `cargo run --release -p quorra-store --example memory -- zset` (10,000
/// keys with 100 members `field:NNN` each, pseudo-random scores; 16 shards, glibc
/// malloc, Linux x86-64): RSS grew by 122.6 bytes per member past each key's first, of
/// which 53.3 are the member's element (what the `-- hash` run measures: the same
/// 21-byte allocation in the same table) and 9 its name's copy, leaving 60.3 bytes: the
/// copy's 32-byte malloc chunk and the 24-byte B-tree entry at about two-thirds fill.
/// With 30, 60, 200 and 1,000 members per key it was 63.3, 60.1, 63.0 and 63.2 bytes.
/// The constant is that typical figure, not a bound.
pub const ORDER_OVERHEAD: u64 = 62;

/// A score, ordered as Redis orders them (`-inf` < numbers < `+inf`; never NaN).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score(f64);

impl Score {
    /// The score `value`, or `None` for NaN. `-0` is stored as `0`: Redis orders them
    /// as equal (by member), and a total order must not tell them apart.
    pub fn new(value: f64) -> Option<Score> {
        (!value.is_nan()).then_some(Score(if value == 0.0 { 0.0 } else { value }))
    }

    /// The number.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// One end of a score range: `(1.5`, `1.5`, `-inf`, `+inf`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScoreBound {
    /// Scores ≥ (or ≤) this one.
    Inclusive(f64),
    /// Scores > (or <) this one.
    Exclusive(f64),
}

/// One end of a lexicographic range: `[a`, `(a`, `-`, `+`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexBound {
    /// `-`: below every member.
    Min,
    /// `+`: above every member.
    Max,
    /// `[m`: this member and beyond.
    Inclusive(Vec<u8>),
    /// `(m`: beyond this member.
    Exclusive(Vec<u8>),
}

impl LexBound {
    fn admits_from_below(&self, member: &[u8]) -> bool {
        match self {
            LexBound::Min => true,
            LexBound::Max => false,
            LexBound::Inclusive(m) => member >= m.as_slice(),
            LexBound::Exclusive(m) => member > m.as_slice(),
        }
    }

    fn admits_from_above(&self, member: &[u8]) -> bool {
        match self {
            LexBound::Min => false,
            LexBound::Max => true,
            LexBound::Inclusive(m) => member <= m.as_slice(),
            LexBound::Exclusive(m) => member < m.as_slice(),
        }
    }
}

impl ScoreBound {
    fn admits_from_below(self, score: f64) -> bool {
        match self {
            ScoreBound::Inclusive(min) => score >= min,
            ScoreBound::Exclusive(min) => score > min,
        }
    }

    fn admits_from_above(self, score: f64) -> bool {
        match self {
            ScoreBound::Inclusive(max) => score <= max,
            ScoreBound::Exclusive(max) => score < max,
        }
    }
}

/// A sorted set's members and their order.
#[derive(Debug, Clone, Default)]
pub struct SortedSetValue {
    scores: Table,
    order: BTreeSet<(Score, Box<[u8]>)>,
    /// Accounted bytes of `order`.
    order_bytes: u64,
}

pub(super) fn score_of(element: &Element) -> Score {
    Score(f64::from_le_bytes(
        element.value().try_into().expect("8-byte score"),
    ))
}

impl SortedSetValue {
    /// The member-to-score table, for replication's encodings.
    pub(super) fn scores(&self) -> &Table {
        &self.scores
    }

    /// The member-to-score table, to journal an update's changes (never to change it
    /// directly, which would leave the order behind).
    pub(super) fn scores_mut(&mut self) -> &mut Table {
        &mut self.scores
    }

    /// Members.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// True when the set has no member left.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// Accounted bytes of both structures.
    pub fn bytes(&self) -> u64 {
        self.scores.bytes() + self.order_bytes
    }

    /// The accounted bytes one new member of `len` bytes adds.
    pub fn member_bytes(len: usize) -> u64 {
        Element::accounted_for(len, 8, false) + len as u64 + ORDER_OVERHEAD
    }

    /// The score of `member`.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).map(|e| score_of(e).0)
    }

    /// Sets `member`'s score; returns its previous score.
    pub fn insert(&mut self, member: &[u8], score: Score) -> Option<f64> {
        let old = self
            .scores
            .insert(member, None, &score.0.to_le_bytes())
            .map(|e| score_of(&e));
        if let Some(old) = old {
            self.order.remove(&(old, Box::from(member)));
        } else {
            self.order_bytes += member.len() as u64 + ORDER_OVERHEAD;
        }
        self.order.insert((score, Box::from(member)));
        old.map(Score::get)
    }

    /// Removes `member`; true if it was there.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        let Some(old) = self.scores.remove(member) else {
            return false;
        };
        self.order.remove(&(score_of(&old), Box::from(member)));
        self.order_bytes -= member.len() as u64 + ORDER_OVERHEAD;
        true
    }

    /// Members with scores in ascending order.
    pub fn ascending(&self) -> impl DoubleEndedIterator<Item = (&[u8], f64)> {
        self.order.iter().map(|(s, m)| (&m[..], s.0))
    }

    /// The 0-based rank of `member` in ascending order (or descending with `reverse`).
    pub fn rank(&self, member: &[u8], reverse: bool) -> Option<usize> {
        let score = Score(self.score(member)?);
        let key = (score, Box::from(member));
        Some(if reverse {
            self.order
                .range((Bound::Excluded(&key), Bound::Unbounded))
                .count()
        } else {
            self.order.range(..&key).count()
        })
    }

    /// Members with scores from `min` to `max`, ascending.
    pub fn by_score(
        &self,
        min: ScoreBound,
        max: ScoreBound,
    ) -> impl DoubleEndedIterator<Item = (&[u8], f64)> {
        let low = match min {
            ScoreBound::Inclusive(v) | ScoreBound::Exclusive(v) => v,
        };
        // Start at the first entry of score `low` (NaN-free, so `Score` is safe); the
        // filters then apply the bounds exactly.
        let start = (Score(low), Box::<[u8]>::default());
        self.order
            .range(start..)
            .map(|(s, m)| (&m[..], s.0))
            .skip_while(move |(_, s)| !min.admits_from_below(*s))
            .take_while(move |(_, s)| max.admits_from_above(*s))
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// Members from `min` to `max` in lexicographic order (meaningful when all scores
    /// are equal, as in Redis).
    pub fn by_lex(
        &self,
        min: &LexBound,
        max: &LexBound,
    ) -> impl DoubleEndedIterator<Item = (&[u8], f64)> {
        self.ascending()
            .skip_while(|(m, _)| !min.admits_from_below(m))
            .take_while(|(m, _)| max.admits_from_above(m))
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// A member chosen at random (ZRANDMEMBER), `next` giving random numbers.
    pub fn random(&self, next: impl FnMut() -> u64) -> Option<(&[u8], f64)> {
        self.scores.random(next).map(|e| (e.name(), score_of(e).0))
    }
}
