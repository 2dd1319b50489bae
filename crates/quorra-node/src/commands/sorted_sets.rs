//! Sorted-set commands: ZADD and its options, scores and ranks, ranges by rank, score
//! and lex (ZRANGE's unified form and the older commands), removals by range, pops,
//! random members, ZRANGESTORE and ZSCAN. The sorted set itself is [`SortedSetValue`],
//! in the store.

use bytes::{Bytes, BytesMut};
use quorra_resp::{Protocol, encode};
use quorra_store::collection::{LexBound, Score, ScoreBound, SortedSetValue};
use quorra_store::numeric::parse_f64;

use super::elements::{self, Pick, ScanOptions};
use super::{CommandError, Ctx, int_arg, is};
use crate::notifications::{GENERIC, ZSET};

fn not_a_float() -> CommandError {
    CommandError::new("ERR value is not a valid float")
}

fn score_arg(arg: &[u8]) -> Result<f64, CommandError> {
    parse_f64(arg).map_err(|_| not_a_float())
}

/// A member and its score, owned (a reply built after the shard lock is released).
type Scored = (Vec<u8>, f64);

/// Writes scored members: with scores, `[member, score]` pairs in RESP3 and a flat
/// list in RESP2; without, the members.
fn scored_reply(
    out: &mut BytesMut,
    protocol: Protocol,
    members: &[(&[u8], f64)],
    with_scores: bool,
) {
    let nested = with_scores && protocol == Protocol::Resp3;
    let items = members.len() * if with_scores && !nested { 2 } else { 1 };
    encode::array_header(out, items);
    for (member, score) in members {
        if nested {
            encode::array_header(out, 2);
        }
        encode::bulk(out, member);
        if with_scores {
            encode::double(out, *score, protocol);
        }
    }
}

