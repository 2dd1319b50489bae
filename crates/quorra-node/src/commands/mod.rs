//! Command handlers and dispatch.
//!
//! The command table — every command with what COMMAND reports about it (arity, flags,
//! key positions, group) — lives in [`quorra_resp::command`], shared with clients and
//! the load generator; [`handler`] maps each entry to its handler. [`run`] does what
//! Redis's `processCommand` does before a handler runs — look the name up, check the
//! arity, check authentication — then runs it, and says how it ended and what keyspace
//! reads it made; [`dispatch`] also counts it, for a command of this node's own client
//! ([`crate::accounting`]). Handlers write their reply into the connection's output
//! buffer through [`Ctx`], report their reads with [`Ctx::read_result`], and return a
//! [`CommandError`] with Redis's error text when they refuse.
//!
//! Handlers are grouped like Redis's documentation: [`keyspace`] (generic key
//! commands), [`strings`], [`hashes`], [`lists`], [`sets`], [`sorted_sets`] (with what the three
//! share in [`elements`]), [`connection`], [`transactions`], [`scripting`], [`pubsub`],
//! [`server`];
//! [`quorra`] holds quorra's own `QUORRA` family.
//!
//! Each command runs inside the store's shared section, so that it never runs between
//! the commands of a transaction or a script (which hold the exclusive one). While a
//! script has run past `busy-reply-threshold`, a command that would wait for it is
//! answered `BUSY` instead, as in Redis.

pub mod connection;
pub mod elements;
pub mod hashes;
pub mod keyspace;
pub mod lists;
pub mod pubsub;
pub mod quorra;
pub mod scripting;
pub mod server;
pub mod sets;
pub mod sorted_sets;
pub mod strings;
pub mod transactions;

use std::borrow::Cow;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use quorra_resp::command::OptionError;
use quorra_resp::{Protocol, encode};
use quorra_store::StoreError;

use crate::accounting::{self, Lookups, Outcome};
use crate::session::Session;
use crate::shared::Shared;
use crate::tracking::{Tracker, Unsettled};

pub use quorra_resp::command::{COMMANDS, CommandId, CommandInfo, arity_ok, keys_of, lookup};

