//! String commands: GET, SET and its relatives, counters, ranges, LCS.

use bytes::Bytes;
use quorra_store::numeric::parse_f64;
use quorra_store::{GetExExpiry, SetExpiry, SetOptions};

use super::{CommandError, Ctx, int_arg, is};
use crate::notifications::{GENERIC, STRING};

/// GET key
///
/// The value is encoded straight from the store into the reply (under the shard lock:
/// one copy instead of an allocation plus two copies).
pub fn get(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let out = &mut *ctx.out;
    let found = ctx
        .shared
        .store
        .get_with(&args[1], |value| quorra_resp::encode::bulk(out, value))?;
    ctx.lookups.found(found.is_some());
    if found.is_none() {
        quorra_resp::encode::null(ctx.out, ctx.session.protocol);
    }
    Ok(())
}

/// `SET key value [NX | XX] [GET] [EX s | PX ms | EXAT s | PXAT ms | KEEPTTL]`
pub fn set(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let options = SetOptions::parse(&args[3..]).map_err(CommandError::from)?;
    let outcome = ctx.shared.store.set(&args[1], &args[2], options)?;
    if outcome.written {
        notify_set(ctx, &args[1], options.expiry);
    }
    if options.get {
        ctx.bulk_or_null(outcome.previous.as_deref());
    } else if outcome.written {
        ctx.ok();
    } else {
        quorra_resp::encode::null(ctx.out, ctx.protocol());
    }
    Ok(())
}

/// Redis's events for a key SET wrote: `set`, and `expire` if it was given a TTL.
fn notify_set(ctx: &Ctx<'_>, key: &[u8], expiry: SetExpiry) {
    ctx.notify(STRING, "set", key);
    if !matches!(expiry, SetExpiry::None | SetExpiry::KeepTtl) {
        ctx.notify(GENERIC, "expire", key);
    }
}

/// SETNX key value
pub fn setnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let written = ctx.shared.store.setnx(&args[1], &args[2])?;
    if written {
        ctx.notify(STRING, "set", &args[1]);
    }
    ctx.int(i64::from(written));
    Ok(())
}

/// SETEX key seconds value
pub fn setex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    set_with_ttl(ctx, args, "setex", SetExpiry::Ex)
}

/// PSETEX key milliseconds value
pub fn psetex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    set_with_ttl(ctx, args, "psetex", SetExpiry::Px)
}

fn set_with_ttl(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    name: &str,
    expiry: fn(i64) -> SetExpiry,
) -> Result<(), CommandError> {
    let ttl = int_arg(&args[2])?;
    if ttl <= 0 {
        return Err(invalid_expire(name));
    }
    let options = SetOptions {
        expiry: expiry(ttl),
        ..SetOptions::default()
    };
    ctx.shared
        .store
        .set(&args[1], &args[3], options)
        .map_err(|error| rename_expire_error(error, name))?;
    notify_set(ctx, &args[1], options.expiry);
    ctx.ok();
    Ok(())
}

/// `ERR invalid expire time in '<name>' command`.
fn invalid_expire(name: &str) -> CommandError {
    CommandError::new(format!("ERR invalid expire time in '{name}' command"))
}

/// The store names the command in its expire-time error after its own operation; the
/// reply must name the command the client sent.
fn rename_expire_error(error: quorra_store::StoreError, name: &str) -> CommandError {
    match error {
        quorra_store::StoreError::InvalidExpireTime { .. } => invalid_expire(name),
        other => other.into(),
    }
}

/// `GETEX key [EX s | PX ms | EXAT s | PXAT ms | PERSIST]`
pub fn getex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let mut expiry = GetExExpiry::Keep;
    let mut rest = args[2..].iter();
    while let Some(option) = rest.next() {
        if expiry != GetExExpiry::Keep {
            return Err(CommandError::syntax());
        }
        let make: fn(i64) -> GetExExpiry = if is(option, "EX") {
            GetExExpiry::Ex
        } else if is(option, "PX") {
            GetExExpiry::Px
        } else if is(option, "EXAT") {
            GetExExpiry::ExAt
        } else if is(option, "PXAT") {
            GetExExpiry::PxAt
        } else if is(option, "PERSIST") {
            expiry = GetExExpiry::Persist;
            continue;
        } else {
            return Err(CommandError::syntax());
        };
        let value = rest.next().ok_or_else(CommandError::syntax)?;
        expiry = make(int_arg(value)?);
    }
    let value = ctx
        .shared
        .store
        .getex(&args[1], expiry)
        .map_err(|error| rename_expire_error(error, "getex"))?;
    if value.is_some() {
        match expiry {
            GetExExpiry::Keep => {}
            GetExExpiry::Persist => ctx.notify(GENERIC, "persist", &args[1]),
            _ => ctx.notify(GENERIC, "expire", &args[1]),
        }
    }
    ctx.read_result(value.as_deref());
    Ok(())
}

