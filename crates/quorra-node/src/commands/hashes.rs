//! Hash commands: HSET and its relatives, field TTLs (Redis 7.4's HEXPIRE family),
//! counters, random fields, HSCAN. The hash itself is [`HashValue`], in the store.

use bytes::Bytes;
use quorra_resp::encode;
use quorra_store::collection::{FieldExpiry, HashValue};
use quorra_store::numeric::{format_f64, parse_f64, parse_i64};
use quorra_store::{ExpireFlags, StoreError};

use super::elements::{self, Pick, ScanOptions};
use super::{CommandError, Ctx, int_arg, is};
use crate::notifications::HASH;

/// The field-value pairs of HSET / HMSET (`args` from the first field on).
fn pairs(args: &[Bytes], name: &str) -> Result<Vec<(Bytes, Bytes)>, CommandError> {
    if args.is_empty() || args.len() % 2 != 0 {
        return Err(CommandError::arity(name));
    }
    Ok(args
        .chunks(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect())
}

fn set_fields(ctx: &mut Ctx<'_>, args: &[Bytes], name: &str) -> Result<i64, CommandError> {
    let pairs = pairs(&args[2..], name)?;
    let growth = elements::growth(pairs.iter().map(|(f, v)| (f, v.len())));
    let added = elements::update::<HashValue, _>(ctx, &args[1], true, growth, |hash, _| {
        let added = pairs
            .iter()
            .filter(|(field, value)| hash.set(field, value, false))
            .count();
        (added as i64, true)
    })?
    .unwrap_or(0);
    ctx.notify(HASH, "hset", &args[1]);
    Ok(added)
}

/// `HSET key field value [field value ...]`: how many fields are new.
pub fn hset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let added = set_fields(ctx, args, "hset")?;
    ctx.int(added);
    Ok(())
}

/// `HMSET key field value [field value ...]`: `OK`.
pub fn hmset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    set_fields(ctx, args, "hmset")?;
    ctx.ok();
    Ok(())
}

/// `HSETNX key field value`
pub fn hsetnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let growth = elements::growth([(&args[2], args[3].len())].into_iter());
    let set = elements::update::<HashValue, _>(ctx, &args[1], true, growth, |hash, now| {
        let absent = hash.get(&args[2], now).is_none();
        if absent {
            hash.set(&args[2], &args[3], false);
        }
        (absent, absent)
    })?
    .unwrap_or(false);
    if set {
        ctx.notify(HASH, "hset", &args[1]);
    }
    ctx.int(i64::from(set));
    Ok(())
}

/// `HGET key field`
pub fn hget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    elements::read::<HashValue>(
        ctx,
        &args[1],
        |hash, now, out, protocol| match hash.get(&args[2], now) {
            Some(value) => encode::bulk(out, value),
            None => encode::null(out, protocol),
        },
        |ctx| ctx.bulk_or_null(None),
    )
}

/// `HMGET key field [field ...]`
pub fn hmget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let fields = &args[2..];
    elements::read::<HashValue>(
        ctx,
        &args[1],
        |hash, now, out, protocol| {
            encode::array_header(out, fields.len());
            for field in fields {
                match hash.get(field, now) {
                    Some(value) => encode::bulk(out, value),
                    None => encode::null(out, protocol),
                }
            }
        },
        |ctx| {
            ctx.array(fields.len());
            for _ in fields {
                ctx.bulk_or_null(None);
            }
        },
    )
}

/// What HGETALL, HKEYS and HVALS return of each field.
#[derive(Clone, Copy, PartialEq)]
enum Parts {
    Both,
    Fields,
    Values,
}

fn all(ctx: &mut Ctx<'_>, key: &[u8], parts: Parts) -> Result<(), CommandError> {
    elements::read::<HashValue>(
        ctx,
        key,
        |hash, now, out, protocol| {
            let live = hash.live_len(now);
            match parts {
                Parts::Both => encode::map_header(out, live, protocol),
                _ => encode::array_header(out, live),
            }
            for field in hash.iter(now) {
                if parts != Parts::Values {
                    encode::bulk(out, field.name());
                }
                if parts != Parts::Fields {
                    encode::bulk(out, field.value());
                }
            }
        },
        |ctx| match parts {
            Parts::Both => ctx.map(0),
            _ => ctx.array(0),
        },
    )
}

/// `HGETALL key`
pub fn hgetall(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    all(ctx, &args[1], Parts::Both)
}

/// `HKEYS key`
pub fn hkeys(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    all(ctx, &args[1], Parts::Fields)
}

/// `HVALS key`
pub fn hvals(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    all(ctx, &args[1], Parts::Values)
}

