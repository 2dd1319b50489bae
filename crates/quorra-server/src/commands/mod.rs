//! The command table and dispatch.
//!
//! [`COMMANDS`] lists every command with what COMMAND reports about it (arity, flags,
//! key positions, group) and its handler. [`dispatch`] does what Redis's `processCommand`
//! does before a handler runs — look the name up, check the arity, check
//! authentication — then runs it, counts it and times it. Handlers write their reply into
//! the connection's output buffer through [`Ctx`] and return a [`CommandError`] with
//! Redis's error text when they refuse.
//!
//! Handlers are grouped like Redis's documentation: [`keyspace`] (generic key
//! commands), [`strings`], [`connection`], [`server`]; [`cluster`] holds quorra's own
//! `QUORRA` family.

pub mod cluster;
pub mod connection;
pub mod keyspace;
pub mod server;
pub mod strings;

use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use quorra_resp::{Protocol, encode};
use quorra_store::StoreError;

use crate::connection::Session;
use crate::shared::{ServerCounters, Shared};

/// A command's handler: reads its arguments (name first), writes its reply.
pub type Handler = fn(&mut Ctx<'_>, &[Bytes]) -> Result<(), CommandError>;

/// One command as COMMAND describes it, and its handler.
pub struct CommandSpec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis arity: `n > 0` means exactly `n` arguments (name included), `-n` at least `n`.
    pub arity: i32,
    /// Redis command flags (`write`, `readonly`, `denyoom`, `fast`, `no-auth`, ...).
    pub flags: &'static [&'static str],
    /// First key argument, last key argument (-1 = last argument), step; 0 = no keys.
    pub keys: (i32, i32, i32),
    /// Documentation group (`string`, `generic`, `connection`, `server`).
    pub group: &'static str,
    /// One-line summary for COMMAND DOCS.
    pub summary: &'static str,
    /// The Redis version that introduced the command.
    pub since: &'static str,
    /// The handler.
    pub run: Handler,
}

impl CommandSpec {
    fn has_flag(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }
}

macro_rules! commands {
    ($( $name:literal, $arity:expr, [$($flag:literal),*], $keys:expr, $group:literal, $since:literal, $run:path, $summary:literal; )*) => {
        /// Every supported command, in the order COMMAND lists them.
        pub static COMMANDS: &[CommandSpec] = &[$(
            CommandSpec {
                name: $name,
                arity: $arity,
                flags: &[$($flag),*],
                keys: $keys,
                group: $group,
                summary: $summary,
                since: $since,
                run: $run,
            },
        )*];
    };
}

const NO_KEYS: (i32, i32, i32) = (0, 0, 0);
const ONE_KEY: (i32, i32, i32) = (1, 1, 1);
const ALL_KEYS: (i32, i32, i32) = (1, -1, 1);
const TWO_KEYS: (i32, i32, i32) = (1, 2, 1);
const KEY_VALUE_PAIRS: (i32, i32, i32) = (1, -1, 2);

