//! Pub/sub commands: (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PUBLISH, SPUBLISH and PUBSUB, with
//! Redis's replies. The subscriptions themselves are [`crate::pubsub`]'s; the connection
//! writes the messages out as they arrive.
//!
//! PUBLISH answers how many of this node's subscribers got the message, as Redis Cluster
//! does; the message also goes to every other node. PUBSUB CHANNELS, NUMSUB, NUMPAT,
//! SHARDCHANNELS and SHARDNUMSUB describe this node's subscribers, also as in Redis
//! Cluster.

use bytes::Bytes;
use quorra_resp::{Protocol, encode};

use super::{CommandError, Ctx, help, unknown_subcommand};
use crate::pubsub::{Kind, Subscriber};
use crate::session::Session;

/// Redis's refusal of a command from a RESP2 client in subscribed mode.
fn only_pubsub_allowed(name: &str) -> CommandError {
    CommandError::new(format!(
        "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET \
         are allowed in this context"
    ))
}

/// The refusal of command `name` for `session`, if it is a RESP2 client in subscribed
/// mode and the command is not one of those that mode allows.
#[inline]
pub fn refusal_in_subscribed_mode(session: &Session, name: &str) -> Option<CommandError> {
    // Every command asks: the cheap test first.
    if !in_subscribed_mode(session) {
        return None;
    }
    let allowed = changes_subscriptions(name) || matches!(name, "ping" | "quit" | "reset");
    (!allowed).then(|| only_pubsub_allowed(name))
}

/// Whether command `name` is one of the (P|S)(UN)SUBSCRIBE family.
pub fn changes_subscriptions(name: &str) -> bool {
    matches!(
        name,
        "subscribe" | "psubscribe" | "ssubscribe" | "unsubscribe" | "punsubscribe" | "sunsubscribe"
    )
}

/// Whether a RESP2 client is in subscribed mode, where PING answers `pong` in an array.
#[inline]
pub fn in_subscribed_mode(session: &Session) -> bool {
    session.protocol == Protocol::Resp2 && session.pubsub.as_ref().is_some_and(Subscriber::active)
}

/// The name the replies of a (un)subscribe of `kind` carry.
fn reply_name(kind: Kind, subscribing: bool) -> &'static [u8] {
    match (kind, subscribing) {
        (Kind::Channel, true) => b"subscribe",
        (Kind::Pattern, true) => b"psubscribe",
        (Kind::Shard, true) => b"ssubscribe",
        (Kind::Channel, false) => b"unsubscribe",
        (Kind::Pattern, false) => b"punsubscribe",
        (Kind::Shard, false) => b"sunsubscribe",
    }
}

fn confirm(ctx: &mut Ctx<'_>, kind: Kind, subscribing: bool, name: Option<&[u8]>, count: usize) {
    let protocol = ctx.protocol();
    encode::push_header(ctx.out, 3, protocol);
    encode::bulk(ctx.out, reply_name(kind, subscribing));
    match name {
        Some(name) => encode::bulk(ctx.out, name),
        None => encode::null(ctx.out, protocol),
    }
    encode::integer(ctx.out, count as i64);
}

fn subscribe_to(ctx: &mut Ctx<'_>, kind: Kind, names: &[Bytes]) -> Result<(), CommandError> {
    let hub = ctx.shared.pubsub.clone();
    let info = ctx.session.info.clone();
    for name in names {
        let count = ctx
            .session
            .pubsub
            .get_or_insert_with(|| Subscriber::new(hub.clone(), info.clone()))
            .subscribe(kind, name);
        confirm(ctx, kind, true, Some(name), count);
    }
    Ok(())
}

fn unsubscribe_from(ctx: &mut Ctx<'_>, kind: Kind, names: &[Bytes]) -> Result<(), CommandError> {
    let names = match (names, &ctx.session.pubsub) {
        ([], Some(subscriber)) => subscriber.subscribed(kind),
        _ => names.to_vec(),
    };
    if names.is_empty() {
        let count = ctx.session.pubsub.as_ref().map_or(0, |s| s.count(kind));
        confirm(ctx, kind, false, None, count);
    }
    for name in &names {
        let count = match &mut ctx.session.pubsub {
            Some(subscriber) => subscriber.unsubscribe(kind, name),
            None => 0,
        };
        confirm(ctx, kind, false, Some(name), count);
    }
    Ok(())
}

