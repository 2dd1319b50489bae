//! Hashes: fields with values, each field with an optional TTL (Redis 7.4's HEXPIRE
//! family).
//!
//! A field past its expiry is invisible to every read at once (lazy expiry), is removed
//! by the next write to the hash, and by the store's active cycle, which visits the
//! hashes that hold fields with a TTL. A hash whose last field goes is deleted.

use super::table::{Element, Table};
use crate::entry::expired;

/// A hash's fields.
#[derive(Debug, Clone, Default)]
pub struct HashValue {
    fields: Table,
    /// Fields with a TTL, so that hashes without any skip every expiry check.
    volatile: usize,
}

/// What HEXPIRE and its family did to one field (Redis's reply codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldExpiry {
    /// `-2`: no such field.
    NoField = -2,
    /// `0`: the NX / XX / GT / LT condition was not met.
    ConditionNotMet = 0,
    /// `1`: the expiry was set.
    Set = 1,
    /// `2`: the time was in the past: the field was deleted.
    Deleted = 2,
}

impl HashValue {
    /// The field table, for replication's encodings.
    pub(super) fn fields(&self) -> &Table {
        &self.fields
    }

    /// The field table, to journal an update's changes (never to change it directly,
    /// which would lose count of the fields with a TTL).
    pub(super) fn fields_mut(&mut self) -> &mut Table {
        &mut self.fields
    }

    /// Fields, expired ones included until they are removed.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when the hash has no field left.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Accounted bytes of the fields.
    pub fn bytes(&self) -> u64 {
        self.fields.bytes()
    }

    /// True if some field has a TTL (the active expiry cycle visits such hashes).
    pub fn has_volatile_fields(&self) -> bool {
        self.volatile > 0
    }

    /// The live field `field` at `now_ms`.
    pub fn field(&self, field: &[u8], now_ms: u64) -> Option<&Element> {
        self.fields
            .get(field)
            .filter(|e| !e.expire_at().is_some_and(|at| expired(at, now_ms)))
    }

    /// The value of live field `field`.
    pub fn get(&self, field: &[u8], now_ms: u64) -> Option<&[u8]> {
        self.field(field, now_ms).map(Element::value)
    }

    /// The live fields at `now_ms`.
    pub fn iter(&self, now_ms: u64) -> impl Iterator<Item = &Element> {
        self.fields
            .iter()
            .filter(move |e| !e.expire_at().is_some_and(|at| expired(at, now_ms)))
    }

    /// A live field chosen at random (HRANDFIELD), `next` giving random numbers: a few
    /// random probes, then — for a hash whose fields are mostly expired — a walk.
    pub fn random(&self, now_ms: u64, mut next: impl FnMut() -> u64) -> Option<&Element> {
        let live = |e: &&Element| !e.expire_at().is_some_and(|at| expired(at, now_ms));
        for _ in 0..16 {
            let element = self.fields.random(&mut next)?;
            if live(&element) {
                return Some(element);
            }
        }
        let count = self.live_len(now_ms);
        (count > 0).then(|| self.iter(now_ms).nth((next() % count as u64) as usize))?
    }

    /// Live fields at `now_ms`.
    pub fn live_len(&self, now_ms: u64) -> usize {
        if self.volatile == 0 {
            self.fields.len()
        } else {
            self.iter(now_ms).count()
        }
    }

    /// Sets `field` to `value`; a field that existed loses its TTL unless `keep_ttl`
    /// (HSET discards it, as in Redis; HINCRBY keeps it). True if the field is new.
    pub fn set(&mut self, field: &[u8], value: &[u8], keep_ttl: bool) -> bool {
        let keep = if keep_ttl {
            self.fields.get(field).and_then(Element::expire_at)
        } else {
            None
        };
        self.put(field, keep, value)
    }

    /// Stores `field` with `value` and `expire_at`; true if the field is new.
    pub fn put(&mut self, field: &[u8], expire_at: Option<u64>, value: &[u8]) -> bool {
        let old = self.fields.insert(field, expire_at, value);
        self.volatile += usize::from(expire_at.is_some());
        match old {
            Some(old) => {
                self.volatile -= usize::from(old.expire_at().is_some());
                false
            }
            None => true,
        }
    }

    /// Deletes `field`; whether it was there (live).
    pub fn delete(&mut self, field: &[u8], now_ms: u64) -> bool {
        let live = self.field(field, now_ms).is_some();
        if let Some(old) = self.fields.remove(field) {
            self.volatile -= usize::from(old.expire_at().is_some());
        }
        live
    }

    /// Removes every field past its expiry at `now_ms`; returns how many went.
    pub fn remove_expired(&mut self, now_ms: u64) -> usize {
        if self.volatile == 0 {
            return 0;
        }
        let mut gone = 0;
        self.fields.retain(|e| {
            let dead = e.expire_at().is_some_and(|at| expired(at, now_ms));
            gone += usize::from(dead);
            !dead
        });
        self.volatile -= gone;
        gone
    }

    /// HEXPIRE's step for one field: gives live `field` the absolute expiry `at_ms`
    /// under `condition` (NX: no TTL yet; XX: has one; GT / LT: later / earlier, no TTL
    /// counting as infinite). A time already past deletes the field.
    pub fn expire_field(
        &mut self,
        field: &[u8],
        at_ms: u64,
        condition: crate::entry::ExpireFlags,
        now_ms: u64,
    ) -> FieldExpiry {
        let Some(element) = self.field(field, now_ms) else {
            return FieldExpiry::NoField;
        };
        let current = element.expire_at();
        let met = !(condition.nx && current.is_some()
            || condition.xx && current.is_none()
            || condition.gt && current.is_none_or(|c| at_ms <= c)
            || condition.lt && current.is_some_and(|c| at_ms >= c));
        if !met {
            return FieldExpiry::ConditionNotMet;
        }
        if at_ms <= now_ms {
            self.delete(field, now_ms);
            return FieldExpiry::Deleted;
        }
        let value = element.value().to_vec();
        self.put(field, Some(at_ms), &value);
        FieldExpiry::Set
    }

    /// HPERSIST's step: removes live `field`'s TTL. `-2` no field, `-1` no TTL, `1` done.
    pub fn persist_field(&mut self, field: &[u8], now_ms: u64) -> i64 {
        let Some(element) = self.field(field, now_ms) else {
            return -2;
        };
        if element.expire_at().is_none() {
            return -1;
        }
        let value = element.value().to_vec();
        self.put(field, None, &value);
        1
    }
}