/// GETDEL key
pub fn getdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let value = ctx.shared.store.getdel(&args[1])?;
    if value.is_some() {
        ctx.notify(GENERIC, "del", &args[1]);
    }
    ctx.read_result(value.as_deref());
    Ok(())
}

/// GETSET key value
pub fn getset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let previous = ctx.shared.store.getset(&args[1], &args[2])?;
    ctx.notify(STRING, "set", &args[1]);
    ctx.bulk_or_null(previous.as_deref());
    Ok(())
}

/// `MGET key [key ...]`
pub fn mget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let values = ctx.shared.store.mget(&args[1..]);
    ctx.array(values.len());
    for value in &values {
        ctx.read_result(value.as_deref());
    }
    Ok(())
}

fn pairs(args: &[Bytes]) -> Result<Vec<(&Bytes, &Bytes)>, CommandError> {
    if args.len() % 2 == 0 {
        return Err(CommandError::arity(
            &String::from_utf8_lossy(&args[0]).to_lowercase(),
        ));
    }
    Ok(args[1..]
        .chunks_exact(2)
        .map(|pair| (&pair[0], &pair[1]))
        .collect())
}

/// `MSET key value [key value ...]`
pub fn mset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let pairs = pairs(args)?;
    ctx.shared.store.mset(&pairs)?;
    for (key, _) in pairs {
        ctx.notify(STRING, "set", key);
    }
    ctx.ok();
    Ok(())
}

/// `MSETNX key value [key value ...]`
pub fn msetnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let pairs = pairs(args)?;
    let written = ctx.shared.store.msetnx(&pairs)?;
    if written {
        for (key, _) in pairs {
            ctx.notify(STRING, "set", key);
        }
    }
    ctx.int(i64::from(written));
    Ok(())
}

/// INCR key
pub fn incr(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let value = ctx.shared.store.incrby(&args[1], 1)?;
    ctx.notify(STRING, "incrby", &args[1]);
    ctx.int(value);
    Ok(())
}

/// DECR key
pub fn decr(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let value = ctx.shared.store.decrby(&args[1], 1)?;
    ctx.notify(STRING, "incrby", &args[1]);
    ctx.int(value);
    Ok(())
}

/// INCRBY key increment
pub fn incrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let value = ctx.shared.store.incrby(&args[1], int_arg(&args[2])?)?;
    ctx.notify(STRING, "incrby", &args[1]);
    ctx.int(value);
    Ok(())
}

/// DECRBY key decrement
pub fn decrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let value = ctx.shared.store.decrby(&args[1], int_arg(&args[2])?)?;
    ctx.notify(STRING, "incrby", &args[1]);
    ctx.int(value);
    Ok(())
}

/// INCRBYFLOAT key increment
pub fn incrbyfloat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let increment = parse_f64(&args[2])?;
    let value = ctx.shared.store.incrbyfloat(&args[1], increment)?;
    ctx.notify(STRING, "incrbyfloat", &args[1]);
    ctx.bulk(&value);
    Ok(())
}

/// APPEND key value
pub fn append(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let len = ctx.shared.store.append(&args[1], &args[2])?;
    ctx.notify(STRING, "append", &args[1]);
    ctx.int(len as i64);
    Ok(())
}

/// STRLEN key
pub fn strlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let len = ctx.shared.store.strlen(&args[1])?;
    ctx.int(len as i64);
    Ok(())
}

/// GETRANGE key start end (and SUBSTR)
pub fn getrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let (start, end) = (int_arg(&args[2])?, int_arg(&args[3])?);
    let value = ctx.shared.store.getrange(&args[1], start, end)?;
    ctx.bulk(&value);
    Ok(())
}

