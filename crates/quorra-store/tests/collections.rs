//! Collections (hashes with field TTLs, sets, sorted sets) in the store, checked against
//! simple `BTreeMap` models, in the style of `props.rs`: random sequences of collection
//! updates, string writes, DEL, RENAME, COPY, EXPIRE, PERSIST, clock advances and active
//! expiry cycles over a few keys, with the store's reads, types, TTLs and accounted
//! sizes compared with the model and the invariants checked after every step; the same
//! under a small `maxmemory`; replication of collections; WRONGTYPE.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use quorra_store::collection::{COLLECTION_OVERHEAD, CollectionType, SORTED_SET_OVERHEAD, Score};
use quorra_store::collection::{
    Collection, Element, FieldExpiry, HashValue, LexBound, ScoreBound, SetValue, SortedSetValue,
};
use quorra_store::{
    ApplyOutcome, Clock, DeltaOutcome, ENTRY_OVERHEAD, ExpireFlags, GetExExpiry, KeyChange,
    KeyType, MaxmemoryPolicy, SetCondition, SetOptions, Store, StoreConfig, StoreError,
    VersionedEntry,
};

// ---- the model ----------------------------------------------------------------------

/// A hash's fields: value and absolute expiry.
type Fields = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(Vec<u8>),
    Hash(Fields),
    Set(BTreeSet<Vec<u8>>),
    Zset(BTreeMap<Vec<u8>, f64>),
}

impl Value {
    fn empty(kind: KeyType) -> Value {
        match kind {
            KeyType::Hash => Value::Hash(Fields::new()),
            KeyType::Set => Value::Set(BTreeSet::new()),
            KeyType::SortedSet => Value::Zset(BTreeMap::new()),
            other => unreachable!("not a collection: {other:?}"),
        }
    }

    fn kind(&self) -> KeyType {
        match self {
            Value::Str(_) => KeyType::String,
            Value::Hash(_) => KeyType::Hash,
            Value::Set(_) => KeyType::Set,
            Value::Zset(_) => KeyType::SortedSet,
        }
    }

    fn is_empty_collection(&self) -> bool {
        match self {
            Value::Str(_) => false,
            Value::Hash(h) => h.is_empty(),
            Value::Set(s) => s.is_empty(),
            Value::Zset(z) => z.is_empty(),
        }
    }

    /// The entry's accounted size as documented: key + value + `ENTRY_OVERHEAD` for a
    /// string; key + `ENTRY_OVERHEAD` + the collection's own overhead + each element's
    /// accounted size for a collection
    /// (a hash's fields past their TTL included until they are removed).
    fn accounted(&self, key_len: usize) -> u64 {
        let elements: u64 = match self {
            Value::Str(v) => v.len() as u64,
            Value::Hash(h) => {
                COLLECTION_OVERHEAD
                    + h.iter()
                        .map(|(n, (v, at))| Element::accounted_for(n.len(), v.len(), at.is_some()))
                        .sum::<u64>()
            }
            Value::Set(s) => {
                COLLECTION_OVERHEAD
                    + s.iter()
                        .map(|m| Element::accounted_for(m.len(), 0, false))
                        .sum::<u64>()
            }
            Value::Zset(z) => {
                SORTED_SET_OVERHEAD
                    + z.keys()
                        .map(|m| SortedSetValue::member_bytes(m.len()))
                        .sum::<u64>()
            }
        };
        key_len as u64 + ENTRY_OVERHEAD + elements
    }
}

fn hash(v: &mut Value) -> &mut Fields {
    match v {
        Value::Hash(h) => h,
        _ => unreachable!("checked by Model::update"),
    }
}

fn set(v: &mut Value) -> &mut BTreeSet<Vec<u8>> {
    match v {
        Value::Set(s) => s,
        _ => unreachable!("checked by Model::update"),
    }
}

fn zset(v: &mut Value) -> &mut BTreeMap<Vec<u8>, f64> {
    match v {
        Value::Zset(z) => z,
        _ => unreachable!("checked by Model::update"),
    }
}

/// Redis's order of a sorted set: by score (`-0` equal to `0`), then by member bytes.
fn redis_order(z: &BTreeMap<Vec<u8>, f64>) -> Vec<(Vec<u8>, f64)> {
    let mut v: Vec<(Vec<u8>, f64)> = z.iter().map(|(m, s)| (m.clone(), *s)).collect();
    v.sort_by(|a, b| a.1.partial_cmp(&b.1).expect("no NaN").then(a.0.cmp(&b.0)));
    v
}

fn field_expired(at: Option<u64>, now: u64) -> bool {
    at.is_some_and(|at| now > at)
}

#[derive(Debug, Clone)]
struct Entry {
    value: Value,
    expire_at: Option<u64>,
}

#[derive(Debug, Default)]
struct Model {
    keys: BTreeMap<Vec<u8>, Entry>,
}

impl Model {
    /// The live entry of `key` at `now` (an expired one goes, as the store's lazy expiry
    /// removes it).
    fn live(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        if self
            .keys
            .get(key)
            .is_some_and(|e| field_expired(e.expire_at, now))
        {
            self.keys.remove(key);
        }
        self.keys.get_mut(key)
    }

    /// A collection update with the store's rules: `WrongType` on another type; a
    /// missing key is created empty when `create` (and kept only if something is left
    /// in it), else nothing runs; a hash first loses its expired fields; a collection
    /// left empty deletes the key.
    fn update<R>(
        &mut self,
        key: &[u8],
        now: u64,
        create: bool,
        kind: KeyType,
        f: impl FnOnce(&mut Value) -> R,
    ) -> Result<Option<R>, StoreError> {
        match self.live(key, now) {
            Some(e) if e.value.kind() != kind => Err(StoreError::WrongType),
            Some(e) => {
                if let Value::Hash(h) = &mut e.value {
                    h.retain(|_, (_, at)| !field_expired(*at, now));
                }
                let r = f(&mut e.value);
                if e.value.is_empty_collection() {
                    self.keys.remove(key);
                }
                Ok(Some(r))
            }
            None if !create => Ok(None),
            None => {
                let mut value = Value::empty(kind);
                let r = f(&mut value);
                if !value.is_empty_collection() {
                    self.keys.insert(
                        key.to_vec(),
                        Entry {
                            value,
                            expire_at: None,
                        },
                    );
                }
                Ok(Some(r))
            }
        }
    }

    /// The active expiry of hash fields at `now`: how many fields went.
    fn expire_fields(&mut self, now: u64) -> u64 {
        let mut gone = 0;
        self.keys.retain(|_, e| {
            let Value::Hash(h) = &mut e.value else {
                return true;
            };
            let before = h.len();
            h.retain(|_, (_, at)| !field_expired(*at, now));
            gone += (before - h.len()) as u64;
            !h.is_empty()
        });
        gone
    }
}

// ---- operations ---------------------------------------------------------------------

/// Keys the sequences work on.
const KEYS: u8 = 6;
/// Element names: `name(0)` is the empty name.
const NAMES: u8 = 4;
/// Sorted-set scores (no `-0`: see `negative_zero_sorts_as_zero_as_in_redis`).
const SCORES: [f64; 8] = [
    f64::NEG_INFINITY,
    -2.5,
    -1.0,
    0.0,
    1.0,
    2.5,
    1e300,
    f64::INFINITY,
];
/// HEXPIRE's conditions.
const CONDITIONS: [ExpireFlags; 6] = [
    ExpireFlags::NONE,
    ExpireFlags::NX,
    ExpireFlags::XX,
    ExpireFlags::GT,
    ExpireFlags::LT,
    ExpireFlags {
        xx: true,
        gt: true,
        ..ExpireFlags::NONE
    },
];

fn key(k: u8) -> Vec<u8> {
    format!("k{k}").into_bytes()
}

