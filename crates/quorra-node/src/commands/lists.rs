//! List commands: pushes and pops at either end, indexes and ranges, LREM, LTRIM,
//! LINSERT, LPOS, LMOVE and RPOPLPUSH. The blocking forms (BLPOP, BLMOVE, ...) are not
//! served. The list itself is [`ListValue`], in the store.

use bytes::Bytes;
use quorra_resp::encode;
use quorra_store::collection::{End, ListValue};

use super::elements;
use super::{CommandError, Ctx, int_arg, is};
use crate::notifications::LIST;

fn event(end: End, push: bool) -> &'static str {
    match (end, push) {
        (End::Left, true) => "lpush",
        (End::Right, true) => "rpush",
        (End::Left, false) => "lpop",
        (End::Right, false) => "rpop",
    }
}

fn push(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    end: End,
    only_if_exists: bool,
) -> Result<(), CommandError> {
    let growth = args[2..]
        .iter()
        .map(|e| ListValue::element_bytes(e.len()))
        .sum();
    let len =
        elements::update::<ListValue, _>(ctx, &args[1], !only_if_exists, growth, |list, _| {
            args[2..].iter().for_each(|element| list.push(end, element));
            (list.len() as i64, true)
        })?
        .unwrap_or(0);
    if len > 0 {
        ctx.notify(LIST, event(end, true), &args[1]);
    }
    ctx.int(len);
    Ok(())
}

/// `LPUSH key element [element ...]`
pub fn lpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    push(ctx, args, End::Left, false)
}

/// `RPUSH key element [element ...]`
pub fn rpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    push(ctx, args, End::Right, false)
}

/// `LPUSHX key element [element ...]`
pub fn lpushx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    push(ctx, args, End::Left, true)
}

/// `RPUSHX key element [element ...]`
pub fn rpushx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    push(ctx, args, End::Right, true)
}

fn pop(ctx: &mut Ctx<'_>, args: &[Bytes], end: End) -> Result<(), CommandError> {
    let count = elements::pop_count(args)?;
    let popped = elements::update::<ListValue, _>(ctx, &args[1], false, 0, |list, _| {
        let popped: Vec<Box<[u8]>> = (0..count.unwrap_or(1))
            .map_while(|_| list.pop(end))
            .collect();
        let changed = !popped.is_empty();
        (popped, changed)
    })?;
    if popped.as_ref().is_some_and(|p| !p.is_empty()) {
        elements::notify_write(ctx, LIST, &args[1], event(end, false));
    }
    match (popped, count) {
        (None, None) => ctx.bulk_or_null(None),
        (None, Some(_)) => encode::null_array(ctx.out, ctx.session.protocol),
        (Some(popped), None) => ctx.bulk_or_null(popped.first().map(|e| &e[..])),
        (Some(popped), Some(_)) => {
            ctx.array(popped.len());
            popped.iter().for_each(|e| ctx.bulk(e));
        }
    }
    Ok(())
}

/// `LPOP key [count]`
pub fn lpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    pop(ctx, args, End::Left)
}

/// `RPOP key [count]`
pub fn rpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    pop(ctx, args, End::Right)
}

/// `LLEN key`
pub fn llen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    elements::read::<ListValue>(
        ctx,
        &args[1],
        |list, _, out, _| encode::integer(out, list.len() as i64),
        |ctx| ctx.int(0),
    )
}

/// `LRANGE key start stop`
pub fn lrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let (start, stop) = (int_arg(&args[2])?, int_arg(&args[3])?);
    elements::read::<ListValue>(
        ctx,
        &args[1],
        |list, _, out, _| match list.range_bounds(start, stop) {
            None => encode::array_header(out, 0),
            Some((first, last)) => {
                encode::array_header(out, last - first + 1);
                list.iter()
                    .skip(first)
                    .take(last - first + 1)
                    .for_each(|e| encode::bulk(out, e));
            }
        },
        |ctx| ctx.array(0),
    )
}

/// `LINDEX key index`
pub fn lindex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let index = int_arg(&args[2])?;
    elements::read::<ListValue>(
        ctx,
        &args[1],
        |list, _, out, protocol| match list.position(index).and_then(|at| list.get(at)) {
            Some(element) => encode::bulk(out, element),
            None => encode::null(out, protocol),
        },
        |ctx| ctx.bulk_or_null(None),
    )
}

/// `LSET key index element`
pub fn lset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let index = int_arg(&args[2])?;
    let growth = ListValue::element_bytes(args[3].len());
    let set = elements::update::<ListValue, _>(ctx, &args[1], false, growth, |list, _| match list
        .position(index)
    {
        Some(at) => {
            list.set(at, &args[3]);
            (true, true)
        }
        None => (false, false),
    })?;
    match set {
        None => Err(CommandError::new("ERR no such key")),
        Some(false) => Err(CommandError::new("ERR index out of range")),
        Some(true) => {
            ctx.notify(LIST, "lset", &args[1]);
            ctx.ok();
            Ok(())
        }
    }
}

