//! Generic key commands: DEL, EXISTS, TYPE, KEYS, SCAN, RENAME, COPY, MOVE, the EXPIRE
//! family. Keys arrive in stored form ([`crate::databases`]); those handed back are the
//! client's.

use bytes::Bytes;
use quorra_ring::database::user_key;
use quorra_store::{ExpireFlags, StoreError};

use super::connection::database_arg;
use super::{CommandError, Ctx, int_arg, is};
use crate::databases::{self, client_key};
use crate::notifications::GENERIC;

/// Most keys one SCAN call may ask for with COUNT, so a client cannot make one call
/// collect the whole keyspace in memory at once.
pub const MAX_SCAN_COUNT: i64 = 100_000;

/// `DEL key [key ...] (and UNLINK)`
pub fn del(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let removed = if ctx.shared.notifier.wants(GENERIC) {
        // Key by key, to know which to raise `del` for.
        let mut removed = 0;
        for key in &args[1..] {
            if ctx.shared.store.del(std::slice::from_ref(key)) > 0 {
                ctx.notify(GENERIC, "del", key);
                removed += 1;
            }
        }
        removed
    } else {
        ctx.shared.store.del(&args[1..])
    };
    ctx.int(removed as i64);
    Ok(())
}

/// `EXISTS key [key ...]`
pub fn exists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let count = ctx.shared.store.exists(&args[1..]);
    ctx.int(count as i64);
    Ok(())
}

/// `TOUCH key [key ...]`
pub fn touch(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let count = ctx.shared.store.touch(&args[1..]);
    ctx.int(count as i64);
    Ok(())
}

/// TYPE key
pub fn key_type(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let name = ctx.shared.store.key_type(&args[1]).as_str();
    quorra_resp::encode::simple(ctx.out, name);
    Ok(())
}

/// With replication, a peer asking for keys wants each key once: the filter that keeps
/// only the keys this node is primary for, when the session asks for it.
fn primary_filter(ctx: &Ctx<'_>) -> Option<impl Fn(&[u8]) -> bool + use<>> {
    let node = ctx
        .shared
        .cluster
        .as_ref()
        .filter(|_| ctx.session.primary_only)?
        .clone();
    let view = node.view();
    Some(move |key: &[u8]| node.placement(&view).primary(key) == Some(&view.self_id))
}

/// The stored keys of the session's database matching `pattern` that it may see.
pub fn visible_keys(ctx: &Ctx<'_>, pattern: &[u8]) -> Vec<Bytes> {
    let mut keys = ctx.shared.store.keys(ctx.session.db, pattern);
    if let Some(mine) = primary_filter(ctx) {
        keys.retain(|key| mine(key));
    }
    keys
}