fn name(n: u8) -> Vec<u8> {
    match n {
        0 => Vec::new(),
        n => format!("e{n}").into_bytes(),
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// HSET (or, keeping the field's TTL, HINCRBY's kind of write): key, field, value
    /// length, keep TTL.
    HSet(u8, u8, usize, bool),
    /// HSETEX PX: key, field, value length, TTL in ms.
    HSetEx(u8, u8, usize, u16),
    HDel(u8, u8),
    /// HPEXPIREAT now + offset (a past or present time deletes the field).
    HExpire(u8, u8, i32, usize),
    HPersist(u8, u8),
    SAdd(u8, u8),
    SRem(u8, u8),
    ZAdd(u8, u8, usize),
    ZRem(u8, u8),
    /// SET key to a string of this length.
    Set(u8, usize),
    Del(u8),
    Rename(u8, u8),
    Copy(u8, u8, bool),
    Expire(u8, u16),
    Persist(u8),
    Advance(u16),
    Tick,
}

fn op(keys: u8) -> impl Strategy<Value = Op> {
    // Each collection type works on its own half of the keys, which overlaps the other
    // types' halves: most updates find their own type, some find another (WRONGTYPE).
    let typed = move |t: u8| (0..keys / 2).prop_map(move |k| (k + t * keys / 3) % keys);
    let (hk, sk, zk) = (typed(0), typed(1), typed(2));
    let k = 0..keys;
    let n = 0..NAMES;
    prop_oneof![
        5 => (hk.clone(), n.clone(), 0usize..24, any::<bool>()).prop_map(|(k, n, l, t)| Op::HSet(k, n, l, t)),
        3 => (hk.clone(), n.clone(), 0usize..24, 1u16..300).prop_map(|(k, n, l, t)| Op::HSetEx(k, n, l, t)),
        2 => (hk.clone(), n.clone()).prop_map(|(k, n)| Op::HDel(k, n)),
        6 => (hk.clone(), n.clone(), -30i32..300, 0..CONDITIONS.len()).prop_map(|(k, n, o, c)| Op::HExpire(k, n, o, c)),
        2 => (hk, n.clone()).prop_map(|(k, n)| Op::HPersist(k, n)),
        4 => (sk.clone(), n.clone()).prop_map(|(k, n)| Op::SAdd(k, n)),
        2 => (sk, n.clone()).prop_map(|(k, n)| Op::SRem(k, n)),
        4 => (zk.clone(), n.clone(), 0..SCORES.len()).prop_map(|(k, n, s)| Op::ZAdd(k, n, s)),
        2 => (zk, n).prop_map(|(k, n)| Op::ZRem(k, n)),
        1 => (k.clone(), 0usize..40).prop_map(|(k, l)| Op::Set(k, l)),
        1 => k.clone().prop_map(Op::Del),
        1 => (k.clone(), k.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => (k.clone(), k.clone(), any::<bool>()).prop_map(|(a, b, r)| Op::Copy(a, b, r)),
        1 => (k.clone(), 1u16..3_000).prop_map(|(k, t)| Op::Expire(k, t)),
        1 => k.prop_map(Op::Persist),
        3 => (0u16..200).prop_map(Op::Advance),
        2 => Just(Op::Tick),
    ]
}

impl Op {
    /// The key of a collection update.
    fn collection_key(&self) -> Option<u8> {
        match *self {
            Op::HSet(k, ..)
            | Op::HSetEx(k, ..)
            | Op::HDel(k, _)
            | Op::HExpire(k, ..)
            | Op::HPersist(k, _)
            | Op::SAdd(k, _)
            | Op::SRem(k, _)
            | Op::ZAdd(k, ..)
            | Op::ZRem(k, _) => Some(k),
            _ => None,
        }
    }
}

/// Whether collection update `op`, answering `reply`, changed the collection.
fn changes(op: &Op, reply: &Reply) -> bool {
    match (op, reply) {
        (Op::HSet(..) | Op::HSetEx(..), _) => true,
        (Op::HExpire(..), Reply::Field(r)) => matches!(r, FieldExpiry::Set | FieldExpiry::Deleted),
        (Op::HPersist(..), Reply::Int(r)) => *r == 1,
        (Op::ZAdd(_, _, i), Reply::Score(old)) => *old != Some(SCORES[*i].to_bits()),
        (_, Reply::Bool(b)) => *b,
        _ => false,
    }
}

/// What an operation answered, for comparing the store with the model.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Bool(bool),
    Field(FieldExpiry),
    Int(i64),
    Score(Option<u64>),
    Count(u64),
    Unit,
}

/// Runs `op` on the store.
fn run_store(
    s: &Store,
    clock: &quorra_store::MockClock,
    op: &Op,
) -> Result<Option<Reply>, StoreError> {
    let field_bytes =
        |n: u8, len: usize, ttl: bool| Element::accounted_for(name(n).len(), len, ttl);
    Ok(match *op {
        Op::HSet(k, f, len, keep) => {
            let value = vec![b'v'; len];
            s.update_collection::<HashValue, _>(
                &key(k),
                true,
                field_bytes(f, len, keep),
                |h, _| (Reply::Bool(h.set(&name(f), &value, keep)), true),
            )?
        }
        Op::HSetEx(k, f, len, ttl) => {
            let value = vec![b'x'; len];
            s.update_collection::<HashValue, _>(
                &key(k),
                true,
                field_bytes(f, len, true),
                |h, now| {
                    (
                        Reply::Bool(h.put(&name(f), Some(now + u64::from(ttl)), &value)),
                        true,
                    )
                },
            )?
        }
        Op::HDel(k, f) => s.update_collection::<HashValue, _>(&key(k), false, 0, |h, now| {
            let live = h.delete(&name(f), now);
            (Reply::Bool(live), live)
        })?,
        Op::HExpire(k, f, offset, c) => {
            let at = (s.now_ms() as i64 + i64::from(offset)) as u64;
            // A field gaining a TTL grows by its 8-byte expiry.
            s.update_collection::<HashValue, _>(&key(k), false, 8, |h, now| {
                let r = h.expire_field(&name(f), at, CONDITIONS[c], now);
                (
                    Reply::Field(r),
                    matches!(r, FieldExpiry::Set | FieldExpiry::Deleted),
                )
            })?
        }
        Op::HPersist(k, f) => {
            s.update_collection::<HashValue, _>(&key(k), false, 0, |h, now| {
                let r = h.persist_field(&name(f), now);
                (Reply::Int(r), r == 1)
            })?
        }
        Op::SAdd(k, m) => {
            s.update_collection::<SetValue, _>(&key(k), true, field_bytes(m, 0, false), |s, _| {
                let new = s.add(&name(m));
                (Reply::Bool(new), new)
            })?
        }
        Op::SRem(k, m) => s.update_collection::<SetValue, _>(&key(k), false, 0, |s, _| {
            let gone = s.remove(&name(m));
            (Reply::Bool(gone), gone)
        })?,
        Op::ZAdd(k, m, i) => {
            let score = Score::new(SCORES[i]).expect("not NaN");
            let bound = SortedSetValue::member_bytes(name(m).len());
            s.update_collection::<SortedSetValue, _>(&key(k), true, bound, |z, _| {
                let old = z.insert(&name(m), score).map(f64::to_bits);
                (Reply::Score(old), old != Some(SCORES[i].to_bits()))
            })?
        }
        Op::ZRem(k, m) => s.update_collection::<SortedSetValue, _>(&key(k), false, 0, |z, _| {
            let gone = z.remove(&name(m));
            (Reply::Bool(gone), gone)
        })?,
        Op::Set(k, len) => {
            s.set(&key(k), &vec![b's'; len], SetOptions::default())?;
            Some(Reply::Unit)
        }
        Op::Del(k) => Some(Reply::Count(s.del(&[key(k)]))),
        Op::Rename(a, b) => {
            s.rename(&key(a), &key(b))?;
            Some(Reply::Unit)
        }
        Op::Copy(a, b, replace) => Some(Reply::Bool(s.copy(&key(a), &key(b), replace)?)),
        Op::Expire(k, ms) => Some(Reply::Bool(s.pexpire(
            &key(k),
            i64::from(ms),
            ExpireFlags::NONE,
        )?)),
        Op::Persist(k) => Some(Reply::Bool(s.persist(&key(k)))),
        Op::Advance(ms) => {
            clock.advance(Duration::from_millis(u64::from(ms)));
            Some(Reply::Unit)
        }
        Op::Tick => Some(Reply::Count(s.tick(clock.now_ms()).expired_fields)),
    })
}

/// Runs `op` on the model at time `now`.
fn run_model(m: &mut Model, now: u64, op: &Op) -> Result<Option<Reply>, StoreError> {
    match *op {
        Op::HSet(k, f, len, keep) => m.update(&key(k), now, true, KeyType::Hash, |v| {
            let h = hash(v);
            let ttl = h.get(&name(f)).and_then(|(_, at)| *at).filter(|_| keep);
            Reply::Bool(h.insert(name(f), (vec![b'v'; len], ttl)).is_none())
        }),
        Op::HSetEx(k, f, len, ttl) => m.update(&key(k), now, true, KeyType::Hash, |v| {
            let field = (vec![b'x'; len], Some(now + u64::from(ttl)));
            Reply::Bool(hash(v).insert(name(f), field).is_none())
        }),
        Op::HDel(k, f) => m.update(&key(k), now, false, KeyType::Hash, |v| {
            Reply::Bool(hash(v).remove(&name(f)).is_some())
        }),
        Op::HExpire(k, f, offset, c) => {
            let at = (now as i64 + i64::from(offset)) as u64;
            let cond = CONDITIONS[c];
            m.update(&key(k), now, false, KeyType::Hash, |v| {
                let h = hash(v);
                let Some((_, current)) = h.get_mut(&name(f)) else {
                    return Reply::Field(FieldExpiry::NoField);
                };
                // Redis 7.4's HEXPIRE: no TTL counts as an infinite one.
                let met = match *current {
                    None => !cond.xx && !cond.gt,
                    Some(c) => !(cond.nx || cond.gt && at <= c || cond.lt && at >= c),
                };
                Reply::Field(if !met {
                    FieldExpiry::ConditionNotMet
                } else if at <= now {
                    h.remove(&name(f));
                    FieldExpiry::Deleted
                } else {
                    *current = Some(at);
                    FieldExpiry::Set
                })
            })
        }
        Op::HPersist(k, f) => m.update(&key(k), now, false, KeyType::Hash, |v| {
            Reply::Int(match hash(v).get_mut(&name(f)) {
                None => -2,
                Some((_, None)) => -1,
                Some((_, at)) => {
                    *at = None;
                    1
                }
            })
        }),
        Op::SAdd(k, n) => m.update(&key(k), now, true, KeyType::Set, |v| {
            Reply::Bool(set(v).insert(name(n)))
        }),
        Op::SRem(k, n) => m.update(&key(k), now, false, KeyType::Set, |v| {
            Reply::Bool(set(v).remove(&name(n)))
        }),
        Op::ZAdd(k, n, i) => m.update(&key(k), now, true, KeyType::SortedSet, |v| {
            Reply::Score(zset(v).insert(name(n), SCORES[i]).map(f64::to_bits))
        }),
        Op::ZRem(k, n) => m.update(&key(k), now, false, KeyType::SortedSet, |v| {
            Reply::Bool(zset(v).remove(&name(n)).is_some())
        }),
        Op::Set(k, len) => {
            m.keys.insert(
                key(k),
                Entry {
                    value: Value::Str(vec![b's'; len]),
                    expire_at: None,
                },
            );
            Ok(Some(Reply::Unit))
        }
        Op::Del(k) => {
            let n = u64::from(m.live(&key(k), now).is_some());
            m.keys.remove(&key(k));
            Ok(Some(Reply::Count(n)))
        }
        Op::Rename(a, b) => {
            let Some(entry) = m.live(&key(a), now).cloned() else {
                return Err(StoreError::NoSuchKey);
            };
            m.keys.remove(&key(a));
            m.keys.insert(key(b), entry);
            Ok(Some(Reply::Unit))
        }
        Op::Copy(a, b, replace) => {
            if a == b {
                return Err(StoreError::SameObject);
            }
            let Some(entry) = m.live(&key(a), now).cloned() else {
                return Ok(Some(Reply::Bool(false)));
            };
            if m.live(&key(b), now).is_some() && !replace {
                return Ok(Some(Reply::Bool(false)));
            }
            m.keys.insert(key(b), entry);
            Ok(Some(Reply::Bool(true)))
        }
        Op::Expire(k, ms) => Ok(Some(Reply::Bool(match m.live(&key(k), now) {
            Some(e) => {
                e.expire_at = Some(now + u64::from(ms));
                true
            }
            None => false,
        }))),
        Op::Persist(k) => Ok(Some(Reply::Bool(
            m.live(&key(k), now)
                .is_some_and(|e| e.expire_at.take().is_some()),
        ))),
        // The clock is the store's; the model reads it before each step.
        Op::Advance(_) => Ok(Some(Reply::Unit)),
        Op::Tick => Ok(Some(Reply::Count(m.expire_fields(now)))),
    }
}

// ---- reading the store back -----------------------------------------------------------

/// Score bounds the comparisons query (min, max).
const RANGES: [(ScoreBound, ScoreBound); 7] = [
    (
        ScoreBound::Inclusive(f64::NEG_INFINITY),
        ScoreBound::Inclusive(f64::INFINITY),
    ),
    (
        ScoreBound::Exclusive(f64::NEG_INFINITY),
        ScoreBound::Exclusive(f64::INFINITY),
    ),
    (ScoreBound::Inclusive(0.0), ScoreBound::Inclusive(2.5)),
    (ScoreBound::Exclusive(-1.0), ScoreBound::Exclusive(1.0)),
    (ScoreBound::Inclusive(1.0), ScoreBound::Inclusive(1.0)),
    (ScoreBound::Exclusive(-3.0), ScoreBound::Inclusive(0.5)),
    (ScoreBound::Inclusive(2.0), ScoreBound::Inclusive(-2.0)),
];

fn admits(min: ScoreBound, max: ScoreBound, s: f64) -> bool {
    let above = match min {
        ScoreBound::Inclusive(v) => s >= v,
        ScoreBound::Exclusive(v) => s > v,
    };
    let below = match max {
        ScoreBound::Inclusive(v) => s <= v,
        ScoreBound::Exclusive(v) => s < v,
    };
    above && below
}

type Live = Vec<(Vec<u8>, Vec<u8>, Option<u64>)>;
/// A hash's reads: see [`read_hash`].
type HashView = (Live, usize, usize, Vec<Option<Vec<u8>>>, bool);
/// A set's reads: see [`read_set`].
type SetView = (Vec<Vec<u8>>, usize, Vec<bool>, Vec<Vec<u8>>);

/// What a hash's reads show at `now`: live fields sorted, all fields (expired ones
/// included until removed), live count, each name's value, whether any field has a TTL.
fn read_hash(h: &HashValue, now: u64) -> HashView {
    let mut live: Live = h
        .iter(now)
        .map(|e| (e.name().to_vec(), e.value().to_vec(), e.expire_at()))
        .collect();
    live.sort();
    let gets = (0..NAMES)
        .map(|n| h.get(&name(n), now).map(<[u8]>::to_vec))
        .collect();
    (
        live,
        h.len(),
        h.live_len(now),
        gets,
        h.has_volatile_fields(),
    )
}

fn model_hash(h: &Fields, now: u64) -> HashView {
    let live: Live = h
        .iter()
        .filter(|(_, (_, at))| !field_expired(*at, now))
        .map(|(n, (v, at))| (n.clone(), v.clone(), *at))
        .collect();
    let gets = (0..NAMES)
        .map(|n| {
            h.get(&name(n))
                .filter(|(_, at)| !field_expired(*at, now))
                .map(|(v, _)| v.clone())
        })
        .collect();
    let volatile = h.values().any(|(_, at)| at.is_some());
    (live.clone(), h.len(), live.len(), gets, volatile)
}

/// What a set's reads show: members sorted, count, membership of each name, and the
/// members `random` gives when its random numbers walk the buckets in order (each pick
/// then the next occupied bucket: every member once), sorted.
fn read_set(s: &SetValue) -> SetView {
    let mut members: Vec<Vec<u8>> = s.iter().map(<[u8]>::to_vec).collect();
    members.sort();
    let mut counter = 0u64;
    let mut nth: Vec<Vec<u8>> = (0..s.len())
        .map(|_| {
            let next = || {
                counter += 1;
                counter
            };
            s.random(next)
                .expect("a member of a non-empty set")
                .to_vec()
        })
        .collect();
    nth.sort();
    let contains = (0..NAMES).map(|n| s.contains(&name(n))).collect();
    (members, s.len(), contains, nth)
}

type Ranked = Vec<(Vec<u8>, u64)>;
/// A sorted set's reads: see [`read_zset`].
type ZsetView = (
    Ranked,
    usize,
    Vec<(Option<u64>, Option<usize>, Option<usize>)>,
    Vec<(Ranked, Ranked)>,
    Ranked,
);

/// What a sorted set's reads show: ascending (member, score bits), count, each name's
/// score and ranks, each of `RANGES` forwards and backwards, and the whole lex range.
fn read_zset(z: &SortedSetValue) -> ZsetView {
    let bits = |(m, s): (&[u8], f64)| (m.to_vec(), s.to_bits());
    let ascending = z.ascending().map(bits).collect();
    let per_name = (0..NAMES)
        .map(|n| {
            let m = name(n);
            (
                z.score(&m).map(f64::to_bits),
                z.rank(&m, false),
                z.rank(&m, true),
            )
        })
        .collect();
    let ranges = RANGES
        .iter()
        .map(|&(min, max)| {
            let fwd: Ranked = z.by_score(min, max).map(bits).collect();
            let mut back: Ranked = z.by_score(min, max).rev().map(bits).collect();
            back.reverse();
            (fwd, back)
        })
        .collect();
    let lex = z.by_lex(&LexBound::Min, &LexBound::Max).map(bits).collect();
    (ascending, z.len(), per_name, ranges, lex)
}

fn model_zset(z: &BTreeMap<Vec<u8>, f64>) -> ZsetView {
    let order: Ranked = redis_order(z)
        .into_iter()
        .map(|(m, s)| (m, s.to_bits()))
        .collect();
    let per_name = (0..NAMES)
        .map(|n| {
            let m = name(n);
            let rank = order.iter().position(|(x, _)| *x == m);
            (
                z.get(&m).map(|s| s.to_bits()),
                rank,
                rank.map(|r| order.len() - 1 - r),
            )
        })
        .collect();
    let ranges = RANGES
        .iter()
        .map(|&(min, max)| {
            let r: Ranked = order
                .iter()
                .filter(|(_, s)| admits(min, max, f64::from_bits(*s)))
                .cloned()
                .collect();
            (r.clone(), r)
        })
        .collect();
    (order.clone(), z.len(), per_name, ranges, order)
}

/// Compares everything the store shows of the model's keys at the store's time, then
/// checks the store's invariants.
fn compare(s: &Store, m: &mut Model) -> Result<(), TestCaseError> {
    let now = s.now_ms();
    for k in 0..KEYS {
        let key = key(k);
        let want = m.live(&key, now).cloned();
        let kind = want.as_ref().map_or(KeyType::None, |e| e.value.kind());
        prop_assert_eq!(s.key_type(&key), kind, "TYPE of {:?}", key);
        let expiry = want
            .as_ref()
            .map_or(-2, |e| e.expire_at.map_or(-1, |at| at as i64));
        prop_assert_eq!(s.pexpiretime(&key), expiry, "PEXPIRETIME of {:?}", key);
        prop_assert_eq!(
            s.memory_usage(&key),
            want.as_ref().map(|e| e.value.accounted(key.len())),
            "accounted size of {:?}",
            key
        );
        let string = match want.as_ref().map(|e| &e.value) {
            Some(Value::Str(v)) => Some(v.clone()),
            _ => None,
        };
        prop_assert_eq!(s.get(&key).map(|b| b.to_vec()), string);
        match want.map(|e| e.value) {
            None => {
                prop_assert_eq!(s.read_collection::<HashValue, _>(&key, |_, _| ()), Ok(None));
                prop_assert_eq!(s.read_collection::<SetValue, _>(&key, |_, _| ()), Ok(None));
                prop_assert!(s.get_versioned(&key).is_none_or(|e| e.tombstone));
            }
            Some(Value::Str(_)) => {
                prop_assert_eq!(
                    s.read_collection::<SortedSetValue, _>(&key, |_, _| ()),
                    Err(StoreError::WrongType)
                );
            }
            Some(Value::Hash(h)) => {
                let got = s.read_collection::<HashValue, _>(&key, read_hash);
                prop_assert_eq!(got, Ok(Some(model_hash(&h, now))), "hash {:?}", key);
                prop_assert_eq!(
                    s.read_collection::<SetValue, _>(&key, |_, _| ()),
                    Err(StoreError::WrongType)
                );
            }
            Some(Value::Set(set)) => {
                let got = s.read_collection::<SetValue, _>(&key, |s, _| read_set(s));
                let members: Vec<Vec<u8>> = set.iter().cloned().collect();
                let contains = (0..NAMES).map(|n| set.contains(&name(n))).collect();
                let want = (members.clone(), set.len(), contains, members);
                prop_assert_eq!(got, Ok(Some(want)), "set {:?}", key);
                prop_assert_eq!(
                    s.read_collection::<SortedSetValue, _>(&key, |_, _| ()),
                    Err(StoreError::WrongType)
                );
            }
            Some(Value::Zset(z)) => {
                let got = s.read_collection::<SortedSetValue, _>(&key, |z, _| read_zset(z));
                prop_assert_eq!(got, Ok(Some(model_zset(&z))), "sorted set {:?}", key);
                prop_assert_eq!(
                    s.read_collection::<HashValue, _>(&key, |_, _| ()),
                    Err(StoreError::WrongType)
                );
            }
        }
        if kind != KeyType::None {
            // What replication reads: the value with its type and TTL.
            let e = s.get_versioned(&key).expect("live key");
            prop_assert!(!e.tombstone);
            prop_assert_eq!(e.kind, kind);
            prop_assert_eq!(
                e.expire_at_ms.map(|at| at as i64),
                Some(expiry).filter(|&x| x >= 0)
            );
        }
    }
    let mut keys: Vec<Vec<u8>> = s.keys(0, b"*").iter().map(|k| k.to_vec()).collect();
    keys.sort();
    prop_assert_eq!(keys, m.keys.keys().cloned().collect::<Vec<_>>(), "KEYS *");
    prop_assert_eq!(s.dbsize(0), m.keys.len() as u64);
    prop_assert_eq!(
        s.exists(&[key(0), key(1)]),
        (0..2).filter(|&k| m.keys.contains_key(&key(k))).count() as u64
    );
    if let Err(e) = s.check_invariants() {
        prop_assert!(false, "{}", e);
    }
    prop_assert_eq!(s.stats().total.used_bytes, s.used_memory());
    Ok(())
}

/// For a store that may have evicted anything: every key's accounted size agrees with
/// what it holds (key + `ENTRY_OVERHEAD` + its elements' accounted sizes).
fn self_consistent(s: &Store, keys: u8) -> Result<(), TestCaseError> {
    for k in 0..keys {
        let key = key(k);
        let base = key.len() as u64 + ENTRY_OVERHEAD;
        let elements = match s.key_type(&key) {
            KeyType::None => {
                prop_assert_eq!(s.memory_usage(&key), None);
                continue;
            }
            KeyType::String => s.get(&key).expect("a string").len() as u64,
            KeyType::List => unreachable!("these tests make no lists (see list.rs's own)"),
            KeyType::Hash => s
                .read_collection::<HashValue, _>(&key, |h, _| {
                    h.iter(0)
                        .map(|e| {
                            Element::accounted_for(
                                e.name().len(),
                                e.value().len(),
                                e.expire_at().is_some(),
                            )
                        })
                        .sum::<u64>()
                        + COLLECTION_OVERHEAD
                })
                .unwrap()
                .unwrap(),
            KeyType::Set => s
                .read_collection::<SetValue, _>(&key, |s, _| {
                    s.iter()
                        .map(|m| Element::accounted_for(m.len(), 0, false))
                        .sum::<u64>()
                        + COLLECTION_OVERHEAD
                })
                .unwrap()
                .unwrap(),
            KeyType::SortedSet => s
                .read_collection::<SortedSetValue, _>(&key, |z, _| {
                    z.ascending()
                        .map(|(m, _)| SortedSetValue::member_bytes(m.len()))
                        .sum::<u64>()
                        + SORTED_SET_OVERHEAD
                })
                .unwrap()
                .unwrap(),
        };
        prop_assert_eq!(s.memory_usage(&key), Some(base + elements), "{:?}", key);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Hash set / delete / field expire / persist, set add / remove, sorted-set insert /
    /// remove, SET and DEL (type changes), RENAME, COPY, EXPIRE, PERSIST, clock advances
    /// and active expiry cycles over six keys: every reply equals the model's, and
    /// after every step every key's type, TTL, accounted size, string value and
    /// collection contents (through every read of its type) equal the model's, reads of
    /// another type answer WRONGTYPE, and the store's invariants hold.
    #[test]
    fn collections_match_a_btreemap_model(
        ops in prop::collection::vec(op(KEYS), 1..150),
        shards in prop::sample::select(vec![1usize, 4]),
        grace in prop::sample::select(vec![0u64, 1_000]),
    ) {
        let (s, clock) = common::store_with(StoreConfig {
            shards,
            tombstone_grace_ms: grace,
            ..StoreConfig::default()
        });
        let mut m = Model::default();
        for op in &ops {
            let now = s.now_ms();
            let version = |k: u8| s.get_versioned(&key(k)).map(|e| e.version);
            let before = op.collection_key().map(version);
            let got = run_store(&s, &clock, op);
            let want = run_model(&mut m, now, op);
            prop_assert_eq!(&got, &want, "{:?}", op);
            if let (Some(before), Some(k)) = (before, op.collection_key()) {
                // A change is a write replication copies: a new version, or the key
                // gone without a trace. No change, no new version (a hash losing
                // expired fields is not a write; it may be gone by expiry).
                let after = version(k);
                match got {
                    Ok(Some(reply)) if changes(op, &reply) => {
                        prop_assert!(after.is_none() || after > before, "{:?}: {:?} -> {:?}", op, before, after);
                    }
                    _ => prop_assert!(after == before || after.is_none(), "{:?}: {:?} -> {:?}", op, before, after),
                }
            }
            compare(&s, &mut m)?;
        }
    }

    /// The same operations over eight keys under a small `maxmemory` with eviction:
    /// contents are not compared (anything may have been evicted), but after every step
    /// the accounted total stays within the limit and equals the sum of the entries,
    /// every key's accounted size agrees with what it holds, and no operation fails
    /// other than as its command may (WRONGTYPE on a type mix-up, RENAME of a missing
    /// key, COPY onto itself, a COPY with no room beside its protected source).
    #[test]
    fn collections_stay_within_maxmemory_under_eviction(
        ops in prop::collection::vec(op(8), 1..200),
        shards in prop::sample::select(vec![1usize, 4]),
        grace in prop::sample::select(vec![0u64, 1_000]),
        limit in 1_500u64..4_000,
    ) {
        let (s, clock) = common::store_with(StoreConfig {
            shards,
            maxmemory: limit,
            policy: MaxmemoryPolicy::AllKeysLru,
            tombstone_grace_ms: grace,
            ..StoreConfig::default()
        });
        for op in &ops {
            match run_store(&s, &clock, op) {
                Ok(_)
                | Err(StoreError::WrongType | StoreError::NoSuchKey | StoreError::SameObject) => {}
                // A copy keeps its source: with both protected from eviction, a large
                // source may leave no room for its copy.
                Err(StoreError::OutOfMemory) if matches!(op, Op::Copy(..)) => {}
                Err(e) => prop_assert!(false, "{:?} failed: {:?}", op, e),
            }
            prop_assert!(s.used_memory() <= limit, "{} > {}", s.used_memory(), limit);
            if let Err(e) = s.check_invariants() {
                prop_assert!(false, "after {:?}: {}", op, e);
            }
            prop_assert_eq!(s.stats().total.used_bytes, s.used_memory());
            self_consistent(&s, 8)?;
        }
    }
}

// ---- replication ----------------------------------------------------------------------

/// A collection's contents in a canonical order, every element included (a hash's
/// expired fields too, with their expiry); `None` for a missing key.
fn dump(s: &Store, key: &[u8]) -> Option<Vec<String>> {
    let mut out: Vec<String> = match s.key_type(key) {
        KeyType::None => return None,
        KeyType::String => vec![format!("{:?}", s.get(key))],
        KeyType::List => unreachable!("these tests make no lists (see list.rs's own)"),
        KeyType::Hash => s
            .read_collection::<HashValue, _>(key, |h, _| {
                h.iter(0)
                    .map(|e| format!("{:?}={:?}@{:?}", e.name(), e.value(), e.expire_at()))
                    .collect()
            })
            .unwrap()
            .unwrap(),
        KeyType::Set => s
            .read_collection::<SetValue, _>(key, |s, _| {
                s.iter().map(|m| format!("{m:?}")).collect()
            })
            .unwrap()
            .unwrap(),
        KeyType::SortedSet => s
            .read_collection::<SortedSetValue, _>(key, |z, _| {
                z.ascending()
                    .map(|(m, s)| format!("{m:?}:{}", s.to_bits()))
                    .collect()
            })
            .unwrap()
            .unwrap(),
    };
    out.sort();
    Some(out)
}

/// Adds element `n` to the collection of `kind` at `key` on `s` (a hash field with
/// `value_len` bytes and, if `ttl`, that TTL in ms; a sorted-set member with score
/// `SCORES[value_len % 8]`).
fn add_element(s: &Store, key: &[u8], kind: KeyType, n: u8, value_len: usize, ttl: Option<u64>) {
    let nm = name(n);
    match kind {
        KeyType::Hash => {
            let value = vec![b'h'; value_len];
            let bound = Element::accounted_for(nm.len(), value.len(), ttl.is_some());
            s.update_collection::<HashValue, _>(key, true, bound, |h, now| {
                h.put(&nm, ttl.map(|t| now + t), &value);
                ((), true)
            })
            .unwrap()
            .unwrap();
        }
        KeyType::Set => {
            let bound = Element::accounted_for(nm.len(), 0, false);
            s.update_collection::<SetValue, _>(key, true, bound, |s, _| ((), s.add(&nm)))
                .unwrap()
                .unwrap();
        }
        KeyType::SortedSet => {
            let score = Score::new(SCORES[value_len % SCORES.len()]).unwrap();
            let bound = SortedSetValue::member_bytes(nm.len());
            s.update_collection::<SortedSetValue, _>(key, true, bound, |z, _| {
                (
                    (),
                    z.insert(&nm, score).is_none_or(|old| old != score.get()),
                )
            })
            .unwrap()
            .unwrap();
        }
        other => unreachable!("{other:?}"),
    }
}

/// Replica `b` holds what primary `a` holds at `key`: contents, type, TTL, accounted
/// size, version.
fn same_on_both(a: &Store, b: &Store, key: &[u8]) -> Result<(), TestCaseError> {
    prop_assert_eq!(dump(b, key), dump(a, key));
    prop_assert_eq!(b.key_type(key), a.key_type(key));
    prop_assert_eq!(b.pexpiretime(key), a.pexpiretime(key));
    prop_assert_eq!(b.memory_usage(key), a.memory_usage(key));
    prop_assert_eq!(
        b.get_versioned(key).map(|e| e.version),
        a.get_versioned(key).map(|e| e.version)
    );
    for s in [a, b] {
        if let Err(e) = s.check_invariants() {
            prop_assert!(false, "{}", e);
        }
    }
    Ok(())
}

const KINDS: [KeyType; 3] = [KeyType::Hash, KeyType::Set, KeyType::SortedSet];

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// A collection read with `get_versioned` on one store and applied to another gives
    /// the same contents (hash field TTLs included), type, key TTL, accounted size and
    /// version, replacing an older string; applying it again is a duplicate; once a
    /// newer write has been applied, it and the older string are stale; a delete's
    /// tombstone then blocks it too.
    #[test]
    fn replicated_collections_round_trip_and_older_versions_lose(
        kind in prop::sample::select(KINDS.to_vec()),
        elements in prop::collection::vec((0..NAMES, 0usize..30, prop::option::of(1u64..5_000)), 1..10),
        extra in (0u8..3, 0usize..30),
        key_ttl in prop::option::of(1i64..100_000),
        grace in prop::sample::select(vec![0u64, 1_000]),
        shards in prop::sample::select(vec![1usize, 4]),
    ) {
        let config = |node_id| StoreConfig { shards, node_id, tombstone_grace_ms: grace, ..StoreConfig::default() };
        let (a, _) = common::store_with(config(1));
        let (b, _) = common::store_with(config(2));
        let k = b"coll";
        // An older string at the key, which the collection replaces everywhere.
        a.set(k, b"old string", SetOptions::default()).unwrap();
        let string = a.get_versioned(k).unwrap();
        a.del(&[&k[..]]);
        for &(n, len, ttl) in &elements {
            add_element(&a, k, kind, n, len, ttl);
        }
        if let Some(ms) = key_ttl {
            prop_assert!(a.pexpire(k, ms, ExpireFlags::NONE).unwrap());
        }
        let first = a.get_versioned(k).unwrap();
        prop_assert_eq!(first.kind, kind);
        prop_assert!(!first.tombstone);
        prop_assert!(first.version > string.version);

        prop_assert_eq!(b.apply(k, string.clone()), Ok(ApplyOutcome::Applied));
        prop_assert_eq!(b.key_type(k), KeyType::String);
        prop_assert_eq!(b.apply(k, first.clone()), Ok(ApplyOutcome::Applied));
        same_on_both(&a, &b, k)?;
        prop_assert_eq!(b.apply(k, first.clone()), Ok(ApplyOutcome::Duplicate));
        prop_assert_eq!(b.apply(k, string.clone()), Ok(ApplyOutcome::Stale));
        same_on_both(&a, &b, k)?;

        // A newer write on the primary: one more element.
        add_element(&a, k, kind, NAMES + extra.0, extra.1, None);
        let second = a.get_versioned(k).unwrap();
        prop_assert!(second.version > first.version);
        prop_assert_eq!(b.apply(k, second.clone()), Ok(ApplyOutcome::Applied));
        same_on_both(&a, &b, k)?;
        prop_assert_eq!(b.apply(k, first.clone()), Ok(ApplyOutcome::Stale));
        prop_assert_eq!(b.apply(k, string), Ok(ApplyOutcome::Stale));
        same_on_both(&a, &b, k)?;

        // A newer string replaces the collection on a replica, as a SET does.
        let (d, _) = common::store_with(config(4));
        prop_assert_eq!(d.apply(k, second.clone()), Ok(ApplyOutcome::Applied));
        let (e, later) = common::store_with(config(5));
        later.advance(Duration::from_millis(1));
        e.set(k, b"newer string", SetOptions::default()).unwrap();
        let newer = e.get_versioned(k).unwrap();
        prop_assert!(newer.version > second.version);
        prop_assert_eq!(d.apply(k, newer), Ok(ApplyOutcome::Applied));
        same_on_both(&e, &d, k)?;

        // A third store that saw only the newest write agrees as well.
        let (c, _) = common::store_with(config(3));
        prop_assert_eq!(c.apply(k, second.clone()), Ok(ApplyOutcome::Applied));
        same_on_both(&a, &c, k)?;

        // A delete replicates as a tombstone, which blocks the older collection.
        a.del(&[&k[..]]);
        if let Some(tomb) = a.get_versioned(k) {
            prop_assert!(tomb.tombstone);
            prop_assert_eq!(b.apply(k, tomb), Ok(ApplyOutcome::Applied));
            prop_assert_eq!(b.key_type(k), KeyType::None);
            prop_assert_eq!(b.apply(k, second), Ok(ApplyOutcome::Stale));
            prop_assert_eq!(b.key_type(k), KeyType::None);
            if let Err(e) = b.check_invariants() {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

#[test]
fn a_replicated_collection_that_does_not_decode_is_refused() {
    let (a, _) = common::store_with(StoreConfig {
        node_id: 1,
        ..StoreConfig::default()
    });
    add_element(&a, b"k", KeyType::Set, 1, 0, None);
    let good = a.get_versioned(b"k").unwrap();
    let (b, _) = common::store();
    // b's own write is older than `good` (same time, lower node id).
    b.set(b"k", b"kept", SetOptions::default()).unwrap();
    let before = b.memory_usage(b"k");
    for (kind, value) in [
        (KeyType::Hash, &b"\x05\0\0\0ab"[..]),
        (KeyType::Set, &b""[..]),
        (KeyType::SortedSet, &b"\x01\0\0\0m\0\0"[..]),
    ] {
        let bad = VersionedEntry {
            value: value.to_vec().into(),
            kind,
            ..good.clone()
        };
        assert_eq!(
            b.apply(b"k", bad),
            Err(StoreError::CorruptEntry),
            "{kind:?}"
        );
        assert_eq!(b.get(b"k").as_deref(), Some(&b"kept"[..]));
        assert_eq!(b.memory_usage(b"k"), before);
        b.check_invariants().unwrap();
    }
    assert_eq!(b.apply(b"k", good), Ok(ApplyOutcome::Applied));
    assert_eq!(b.key_type(b"k"), KeyType::Set);
    b.check_invariants().unwrap();
}

// ---- WRONGTYPE ------------------------------------------------------------------------

/// Every string command on a key holding a collection answers WRONGTYPE and leaves the
/// key as it was (contents, accounted size, version, TTL); GET and MGET see no string;
/// the type-blind commands (TYPE, EXISTS, EXPIRE, TTL, SET NX) work; SET, SET XX and
/// MSET overwrite it with a string.
#[test]
fn string_commands_on_a_collection_answer_wrongtype() {
    for kind in KINDS {
        let (s, _) = common::store();
        let k = b"c";
        add_element(&s, k, kind, 1, 5, Some(60_000));
        add_element(&s, k, kind, 2, 3, None);
        s.pexpire(k, 100_000, ExpireFlags::NONE).unwrap();
        let before = (
            dump(&s, k),
            s.memory_usage(k),
            s.get_versioned(k),
            s.pttl(k),
        );
        let wrong = Err(StoreError::WrongType);
        assert_eq!(s.get_with(k, |v| v.to_vec()), wrong, "{kind:?}");
        assert_eq!(s.get(k), None);
        assert_eq!(s.mget(&[k]), vec![None]);
        assert_eq!(s.strlen(k), Err(StoreError::WrongType));
        assert_eq!(s.getrange(k, 0, -1), Err(StoreError::WrongType));
        assert_eq!(s.getdel(k), Err(StoreError::WrongType));
        for expiry in [GetExExpiry::Keep, GetExExpiry::Persist] {
            assert_eq!(s.getex(k, expiry), Err(StoreError::WrongType));
        }
        assert_eq!(s.incr(k), Err(StoreError::WrongType));
        assert_eq!(s.decr(k), Err(StoreError::WrongType));
        assert_eq!(s.incrby(k, 5), Err(StoreError::WrongType));
        assert_eq!(s.decrby(k, 5), Err(StoreError::WrongType));
        assert_eq!(s.incrbyfloat(k, 1.5), Err(StoreError::WrongType));
        assert_eq!(s.append(k, b"x"), Err(StoreError::WrongType));
        assert_eq!(s.setrange(k, 0, b"x"), Err(StoreError::WrongType));
        assert_eq!(s.setrange(k, 3, b""), Err(StoreError::WrongType));
        assert_eq!(s.getset(k, b"x"), Err(StoreError::WrongType));
        let set_get = SetOptions {
            get: true,
            ..SetOptions::default()
        };
        assert_eq!(
            s.set(k, b"x", set_get).map(|o| o.written),
            Err(StoreError::WrongType)
        );
        let set_nx_get = SetOptions {
            get: true,
            condition: SetCondition::IfAbsent,
            ..SetOptions::default()
        };
        assert_eq!(
            s.set(k, b"x", set_nx_get).map(|o| o.written),
            Err(StoreError::WrongType)
        );
        // SET NX (no GET) just finds the key there.
        assert_eq!(s.setnx(k, b"x"), Ok(false));
        let after = (
            dump(&s, k),
            s.memory_usage(k),
            s.get_versioned(k),
            s.pttl(k),
        );
        assert_eq!(after, before, "{kind:?}: a refused command changed the key");
        s.check_invariants().unwrap();

        // Type-blind commands.
        assert_eq!(s.key_type(k), kind);
        assert_eq!(s.exists(&[k]), 1);
        assert!(s.encoding(k).is_some());
        assert!(s.persist(k));
        assert_eq!(s.pttl(k), -1);

        // SET XX overwrites any type; the collection's bytes go with it.
        let xx = SetOptions {
            condition: SetCondition::IfPresent,
            ..SetOptions::default()
        };
        assert!(s.set(k, b"now a string", xx).unwrap().written);
        assert_eq!(s.key_type(k), KeyType::String);
        assert_eq!(s.get(k).as_deref(), Some(&b"now a string"[..]));
        assert_eq!(s.memory_usage(k), Some(1 + 12 + ENTRY_OVERHEAD));
        assert_eq!(s.used_memory(), 1 + 12 + ENTRY_OVERHEAD);
        s.check_invariants().unwrap();

        // MSET too.
        add_element(&s, b"d", kind, 3, 4, Some(10));
        s.mset(&[(&b"d"[..], &b"v"[..])]).unwrap();
        assert_eq!(s.key_type(b"d"), KeyType::String);
        assert_eq!(s.memory_usage(b"d"), Some(1 + 1 + ENTRY_OVERHEAD));
        s.check_invariants().unwrap();
    }
}

/// Reading or updating a key as a collection of another type, or a string as any
/// collection, answers WRONGTYPE, runs nothing and changes nothing.
#[test]
fn collection_access_of_the_wrong_type_answers_wrongtype() {
    fn attempts(s: &Store, k: &[u8], held: KeyType) {
        let wrong = Err(StoreError::WrongType);
        let mut ran = false;
        if held != KeyType::Hash {
            assert_eq!(s.read_collection::<HashValue, _>(k, |_, _| ()), wrong);
            let r = s.update_collection::<HashValue, _>(k, true, 1_000, |h, _| {
                ran = true;
                (h.set(b"f", b"v", false), true)
            });
            assert_eq!(r, Err(StoreError::WrongType));
        }
        if held != KeyType::Set {
            assert_eq!(s.read_collection::<SetValue, _>(k, |_, _| ()), wrong);
            let r = s.update_collection::<SetValue, _>(k, false, 1_000, |set, _| {
                ran = true;
                (set.add(b"m"), true)
            });
            assert_eq!(r, Err(StoreError::WrongType));
        }
        if held != KeyType::SortedSet {
            assert_eq!(s.read_collection::<SortedSetValue, _>(k, |_, _| ()), wrong);
            let r = s.update_collection::<SortedSetValue, _>(k, true, 1_000, |z, _| {
                ran = true;
                (z.insert(b"m", Score::new(1.0).unwrap()), true)
            });
            assert_eq!(r, Err(StoreError::WrongType));
        }
        assert!(!ran, "an update ran on a key of another type");
    }
    for held in [
        KeyType::String,
        KeyType::Hash,
        KeyType::Set,
        KeyType::SortedSet,
    ] {
        let (s, _) = common::store_with(StoreConfig {
            maxmemory: 10_000,
            ..StoreConfig::default()
        });
        let k = b"key";
        match held {
            KeyType::String => {
                s.set(k, b"text", SetOptions::default()).unwrap();
            }
            kind => add_element(&s, k, kind, 1, 2, None),
        }
        let before = (
            dump(&s, k),
            s.memory_usage(k),
            s.get_versioned(k),
            s.used_memory(),
        );
        attempts(&s, k, held);
        let after = (
            dump(&s, k),
            s.memory_usage(k),
            s.get_versioned(k),
            s.used_memory(),
        );
        assert_eq!(after, before, "{held:?}");
        assert_eq!(s.key_type(k), held);
        s.check_invariants().unwrap();
    }
}

// ---- targeted cases -------------------------------------------------------------------

/// Redis orders a sorted set by score with `-0` equal to `0` (its skiplist compares with
/// `<` and `==`), ties broken by member; and `-0` lies within a range starting at `0`.
#[test]
fn negative_zero_sorts_as_zero_as_in_redis() {
    let (s, _) = common::store();
    for (m, score) in [(&b"a"[..], 0.0), (&b"b"[..], -0.0), (&b"c"[..], 0.0)] {
        let bound = SortedSetValue::member_bytes(1);
        s.update_collection::<SortedSetValue, _>(b"z", true, bound, |z, _| {
            ((), z.insert(m, Score::new(score).unwrap()).is_none())
        })
        .unwrap();
    }
    let (order, in_range, rank_b) = s
        .read_collection::<SortedSetValue, _>(b"z", |z, _| {
            let order: Vec<Vec<u8>> = z.ascending().map(|(m, _)| m.to_vec()).collect();
            let in_range: Vec<Vec<u8>> = z
                .by_score(ScoreBound::Inclusive(0.0), ScoreBound::Inclusive(0.0))
                .map(|(m, _)| m.to_vec())
                .collect();
            (order, in_range, z.rank(b"b", false))
        })
        .unwrap()
        .unwrap();
    let abc = vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
    assert_eq!(order, abc, "ZRANGE order");
    assert_eq!(in_range, abc, "ZRANGEBYSCORE z 0 0");
    assert_eq!(rank_b, Some(1), "ZRANK z b");
}

/// A hash whose fields all pass their TTL goes as an expired key, whether the active
/// cycle or the next write to it finds them; until then reads hide the fields.
#[test]
fn a_hash_emptied_by_field_ttls_goes_with_its_last_field() {
    for by_tick in [true, false] {
        let (s, clock) = common::store();
        add_element(&s, b"h", KeyType::Hash, 1, 4, Some(100));
        add_element(&s, b"h", KeyType::Hash, 2, 4, Some(200));
        add_element(&s, b"other", KeyType::Hash, 1, 4, Some(150));
        clock.advance(Duration::from_millis(201));
        assert_eq!(s.key_type(b"h"), KeyType::Hash, "no cleanup yet");
        let live = s.read_collection::<HashValue, _>(b"h", |h, now| h.live_len(now));
        assert_eq!(live, Ok(Some(0)));
        if by_tick {
            let report = s.tick(clock.now_ms());
            assert_eq!(report.expired_fields, 3);
            assert_eq!(s.key_type(b"other"), KeyType::None);
        } else {
            let r = s.update_collection::<HashValue, _>(b"h", false, 0, |h, now| {
                let live = h.delete(b"nothing", now);
                (live, live)
            });
            assert_eq!(r, Ok(Some(false)));
        }
        assert_eq!(s.key_type(b"h"), KeyType::None);
        assert_eq!(s.memory_usage(b"h"), None);
        // Expiry, not a delete: no tombstone is left.
        assert_eq!(s.get_versioned(b"h"), None);
        s.check_invariants().unwrap();
    }
}

/// A collection moved by RENAME or copied by COPY keeps its field TTLs, which the
/// active cycle then expires at the new key; the old key's bytes go.
#[test]
fn rename_and_copy_carry_field_ttls() {
    let (s, clock) = common::store_with(StoreConfig {
        shards: 4,
        ..StoreConfig::default()
    });
    add_element(&s, b"src", KeyType::Hash, 1, 4, Some(100));
    add_element(&s, b"src", KeyType::Hash, 2, 4, None);
    s.rename(b"src", b"moved").unwrap();
    assert!(s.copy(b"moved", b"copied", false).unwrap());
    assert_eq!(s.key_type(b"src"), KeyType::None);
    assert_eq!(
        s.memory_usage(b"moved").map(|n| n - 5),
        s.memory_usage(b"copied").map(|n| n - 6)
    );
    clock.advance(Duration::from_millis(101));
    assert_eq!(s.tick(clock.now_ms()).expired_fields, 2);
    for k in [&b"moved"[..], b"copied"] {
        let fields = s.read_collection::<HashValue, _>(k, |h, _| h.len());
        assert_eq!(fields, Ok(Some(1)), "{k:?}");
    }
    s.check_invariants().unwrap();
}

/// `Collection`'s type-level view agrees with the store's `TYPE`.
#[test]
fn collection_kinds_match_key_types() {
    assert_eq!(<HashValue as CollectionType>::KIND, KeyType::Hash);
    assert_eq!(<SetValue as CollectionType>::KIND, KeyType::Set);
    assert_eq!(<SortedSetValue as CollectionType>::KIND, KeyType::SortedSet);
    let (s, _) = common::store();
    for kind in KINDS {
        let k = kind.as_str().as_bytes();
        add_element(&s, k, kind, 1, 1, None);
        let e = s.get_versioned(k).unwrap();
        let decoded = Collection::decode(e.kind, &e.value).unwrap();
        assert_eq!(decoded.kind(), kind);
        assert_eq!(
            Some(decoded.bytes() + k.len() as u64 + ENTRY_OVERHEAD),
            s.memory_usage(k)
        );
    }
}

/// A write to a collection is an access, as a write to a string is: the key becomes the
/// shard's most recently used (so a hash updated all the time is not the first evicted).
#[test]
fn collection_writes_promote_the_key_like_string_writes() {
    for kind in KINDS {
        let (s, _) = common::small_store(0, 1);
        add_element(&s, b"c", kind, 1, 1, None);
        s.set(b"a", b"1", SetOptions::default()).unwrap();
        s.set(b"b", b"1", SetOptions::default()).unwrap();
        s.append(b"a", b"2").unwrap();
        let order = |s: &Store| s.lru_dump(0).iter().map(|k| k.to_vec()).collect::<Vec<_>>();
        assert_eq!(
            order(&s),
            [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()],
            "APPEND promotes"
        );
        add_element(&s, b"c", kind, 2, 1, None);
        assert_eq!(
            order(&s),
            [b"c".to_vec(), b"a".to_vec(), b"b".to_vec()],
            "{kind:?}: an update to the collection promotes it"
        );
    }
}

/// Without eviction, an update that does not fit answers OOM before it runs, and the
/// collection, the accounting and the key's version stay as they were.
#[test]
fn an_update_that_does_not_fit_without_eviction_changes_nothing() {
    for kind in KINDS {
        let limit = 1_200;
        let (s, _) = common::store_with(StoreConfig {
            maxmemory: limit,
            policy: MaxmemoryPolicy::NoEviction,
            ..StoreConfig::default()
        });
        let mut added = 0;
        let failed_at = (0..20u8)
            .find(|&n| {
                let before = (dump(&s, b"k"), s.used_memory(), s.get_versioned(b"k"));
                let r = match kind {
                    KeyType::Hash => {
                        s.update_collection::<HashValue, _>(b"k", true, 200, |h, _| {
                            (h.set(&name(NAMES + n), b"value", false), true)
                        })
                    }
                    KeyType::Set => {
                        s.update_collection::<SetValue, _>(b"k", true, 200, |set, _| {
                            (set.add(&name(NAMES + n)), true)
                        })
                    }
                    _ => s.update_collection::<SortedSetValue, _>(b"k", true, 200, |z, _| {
                        (
                            z.insert(&name(NAMES + n), Score::new(1.0).unwrap())
                                .is_none(),
                            true,
                        )
                    }),
                };
                match r {
                    Ok(Some(true)) => {
                        added += 1;
                        false
                    }
                    Err(StoreError::OutOfMemory) => {
                        let after = (dump(&s, b"k"), s.used_memory(), s.get_versioned(b"k"));
                        assert_eq!(
                            after, before,
                            "{kind:?}: a refused update changed the store"
                        );
                        true
                    }
                    other => panic!("{kind:?}: {other:?}"),
                }
            })
            .expect("the limit is reached");
        assert!(added > 0 && failed_at == added, "{kind:?}: {added} added");
        assert!(s.used_memory() <= limit);
        s.check_invariants().unwrap();
    }
}

/// FLUSHDB and FLUSHALL take collections (and their accounted bytes) with the strings.
#[test]
fn flushes_remove_collections_and_their_bytes() {
    let (s, _) = common::store_with(StoreConfig {
        shards: 4,
        ..StoreConfig::default()
    });
    for flush_all in [false, true] {
        for (i, kind) in KINDS.into_iter().enumerate() {
            for n in 0..NAMES {
                add_element(&s, &key(i as u8), kind, n, 7, Some(1_000));
            }
        }
        s.set(b"str", b"v", SetOptions::default()).unwrap();
        assert!(s.used_memory() > 0);
        if flush_all {
            s.flushall();
        } else {
            s.flushdb(0);
        }
        assert_eq!((s.used_memory(), s.dbsize(0)), (0, 0));
        assert_eq!(s.tick(s.now_ms() + 10_000).expired_fields, 0);
        s.check_invariants().unwrap();
    }
}

/// An update that needs room evicts other keys, never the collection it writes (as
/// `docs/collections.md` says): here the collection's shard holds nothing else, so the
/// room must come from the other shard.
#[test]
fn an_update_never_evicts_the_collection_it_writes() {
    let limit = 2_000;
    let (s, _) = common::small_store(limit, 2);
    let shard = |k: &[u8]| s.shard_of_hash(quorra_ring::key_hash(k));
    let h = b"h";
    let fillers: Vec<Vec<u8>> = (0..200u32)
        .map(|i| format!("f{i}").into_bytes())
        .filter(|k| shard(k) != shard(h))
        .collect();
    for round in 0..4u8 {
        // Fill the other shard up to the limit with strings.
        for k in &fillers {
            if s.used_memory() + 200 > limit {
                break;
            }
            s.set(k, &[b'x'; 100], SetOptions::default()).unwrap();
        }
        let value = vec![b'v'; 150];
        let r = s.update_collection::<HashValue, _>(
            h,
            true,
            Element::accounted_for(1, 150, false),
            |hv, _| (hv.set(&[b'a' + round], &value, false), true),
        );
        assert_eq!(r, Ok(Some(true)), "round {round}");
        let fields = s.read_collection::<HashValue, _>(h, |hv, _| hv.len());
        assert_eq!(
            fields,
            Ok(Some(usize::from(round) + 1)),
            "round {round}: the hash lost fields"
        );
        s.check_invariants().unwrap();
    }
}

// ---- deltas -----------------------------------------------------------------------------

/// What a client reads of `key` at the store's time: type, contents without a hash's
/// expired fields, key TTL; `None` for a missing key.
fn live_view(s: &Store, key: &[u8]) -> Option<(KeyType, Vec<String>, i64)> {
    let kind = s.key_type(key);
    let contents = match kind {
        KeyType::None => return None,
        KeyType::Hash => {
            let mut fields = s
                .read_collection::<HashValue, _>(key, |h, now| {
                    h.iter(now)
                        .map(|e| format!("{:?}={:?}@{:?}", e.name(), e.value(), e.expire_at()))
                        .collect::<Vec<_>>()
                })
                .unwrap()
                .unwrap_or_default();
            // A hash whose every field expired is gone for a client, though a store
            // that has not written it or run its expiry cycle since still holds it.
            if fields.is_empty() {
                return None;
            }
            fields.sort();
            fields
        }
        _ => dump(s, key).unwrap_or_default(),
    };
    Some((kind, contents, s.pexpiretime(key)))
}

/// Sends what the command run under capture on primary `a` wrote to `k` to replica `r`
/// as replication does: the delta if there is one — the whole entry if `r` answers that
/// it needs it — else the whole entry. Returns whether `r` needed the whole entry.
fn deliver(
    a: &Store,
    r: &Store,
    k: &[u8],
    changes: &quorra_store::Changes,
) -> Result<bool, TestCaseError> {
    let delta = changes.get(k).and_then(|change| a.delta(k, change));
    if let Some(delta) = &delta {
        match r.apply_delta(k, delta) {
            Ok(DeltaOutcome::Applied | DeltaOutcome::Held) => return Ok(false),
            Ok(DeltaOutcome::NeedsWhole) => {}
            other => prop_assert!(false, "a delta to {:?} answered {:?}", k, other),
        }
    }
    if let Some(entry) = a.get_versioned(k) {
        prop_assert!(r.apply(k, entry).is_ok());
    }
    Ok(delta.is_some())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// The model test's operations run on a primary under capture, and what each wrote
    /// sent as replication sends it: to replica `b` always, to replica `c` only when
    /// `reach_c` says so; and, when `undo` says so, an element update undone on the
    /// primary instead (as a write no replica took is). After every step:
    /// - `b` holds exactly what the primary holds, every delta applied as it came (no
    ///   whole copy ever needed);
    /// - `c` holds what the primary holds for every key where their versions agree
    ///   (a delta never applies to the wrong base), and catches up once it is sent the
    ///   keys it missed;
    /// - an undone write leaves the primary as it was before the command, version
    ///   included.
    #[test]
    fn deltas_keep_replicas_exact_and_undo_what_they_changed(
        steps in prop::collection::vec((op(KEYS), any::<bool>(), prop::bool::weighted(0.15)), 1..120),
        shards in prop::sample::select(vec![1usize, 4]),
    ) {
        // Replicated stores keep tombstones (a node with copies always does).
        let clock = quorra_store::MockClock::new(common::T0);
        let store = |node_id| Store::new(
            StoreConfig { shards, node_id, tombstone_grace_ms: 60_000, ..StoreConfig::default() },
            std::sync::Arc::new(clock.clone()),
        );
        let (a, b, c) = (store(1), store(2), store(3));
        let keys: Vec<Vec<u8>> = (0..KEYS).map(key).collect();
        for (op, reach_c, undo) in &steps {
            let before: Vec<_> = keys.iter().map(|k| (live_view(&a, k), a.get_versioned(k).map(|e| e.version))).collect();
            let (_, changes) = a.capture(|| run_store(&a, &clock, op));
            if let Op::Tick = op {
                b.tick(clock.now_ms());
                c.tick(clock.now_ms());
            }
            let undone = op.collection_key().map(key).filter(|k| *undo && matches!(changes.get(k), Some(KeyChange::Elements { .. })));
            if let Some(k) = &undone {
                prop_assert_eq!(a.revert_change(k, changes.get(k).unwrap()), Ok(true));
                let at = keys.iter().position(|x| x == k).unwrap();
                prop_assert_eq!(&live_view(&a, k), &before[at].0, "{:?} undone", op);
                prop_assert_eq!(a.get_versioned(k).map(|e| e.version), before[at].1);
            }
            for (k, (_, version)) in keys.iter().zip(&before) {
                if undone.as_ref() == Some(k) || a.get_versioned(k).map(|e| e.version) == *version {
                    continue;
                }
                let needed_whole = deliver(&a, &b, k, &changes)?;
                prop_assert!(!needed_whole, "{:?}: the replica that got every write needed {:?} whole", op, k);
                if *reach_c {
                    deliver(&a, &c, k, &changes)?;
                }
            }
            for k in &keys {
                prop_assert_eq!(live_view(&b, k), live_view(&a, k), "{:?} after {:?}", k, op);
                let version = |s: &Store| s.get_versioned(k).map(|e| e.version);
                if version(&c) == version(&a) {
                    prop_assert_eq!(live_view(&c, k), live_view(&a, k), "{:?} after {:?}", k, op);
                }
            }
            for s in [&a, &b, &c] {
                if let Err(e) = s.check_invariants() {
                    prop_assert!(false, "after {:?}: {}", op, e);
                }
            }
        }
        // Anti-entropy's part: every key `c` missed, sent whole. (A key the primary
        // no longer holds — a hash emptied by its fields' TTLs goes without a
        // tombstone — is not compared: `c` may hold an older value of it.)
        for k in &keys {
            if let Some(entry) = a.get_versioned(k) {
                prop_assert!(c.apply(k, entry).is_ok());
                prop_assert_eq!(live_view(&c, k), live_view(&a, k));
            }
        }
    }
}