/// `ZADD key [NX | XX] [GT | LT] [CH] [INCR] score member [score member ...]`
pub fn zadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, false);
    let mut at = 2;
    while let Some(word) = args.get(at) {
        let flag = if is(word, "NX") {
            &mut nx
        } else if is(word, "XX") {
            &mut xx
        } else if is(word, "GT") {
            &mut gt
        } else if is(word, "LT") {
            &mut lt
        } else if is(word, "CH") {
            &mut ch
        } else if is(word, "INCR") {
            &mut incr
        } else {
            break;
        };
        *flag = true;
        at += 1;
    }
    let rest = &args[at..];
    if rest.is_empty() || rest.len() % 2 != 0 {
        return Err(CommandError::syntax());
    }
    if nx && xx {
        return Err(CommandError::new(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if (gt && lt) || (nx && (gt || lt)) {
        return Err(CommandError::new(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if incr && rest.len() != 2 {
        return Err(CommandError::new(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    let pairs: Vec<(f64, &Bytes)> = rest
        .chunks(2)
        .map(|pair| Ok((score_arg(&pair[0])?, &pair[1])))
        .collect::<Result<_, CommandError>>()?;
    let growth = pairs
        .iter()
        .map(|(_, member)| SortedSetValue::member_bytes(member.len()))
        .sum();
    let outcome = elements::update::<SortedSetValue, _>(ctx, &args[1], !xx, growth, |zset, _| {
        let (mut added, mut changed) = (0i64, 0i64);
        let mut incr_result = None;
        for &(score, member) in &pairs {
            let current = zset.score(member);
            if (nx && current.is_some()) || (xx && current.is_none()) {
                continue;
            }
            let new = match (incr, current) {
                (true, Some(old)) => old + score,
                _ => score,
            };
            let Some(new_score) = Score::new(new) else {
                return (
                    Err(CommandError::new(
                        "ERR resulting score is not a number (NaN)",
                    )),
                    added + changed > 0,
                );
            };
            if let Some(old) = current
                && ((gt && new <= old) || (lt && new >= old))
            {
                continue;
            }
            match zset.insert(member, new_score) {
                None => added += 1,
                Some(old) if old != new => changed += 1,
                Some(_) => {}
            }
            incr_result = Some(new);
        }
        let reply = match (incr, ch) {
            (true, _) => ZaddReply::Incr(incr_result),
            (false, true) => ZaddReply::Count(added + changed),
            (false, false) => ZaddReply::Count(added),
        };
        (Ok(reply), added + changed > 0)
    })?;
    let reply = match outcome {
        Some(result) => result?,
        None if incr => ZaddReply::Incr(None),
        None => ZaddReply::Count(0),
    };
    match reply {
        ZaddReply::Count(n) => {
            if n > 0 || ch {
                ctx.notify(ZSET, if incr { "zincr" } else { "zadd" }, &args[1]);
            }
            ctx.int(n);
        }
        ZaddReply::Incr(Some(score)) => {
            ctx.notify(ZSET, "zincr", &args[1]);
            encode::double(ctx.out, score, ctx.session.protocol);
        }
        ZaddReply::Incr(None) => ctx.bulk_or_null(None),
    }
    Ok(())
}

enum ZaddReply {
    Count(i64),
    Incr(Option<f64>),
}

/// `ZINCRBY key increment member`
pub fn zincrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let increment = score_arg(&args[2])?;
    let member = &args[3];
    let growth = SortedSetValue::member_bytes(member.len());
    let result = elements::update::<SortedSetValue, _>(ctx, &args[1], true, growth, |zset, _| {
        let new = zset.score(member).unwrap_or(0.0) + increment;
        match Score::new(new) {
            Some(score) => {
                zset.insert(member, score);
                (Ok(new), true)
            }
            None => (
                Err(CommandError::new(
                    "ERR resulting score is not a number (NaN)",
                )),
                false,
            ),
        }
    })?
    .expect("created");
    let score = result?;
    ctx.notify(ZSET, "zincr", &args[1]);
    encode::double(ctx.out, score, ctx.session.protocol);
    Ok(())
}

/// `ZREM key member [member ...]`
pub fn zrem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    elements::remove(ctx, args, ZSET, "zrem", SortedSetValue::remove)
}

/// `ZCARD key`
pub fn zcard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    elements::read::<SortedSetValue>(
        ctx,
        &args[1],
        |zset, _, out, _| encode::integer(out, zset.len() as i64),
        |ctx| ctx.int(0),
    )
}

/// `ZSCORE key member`
pub fn zscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    elements::read::<SortedSetValue>(
        ctx,
        &args[1],
        |zset, _, out, protocol| match zset.score(&args[2]) {
            Some(score) => encode::double(out, score, protocol),
            None => encode::null(out, protocol),
        },
        |ctx| ctx.bulk_or_null(None),
    )
}

/// `ZMSCORE key member [member ...]`
pub fn zmscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let members = &args[2..];
    elements::read::<SortedSetValue>(
        ctx,
        &args[1],
        |zset, _, out, protocol| {
            encode::array_header(out, members.len());
            for member in members {
                match zset.score(member) {
                    Some(score) => encode::double(out, score, protocol),
                    None => encode::null(out, protocol),
                }
            }
        },
        |ctx| {
            ctx.array(members.len());
            members.iter().for_each(|_| ctx.bulk_or_null(None));
        },
    )
}

fn rank(ctx: &mut Ctx<'_>, args: &[Bytes], reverse: bool) -> Result<(), CommandError> {
    let with_score = match args.get(3) {
        None => false,
        Some(word) if is(word, "WITHSCORE") && args.len() == 4 => true,
        Some(_) => return Err(CommandError::syntax()),
    };
    elements::read::<SortedSetValue>(
        ctx,
        &args[1],
        |zset, _, out, protocol| match zset.rank(&args[2], reverse) {
            None if with_score => encode::null_array(out, protocol),
            None => encode::null(out, protocol),
            Some(rank) if with_score => {
                encode::array_header(out, 2);
                encode::integer(out, rank as i64);
                let score = zset.score(&args[2]).expect("ranked");
                encode::double(out, score, protocol);
            }
            Some(rank) => encode::integer(out, rank as i64),
        },
        |ctx| match with_score {
            true => encode::null_array(ctx.out, ctx.session.protocol),
            false => ctx.bulk_or_null(None),
        },
    )
}

/// `ZRANK key member [WITHSCORE]`
pub fn zrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    rank(ctx, args, false)
}

/// `ZREVRANK key member [WITHSCORE]`
pub fn zrevrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    rank(ctx, args, true)
}

/// A score range end: `1.5`, `(1.5`, `-inf`, `+inf`.
fn score_bound(arg: &[u8]) -> Result<ScoreBound, CommandError> {
    let error = || CommandError::new("ERR min or max is not a float");
    let (exclusive, number) = match arg.strip_prefix(b"(") {
        Some(rest) => (true, rest),
        None => (false, arg),
    };
    let value = parse_f64(number).map_err(|_| error())?;
    Ok(match exclusive {
        true => ScoreBound::Exclusive(value),
        false => ScoreBound::Inclusive(value),
    })
}

/// A lex range end: `-`, `+`, `[member`, `(member`.
fn lex_bound(arg: &[u8]) -> Result<LexBound, CommandError> {
    match arg {
        b"-" => Ok(LexBound::Min),
        b"+" => Ok(LexBound::Max),
        [b'[', rest @ ..] => Ok(LexBound::Inclusive(rest.to_vec())),
        [b'(', rest @ ..] => Ok(LexBound::Exclusive(rest.to_vec())),
        _ => Err(CommandError::new(
            "ERR min or max not valid string range item",
        )),
    }
}

/// What a range selects.
enum RangeBy {
    /// Ranks, negative from the end.
    Rank(i64, i64),
    /// Scores from min to max.
    Score(ScoreBound, ScoreBound),
    /// Members from min to max.
    Lex(LexBound, LexBound),
}

/// A range request, as ZRANGE's options give it.
struct Range {
    by: RangeBy,
    /// Descending order.
    rev: bool,
    /// LIMIT offset count (count < 0: all).
    limit: Option<(i64, i64)>,
    with_scores: bool,
}

impl Range {
    /// Parses ZRANGE's form: `start stop [BYSCORE | BYLEX] [REV] [LIMIT offset count]
    /// [WITHSCORES]` (`args` from `start` on). With REV, BYSCORE and BYLEX take the
    /// upper end first.
    fn parse(args: &[Bytes], allow_scores: bool) -> Result<Range, CommandError> {
        let (mut by_score, mut by_lex, mut rev, mut with_scores) = (false, false, false, false);
        let mut limit = None;
        let mut at = 2;
        while let Some(word) = args.get(at) {
            if is(word, "BYSCORE") {
                by_score = true;
            } else if is(word, "BYLEX") {
                by_lex = true;
            } else if is(word, "REV") {
                rev = true;
            } else if is(word, "WITHSCORES") && allow_scores {
                with_scores = true;
            } else if is(word, "LIMIT") && args.len() > at + 2 {
                limit = Some((int_arg(&args[at + 1])?, int_arg(&args[at + 2])?));
                at += 2;
            } else {
                return Err(CommandError::syntax());
            }
            at += 1;
        }
        if by_score && by_lex {
            return Err(CommandError::syntax());
        }
        if limit.is_some() && !by_score && !by_lex {
            return Err(CommandError::new(
                "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
            ));
        }
        if by_lex && with_scores {
            return Err(CommandError::new(
                "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
            ));
        }
        let (low, high) = match rev && (by_score || by_lex) {
            true => (&args[1], &args[0]),
            false => (&args[0], &args[1]),
        };
        let by = if by_score {
            RangeBy::Score(score_bound(low)?, score_bound(high)?)
        } else if by_lex {
            RangeBy::Lex(lex_bound(low)?, lex_bound(high)?)
        } else {
            RangeBy::Rank(int_arg(low)?, int_arg(high)?)
        };
        Ok(Range {
            by,
            rev,
            limit,
            with_scores,
        })
    }

    /// The older commands' form: `min max [WITHSCORES] [LIMIT offset count]` (or `max
    /// min` for the REV forms; ranks for ZREVRANGE), as a [`Range`].
    fn legacy(args: &[Bytes], kind: &str, rev: bool) -> Result<Range, CommandError> {
        let mut rewritten: Vec<Bytes> = args.to_vec();
        match kind {
            "score" => rewritten.push(Bytes::from_static(b"BYSCORE")),
            "lex" => rewritten.push(Bytes::from_static(b"BYLEX")),
            _ => {}
        }
        // ZREVRANGEBYSCORE gives max first, as ZRANGE ... REV does.
        if rev {
            rewritten.push(Bytes::from_static(b"REV"));
        }
        Range::parse(&rewritten, kind != "lex")
    }

    /// The selected members, in reply order.
    fn select<'z>(&self, zset: &'z SortedSetValue) -> Vec<(&'z [u8], f64)> {
        let selected: Vec<(&[u8], f64)> = match &self.by {
            RangeBy::Rank(start, stop) => {
                let len = zset.len() as i64;
                let start = if *start < 0 {
                    (len + start).max(0)
                } else {
                    *start
                };
                let stop = if *stop < 0 {
                    len + stop
                } else {
                    (*stop).min(len - 1)
                };
                if start > stop || start >= len {
                    return Vec::new();
                }
                let count = (stop - start + 1) as usize;
                match self.rev {
                    true => zset
                        .ascending()
                        .rev()
                        .skip(start as usize)
                        .take(count)
                        .collect(),
                    false => zset.ascending().skip(start as usize).take(count).collect(),
                }
            }
            RangeBy::Score(min, max) => {
                let in_range = zset.by_score(*min, *max);
                match self.rev {
                    true => in_range.rev().collect(),
                    false => in_range.collect(),
                }
            }
            RangeBy::Lex(min, max) => {
                let in_range = zset.by_lex(min, max);
                match self.rev {
                    true => in_range.rev().collect(),
                    false => in_range.collect(),
                }
            }
        };
        match self.limit {
            None => selected,
            Some((offset, _)) if offset < 0 => Vec::new(),
            Some((offset, count)) => {
                let count = usize::try_from(count).unwrap_or(usize::MAX);
                selected
                    .into_iter()
                    .skip(offset as usize)
                    .take(count)
                    .collect()
            }
        }
    }
}