/// `HLEN key`
pub fn hlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    elements::read::<HashValue>(
        ctx,
        &args[1],
        |hash, now, out, _| encode::integer(out, hash.live_len(now) as i64),
        |ctx| ctx.int(0),
    )
}

/// `HEXISTS key field`
pub fn hexists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    elements::read::<HashValue>(
        ctx,
        &args[1],
        |hash, now, out, _| encode::integer(out, i64::from(hash.get(&args[2], now).is_some())),
        |ctx| ctx.int(0),
    )
}

/// `HSTRLEN key field`
pub fn hstrlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    elements::read::<HashValue>(
        ctx,
        &args[1],
        |hash, now, out, _| {
            let len = hash.get(&args[2], now).map_or(0, <[u8]>::len);
            encode::integer(out, len as i64)
        },
        |ctx| ctx.int(0),
    )
}

/// `HDEL key field [field ...]`: how many fields went.
pub fn hdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let removed = elements::update::<HashValue, _>(ctx, &args[1], false, 0, |hash, now| {
        let removed = args[2..]
            .iter()
            .filter(|field| hash.delete(field, now))
            .count();
        (removed as i64, removed > 0)
    })?
    .unwrap_or(0);
    if removed > 0 {
        elements::notify_write(ctx, HASH, &args[1], "hdel");
    }
    ctx.int(removed);
    Ok(())
}

/// `HINCRBY key field increment`
pub fn hincrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let delta = int_arg(&args[3])?;
    let growth = elements::growth([(&args[2], 20)].into_iter());
    let result = elements::update::<HashValue, _>(ctx, &args[1], true, growth, |hash, now| {
        let current = match hash.get(&args[2], now) {
            None => Ok(0),
            Some(value) => {
                parse_i64(value).map_err(|_| CommandError::new("ERR hash value is not an integer"))
            }
        };
        let next = current.and_then(|current| {
            current
                .checked_add(delta)
                .ok_or_else(|| CommandError::new("ERR increment or decrement would overflow"))
        });
        match next {
            Ok(next) => {
                hash.set(&args[2], itoa::Buffer::new().format(next).as_bytes(), true);
                (Ok(next), true)
            }
            Err(error) => (Err(error), false),
        }
    })?
    .expect("created");
    let next = result?;
    ctx.notify(HASH, "hincrby", &args[1]);
    ctx.int(next);
    Ok(())
}

/// The longest text [`format_f64`] gives: the smallest subnormal written out in full
/// (`0.` and 323 zeros before its `5`), with a sign.
const MAX_FLOAT_TEXT: usize = 330;

/// `HINCRBYFLOAT key field increment`
pub fn hincrbyfloat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let delta =
        parse_f64(&args[3]).map_err(|_| CommandError::new("ERR value is not a valid float"))?;
    // The longest text a float formats to: 5e-324 written out in full.
    let growth = elements::growth([(&args[2], MAX_FLOAT_TEXT)].into_iter());
    let result = elements::update::<HashValue, _>(ctx, &args[1], true, growth, |hash, now| {
        let current = match hash.get(&args[2], now) {
            None => Ok(0.0),
            Some(value) => {
                parse_f64(value).map_err(|_| CommandError::new("ERR hash value is not a float"))
            }
        };
        let next = current.and_then(|current| {
            let next = current + delta;
            match next.is_finite() {
                true => Ok(format_f64(next)),
                false => Err(CommandError::from(StoreError::NanOrInfinity)),
            }
        });
        match next {
            Ok(text) => {
                hash.set(&args[2], text.as_bytes(), true);
                (Ok(text), true)
            }
            Err(error) => (Err(error), false),
        }
    })?
    .expect("created");
    let text = result?;
    ctx.notify(HASH, "hincrbyfloat", &args[1]);
    ctx.bulk(text.as_bytes());
    Ok(())
}

/// `HRANDFIELD key [count [WITHVALUES]]`
pub fn hrandfield(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let with_values = match args.get(3) {
        None => false,
        Some(option) if is(option, "WITHVALUES") && args.len() == 4 => true,
        Some(_) => return Err(CommandError::syntax()),
    };
    let pick = Pick::parse(args.get(2))?;
    elements::read::<HashValue>(
        ctx,
        &args[1],
        |hash, now, out, protocol| {
            let chosen = pick.choose(|next| hash.random(now, next), || hash.iter(now).collect());
            if let Pick::One = pick {
                match chosen.first() {
                    Some(field) => encode::bulk(out, field.name()),
                    None => encode::null(out, protocol),
                }
                return;
            }
            // RESP3 pairs each field with its value in an array of its own.
            let nested = with_values && protocol == quorra_resp::Protocol::Resp3;
            let items = chosen.len() * if with_values && !nested { 2 } else { 1 };
            encode::array_header(out, items);
            for field in chosen {
                if nested {
                    encode::array_header(out, 2);
                }
                encode::bulk(out, field.name());
                if with_values {
                    encode::bulk(out, field.value());
                }
            }
        },
        |ctx| match pick {
            Pick::One => ctx.bulk_or_null(None),
            _ => ctx.array(0),
        },
    )
}