/// A command's handler: reads its arguments (name first), writes its reply.
pub type Handler = fn(&mut Ctx<'_>, &[Bytes]) -> Result<(), CommandError>;

/// The handler of each command in quorra-resp's table. The `match` is exhaustive: a
/// command added to the table does not compile until it has a handler.
pub fn handler(id: CommandId) -> Handler {
    use CommandId::*;
    match id {
        // Strings.
        Get => strings::get,
        Set => strings::set,
        Setnx => strings::setnx,
        Setex => strings::setex,
        Psetex => strings::psetex,
        Getex => strings::getex,
        Getdel => strings::getdel,
        Getset => strings::getset,
        Mget => strings::mget,
        Mset => strings::mset,
        Msetnx => strings::msetnx,
        Incr => strings::incr,
        Decr => strings::decr,
        Incrby => strings::incrby,
        Decrby => strings::decrby,
        Incrbyfloat => strings::incrbyfloat,
        Append => strings::append,
        Strlen => strings::strlen,
        Getrange => strings::getrange,
        Substr => strings::getrange,
        Setrange => strings::setrange,
        Lcs => strings::lcs,
        // Hashes.
        Hset => hashes::hset,
        Hsetnx => hashes::hsetnx,
        Hmset => hashes::hmset,
        Hget => hashes::hget,
        Hmget => hashes::hmget,
        Hgetall => hashes::hgetall,
        Hgetdel => hashes::hgetdel,
        Hdel => hashes::hdel,
        Hlen => hashes::hlen,
        Hexists => hashes::hexists,
        Hkeys => hashes::hkeys,
        Hvals => hashes::hvals,
        Hstrlen => hashes::hstrlen,
        Hincrby => hashes::hincrby,
        Hincrbyfloat => hashes::hincrbyfloat,
        Hrandfield => hashes::hrandfield,
        Hscan => hashes::hscan,
        Hexpire => hashes::hexpire,
        Hpexpire => hashes::hpexpire,
        Hexpireat => hashes::hexpireat,
        Hpexpireat => hashes::hpexpireat,
        Httl => hashes::httl,
        Hpttl => hashes::hpttl,
        Hexpiretime => hashes::hexpiretime,
        Hpexpiretime => hashes::hpexpiretime,
        Hpersist => hashes::hpersist,
        // Lists.
        Lpush => lists::lpush,
        Rpush => lists::rpush,
        Lpushx => lists::lpushx,
        Rpushx => lists::rpushx,
        Lpop => lists::lpop,
        Rpop => lists::rpop,
        Llen => lists::llen,
        Lrange => lists::lrange,
        Lindex => lists::lindex,
        Lset => lists::lset,
        Lrem => lists::lrem,
        Ltrim => lists::ltrim,
        Linsert => lists::linsert,
        Lpos => lists::lpos,
        Lmove => lists::lmove,
        Rpoplpush => lists::rpoplpush,
        // Sets.
        Sadd => sets::sadd,
        Srem => sets::srem,
        Smembers => sets::smembers,
        Sismember => sets::sismember,
        Smismember => sets::smismember,
        Scard => sets::scard,
        Spop => sets::spop,
        Srandmember => sets::srandmember,
        Smove => sets::smove,
        Sinter => sets::sinter,
        Sunion => sets::sunion,
        Sdiff => sets::sdiff,
        Sinterstore => sets::sinterstore,
        Sunionstore => sets::sunionstore,
        Sdiffstore => sets::sdiffstore,
        Sscan => sets::sscan,
        // Sorted sets.
        Zadd => sorted_sets::zadd,
        Zincrby => sorted_sets::zincrby,
        Zrem => sorted_sets::zrem,
        Zcard => sorted_sets::zcard,
        Zscore => sorted_sets::zscore,
        Zmscore => sorted_sets::zmscore,
        Zrank => sorted_sets::zrank,
        Zrevrank => sorted_sets::zrevrank,
        Zcount => sorted_sets::zcount,
        Zlexcount => sorted_sets::zlexcount,
        Zrange => sorted_sets::zrange,
        Zrangestore => sorted_sets::zrangestore,
        Zrangebyscore => sorted_sets::zrangebyscore,
        Zrevrangebyscore => sorted_sets::zrevrangebyscore,
        Zrangebylex => sorted_sets::zrangebylex,
        Zrevrangebylex => sorted_sets::zrevrangebylex,
        Zrevrange => sorted_sets::zrevrange,
        Zremrangebyrank => sorted_sets::zremrangebyrank,
        Zremrangebyscore => sorted_sets::zremrangebyscore,
        Zremrangebylex => sorted_sets::zremrangebylex,
        Zpopmin => sorted_sets::zpopmin,
        Zpopmax => sorted_sets::zpopmax,
        Zrandmember => sorted_sets::zrandmember,
        Zscan => sorted_sets::zscan,
        // Generic key commands.
        Del => keyspace::del,
        Unlink => keyspace::del,
        Exists => keyspace::exists,
        Touch => keyspace::touch,
        Type => keyspace::key_type,
        Move => keyspace::move_key,
        Keys => keyspace::keys,
        Scan => keyspace::scan,
        Randomkey => keyspace::randomkey,
        Rename => keyspace::rename,
        Renamenx => keyspace::renamenx,
        Copy => keyspace::copy,
        Expire => keyspace::expire,
        Pexpire => keyspace::pexpire,
        Expireat => keyspace::expireat,
        Pexpireat => keyspace::pexpireat,
        Ttl => keyspace::ttl,
        Pttl => keyspace::pttl,
        Expiretime => keyspace::expiretime,
        Pexpiretime => keyspace::pexpiretime,
        Persist => keyspace::persist,
        Wait => keyspace::wait,
        Object => keyspace::object,
        Memory => server::memory,
        // Connection.
        Ping => connection::ping,
        Echo => connection::echo,
        Hello => connection::hello,
        Auth => connection::auth,
        Select => connection::select,
        Quit => connection::quit,
        Reset => connection::reset,
        Client => connection::client,
        // Transactions.
        Multi => transactions::multi,
        Exec => transactions::exec,
        Discard => transactions::discard,
        Watch => transactions::watch,
        Unwatch => transactions::unwatch,
        // Scripting.
        Eval => scripting::eval,
        Evalsha => scripting::evalsha,
        EvalRo => scripting::eval_ro,
        EvalshaRo => scripting::evalsha_ro,
        Script => scripting::script,
        // Server.
        Command => server::command,
        Info => server::info,
        Config => server::config,
        Dbsize => server::dbsize,
        Flushall => server::flushall,
        Flushdb => server::flushdb,
        Time => server::time,
        Acl => server::acl,
        // Pub/sub.
        Subscribe => pubsub::subscribe,
        Unsubscribe => pubsub::unsubscribe,
        Psubscribe => pubsub::psubscribe,
        Punsubscribe => pubsub::punsubscribe,
        Ssubscribe => pubsub::ssubscribe,
        Sunsubscribe => pubsub::sunsubscribe,
        Publish => pubsub::publish,
        Spublish => pubsub::spublish,
        Pubsub => pubsub::pubsub,
        // quorra's own.
        Quorra => quorra::quorra,
    }
}

/// Writes a container command's HELP as Redis does: a usage line, each subcommand with
/// its description lines indented, and HELP itself last.
pub fn help(ctx: &mut Ctx<'_>, command: &str, subcommands: &[(&str, &[&str])]) {
    let lines = 3 + subcommands
        .iter()
        .map(|(_, description)| 1 + description.len())
        .sum::<usize>();
    ctx.array(lines);
    let usage = format!("{command} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:");
    encode::simple(ctx.out, &usage);
    for (usage, description) in subcommands {
        encode::simple(ctx.out, usage);
        for line in *description {
            encode::simple(ctx.out, &format!("    {line}"));
        }
    }
    encode::simple(ctx.out, "HELP");
    encode::simple(ctx.out, "    Print this help.");
}

/// Redis's refusal of a container command's unknown subcommand: `ERR unknown subcommand
/// 'x'. Try OBJECT HELP.`
pub fn unknown_subcommand(command: &str, subcommand: &[u8]) -> CommandError {
    CommandError::new(format!(
        "ERR unknown subcommand '{}'. Try {command} HELP.",
        String::from_utf8_lossy(subcommand)
    ))
}

/// Redis's refusal of a command on a key of another type.
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// An error reply, with Redis's text (code first: `ERR ...`, `WRONGTYPE ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError(pub Cow<'static, str>);

impl CommandError {
    /// `ERR syntax error`.
    pub fn syntax() -> Self {
        CommandError("ERR syntax error".into())
    }

    /// `ERR value is not an integer or out of range`.
    pub fn not_integer() -> Self {
        CommandError("ERR value is not an integer or out of range".into())
    }

    /// `ERR wrong number of arguments for '<name>' command`.
    pub fn arity(name: &str) -> Self {
        CommandError(format!("ERR wrong number of arguments for '{name}' command").into())
    }

    /// An error with this exact text.
    pub fn new(text: impl Into<Cow<'static, str>>) -> Self {
        CommandError(text.into())
    }
}

impl From<OptionError> for CommandError {
    fn from(error: OptionError) -> Self {
        match error {
            OptionError::Syntax => CommandError::syntax(),
            OptionError::NotAnInteger => CommandError::not_integer(),
        }
    }
}

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> Self {
        CommandError(match error {
            StoreError::OutOfMemory | StoreError::EntryTooLarge { .. } => {
                "OOM command not allowed when used memory > 'maxmemory'.".into()
            }
            StoreError::NotAnInteger => "ERR value is not an integer or out of range".into(),
            StoreError::WrongType => WRONGTYPE.into(),
            other => format!("ERR {other}").into(),
        })
    }
}