commands! {
    // Strings.
    "get", 2, ["readonly", "fast"], ONE_KEY, "string", "1.0.0", strings::get, "Returns the string value of a key.";
    "set", -3, ["write", "denyoom"], ONE_KEY, "string", "1.0.0", strings::set, "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.";
    "setnx", 3, ["write", "denyoom", "fast"], ONE_KEY, "string", "1.0.0", strings::setnx, "Set the string value of a key only when the key doesn't exist.";
    "setex", 4, ["write", "denyoom"], ONE_KEY, "string", "2.0.0", strings::setex, "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.";
    "psetex", 4, ["write", "denyoom"], ONE_KEY, "string", "2.6.0", strings::psetex, "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.";
    "getex", -2, ["write", "fast"], ONE_KEY, "string", "6.2.0", strings::getex, "Returns the string value of a key after setting its expiration time.";
    "getdel", 2, ["write", "fast"], ONE_KEY, "string", "6.2.0", strings::getdel, "Returns the string value of a key after deleting the key.";
    "getset", 3, ["write", "denyoom", "fast"], ONE_KEY, "string", "1.0.0", strings::getset, "Returns the previous string value of a key after setting it to a new value.";
    "mget", -2, ["readonly", "fast"], ALL_KEYS, "string", "1.0.0", strings::mget, "Atomically returns the string values of one or more keys.";
    "mset", -3, ["write", "denyoom"], KEY_VALUE_PAIRS, "string", "1.0.1", strings::mset, "Atomically creates or modifies the string values of one or more keys.";
    "msetnx", -3, ["write", "denyoom"], KEY_VALUE_PAIRS, "string", "1.0.1", strings::msetnx, "Atomically modifies the string values of one or more keys only when all keys don't exist.";
    "incr", 2, ["write", "denyoom", "fast"], ONE_KEY, "string", "1.0.0", strings::incr, "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.";
    "decr", 2, ["write", "denyoom", "fast"], ONE_KEY, "string", "1.0.0", strings::decr, "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.";
    "incrby", 3, ["write", "denyoom", "fast"], ONE_KEY, "string", "1.0.0", strings::incrby, "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.";
    "decrby", 3, ["write", "denyoom", "fast"], ONE_KEY, "string", "1.0.0", strings::decrby, "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.";
    "incrbyfloat", 3, ["write", "denyoom", "fast"], ONE_KEY, "string", "2.6.0", strings::incrbyfloat, "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.";
    "append", 3, ["write", "denyoom", "fast"], ONE_KEY, "string", "2.0.0", strings::append, "Appends a string to the value of a key. Creates the key if it doesn't exist.";
    "strlen", 2, ["readonly", "fast"], ONE_KEY, "string", "2.2.0", strings::strlen, "Returns the length of a string value.";
    "getrange", 4, ["readonly"], ONE_KEY, "string", "2.4.0", strings::getrange, "Returns a substring of the string stored at a key.";
    "substr", 4, ["readonly"], ONE_KEY, "string", "1.0.0", strings::getrange, "Returns a substring from a string value.";
    "setrange", 4, ["write", "denyoom"], ONE_KEY, "string", "2.2.0", strings::setrange, "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.";
    "lcs", -3, ["readonly"], TWO_KEYS, "string", "7.0.0", strings::lcs, "Finds the longest common substring.";
    // Generic key commands.
    "del", -2, ["write"], ALL_KEYS, "generic", "1.0.0", keyspace::del, "Deletes one or more keys.";
    "unlink", -2, ["write", "fast"], ALL_KEYS, "generic", "4.0.0", keyspace::del, "Asynchronously deletes one or more keys.";
    "exists", -2, ["readonly", "fast"], ALL_KEYS, "generic", "1.0.0", keyspace::exists, "Determines whether one or more keys exist.";
    "touch", -2, ["readonly", "fast"], ALL_KEYS, "generic", "3.2.1", keyspace::touch, "Returns the number of existing keys out of those specified after updating the time they were last accessed.";
    "type", 2, ["readonly", "fast"], ONE_KEY, "generic", "1.0.0", keyspace::key_type, "Determines the type of value stored at a key.";
    "keys", 2, ["readonly"], NO_KEYS, "generic", "1.0.0", keyspace::keys, "Returns all key names that match a pattern.";
    "scan", -2, ["readonly"], NO_KEYS, "generic", "2.8.0", keyspace::scan, "Iterates over the key names in the database.";
    "randomkey", 1, ["readonly"], NO_KEYS, "generic", "1.0.0", keyspace::randomkey, "Returns a random key name from the database.";
    "rename", 3, ["write"], TWO_KEYS, "generic", "1.0.0", keyspace::rename, "Renames a key and overwrites the destination.";
    "renamenx", 3, ["write", "fast"], TWO_KEYS, "generic", "1.0.0", keyspace::renamenx, "Renames a key only when the target key name doesn't exist.";
    "copy", -3, ["write", "denyoom"], TWO_KEYS, "generic", "6.2.0", keyspace::copy, "Copies the value of a key to a new key.";
    "expire", -3, ["write", "fast"], ONE_KEY, "generic", "1.0.0", keyspace::expire, "Sets the expiration time of a key in seconds.";
    "pexpire", -3, ["write", "fast"], ONE_KEY, "generic", "2.6.0", keyspace::pexpire, "Sets the expiration time of a key in milliseconds.";
    "expireat", -3, ["write", "fast"], ONE_KEY, "generic", "1.2.0", keyspace::expireat, "Sets the expiration time of a key to a Unix timestamp.";
    "pexpireat", -3, ["write", "fast"], ONE_KEY, "generic", "2.6.0", keyspace::pexpireat, "Sets the expiration time of a key to a Unix milliseconds timestamp.";
    "ttl", 2, ["readonly", "fast"], ONE_KEY, "generic", "1.0.0", keyspace::ttl, "Returns the expiration time in seconds of a key.";
    "pttl", 2, ["readonly", "fast"], ONE_KEY, "generic", "2.6.0", keyspace::pttl, "Returns the expiration time in milliseconds of a key.";
    "expiretime", 2, ["readonly", "fast"], ONE_KEY, "generic", "7.0.0", keyspace::expiretime, "Returns the expiration time of a key as a Unix timestamp.";
    "pexpiretime", 2, ["readonly", "fast"], ONE_KEY, "generic", "7.0.0", keyspace::pexpiretime, "Returns the expiration time of a key as a Unix milliseconds timestamp.";
    "persist", 2, ["write", "fast"], ONE_KEY, "generic", "2.2.0", keyspace::persist, "Removes the expiration time of a key.";
    // Connection.
    "ping", -1, ["fast"], NO_KEYS, "connection", "1.0.0", connection::ping, "Returns the server's liveliness response.";
    "echo", 2, ["fast"], NO_KEYS, "connection", "1.0.0", connection::echo, "Returns the given string.";
    "hello", -1, ["noscript", "loading", "stale", "fast", "no-auth"], NO_KEYS, "connection", "6.0.0", connection::hello, "Handshakes with the Redis server.";
    "auth", -2, ["noscript", "loading", "stale", "fast", "no-auth"], NO_KEYS, "connection", "1.0.0", connection::auth, "Authenticates the connection.";
    "select", 2, ["loading", "stale", "fast"], NO_KEYS, "connection", "1.0.0", connection::select, "Changes the selected database.";
    "quit", -1, ["noscript", "loading", "stale", "fast", "no-auth"], NO_KEYS, "connection", "1.0.0", connection::quit, "Closes the connection.";
    "reset", 1, ["noscript", "loading", "stale", "fast", "no-auth"], NO_KEYS, "connection", "6.2.0", connection::reset, "Resets the connection.";
    "client", -2, ["loading", "stale"], NO_KEYS, "connection", "2.4.0", connection::client, "A container for client connection commands.";
    // Server.
    "command", -1, ["loading", "stale"], NO_KEYS, "server", "2.8.13", server::command, "Returns detailed information about all commands.";
    "info", -1, ["loading", "stale"], NO_KEYS, "server", "1.0.0", server::info, "Returns information and statistics about the server.";
    "config", -2, ["admin", "loading", "stale"], NO_KEYS, "server", "2.0.0", server::config, "A container for server configuration commands.";
    "dbsize", 1, ["readonly", "fast"], NO_KEYS, "server", "1.0.0", server::dbsize, "Returns the number of keys in the database.";
    "flushall", -1, ["write"], NO_KEYS, "server", "1.0.0", server::flushall, "Removes all keys from all databases.";
    "flushdb", -1, ["write"], NO_KEYS, "server", "1.0.0", server::flushall, "Remove all keys from the current database.";
    "time", 1, ["loading", "stale", "fast"], NO_KEYS, "server", "2.6.0", server::time, "Returns the server time.";
    // quorra's own.
    "quorra", -2, ["loading", "stale"], NO_KEYS, "server", "0.1.0", cluster::quorra, "Shows the cluster as this node sees it: QUORRA NODES, QUORRA RING, QUORRA OWNERS key.";
}

