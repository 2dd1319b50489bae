//! Set commands: SADD and its relatives, random members, the algebra of several sets
//! (SINTER, SUNION, SDIFF and their STORE forms), SSCAN. The set itself is
//! [`SetValue`], in the store.
//!
//! The algebra reads each source set on its own (like MGET, not a snapshot across
//! keys); its keys must share a node, as Redis Cluster requires a slot (`CROSSSLOT`
//! otherwise, see [`crate::plan`]).

use std::collections::HashSet;

use bytes::Bytes;
use quorra_resp::encode;
use quorra_store::collection::SetValue;

use super::elements::{self, Pick, ScanOptions};
use super::{CommandError, Ctx};
use crate::notifications::{GENERIC, SET};

/// Writes members as a set reply (an array in RESP2).
fn members_reply<'a>(ctx: &mut Ctx<'_>, members: impl ExactSizeIterator<Item = &'a [u8]>) {
    encode::set_header(ctx.out, members.len(), ctx.protocol());
    for member in members {
        ctx.bulk(member);
    }
}

/// `SADD key member [member ...]`: how many are new.
pub fn sadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let growth = elements::growth(args[2..].iter().map(|m| (m, 0)));
    let added = elements::update::<SetValue, _>(ctx, &args[1], true, growth, |set, _| {
        let added = args[2..].iter().filter(|m| set.add(m)).count();
        (added as i64, added > 0)
    })?
    .unwrap_or(0);
    if added > 0 {
        ctx.notify(SET, "sadd", &args[1]);
    }
    ctx.int(added);
    Ok(())
}

/// `SREM key member [member ...]`: how many went.
pub fn srem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    elements::remove(ctx, args, SET, "srem", SetValue::remove)
}

/// `SMEMBERS key`
pub fn smembers(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    elements::read::<SetValue>(
        ctx,
        &args[1],
        |set, _, out, protocol| {
            encode::set_header(out, set.len(), protocol);
            set.iter().for_each(|member| encode::bulk(out, member));
        },
        |ctx| members_reply(ctx, std::iter::empty()),
    )
}

/// `SISMEMBER key member`
pub fn sismember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    elements::read::<SetValue>(
        ctx,
        &args[1],
        |set, _, out, _| encode::integer(out, i64::from(set.contains(&args[2]))),
        |ctx| ctx.int(0),
    )
}

/// `SMISMEMBER key member [member ...]`
pub fn smismember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let members = &args[2..];
    elements::read::<SetValue>(
        ctx,
        &args[1],
        |set, _, out, _| {
            encode::array_header(out, members.len());
            for member in members {
                encode::integer(out, i64::from(set.contains(member)));
            }
        },
        |ctx| {
            ctx.array(members.len());
            members.iter().for_each(|_| ctx.int(0));
        },
    )
}

/// `SCARD key`
pub fn scard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    elements::read::<SetValue>(
        ctx,
        &args[1],
        |set, _, out, _| encode::integer(out, set.len() as i64),
        |ctx| ctx.int(0),
    )
}

/// `SPOP key [count]`
pub fn spop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let pick = match elements::pop_count(args)? {
        None => Pick::One,
        Some(count) => Pick::Distinct(count),
    };
    let popped = elements::update::<SetValue, _>(ctx, &args[1], false, 0, |set, _| {
        let chosen: Vec<Vec<u8>> = pick
            .choose(|next| set.random(next), || set.iter().collect())
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect();
        for member in &chosen {
            set.remove(member);
        }
        let changed = !chosen.is_empty();
        (chosen, changed)
    })?
    .unwrap_or_default();
    if !popped.is_empty() {
        elements::notify_write(ctx, SET, &args[1], "spop");
    }
    match pick {
        Pick::One => ctx.bulk_or_null(popped.first().map(Vec::as_slice)),
        _ => members_reply(ctx, popped.iter().map(Vec::as_slice)),
    }
    Ok(())
}

/// `SRANDMEMBER key [count]`
pub fn srandmember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    if args.len() > 3 {
        return Err(CommandError::syntax());
    }
    let pick = Pick::parse(args.get(2))?;
    elements::read::<SetValue>(
        ctx,
        &args[1],
        |set, _, out, protocol| {
            let chosen = pick.choose(|next| set.random(next), || set.iter().collect());
            if let Pick::One = pick {
                match chosen.first() {
                    Some(member) => encode::bulk(out, member),
                    None => encode::null(out, protocol),
                }
                return;
            }
            encode::array_header(out, chosen.len());
            chosen.iter().for_each(|member| encode::bulk(out, member));
        },
        |ctx| match pick {
            Pick::One => ctx.bulk_or_null(None),
            _ => ctx.array(0),
        },
    )
}