/// What a handler works with: the node, its own connection, and the output buffer.
pub struct Ctx<'a> {
    /// The node.
    pub shared: &'a Shared,
    /// This connection's state.
    pub session: &'a mut Session,
    /// Replies go here; the connection writes them out after the batch.
    pub out: &'a mut BytesMut,
    /// The keyspace reads the command made.
    pub lookups: Lookups,
}

impl Ctx<'_> {
    /// The connection's protocol version.
    pub fn protocol(&self) -> Protocol {
        self.session.protocol
    }

    /// `+OK`.
    pub fn ok(&mut self) {
        self.out.extend_from_slice(b"+OK\r\n");
    }

    /// A bulk string.
    pub fn bulk(&mut self, bytes: &[u8]) {
        encode::bulk(self.out, bytes);
    }

    /// The reply to a keyspace read of one key: its value, or null; counted as a hit or
    /// a miss.
    pub fn read_result(&mut self, value: Option<&[u8]>) {
        self.lookups.found(value.is_some());
        self.bulk_or_null(value);
    }

    /// A bulk string, or null.
    pub fn bulk_or_null(&mut self, value: Option<&[u8]>) {
        match value {
            Some(bytes) => encode::bulk(self.out, bytes),
            None => encode::null(self.out, self.session.protocol),
        }
    }

    /// An integer.
    pub fn int(&mut self, n: i64) {
        encode::integer(self.out, n);
    }

    /// An array header.
    pub fn array(&mut self, len: usize) {
        encode::array_header(self.out, len);
    }

    /// A map header (a flat array in RESP2).
    pub fn map(&mut self, pairs: usize) {
        encode::map_header(self.out, pairs, self.session.protocol);
    }

    /// Raises keyspace event `event` of `class` ([`crate::notifications`]) on `key`.
    pub fn notify(&self, class: u32, event: &str, key: &[u8]) {
        let shared = self.shared;
        shared.notifier.notify(&shared.pubsub, class, event, key);
    }
}