/// SETRANGE key offset value
pub fn setrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let offset = int_arg(&args[2])?;
    let len = ctx.shared.store.setrange(&args[1], offset, &args[3])?;
    // An empty value changes nothing (and creates no key), so raises nothing.
    if !args[3].is_empty() {
        ctx.notify(STRING, "setrange", &args[1]);
    }
    ctx.int(len as i64);
    Ok(())
}

/// `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]`
///
/// The classic dynamic programme, as Redis: a (|a|+1)·(|b|+1) table of u32 lengths, then a
/// walk back from the corner collecting the common string and, for IDX, the matching
/// ranges (latest first). The table is refused when it would exceed
/// `proto-max-bulk-len`, as Redis refuses it.
pub fn lcs(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let (mut want_len, mut want_idx, mut with_match_len, mut min_match_len) =
        (false, false, false, 0i64);
    let mut rest = args[3..].iter();
    while let Some(option) = rest.next() {
        if is(option, "LEN") {
            want_len = true;
        } else if is(option, "IDX") {
            want_idx = true;
        } else if is(option, "WITHMATCHLEN") {
            with_match_len = true;
        } else if is(option, "MINMATCHLEN") {
            let value = rest.next().ok_or_else(CommandError::syntax)?;
            min_match_len = int_arg(value)?.max(0);
        } else {
            return Err(CommandError::syntax());
        }
    }
    if want_len && want_idx {
        return Err(CommandError::new(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    let string = |key| ctx.shared.store.get_with(key, Bytes::copy_from_slice);
    let a = string(&args[1])?.unwrap_or_default();
    let b = string(&args[2])?.unwrap_or_default();
    let cells = (a.len() as u64 + 1).saturating_mul(b.len() as u64 + 1);
    if cells.saturating_mul(4) > ctx.shared.config.proto_max_bulk_len {
        return Err(CommandError::new(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        ));
    }
    let width = b.len() + 1;
    let mut table = vec![0u32; cells as usize];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            table[i * width + j] = if a[i - 1] == b[j - 1] {
                table[(i - 1) * width + j - 1] + 1
            } else {
                table[(i - 1) * width + j].max(table[i * width + j - 1])
            };
        }
    }
    let total = table[a.len() * width + b.len()] as usize;
    let mut common = vec![0u8; total];
    // Ranges are (a_start, a_end, b_start, b_end), found from the end backwards.
    let mut ranges: Vec<(usize, usize, usize, usize)> = Vec::new();
    let mut current: Option<(usize, usize, usize, usize)> = None;
    let (mut i, mut j, mut k) = (a.len(), b.len(), total);
    while i > 0 && j > 0 {
        if a[i - 1] == b[j - 1] {
            k -= 1;
            common[k] = a[i - 1];
            match &mut current {
                Some(range) if range.0 == i && range.2 == j => {
                    range.0 = i - 1;
                    range.2 = j - 1;
                }
                _ => {
                    ranges.extend(current.take());
                    current = Some((i - 1, i - 1, j - 1, j - 1));
                }
            }
            i -= 1;
            j -= 1;
        } else if table[(i - 1) * width + j] > table[i * width + j - 1] {
            i -= 1;
        } else {
            j -= 1;
        }
    }
    ranges.extend(current);
    if want_len {
        ctx.int(total as i64);
    } else if want_idx {
        let shown: Vec<_> = ranges
            .into_iter()
            .filter(|range| (range.1 - range.0 + 1) as i64 >= min_match_len)
            .collect();
        ctx.map(2);
        ctx.bulk(b"matches");
        ctx.array(shown.len());
        for (a_start, a_end, b_start, b_end) in shown {
            ctx.array(if with_match_len { 3 } else { 2 });
            for (start, end) in [(a_start, a_end), (b_start, b_end)] {
                ctx.array(2);
                ctx.int(start as i64);
                ctx.int(end as i64);
            }
            if with_match_len {
                ctx.int((a_end - a_start + 1) as i64);
            }
        }
        ctx.bulk(b"len");
        ctx.int(total as i64);
    } else {
        ctx.bulk(&common);
    }
    Ok(())
}