fn range_reply(ctx: &mut Ctx<'_>, key: &[u8], range: Range) -> Result<(), CommandError> {
    elements::read::<SortedSetValue>(
        ctx,
        key,
        |zset, _, out, protocol| {
            scored_reply(out, protocol, &range.select(zset), range.with_scores)
        },
        |ctx| ctx.array(0),
    )
}

/// `ZRANGE key start stop [BYSCORE | BYLEX] [REV] [LIMIT offset count] [WITHSCORES]`
pub fn zrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let range = Range::parse(&args[2..], true)?;
    range_reply(ctx, &args[1], range)
}

/// `ZREVRANGE key start stop [WITHSCORES]`
pub fn zrevrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let range = Range::legacy(&args[2..], "rank", true)?;
    range_reply(ctx, &args[1], range)
}

/// `ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count]`
pub fn zrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let range = Range::legacy(&args[2..], "score", false)?;
    range_reply(ctx, &args[1], range)
}

/// `ZREVRANGEBYSCORE key max min [WITHSCORES] [LIMIT offset count]`
pub fn zrevrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let range = Range::legacy(&args[2..], "score", true)?;
    range_reply(ctx, &args[1], range)
}

/// `ZRANGEBYLEX key min max [LIMIT offset count]`
pub fn zrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let range = Range::legacy(&args[2..], "lex", false)?;
    range_reply(ctx, &args[1], range)
}