/// `LREM key count element`
pub fn lrem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let count = int_arg(&args[2])?;
    let removed = elements::update::<ListValue, _>(ctx, &args[1], false, 0, |list, _| {
        let removed = list.remove(count, &args[3]);
        (removed as i64, removed > 0)
    })?
    .unwrap_or(0);
    if removed > 0 {
        elements::notify_write(ctx, LIST, &args[1], "lrem");
    }
    ctx.int(removed);
    Ok(())
}

/// `LTRIM key start stop`
pub fn ltrim(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let (start, stop) = (int_arg(&args[2])?, int_arg(&args[3])?);
    let trimmed = elements::update::<ListValue, _>(ctx, &args[1], false, 0, |list, _| {
        let before = list.len();
        list.keep(list.range_bounds(start, stop));
        ((), list.len() != before)
    })?;
    if trimmed.is_some() {
        elements::notify_write(ctx, LIST, &args[1], "ltrim");
    }
    ctx.ok();
    Ok(())
}

/// `LINSERT key BEFORE | AFTER pivot element`
pub fn linsert(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let after = if is(&args[2], "AFTER") {
        true
    } else if is(&args[2], "BEFORE") {
        false
    } else {
        return Err(CommandError::syntax());
    };
    let growth = ListValue::element_bytes(args[4].len());
    let len = elements::update::<ListValue, _>(ctx, &args[1], false, growth, |list, _| match list
        .insert(&args[3], after, &args[4])
    {
        Some(len) => (len as i64, true),
        None => (-1, false),
    })?
    .unwrap_or(0);
    if len > 0 {
        ctx.notify(LIST, "linsert", &args[1]);
    }
    ctx.int(len);
    Ok(())
}

/// `LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]`
pub fn lpos(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let (mut rank, mut count, mut max_len) = (1i64, None, 0usize);
    let mut rest = args[3..].iter();
    while let Some(option) = rest.next() {
        let value = int_arg(rest.next().ok_or_else(CommandError::syntax)?)?;
        if is(option, "RANK") {
            if value == 0 || value == i64::MIN {
                return Err(CommandError::new(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
            rank = value;
        } else if is(option, "COUNT") {
            if value < 0 {
                return Err(CommandError::new("ERR COUNT can't be negative"));
            }
            count = Some(value as usize);
        } else if is(option, "MAXLEN") {
            if value < 0 {
                return Err(CommandError::new("ERR MAXLEN can't be negative"));
            }
            max_len = value as usize;
        } else {
            return Err(CommandError::syntax());
        }
    }
    let element = &args[2];
    elements::read::<ListValue>(
        ctx,
        &args[1],
        |list, _, out, protocol| {
            let len = list.len();
            let scanned = if max_len == 0 { len } else { max_len.min(len) };
            // Positions of the matches, from the end RANK names, skipping |RANK| - 1.
            let positions: Box<dyn Iterator<Item = usize>> = if rank > 0 {
                Box::new(0..scanned)
            } else {
                Box::new((len - scanned..len).rev())
            };
            let wanted = match count {
                None => 1,
                Some(0) => usize::MAX,
                Some(n) => n,
            };
            let matches: Vec<usize> = positions
                .filter(|&at| list.get(at) == Some(&element[..]))
                .skip(rank.unsigned_abs() as usize - 1)
                .take(wanted)
                .collect();
            match count {
                None => match matches.first() {
                    Some(&at) => encode::integer(out, at as i64),
                    None => encode::null(out, protocol),
                },
                Some(_) => {
                    encode::array_header(out, matches.len());
                    matches
                        .iter()
                        .for_each(|&at| encode::integer(out, at as i64));
                }
            }
        },
        |ctx| match count {
            None => ctx.bulk_or_null(None),
            Some(_) => ctx.array(0),
        },
    )
}

fn end_arg(arg: &[u8]) -> Result<End, CommandError> {
    if is(arg, "LEFT") {
        Ok(End::Left)
    } else if is(arg, "RIGHT") {
        Ok(End::Right)
    } else {
        Err(CommandError::syntax())
    }
}

fn move_element(ctx: &mut Ctx<'_>, args: &[Bytes], from: End, to: End) -> Result<(), CommandError> {
    let (source, destination) = (&args[1], &args[2]);
    // The destination's type is checked before anything moves, as in Redis.
    ctx.shared
        .store
        .read_collection::<ListValue, _>(destination, |_, _| ())?;
    let popped = elements::update::<ListValue, _>(ctx, source, false, 0, |list, _| {
        let popped = list.pop(from);
        let changed = popped.is_some();
        (popped, changed)
    })?
    .flatten();
    let Some(element) = popped else {
        ctx.bulk_or_null(None);
        return Ok(());
    };
    let growth = ListValue::element_bytes(element.len());
    elements::update::<ListValue, _>(ctx, destination, true, growth, |list, _| {
        list.push(to, &element);
        ((), true)
    })?;
    elements::notify_write(ctx, LIST, source, event(from, false));
    ctx.notify(LIST, event(to, true), destination);
    ctx.bulk(&element);
    Ok(())
}

/// `LMOVE source destination LEFT | RIGHT LEFT | RIGHT`
pub fn lmove(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let (from, to) = (end_arg(&args[3])?, end_arg(&args[4])?);
    move_element(ctx, args, from, to)
}

/// `RPOPLPUSH source destination`
pub fn rpoplpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    move_element(ctx, args, End::Right, End::Left)
}