/// The keys a write command writes, from the command table's key positions (and, for
/// MOVE and COPY ... DB, the key of the other database); none for a command that does
/// not write.
pub fn written_keys(args: &[Bytes]) -> impl Iterator<Item = Bytes> + '_ {
    let writes = lookup(&args[0]).is_some_and(|id| id.info().writes());
    keys_of(args)
        .cloned()
        .chain(crate::databases::other_database_key(args))
        .filter(move |_| writes)
}

/// What running one command did, for the accounting.
#[derive(Clone, Copy, Debug)]
pub struct Ran {
    /// The command, if its name is in the table.
    pub id: Option<CommandId>,
    /// How it ended.
    pub outcome: Outcome,
    /// The keyspace reads it made.
    pub lookups: Lookups,
}

/// Runs one command, writing its reply to `out`, without counting it: checks the name,
/// the arity and authentication, then runs the handler — or, inside MULTI, queues it.
/// A refusal inside MULTI makes the transaction's EXEC fail.
pub fn run(shared: &Shared, session: &mut Session, out: &mut BytesMut, args: &[Bytes]) -> Ran {
    let Some(id) = lookup(&args[0]) else {
        transactions::refuse(session);
        encode::error(out, &unknown_command_message(args));
        return Ran {
            id: None,
            outcome: Outcome::Rejected,
            lookups: Lookups::default(),
        };
    };
    let spec = id.info();
    session.note_command(id);
    let refusal = if !arity_ok(spec.arity, args.len()) {
        Some(CommandError::arity(spec.name))
    } else if !session.authenticated
        && !spec.has_flag("no-auth")
        && shared.settings.read().requirepass.is_some()
    {
        Some(CommandError::new("NOAUTH Authentication required."))
    } else if session.transaction.is_some() && pubsub::changes_subscriptions(spec.name) {
        // (Un)subscribing inside MULTI: its confirmations would land inside EXEC's reply.
        Some(CommandError::new(
            "ERR Command not allowed inside a transaction",
        ))
    } else {
        pubsub::refusal_in_subscribed_mode(session, spec.name)
    };
    if let Some(refusal) = refusal {
        transactions::refuse(session);
        encode::error(out, &refusal.0);
        return Ran {
            id: Some(id),
            outcome: Outcome::Rejected,
            lookups: Lookups::default(),
        };
    }
    if session.transaction.is_some() && !runs_inside_multi(id) {
        return Ran {
            id: Some(id),
            outcome: transactions::queue(shared, session, out, args),
            lookups: Lookups::default(),
        };
    }
    // EXEC and scripts take the exclusive section themselves (the commands they run are
    // inside it); SCRIPT must answer while a script runs (SCRIPT KILL).
    let section = match session.in_exclusive_section || takes_no_shared_section(id) {
        true => Ok(None),
        false => enter_shared(shared).map(Some),
    };
    let _section = match section {
        Ok(section) => section,
        Err(busy) => {
            encode::error(out, &busy.0);
            return Ran {
                id: Some(id),
                outcome: Outcome::Failed,
                lookups: Lookups::default(),
            };
        }
    };
    follow_read_keys(shared, session, id, args);
    let mut ctx = Ctx {
        shared,
        session,
        out,
        lookups: Lookups::default(),
    };
    let result = handler(id)(&mut ctx, args);
    let outcome = match result {
        Ok(()) => Outcome::Ok,
        Err(error) => {
            encode::error(ctx.out, &error.0);
            Outcome::Failed
        }
    };
    invalidate_written_keys(shared, ctx.session, id, args);
    Ran {
        id: Some(id),
        outcome,
        lookups: ctx.lookups,
    }
}

