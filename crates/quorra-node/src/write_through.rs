//! Write-through, and what every write does to namespace keys before it runs.
//!
//! [`before`] runs at the keys' owner (their primary with copies), before a write
//! command changes the cache:
//!
//! - any write to a namespace key marks a load of it in flight as overtaken (it read
//!   the origin before this write, so it must not store what it loaded) and forgets that
//!   the origin had no such row;
//! - in a namespace with `write = "through"`, SET stores the value at the origin, and
//!   DEL and UNLINK delete it there (with the namespace's `delete` statement, if it has
//!   one), before the cache changes. If the origin fails, the command is refused with
//!   `-ORIGIN <namespace>: <reason>` and the cache is not touched: the client is
//!   acknowledged only once both have the write. A SET without an expiry gets the
//!   namespace's TTL, as a loaded value does. SET's NX, XX and GET, and every other
//!   command that would change such a key's value, are refused: the origin could not
//!   follow them. Commands that change only its TTL (EXPIRE, PERSIST, ...) are allowed;
//! - in a namespace with `write = "behind"`, any write is taken (the flush writes the
//!   value it leaves), if the namespace's queue has room ([`crate::write_behind`]); a
//!   SET without an expiry gets the namespace's TTL there too.

use bytes::Bytes;
use quorra_origin::{Namespace, WriteMode};
use quorra_resp::command::{SetCondition, SetExpiry, SetOptions};

use crate::commands::{self, CommandError, CommandId};
use crate::shared::Shared;

/// True if [`before`] has something to do for the command `args`: it writes, and one
/// of its keys is in a namespace. Cheap: a table lookup and a prefix match per key.
pub fn concerns(shared: &Shared, args: &[Bytes]) -> bool {
    let Some(origins) = &shared.origins else {
        return false;
    };
    commands::lookup(&args[0]).is_some_and(|id| id.info().writes())
        && commands::keys_of(args).any(|key| origins.catalog().namespace_of(key).is_some())
}

/// Prepares the command `args` to run here, at its keys' owner: `Ok(None)` to run it
/// as it is, `Ok(Some(args))` to run this instead (a write-through SET given the
/// namespace's TTL), or the error to answer without running it.
pub async fn before(shared: &Shared, args: &[Bytes]) -> Result<Option<Vec<Bytes>>, CommandError> {
    let Some(origins) = &shared.origins else {
        return Ok(None);
    };
    let Some(id) = commands::lookup(&args[0]) else {
        return Ok(None);
    };
    let spec = id.info();
    if !spec.writes() || !commands::arity_ok(spec.arity, args.len()) {
        return Ok(None);
    }
    let catalog = origins.catalog();
    let mut through = Vec::new();
    let mut behind = None;
    for key in commands::keys_of(args) {
        if let Some(namespace) = catalog.namespace_of(key) {
            origins.flights.overtake(key);
            origins.negative.forget(key);
            match catalog.namespaces()[namespace].write {
                WriteMode::Through => through.push((namespace, key)),
                WriteMode::Behind => behind = behind.or(Some(namespace)),
                WriteMode::None => {}
            }
        }
    }
    if let Some(namespace) = behind {
        // Write-behind takes any write (the flush writes the key's resulting value);
        // the queue must have room, and a SET gets the namespace's TTL.
        crate::write_behind::check_room(shared, args)?;
        if through.is_empty() {
            return Ok(with_namespace_ttl(
                args,
                id,
                &catalog.namespaces()[namespace],
            ));
        }
    }
    let Some(&(first, _)) = through.first() else {
        return Ok(None);
    };
    let refuse = |namespace: usize, what: &str| {
        CommandError::new(format!(
            "ERR namespace {} writes through to its origin: {what}",
            catalog.namespaces()[namespace].name
        ))
    };
    let failed = |namespace: usize, error: quorra_origin::OriginError| {
        CommandError::new(format!(
            "ORIGIN {}: {error}",
            catalog.namespaces()[namespace].name
        ))
    };
    match id {
        CommandId::Set => {
            let options = SetOptions::parse(&args[3..]).map_err(CommandError::from)?;
            if options.condition != SetCondition::Always || options.get {
                return Err(refuse(first, "SET with NX, XX or GET is not supported"));
            }
            origins
                .write(first, &args[1], Some(&args[2]))
                .await
                .map_err(|error| failed(first, error))?;
            Ok(with_namespace_ttl(args, id, &catalog.namespaces()[first]))
        }
        CommandId::Del | CommandId::Unlink => {
            // In order; a failure stops here, before the cache changes (keys already
            // deleted at the origin are reloaded as missing).
            for (namespace, key) in through {
                origins
                    .write(namespace, key, None)
                    .await
                    .map_err(|error| failed(namespace, error))?;
            }
            Ok(None)
        }
        CommandId::Expire
        | CommandId::Pexpire
        | CommandId::Expireat
        | CommandId::Pexpireat
        | CommandId::Persist => Ok(None),
        _ => Err(refuse(
            first,
            &format!(
                "only SET, DEL and UNLINK may change its keys, not {}",
                spec.name.to_uppercase()
            ),
        )),
    }
}

/// A SET without an expiry (`args`), given `namespace`'s TTL as a loaded value gets it;
/// `None` for anything else (it runs as it is).
fn with_namespace_ttl(args: &[Bytes], id: CommandId, namespace: &Namespace) -> Option<Vec<Bytes>> {
    if id != CommandId::Set {
        return None;
    }
    let options = SetOptions::parse(&args[3..]).ok()?;
    if options.expiry != SetExpiry::None {
        return None;
    }
    let ttl = namespace.stored_ttl(rand::random::<f64>());
    let mut with_ttl = args.to_vec();
    with_ttl.push(Bytes::from_static(b"PX"));
    with_ttl.push(Bytes::from(ttl.as_millis().max(1).to_string()));
    Some(with_ttl)
}
