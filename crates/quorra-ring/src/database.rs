//! Databases: how a key of Redis database `n` (`SELECT n`) is stored and placed.
//!
//! quorra keeps one flat keyspace per node. A key of database 0 is stored as its own
//! bytes, so the common case costs nothing: no copy, no extra byte, placement exactly as
//! before databases existed. A key of any other database — and the rare key of database
//! 0 whose first byte is [`MARK`] — is stored as `MARK, db, key`:
//!
//! ```text
//! database 0, first byte != 0xFF   key
//! otherwise                        0xFF | db (1 byte) | key
//! ```
//!
//! The form is unambiguous: a stored key that starts with `0xFF` always carries its
//! database in the next byte. Because the database travels inside the key, everything
//! that moves keys — replication, hints, read repair, anti-entropy, eviction of replicas
//! — keeps databases apart without knowing about them; only the commands that list or
//! count keys, and those that move keys between databases, read the database back with
//! [`split`].
//!
//! Placement ignores the prefix: a key is placed by its own bytes (and hash tag) in every
//! database, so `MOVE` never changes a key's replicas and a transaction's keys share a
//! primary whatever database they are in.
//!
//! ```
//! use quorra_ring::database::{split, stored_key};
//!
//! assert_eq!(&*stored_key(0, b"user:1"), b"user:1");
//! assert_eq!(&*stored_key(3, b"user:1"), b"\xff\x03user:1");
//! assert_eq!(split(b"\xff\x03user:1"), (3, &b"user:1"[..]));
//! assert_eq!(split(&stored_key(0, b"\xffbinary")), (0, &b"\xffbinary"[..]));
//! ```

use std::borrow::Cow;

/// The first byte of a stored key that carries its database.
pub const MARK: u8 = 0xFF;

/// The most databases a node can have: the database number is one byte.
pub const MAX_DATABASES: usize = 256;

/// The stored form of `key` in database `db`: borrowed unchanged in the common case.
#[inline]
pub fn stored_key(db: u8, key: &[u8]) -> Cow<'_, [u8]> {
    if db == 0 && key.first() != Some(&MARK) {
        return Cow::Borrowed(key);
    }
    let mut stored = Vec::with_capacity(key.len() + 2);
    stored.extend_from_slice(&[MARK, db]);
    stored.extend_from_slice(key);
    Cow::Owned(stored)
}

/// True when `key` of database `db` is stored as other bytes than its own.
#[inline]
pub fn needs_prefix(db: u8, key: &[u8]) -> bool {
    db != 0 || key.first() == Some(&MARK)
}

/// The database and the client's key of a stored key.
#[inline]
pub fn split(stored: &[u8]) -> (u8, &[u8]) {
    match stored {
        [MARK, db, key @ ..] => (*db, key),
        key => (0, key),
    }
}

/// The client's key of a stored key.
#[inline]
pub fn user_key(stored: &[u8]) -> &[u8] {
    split(stored).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_database_and_key_round_trips_and_no_two_collide() {
        let keys: [&[u8]; 5] = [b"", b"a", b"\xff", b"\xff\x00a", b"\x00\xff"];
        let mut seen = std::collections::HashSet::new();
        for db in [0u8, 1, 15, 255] {
            for key in keys {
                let stored = stored_key(db, key);
                assert_eq!(split(&stored), (db, key));
                assert_eq!(needs_prefix(db, key), stored.as_ref() != key);
                assert!(seen.insert(stored.into_owned()), "{db} {key:?} collides");
            }
        }
    }
}