/// Client tracking's first hook ([`crate::tracking`]): the keys of a read by a tracking
/// client, or by a peer's client that tracks, are followed before the read reads them,
/// so that a change made after the read is told.
fn follow_read_keys(shared: &Shared, session: &Session, id: CommandId, args: &[Bytes]) {
    // The session's fields first: most sessions track nothing.
    if (session.tracking.is_none() && session.tracked_for.is_none())
        || !id.info().has_flag("readonly")
    {
        return;
    }
    let client = session
        .tracking
        .as_ref()
        .filter(|on| on.options.tracks_read(session.caching))
        .map(|_| Tracker::Client(session.info.id));
    let node = session.tracked_for.clone().map(Tracker::Node);
    for tracker in client.iter().chain(node.iter()) {
        shared
            .tracking
            .follow(&shared.pubsub, tracker, keys_of(args));
    }
}

/// Client tracking's second hook: the keys a write wrote are invalidated for whoever
/// followed them (FLUSHALL and FLUSHDB: every key), and this node's hot-key copies of
/// them dropped ([`crate::hot_cache`]). `CLIENT CACHING` applies to one command.
fn invalidate_written_keys(shared: &Shared, session: &mut Session, id: CommandId, args: &[Bytes]) {
    if id != CommandId::Client {
        session.caching = false;
    }
    // Two atomic loads when nothing is tracked or copied, as nearly always.
    let copies = shared.hot_cache.enabled() && !shared.hot_cache.is_idle();
    if (shared.tracking.is_idle() && !copies) || !id.info().writes() {
        return;
    }
    if matches!(id, CommandId::Flushall | CommandId::Flushdb) {
        // Every node runs the flush itself (it is sent to each): each tells its own
        // clients and drops its own copies.
        shared.tracking.invalidate_all(&shared.pubsub);
        shared.hot_cache.clear(&shared.store);
        return;
    }
    let keys: Vec<Bytes> = written_keys(args).collect();
    let nodes = shared
        .tracking
        .changed(&shared.pubsub, &keys, Some(session.info.id));
    if !nodes.is_empty() {
        session
            .unsettled
            .get_or_insert_with(|| Unsettled::new(shared.tracking.clone()))
            .add(nodes);
    }
    if copies {
        for key in &keys {
            shared.hot_cache.invalidate(&shared.store, key);
        }
    }
}

/// Redis's answer to a command that would wait for a script past its time budget.
pub const BUSY: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";

/// How long a command waits for the store's sections before it checks whether a
/// script has been running past its budget.
const SECTION_WAIT: Duration = Duration::from_millis(100);

/// How long a command spins for a section held by another before it sleeps.
const SPIN_FOR: Duration = Duration::from_micros(50);

/// True for the commands that do not run inside a shared section: EXEC and scripts
/// (they take the exclusive one), and SCRIPT (it must answer while a script runs).
fn takes_no_shared_section(id: CommandId) -> bool {
    use CommandId::*;
    matches!(id, Exec | Eval | Evalsha | EvalRo | EvalshaRo | Script)
}

/// The store's shared section for one command, or `BUSY` once a script holding the
/// exclusive one has run past its budget.
fn enter_shared(shared: &Shared) -> Result<parking_lot::RwLockReadGuard<'_, ()>, CommandError> {
    enter(shared, |wait| shared.store.try_shared_section_for(wait))
}

/// The store's exclusive section for a transaction or a script, or `BUSY` once a
/// script holding it has run past its budget.
pub fn enter_exclusive(
    shared: &Shared,
) -> Result<parking_lot::RwLockWriteGuard<'_, ()>, CommandError> {
    enter(shared, |wait| shared.store.try_exclusive_section_for(wait))
}