/// `ZREVRANGEBYLEX key max min [LIMIT offset count]`
pub fn zrevrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let range = Range::legacy(&args[2..], "lex", true)?;
    range_reply(ctx, &args[1], range)
}

/// `ZRANGESTORE destination source start stop [BYSCORE | BYLEX] [REV] [LIMIT offset count]`
pub fn zrangestore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let range = Range::parse(&args[3..], false)?;
    let selected: Vec<Scored> = ctx
        .shared
        .store
        .read_collection::<SortedSetValue, _>(&args[2], |zset, _| {
            range
                .select(zset)
                .into_iter()
                .map(|(member, score)| (member.to_vec(), score))
                .collect()
        })?
        .unwrap_or_default();
    let destination = &args[1];
    ctx.shared.store.del(&[destination]);
    if selected.is_empty() {
        ctx.notify(GENERIC, "del", destination);
    } else {
        let growth = selected
            .iter()
            .map(|(member, _)| SortedSetValue::member_bytes(member.len()))
            .sum();
        elements::update::<SortedSetValue, _>(ctx, destination, true, growth, |zset, _| {
            for (member, score) in &selected {
                zset.insert(
                    member,
                    Score::new(*score).expect("stored scores are not NaN"),
                );
            }
            ((), true)
        })?;
        ctx.notify(ZSET, "zrangestore", destination);
    }
    ctx.int(selected.len() as i64);
    Ok(())
}

/// `ZCOUNT key min max`
pub fn zcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let (min, max) = (score_bound(&args[2])?, score_bound(&args[3])?);
    elements::read::<SortedSetValue>(
        ctx,
        &args[1],
        |zset, _, out, _| encode::integer(out, zset.by_score(min, max).count() as i64),
        |ctx| ctx.int(0),
    )
}

/// `ZLEXCOUNT key min max`
pub fn zlexcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let (min, max) = (lex_bound(&args[2])?, lex_bound(&args[3])?);
    elements::read::<SortedSetValue>(
        ctx,
        &args[1],
        |zset, _, out, _| encode::integer(out, zset.by_lex(&min, &max).count() as i64),
        |ctx| ctx.int(0),
    )
}

fn remove_range(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    by: RangeBy,
    event: &str,
) -> Result<(), CommandError> {
    let range = Range {
        by,
        rev: false,
        limit: None,
        with_scores: false,
    };
    let removed = elements::update::<SortedSetValue, _>(ctx, &args[1], false, 0, |zset, _| {
        let members: Vec<Vec<u8>> = range
            .select(zset)
            .into_iter()
            .map(|(member, _)| member.to_vec())
            .collect();
        members.iter().for_each(|member| {
            zset.remove(member);
        });
        (members.len() as i64, !members.is_empty())
    })?
    .unwrap_or(0);
    if removed > 0 {
        elements::notify_write(ctx, ZSET, &args[1], event);
    }
    ctx.int(removed);
    Ok(())
}