/// `HSCAN key cursor [MATCH pattern] [COUNT count] [NOVALUES]`
pub fn hscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let options = ScanOptions::parse(&args[2..], true)?;
    elements::read::<HashValue>(
        ctx,
        &args[1],
        |hash, now, out, _| {
            let fields: Vec<_> = hash.iter(now).filter(|f| options.wants(f.name())).collect();
            encode::array_header(out, 2);
            encode::bulk(out, b"0");
            let per_field = if options.no_values { 1 } else { 2 };
            encode::array_header(out, fields.len() * per_field);
            for field in fields {
                encode::bulk(out, field.name());
                if !options.no_values {
                    encode::bulk(out, field.value());
                }
            }
        },
        |ctx| {
            ctx.array(2);
            ctx.bulk(b"0");
            ctx.array(0);
        },
    )
}

/// The fields after `FIELDS numfields` at `args[at..]`, with Redis 7.4's errors.
fn fields_clause(args: &[Bytes], at: usize) -> Result<&[Bytes], CommandError> {
    if !args.get(at).is_some_and(|word| is(word, "FIELDS")) {
        return Err(CommandError::new(
            "ERR Mandatory argument FIELDS is missing or not at the right position",
        ));
    }
    let count = args
        .get(at + 1)
        .ok_or_else(CommandError::syntax)
        .and_then(|count| int_arg(count))?;
    if count <= 0 {
        return Err(CommandError::new(
            "ERR Parameter `numFields` should be greater than 0",
        ));
    }
    let fields = &args[at + 2..];
    if fields.len() as i64 != count {
        return Err(CommandError::new(
            "ERR The `numfields` parameter must match the number of arguments",
        ));
    }
    Ok(fields)
}

/// How a field-TTL command gives its time.
#[derive(Clone, Copy)]
struct TimeUnit {
    /// Milliseconds per unit.
    ms: i64,
    /// Absolute (a Unix time) rather than relative to now.
    absolute: bool,
}

fn expire_fields(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    name: &'static str,
    unit: TimeUnit,
) -> Result<(), CommandError> {
    let time = int_arg(&args[2])?;
    let (condition, fields_at) = match args.get(3) {
        Some(word) if is(word, "NX") => (ExpireFlags::NX, 4),
        Some(word) if is(word, "XX") => (ExpireFlags::XX, 4),
        Some(word) if is(word, "GT") => (ExpireFlags::GT, 4),
        Some(word) if is(word, "LT") => (ExpireFlags::LT, 4),
        _ => (ExpireFlags::NONE, 3),
    };
    let fields = fields_clause(args, fields_at)?;
    let invalid = || CommandError::from(StoreError::InvalidExpireTime { command: name });
    let amount = time
        .checked_mul(unit.ms)
        .filter(|_| time >= 0)
        .ok_or_else(invalid)?;
    let now = ctx.shared.store.now_ms() as i64;
    let at_ms = match unit.absolute {
        true => amount,
        false => amount.checked_add(now).ok_or_else(invalid)?,
    };
    // A field's first TTL adds its 8 bytes to the field's allocation.
    let growth = 8 * fields.len() as u64;
    let codes = elements::update::<HashValue, _>(ctx, &args[1], false, growth, |hash, now| {
        let codes: Vec<FieldExpiry> = fields
            .iter()
            .map(|field| hash.expire_field(field, at_ms as u64, condition, now))
            .collect();
        let changed = codes
            .iter()
            .any(|code| matches!(code, FieldExpiry::Set | FieldExpiry::Deleted));
        (codes, changed)
    })?;
    let codes = codes.unwrap_or_else(|| vec![FieldExpiry::NoField; fields.len()]);
    if codes.contains(&FieldExpiry::Set) {
        ctx.notify(HASH, "hexpire", &args[1]);
    }
    if codes.contains(&FieldExpiry::Deleted) {
        elements::notify_write(ctx, HASH, &args[1], "hdel");
    }
    ctx.array(codes.len());
    for code in codes {
        ctx.int(code as i64);
    }
    Ok(())
}

