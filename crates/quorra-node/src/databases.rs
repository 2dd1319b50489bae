//! SELECT's databases on the request path.
//!
//! A node keeps one keyspace; a key of a database other than 0 is stored with its
//! database in front ([`quorra_ring::database`]). The conversion happens once, where a
//! client's command enters the path ([`enter`]: a RESP connection, the HTTP API's key
//! routes through [`crate::pipeline::run_one`], and each `redis.call` of a script):
//! [`scope`] rewrites the command's keys into their stored
//! form for the session's database. From there on — planning, forwarding, quorum reads,
//! replication, hints, anti-entropy, WATCH — keys are just bytes and databases cannot
//! mix. For a client in database 0 whose keys do not start with `0xFF` nothing is
//! rewritten or copied.
//!
//! Going the other way, the commands that hand keys back (KEYS, SCAN, RANDOMKEY, a
//! script's `KEYS`) reply with [`client_key`], and those that list or count keys ask the
//! store for the session's database only. MOVE and COPY ... DB write a key of another
//! database: [`other_database_key`] names it, so that primary writes copy it to the
//! replicas too. A key is placed by its client's bytes in every database, so that key is
//! always on the same replicas.

use bytes::Bytes;
use quorra_resp::command::{CommandId, key_positions, lookup};
use quorra_ring::database;

/// The command `args` of a client in database `db`, with its keys in stored form; `None`
/// when that is `args` itself (database 0, no key starting with `0xFF`).
pub fn scope(db: u8, args: &[Bytes]) -> Option<Vec<Bytes>> {
    // Checked before looking the command up: the common case costs one pass over the
    // arguments' first bytes.
    if db == 0 && !has_marked_argument(args) {
        return None;
    }
    if !key_positions(args).any(|position| database::needs_prefix(db, &args[position])) {
        return None;
    }
    let mut scoped = args.to_vec();
    for position in key_positions(args) {
        scoped[position] = stored(db, &args[position]);
    }
    Some(scoped)
}

/// [`scope`] in place, for an entry point that owns the command: every client's
/// command passes here once, before it is planned or run.
#[inline]
pub fn enter(db: u8, args: &mut Vec<Bytes>) {
    // Inlined, so that the common case (database 0, no key starting with 0xFF) costs
    // one pass over the arguments' first bytes and no call.
    if db == 0 && !has_marked_argument(args) {
        return;
    }
    if let Some(scoped) = scope(db, args) {
        *args = scoped;
    }
}

#[inline]
fn has_marked_argument(args: &[Bytes]) -> bool {
    args.iter()
        .skip(1)
        .any(|arg| arg.first() == Some(&database::MARK))
}

/// The stored `key` of database `db`.
pub fn stored(db: u8, key: &[u8]) -> Bytes {
    Bytes::from(database::stored_key(db, key).into_owned())
}

/// The client's key of a stored key, without copying it.
pub fn client_key(stored: &Bytes) -> Bytes {
    let key = database::user_key(stored);
    stored.slice(stored.len() - key.len()..)
}

/// The key of another database that the stored command `args` writes: MOVE's
/// destination, or COPY's with a `DB` option. `None` for any other command, and for a
/// database argument that is not a number (the command refuses it).
pub fn other_database_key(args: &[Bytes]) -> Option<Bytes> {
    let target = match lookup(&args[0])? {
        CommandId::Move => args.get(2)?,
        CommandId::Copy => {
            let at = args.iter().skip(3).position(|arg| is_db_option(arg))?;
            args.get(3 + at + 1)?
        }
        _ => return None,
    };
    let db = std::str::from_utf8(target).ok()?.parse::<u8>().ok()?;
    let key = match lookup(&args[0])? {
        CommandId::Move => &args[1],
        _ => &args[2],
    };
    Some(stored(db, database::user_key(key)))
}

fn is_db_option(arg: &[u8]) -> bool {
    arg.eq_ignore_ascii_case(b"DB")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(parts: &[&[u8]]) -> Vec<Bytes> {
        parts
            .iter()
            .map(|part| Bytes::copy_from_slice(part))
            .collect()
    }

    #[test]
    fn only_keys_are_scoped_and_database_0_text_keys_are_left_alone() {
        assert_eq!(scope(0, &args(&[b"SET", b"k", b"v"])), None);
        assert_eq!(scope(3, &args(&[b"PING"])), None);
        assert_eq!(
            scope(3, &args(&[b"MSET", b"a", b"1", b"b", b"2"])),
            Some(args(&[b"MSET", b"\xff\x03a", b"1", b"\xff\x03b", b"2"]))
        );
        assert_eq!(
            scope(0, &args(&[b"GET", b"\xffraw"])),
            Some(args(&[b"GET", b"\xff\x00\xffraw"]))
        );
        assert_eq!(
            scope(1, &args(&[b"EVAL", b"return 1", b"1", b"k", b"argv"])),
            Some(args(&[b"EVAL", b"return 1", b"1", b"\xff\x01k", b"argv"]))
        );
        assert_eq!(client_key(&Bytes::from_static(b"\xff\x03a")), "a");
        assert_eq!(client_key(&Bytes::from_static(b"a")), "a");
    }

    #[test]
    fn move_and_copy_name_the_key_they_write_in_the_other_database() {
        let moved = args(&[b"MOVE", b"\xff\x02k", b"5"]);
        assert_eq!(other_database_key(&moved), Some(stored(5, b"k")));
        let copied = args(&[b"COPY", b"a", b"b", b"REPLACE", b"db", b"1"]);
        assert_eq!(other_database_key(&copied), Some(stored(1, b"b")));
        assert_eq!(other_database_key(&args(&[b"COPY", b"a", b"b"])), None);
        assert_eq!(other_database_key(&args(&[b"MOVE", b"k", b"x"])), None);
    }
}