/// KEYS pattern
pub fn keys(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let keys = visible_keys(ctx, &args[1]);
    ctx.array(keys.len());
    for key in &keys {
        ctx.bulk(&client_key(key));
    }
    Ok(())
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`
pub fn scan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let cursor = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or_else(|| CommandError::new("ERR invalid cursor"))?;
    let mut pattern: Option<&[u8]> = None;
    let mut count = 10;
    let mut only_type = None;
    let mut rest = args[2..].iter();
    while let Some(option) = rest.next() {
        let value = rest.next().ok_or_else(CommandError::syntax)?;
        if is(option, "MATCH") {
            pattern = Some(value);
        } else if is(option, "COUNT") {
            count = int_arg(value)?;
            if count < 1 {
                return Err(CommandError::syntax());
            }
        } else if is(option, "TYPE") {
            let kind = quorra_store::KeyType::from_name(value).ok_or_else(|| {
                CommandError::new(format!(
                    "ERR unknown type name '{}'",
                    String::from_utf8_lossy(value)
                ))
            })?;
            only_type = Some(kind);
        } else {
            return Err(CommandError::syntax());
        }
    }
    let count = count.min(MAX_SCAN_COUNT) as usize;
    let (next, mut keys) = ctx
        .shared
        .store
        .scan(cursor, ctx.session.db, pattern, count);
    if let Some(mine) = primary_filter(ctx) {
        keys.retain(|key| mine(key));
    }
    if let Some(kind) = only_type {
        keys.retain(|key| ctx.shared.store.key_type(key) == kind);
    }
    ctx.array(2);
    ctx.bulk(itoa::Buffer::new().format(next).as_bytes());
    ctx.array(keys.len());
    for key in &keys {
        ctx.bulk(&client_key(key));
    }
    Ok(())
}

/// RANDOMKEY
pub fn randomkey(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Result<(), CommandError> {
    let key = match primary_filter(ctx) {
        None => ctx.shared.store.random_key(ctx.session.db),
        Some(_) => {
            let mut keys = visible_keys(ctx, b"*");
            let pick = rand::random_range(0..keys.len().max(1));
            (pick < keys.len()).then(|| keys.swap_remove(pick))
        }
    };
    ctx.bulk_or_null(key.as_ref().map(client_key).as_deref());
    Ok(())
}

/// MOVE key db: the key goes to database `db`, with its TTL, unless it is missing here
/// or exists there. The key keeps its replicas: placement ignores the database.
pub fn move_key(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let target = database_arg(ctx, &args[2])?;
    if target == ctx.session.db {
        return Err(CommandError::new(
            "ERR source and destination objects are the same",
        ));
    }
    let destination = databases::stored(target, user_key(&args[1]));
    let moved = match ctx.shared.store.renamenx(&args[1], &destination) {
        Ok(moved) => moved,
        Err(StoreError::NoSuchKey) => false,
        Err(error) => return Err(error.into()),
    };
    if moved {
        ctx.notify(GENERIC, "move_from", &args[1]);
        ctx.notify(GENERIC, "move_to", &destination);
    }
    ctx.int(i64::from(moved));
    Ok(())
}

/// RENAME key newkey
pub fn rename(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    ctx.shared.store.rename(&args[1], &args[2])?;
    notify_rename(ctx, args);
    ctx.ok();
    Ok(())
}

/// RENAMENX key newkey
pub fn renamenx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let renamed = ctx.shared.store.renamenx(&args[1], &args[2])?;
    if renamed {
        notify_rename(ctx, args);
    }
    ctx.int(i64::from(renamed));
    Ok(())
}

fn notify_rename(ctx: &Ctx<'_>, args: &[Bytes]) {
    ctx.notify(GENERIC, "rename_from", &args[1]);
    ctx.notify(GENERIC, "rename_to", &args[2]);
}

/// `COPY source destination [DB destination-db] [REPLACE]`
pub fn copy(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let mut replace = false;
    let mut destination = args[2].clone();
    let mut rest = args[3..].iter();
    while let Some(option) = rest.next() {
        if is(option, "REPLACE") {
            replace = true;
        } else if is(option, "DB") {
            let db = rest.next().ok_or_else(CommandError::syntax)?;
            destination = databases::stored(database_arg(ctx, db)?, user_key(&args[2]));
        } else {
            return Err(CommandError::syntax());
        }
    }
    let copied = ctx.shared.store.copy(&args[1], &destination, replace)?;
    if copied {
        ctx.notify(GENERIC, "copy_to", &destination);
    }
    ctx.int(i64::from(copied));
    Ok(())
}

/// The NX / XX / GT / LT options after EXPIRE's time argument.
fn expire_flags(options: &[Bytes]) -> Result<ExpireFlags, CommandError> {
    let mut flags = ExpireFlags::NONE;
    for option in options {
        if is(option, "NX") {
            flags.nx = true;
        } else if is(option, "XX") {
            flags.xx = true;
        } else if is(option, "GT") {
            flags.gt = true;
        } else if is(option, "LT") {
            flags.lt = true;
        } else {
            return Err(CommandError::new(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(option)
            )));
        }
    }
    Ok(flags)
}

/// Redis's event for an EXPIRE that took: `expire`, or `del` when the time had already
/// passed and the key is gone.
fn notify_expire(ctx: &Ctx<'_>, key: &Bytes) {
    if ctx.shared.notifier.wants(GENERIC) {
        let gone = ctx.shared.store.exists(std::slice::from_ref(key)) == 0;
        ctx.notify(GENERIC, if gone { "del" } else { "expire" }, key);
    }
}

macro_rules! expire_command {
    ($(#[$doc:meta])* $name:ident, $method:ident) => {
        $(#[$doc])*
        pub fn $name(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
            let time = int_arg(&args[2])?;
            let flags = expire_flags(&args[3..])?;
            let set = ctx.shared.store.$method(&args[1], time, flags)?;
            if set {
                notify_expire(ctx, &args[1]);
            }
            ctx.int(i64::from(set));
            Ok(())
        }
    };
}

expire_command!(
    /// `EXPIRE key seconds [NX | XX | GT | LT]`
    expire, expire
);
expire_command!(
    /// `PEXPIRE key milliseconds [NX | XX | GT | LT]`
    pexpire, pexpire
);
expire_command!(
    /// `EXPIREAT key unix-time-seconds [NX | XX | GT | LT]`
    expireat, expireat
);
expire_command!(
    /// `PEXPIREAT key unix-time-milliseconds [NX | XX | GT | LT]`
    pexpireat, pexpireat
);

macro_rules! ttl_command {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub fn $name(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
            let value = ctx.shared.store.$name(&args[1]);
            ctx.int(value);
            Ok(())
        }
    };
}

ttl_command!(
    /// TTL key: seconds left, -1 without expiry, -2 for a missing key.
    ttl
);
ttl_command!(
    /// PTTL key: milliseconds left, -1 without expiry, -2 for a missing key.
    pttl
);
ttl_command!(
    /// EXPIRETIME key: absolute Unix time in seconds, -1, or -2.
    expiretime
);
ttl_command!(
    /// PEXPIRETIME key: absolute Unix time in milliseconds, -1, or -2.
    pexpiretime
);

/// `WAIT numreplicas timeout`: the replicas, besides the primary, that every write
/// this connection was told succeeded has reached — the write level's count minus one
/// (0 on a single node or with one copy). Answered at once: a write is acknowledged only
/// once that many hold it, and quorra does not track copies made after the
/// acknowledgement, so waiting longer would not raise the count.
pub fn wait(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    int_arg(&args[1])?;
    if int_arg(&args[2])? < 0 {
        return Err(CommandError::new("ERR timeout is negative"));
    }
    let replicas = ctx.shared.cluster.as_ref().map_or(0, |node| {
        let copies = node.consistency.replicas;
        match copies > 1 {
            true => ctx.session.write_level(&node.consistency).required(copies) - 1,
            false => 0,
        }
    });
    ctx.int(replicas as i64);
    Ok(())
}

/// `OBJECT ENCODING | FREQ | IDLETIME | REFCOUNT key`, `OBJECT HELP`
pub fn object(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let sub = String::from_utf8_lossy(&args[1]).to_lowercase();
    match (sub.as_str(), args.len()) {
        ("help", 2) => super::help(
            ctx,
            "OBJECT",
            &[
                (
                    "ENCODING <key>",
                    &[
                        "Return the kind of internal representation used in order to store the value",
                        "associated with a <key>.",
                    ],
                ),
                (
                    "FREQ <key>",
                    &[
                        "Return the access frequency index of the <key>. The returned integer is",
                        "proportional to the logarithm of the recent access frequency of the key.",
                    ],
                ),
                (
                    "IDLETIME <key>",
                    &[
                        "Return the idle time of the <key>, that is the approximated number of",
                        "seconds elapsed since the last access to the key.",
                    ],
                ),
                (
                    "REFCOUNT <key>",
                    &[
                        "Return the number of references of the value associated with the specified",
                        "<key>.",
                    ],
                ),
            ],
        ),
        ("encoding", 3) => {
            let encoding = ctx.shared.store.encoding(&args[2]);
            ctx.bulk_or_null(encoding.map(str::as_bytes));
        }
        ("refcount", 3) => match ctx.shared.store.encoding(&args[2]) {
            Some(_) => ctx.int(1),
            None => ctx.bulk_or_null(None),
        },
        ("freq", 3) => {
            return Err(CommandError::new(
                "ERR An LFU maxmemory policy is not selected, access frequency not tracked. \
                 Please note that when switching between policies at runtime LRU and LFU data \
                 will take some time to adjust.",
            ));
        }
        ("idletime", 3) => {
            return Err(CommandError::new(
                "ERR OBJECT IDLETIME is not supported: quorra keeps its keys in LRU order but \
                 not the time of their last access",
            ));
        }
        ("help" | "encoding" | "refcount" | "freq" | "idletime", _) => {
            return Err(CommandError::arity(&format!("object|{sub}")));
        }
        _ => {
            return Err(super::unknown_subcommand("OBJECT", &args[1]));
        }
    }
    Ok(())
}

/// PERSIST key
pub fn persist(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let removed = ctx.shared.store.persist(&args[1]);
    if removed {
        ctx.notify(GENERIC, "persist", &args[1]);
    }
    ctx.int(i64::from(removed));
    Ok(())
}