/// `HEXPIRE key seconds [NX | XX | GT | LT] FIELDS numfields field [field ...]`
pub fn hexpire(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let unit = TimeUnit {
        ms: 1000,
        absolute: false,
    };
    expire_fields(ctx, args, "hexpire", unit)
}

/// `HPEXPIRE key milliseconds [NX | XX | GT | LT] FIELDS numfields field [field ...]`
pub fn hpexpire(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let unit = TimeUnit {
        ms: 1,
        absolute: false,
    };
    expire_fields(ctx, args, "hpexpire", unit)
}

/// `HEXPIREAT key unix-time-seconds [NX | XX | GT | LT] FIELDS numfields field ...`
pub fn hexpireat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let unit = TimeUnit {
        ms: 1000,
        absolute: true,
    };
    expire_fields(ctx, args, "hexpireat", unit)
}

/// `HPEXPIREAT key unix-time-milliseconds [NX | XX | GT | LT] FIELDS numfields field ...`
pub fn hpexpireat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let unit = TimeUnit {
        ms: 1,
        absolute: true,
    };
    expire_fields(ctx, args, "hpexpireat", unit)
}

/// What a field-TTL query answers for a field with a TTL.
#[derive(Clone, Copy)]
enum TtlQuery {
    Ttl,
    Pttl,
    ExpireTime,
    PexpireTime,
}

fn field_ttls(ctx: &mut Ctx<'_>, args: &[Bytes], query: TtlQuery) -> Result<(), CommandError> {
    let fields = fields_clause(args, 2)?;
    elements::read::<HashValue>(
        ctx,
        &args[1],
        |hash, now, out, _| {
            encode::array_header(out, fields.len());
            for field in fields {
                let answer = match hash.field(field, now) {
                    None => -2,
                    Some(element) => match element.expire_at() {
                        None => -1,
                        Some(at) => {
                            let left = at.saturating_sub(now) as i64;
                            match query {
                                TtlQuery::Ttl => (left + 500) / 1000,
                                TtlQuery::Pttl => left,
                                TtlQuery::ExpireTime => at as i64 / 1000,
                                TtlQuery::PexpireTime => at as i64,
                            }
                        }
                    },
                };
                encode::integer(out, answer);
            }
        },
        |ctx| {
            ctx.array(fields.len());
            for _ in fields {
                ctx.int(-2);
            }
        },
    )
}

/// `HTTL key FIELDS numfields field [field ...]`
pub fn httl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    field_ttls(ctx, args, TtlQuery::Ttl)
}

/// `HPTTL key FIELDS numfields field [field ...]`
pub fn hpttl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    field_ttls(ctx, args, TtlQuery::Pttl)
}

/// `HEXPIRETIME key FIELDS numfields field [field ...]`
pub fn hexpiretime(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    field_ttls(ctx, args, TtlQuery::ExpireTime)
}

/// `HPEXPIRETIME key FIELDS numfields field [field ...]`
pub fn hpexpiretime(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    field_ttls(ctx, args, TtlQuery::PexpireTime)
}

/// `HPERSIST key FIELDS numfields field [field ...]`
pub fn hpersist(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let fields = fields_clause(args, 2)?;
    let codes = elements::update::<HashValue, _>(ctx, &args[1], false, 0, |hash, now| {
        let codes: Vec<i64> = fields
            .iter()
            .map(|field| hash.persist_field(field, now))
            .collect();
        let changed = codes.contains(&1);
        (codes, changed)
    })?
    .unwrap_or_else(|| vec![-2; fields.len()]);
    if codes.contains(&1) {
        ctx.notify(HASH, "hpersist", &args[1]);
    }
    ctx.array(codes.len());
    for code in codes {
        ctx.int(code);
    }
    Ok(())
}

/// `HGETDEL key FIELDS numfields field [field ...]`: the values, the fields deleted.
pub fn hgetdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let fields = fields_clause(args, 2)?;
    let values = elements::update::<HashValue, _>(ctx, &args[1], false, 0, |hash, now| {
        let values: Vec<Option<Vec<u8>>> = fields
            .iter()
            .map(|field| {
                let value = hash.get(field, now).map(<[u8]>::to_vec);
                hash.delete(field, now);
                value
            })
            .collect();
        let changed = values.iter().any(Option::is_some);
        (values, changed)
    })?
    .unwrap_or_else(|| vec![None; fields.len()]);
    ctx.lookups.found(values.iter().any(Option::is_some));
    if values.iter().any(Option::is_some) {
        elements::notify_write(ctx, HASH, &args[1], "hdel");
    }
    ctx.array(values.len());
    for value in &values {
        ctx.bulk_or_null(value.as_deref());
    }
    Ok(())
}
