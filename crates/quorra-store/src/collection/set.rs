//! Sets: distinct members, on the element table with empty values.

use super::table::{Element, Table};

/// A set's members.
#[derive(Debug, Clone, Default)]
pub struct SetValue {
    members: Table,
}

impl SetValue {
    /// The member table, for replication's encodings.
    pub(super) fn members(&self) -> &Table {
        &self.members
    }

    /// The member table, to journal an update's changes.
    pub(super) fn members_mut(&mut self) -> &mut Table {
        &mut self.members
    }

    /// Members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when the set has no member left.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Accounted bytes of the members.
    pub fn bytes(&self) -> u64 {
        self.members.bytes()
    }

    /// True if `member` is in the set.
    pub fn contains(&self, member: &[u8]) -> bool {
        self.members.get(member).is_some()
    }

    /// Adds `member`; true if it is new.
    pub fn add(&mut self, member: &[u8]) -> bool {
        !self.contains(member) && self.members.insert(member, None, b"").is_none()
    }

    /// Removes `member`; true if it was there.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        self.members.remove(member).is_some()
    }

    /// Every member, in the table's order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.members.iter().map(Element::name)
    }

    /// A member chosen at random (SPOP, SRANDMEMBER), `next` giving random numbers.
    pub fn random(&self, next: impl FnMut() -> u64) -> Option<&[u8]> {
        self.members.random(next).map(Element::name)
    }
}