/// `ZREMRANGEBYRANK key start stop`
pub fn zremrangebyrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let by = RangeBy::Rank(int_arg(&args[2])?, int_arg(&args[3])?);
    remove_range(ctx, args, by, "zremrangebyrank")
}

/// `ZREMRANGEBYSCORE key min max`
pub fn zremrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let by = RangeBy::Score(score_bound(&args[2])?, score_bound(&args[3])?);
    remove_range(ctx, args, by, "zremrangebyscore")
}

/// `ZREMRANGEBYLEX key min max`
pub fn zremrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let by = RangeBy::Lex(lex_bound(&args[2])?, lex_bound(&args[3])?);
    remove_range(ctx, args, by, "zremrangebylex")
}

fn pop(ctx: &mut Ctx<'_>, args: &[Bytes], highest: bool) -> Result<(), CommandError> {
    let count = elements::pop_count(args)?;
    let popped: Vec<Scored> =
        elements::update::<SortedSetValue, _>(ctx, &args[1], false, 0, |zset, _| {
            let take = count.unwrap_or(1);
            let chosen: Vec<Scored> = match highest {
                true => zset
                    .ascending()
                    .rev()
                    .take(take)
                    .map(|(m, s)| (m.to_vec(), s))
                    .collect(),
                false => zset
                    .ascending()
                    .take(take)
                    .map(|(m, s)| (m.to_vec(), s))
                    .collect(),
            };
            chosen.iter().for_each(|(member, _)| {
                zset.remove(member);
            });
            let changed = !chosen.is_empty();
            (chosen, changed)
        })?
        .unwrap_or_default();
    if !popped.is_empty() {
        elements::notify_write(
            ctx,
            ZSET,
            &args[1],
            if highest { "zpopmax" } else { "zpopmin" },
        );
    }
    let members: Vec<(&[u8], f64)> = popped.iter().map(|(m, s)| (&m[..], *s)).collect();
    // Without a count the reply is one flat [member, score] in both protocols.
    match count {
        None => {
            ctx.array(2 * members.len());
            for (member, score) in &members {
                ctx.bulk(member);
                encode::double(ctx.out, *score, ctx.session.protocol);
            }
        }
        Some(_) => scored_reply(ctx.out, ctx.session.protocol, &members, true),
    }
    Ok(())
}

/// `ZPOPMIN key [count]`
pub fn zpopmin(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    pop(ctx, args, false)
}

/// `ZPOPMAX key [count]`
pub fn zpopmax(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    pop(ctx, args, true)
}

/// `ZRANDMEMBER key [count [WITHSCORES]]`
pub fn zrandmember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let with_scores = match args.get(3) {
        None => false,
        Some(word) if is(word, "WITHSCORES") && args.len() == 4 => true,
        Some(_) => return Err(CommandError::syntax()),
    };
    let pick = Pick::parse(args.get(2))?;
    elements::read::<SortedSetValue>(
        ctx,
        &args[1],
        |zset, _, out, protocol| {
            let chosen = pick.choose(|next| zset.random(next), || zset.ascending().collect());
            if let Pick::One = pick {
                match chosen.first() {
                    Some((member, _)) => encode::bulk(out, member),
                    None => encode::null(out, protocol),
                }
                return;
            }
            scored_reply(out, protocol, &chosen, with_scores);
        },
        |ctx| match pick {
            Pick::One => ctx.bulk_or_null(None),
            _ => ctx.array(0),
        },
    )
}

/// `ZSCAN key cursor [MATCH pattern] [COUNT count]`
pub fn zscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let options = ScanOptions::parse(&args[2..], false)?;
    elements::read::<SortedSetValue>(
        ctx,
        &args[1],
        |zset, _, out, _| {
            let members: Vec<(&[u8], f64)> =
                zset.ascending().filter(|(m, _)| options.wants(m)).collect();
            encode::array_header(out, 2);
            encode::bulk(out, b"0");
            encode::array_header(out, members.len() * 2);
            for (member, score) in members {
                encode::bulk(out, member);
                encode::bulk(out, encode::format_double(score).as_bytes());
            }
        },
        |ctx| {
            ctx.array(2);
            ctx.bulk(b"0");
            ctx.array(0);
        },
    )
}