/// Longest command name in the table; longer names cannot match.
const MAX_NAME_LEN: usize = 16;

/// Name → index in [`COMMANDS`]. foldhash, not std's SipHash: the lookup runs for every
/// command and the names are not attacker-chosen keys of a growing map.
static BY_NAME: LazyLock<foldhash::HashMap<&'static [u8], usize>> = LazyLock::new(|| {
    COMMANDS
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            assert!(
                spec.name.len() <= MAX_NAME_LEN,
                "raise MAX_NAME_LEN for {}",
                spec.name
            );
            (spec.name.as_bytes(), index)
        })
        .collect()
});

/// The index in [`COMMANDS`] of the command called `name` (any case).
pub fn lookup(name: &[u8]) -> Option<usize> {
    if name.len() > MAX_NAME_LEN {
        return None;
    }
    let mut lower = [0u8; MAX_NAME_LEN];
    let lower = &mut lower[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    BY_NAME.get(&*lower).copied()
}

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

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> Self {
        CommandError(match error {
            StoreError::OutOfMemory | StoreError::EntryTooLarge { .. } => {
                "OOM command not allowed when used memory > 'maxmemory'.".into()
            }
            StoreError::NotAnInteger => "ERR value is not an integer or out of range".into(),
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
}

/// Runs one command, writing its reply to `out`. Returns after counting and timing it.
pub fn dispatch(shared: &Shared, session: &mut Session, out: &mut BytesMut, args: &[Bytes]) {
    let started = Instant::now();
    let counters = &shared.counters;
    let Some(index) = lookup(&args[0]) else {
        ServerCounters::bump(&counters.rejected_calls);
        encode::error(out, &unknown_command_message(args));
        return;
    };
    let spec = &COMMANDS[index];
    session.note_command(index);
    let refusal = if !arity_ok(spec.arity, args.len()) {
        Some(CommandError::arity(spec.name))
    } else if !session.authenticated
        && !spec.has_flag("no-auth")
        && shared.settings.read().requirepass.is_some()
    {
        Some(CommandError::new("NOAUTH Authentication required."))
    } else {
        None
    };
    if let Some(refusal) = refusal {
        ServerCounters::bump(&counters.rejected_calls);
        shared.metrics.command_rejected(index);
        encode::error(out, &refusal.0);
        return;
    }
    ServerCounters::bump(&counters.commands_processed);
    let mut ctx = Ctx {
        shared,
        session,
        out,
    };
    let outcome = (spec.run)(&mut ctx, args);
    if let Err(error) = &outcome {
        ServerCounters::bump(&counters.failed_calls);
        encode::error(ctx.out, &error.0);
    }
    shared
        .metrics
        .command_done(index, outcome.is_ok(), started.elapsed());
}

/// The keys of the command `args` (name first), from the table's key positions; none for
/// an unknown command or one without keys.
pub fn keys_of(args: &[Bytes]) -> impl Iterator<Item = &Bytes> {
    let (first, last, step) = lookup(&args[0]).map_or((0, 0, 1), |index| COMMANDS[index].keys);
    let end = if last < 0 {
        args.len()
    } else {
        (last as usize + 1).min(args.len())
    };
    let keys = match first as usize {
        0 => &args[..0],
        first => &args[first.min(end)..end],
    };
    keys.iter().step_by(step.max(1) as usize)
}

/// True if `argc` arguments (name included) satisfy a Redis arity.
pub fn arity_ok(arity: i32, argc: usize) -> bool {
    let argc = argc as i64;
    let arity = i64::from(arity);
    if arity >= 0 {
        argc == arity
    } else {
        argc >= -arity
    }
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
    fn every_command_is_found_in_any_case_and_names_are_unique() {
        assert_eq!(BY_NAME.len(), COMMANDS.len());
        for (index, spec) in COMMANDS.iter().enumerate() {
            assert_eq!(lookup(spec.name.to_uppercase().as_bytes()), Some(index));
        }
        assert_eq!(lookup(b"nosuchcommand"), None);
        assert_eq!(lookup(&[b'a'; 100]), None);
    }

    #[test]
    fn keys_come_from_the_table_positions() {
        let args = |text: &str| -> Vec<Bytes> {
            text.split(' ').map(|a| Bytes::from(a.to_owned())).collect()
        };
        let keys = |text: &str| -> Vec<String> {
            keys_of(&args(text))
                .map(|k| String::from_utf8(k.to_vec()).unwrap())
                .collect()
        };
        assert_eq!(keys("SET k v EX 10"), ["k"]);
        assert_eq!(keys("MSET a 1 b 2"), ["a", "b"]);
        assert_eq!(keys("DEL a b c"), ["a", "b", "c"]);
        assert_eq!(keys("RENAME a b"), ["a", "b"]);
        assert!(keys("PING").is_empty() && keys("NOSUCH a").is_empty());
        assert!(
            keys("GET").is_empty(),
            "wrong arity has no keys, and no panic"
        );
    }

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