/// `SUBSCRIBE channel [channel ...]`
pub fn subscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    subscribe_to(ctx, Kind::Channel, &args[1..])
}

/// `PSUBSCRIBE pattern [pattern ...]`
pub fn psubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    subscribe_to(ctx, Kind::Pattern, &args[1..])
}

/// `SSUBSCRIBE shardchannel [shardchannel ...]`
pub fn ssubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    subscribe_to(ctx, Kind::Shard, &args[1..])
}

/// `UNSUBSCRIBE [channel ...]`
pub fn unsubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    unsubscribe_from(ctx, Kind::Channel, &args[1..])
}

/// `PUNSUBSCRIBE [pattern ...]`
pub fn punsubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    unsubscribe_from(ctx, Kind::Pattern, &args[1..])
}

/// `SUNSUBSCRIBE [shardchannel ...]`
pub fn sunsubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    unsubscribe_from(ctx, Kind::Shard, &args[1..])
}

/// PUBLISH channel message
pub fn publish(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    publish_as(ctx, Kind::Channel, args)
}

/// SPUBLISH shardchannel message
pub fn spublish(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    publish_as(ctx, Kind::Shard, args)
}

fn publish_as(ctx: &mut Ctx<'_>, kind: Kind, args: &[Bytes]) -> Result<(), CommandError> {
    let receivers = ctx
        .shared
        .pubsub
        .publish(kind, args[1].clone(), args[2].clone());
    // A RESP3 client subscribed to its own channel gets the message before the reply,
    // as from Redis.
    let protocol = ctx.protocol();
    if let Some(subscriber) = &mut ctx.session.pubsub {
        subscriber.drain_into(ctx.out, protocol, usize::MAX);
    }
    ctx.int(receivers as i64);
    Ok(())
}

/// `PUBSUB CHANNELS [pattern] | NUMSUB [channel ...] | NUMPAT | SHARDCHANNELS [pattern] |
/// SHARDNUMSUB [shardchannel ...] | HELP`
pub fn pubsub(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let sub = String::from_utf8_lossy(&args[1]).to_lowercase();
    let hub = ctx.shared.pubsub.clone();
    let list = |ctx: &mut Ctx<'_>, kind: Kind| {
        let channels = hub.channels(kind, args.get(2).map(|pattern| &pattern[..]));
        ctx.array(channels.len());
        for channel in &channels {
            ctx.bulk(channel);
        }
    };
    let counts = |ctx: &mut Ctx<'_>, kind: Kind| {
        ctx.array((args.len() - 2) * 2);
        for channel in &args[2..] {
            ctx.bulk(channel);
            ctx.int(hub.subscribers(kind, channel) as i64);
        }
    };
    match (sub.as_str(), args.len()) {
        ("channels", 2 | 3) => list(ctx, Kind::Channel),
        ("shardchannels", 2 | 3) => list(ctx, Kind::Shard),
        ("numsub", _) => counts(ctx, Kind::Channel),
        ("shardnumsub", _) => counts(ctx, Kind::Shard),
        ("numpat", 2) => ctx.int(hub.channel_count(Kind::Pattern) as i64),
        ("help", 2) => help(
            ctx,
            "PUBSUB",
            &[
                (
                    "CHANNELS [<pattern>]",
                    &["Return the currently active channels matching a <pattern> (default: '*')."],
                ),
                ("NUMPAT", &["Return number of subscriptions to patterns."]),
                (
                    "NUMSUB [<channel> ...]",
                    &[
                        "Return the number of subscribers for the specified channels, excluding",
                        "pattern subscriptions(default: no channels).",
                    ],
                ),
                (
                    "SHARDCHANNELS [<pattern>]",
                    &[
                        "Return the currently active shard level channels matching a <pattern> (default: '*').",
                    ],
                ),
                (
                    "SHARDNUMSUB [<shardchannel> ...]",
                    &["Return the number of subscribers for the specified shard level channel(s)"],
                ),
            ],
        ),
        ("channels" | "shardchannels" | "numpat" | "help", _) => {
            return Err(CommandError::arity(&format!("pubsub|{sub}")));
        }
        _ => return Err(unknown_subcommand("PUBSUB", &args[1])),
    }
    Ok(())
}