/// Enters a section with `try_enter` (which waits at most its argument): at once when
/// it is free, as it nearly always is; else spinning for [`SPIN_FOR`] — transactions
/// and scripts hold the exclusive section for microseconds, and spinning that long
/// costs less than a thread going to sleep and being woken (EVALSHA from 50 clients:
/// 62,600 → 74,400 requests/s); then sleeping, until the section is free or a script has
/// run past its budget.
fn enter<G>(shared: &Shared, try_enter: impl Fn(Duration) -> Option<G>) -> Result<G, CommandError> {
    if let Some(section) = try_enter(Duration::ZERO) {
        return Ok(section);
    }
    let spin_until = Instant::now() + SPIN_FOR;
    while Instant::now() < spin_until {
        std::hint::spin_loop();
        if let Some(section) = try_enter(Duration::ZERO) {
            return Ok(section);
        }
    }
    loop {
        if let Some(section) = try_enter(SECTION_WAIT) {
            return Ok(section);
        }
        if shared.scripts.busy() {
            return Err(CommandError::new(BUSY));
        }
    }
}

/// True for the commands that run at once inside MULTI instead of being queued, as in
/// Redis.
pub fn runs_inside_multi(id: CommandId) -> bool {
    use CommandId::*;
    matches!(id, Exec | Discard | Multi | Watch | Quit | Reset)
}

/// Runs one command of this node's client, writing its reply to `out`, and counts it.
pub fn dispatch(shared: &Shared, session: &mut Session, out: &mut BytesMut, args: &[Bytes]) {
    dispatch_timed(shared, session, out, args, Instant::now());
}

/// [`dispatch`] for a command that started at `started`, returning when it ended. A
/// caller running a batch back to back passes each command's end as the next one's
/// start, so the latency histogram costs one clock read per command instead of two
/// (at pipeline 16 the second read was about 3% of the server's CPU).
pub fn dispatch_timed(
    shared: &Shared,
    session: &mut Session,
    out: &mut BytesMut,
    args: &[Bytes],
    started: Instant,
) -> Instant {
    let ran = run(shared, session, out, args);
    let ended = Instant::now();
    accounting::command(shared, ran.id, ran.outcome, ended.duration_since(started));
    accounting::lookups(shared, ran.lookups);
    ended
}

/// Runs `commands` one after another without counting them (they are a peer's, or
/// parts of a client command counted as a whole), each into a reply of its own; with
/// the keyspace reads they made together.
pub fn run_each<A: AsRef<[Bytes]>>(
    shared: &Shared,
    session: &mut Session,
    commands: &[A],
) -> (Vec<Bytes>, Lookups) {
    let mut lookups = Lookups::default();
    let replies = commands
        .iter()
        .map(|args| {
            let mut reply = BytesMut::new();
            lookups.add(run(shared, session, &mut reply, args.as_ref()).lookups);
            reply.freeze()
        })
        .collect();
    (replies, lookups)
}

/// An error reply with this text, as its own buffer.
pub fn error_reply(text: &str) -> Bytes {
    let mut reply = BytesMut::new();
    encode::error(&mut reply, text);
    reply.freeze()
}

/// Redis's text: `ERR unknown command 'foo', with args beginning with: 'a' 'b' `
/// (the name and the argument list are each cut at 128 characters).
fn unknown_command_message(args: &[Bytes]) -> String {
    let name = String::from_utf8_lossy(&args[0]);
    let mut message = format!(
        "ERR unknown command '{}', with args beginning with: ",
        name.chars().take(128).collect::<String>()
    );
    let mut budget = 128usize;
    for arg in &args[1..] {
        if budget == 0 {
            break;
        }
        let text = String::from_utf8_lossy(arg);
        let shown: String = text.chars().take(budget).collect();
        budget -= shown.chars().count();
        message.push('\'');
        message.push_str(&shown);
        message.push_str("' ");
    }
    message
}

/// Parses an integer argument; `ERR value is not an integer or out of range` if it is not.
pub fn int_arg(arg: &[u8]) -> Result<i64, CommandError> {
    quorra_store::numeric::parse_i64(arg).map_err(|_| CommandError::not_integer())
}

/// True if `arg` is `word`, ignoring ASCII case.
pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_command_text_matches_redis() {
        let args: Vec<Bytes> = ["foo", "a", "b"].into_iter().map(Bytes::from).collect();
        assert_eq!(
            unknown_command_message(&args),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            unknown_command_message(&[Bytes::from("foo")]),
            "ERR unknown command 'foo', with args beginning with: "
        );
    }
}