/// `SMOVE source destination member`
pub fn smove(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let (source, destination, member) = (&args[1], &args[2], &args[3]);
    // The destination's type is checked before anything moves, as in Redis.
    let destination_is_set = ctx
        .shared
        .store
        .read_collection::<SetValue, _>(destination, |_, _| ());
    destination_is_set?;
    let moved = elements::update::<SetValue, _>(ctx, source, false, 0, |set, _| {
        let moved = set.remove(member);
        (moved, moved)
    })?
    .unwrap_or(false);
    if moved {
        let growth = elements::growth([(member, 0)].into_iter());
        elements::update::<SetValue, _>(ctx, destination, true, growth, |set, _| {
            let added = set.add(member);
            ((), added)
        })?;
        elements::notify_write(ctx, SET, source, "srem");
        ctx.notify(SET, "sadd", destination);
    }
    ctx.int(i64::from(moved));
    Ok(())
}

/// Which algebra an SINTER / SUNION / SDIFF computes.
#[derive(Clone, Copy)]
enum Algebra {
    Inter,
    Union,
    Diff,
}

/// The members of the algebra of the sets at `keys` (a missing key is an empty set).
fn compute(
    ctx: &mut Ctx<'_>,
    keys: &[Bytes],
    algebra: Algebra,
) -> Result<Vec<Bytes>, CommandError> {
    let mut result: Option<HashSet<Bytes>> = None;
    for key in keys {
        let members = ctx
            .shared
            .store
            .read_collection::<SetValue, _>(key, |set, _| {
                set.iter()
                    .map(Bytes::copy_from_slice)
                    .collect::<HashSet<Bytes>>()
            })?
            .unwrap_or_default();
        result = Some(match (result, algebra) {
            (None, _) => members,
            (Some(acc), Algebra::Inter) => acc.intersection(&members).cloned().collect(),
            (Some(mut acc), Algebra::Union) => {
                acc.extend(members);
                acc
            }
            (Some(acc), Algebra::Diff) => acc.difference(&members).cloned().collect(),
        });
    }
    Ok(result.unwrap_or_default().into_iter().collect())
}

fn algebra(ctx: &mut Ctx<'_>, args: &[Bytes], algebra: Algebra) -> Result<(), CommandError> {
    let members = compute(ctx, &args[1..], algebra)?;
    members_reply(ctx, members.iter().map(|m| &m[..]));
    Ok(())
}

fn algebra_store(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    algebra: Algebra,
    event: &str,
) -> Result<(), CommandError> {
    let members = compute(ctx, &args[2..], algebra)?;
    let destination = &args[1];
    let growth = elements::growth(members.iter().map(|m| (m, 0)));
    // The destination is replaced whatever its type: deleted, then written.
    ctx.shared.store.del(&[destination]);
    if !members.is_empty() {
        elements::update::<SetValue, _>(ctx, destination, true, growth, |set, _| {
            members.iter().for_each(|m| {
                set.add(m);
            });
            ((), true)
        })?;
        ctx.notify(SET, event, destination);
    } else {
        ctx.notify(GENERIC, "del", destination);
    }
    ctx.int(members.len() as i64);
    Ok(())
}

/// `SINTER key [key ...]`
pub fn sinter(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    algebra(ctx, args, Algebra::Inter)
}

/// `SUNION key [key ...]`
pub fn sunion(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    algebra(ctx, args, Algebra::Union)
}

/// `SDIFF key [key ...]`
pub fn sdiff(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    algebra(ctx, args, Algebra::Diff)
}

/// `SINTERSTORE destination key [key ...]`
pub fn sinterstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    algebra_store(ctx, args, Algebra::Inter, "sinterstore")
}

/// `SUNIONSTORE destination key [key ...]`
pub fn sunionstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    algebra_store(ctx, args, Algebra::Union, "sunionstore")
}

/// `SDIFFSTORE destination key [key ...]`
pub fn sdiffstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    algebra_store(ctx, args, Algebra::Diff, "sdiffstore")
}

/// `SSCAN key cursor [MATCH pattern] [COUNT count]`
pub fn sscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let options = ScanOptions::parse(&args[2..], false)?;
    elements::read::<SetValue>(
        ctx,
        &args[1],
        |set, _, out, _| {
            let members: Vec<&[u8]> = set.iter().filter(|m| options.wants(m)).collect();
            encode::array_header(out, 2);
            encode::bulk(out, b"0");
            encode::array_header(out, members.len());
            members.iter().for_each(|m| encode::bulk(out, m));
        },
        |ctx| {
            ctx.array(2);
            ctx.bulk(b"0");
            ctx.array(0);
        },
    )
}
