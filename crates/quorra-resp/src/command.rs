//! Commands as data: the Redis rules of every command quorra serves, and typed requests.
//!
//! The rules ([`COMMANDS`], found by [`lookup`]) are what Redis's command table says
//! about each command — arity, flags, where its keys are, its documentation group — and
//! what COMMAND reports. The server checks every request against them before a handler
//! runs, routing uses [`keys_of`] to find a request's keys, and a client can route with
//! the same function. [`CommandId`] names each command; the server maps it to a handler
//! with an exhaustive `match`, so a command cannot be listed without being served.
//!
//! [`Command`] is the other direction, for clients and the load generator: a request as a
//! typed value (`Command::Set { key, value, options }`) that encodes itself as the RESP
//! array Redis expects. Its tests check each encoding against the table's arity and key
//! positions; the server's tests send every variant to a real node.

use std::sync::LazyLock;

use bytes::BytesMut;

use crate::encode;

/// One command as Redis's command table describes it.
#[derive(Debug)]
pub struct CommandInfo {
    /// Which command this is.
    pub id: CommandId,
    /// Lower-case name.
    pub name: &'static str,
    /// Redis arity: `n > 0` means exactly `n` arguments (name included), `-n` at least `n`.
    pub arity: i32,
    /// Redis command flags (`write`, `readonly`, `denyoom`, `fast`, `no-auth`, ...).
    pub flags: &'static [&'static str],
    /// First key argument, last key argument (-1 = last argument), step; 0 = no keys.
    /// [`NUMKEYS`] for EVAL's form: the count of keys is the second argument and the
    /// keys follow it.
    pub keys: (i32, i32, i32),
    /// Documentation group (`string`, `hash`, `list`, `set`, `sorted-set`, `generic`,
    /// `connection`, `transactions`, `scripting`, `pubsub`, `server`).
    pub group: &'static str,
    /// One-line summary for COMMAND DOCS.
    pub summary: &'static str,
    /// The Redis version that introduced the command.
    pub since: &'static str,
}

impl CommandInfo {
    /// True if the command has Redis flag `flag`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }

    /// True if the command changes data (Redis's `write` flag), or may (`may_replicate`:
    /// a script, whose writes are its keys').
    pub fn writes(&self) -> bool {
        // One pass over the flags: the plan asks this of every command.
        self.flags
            .iter()
            .any(|flag| matches!(*flag, "write" | "may_replicate"))
    }

    /// The key positions COMMAND reports, as Redis's legacy triple: `(0, 0, 0)` for a
    /// command whose keys move (EVAL; its flags say `movablekeys`).
    pub fn legacy_key_positions(&self) -> (i32, i32, i32) {
        match self.keys {
            NUMKEYS => NO_KEYS,
            keys => keys,
        }
    }
}

macro_rules! commands {
    ($( $id:ident $name:literal, $arity:expr, [$($flag:literal),*], $keys:expr, $group:literal, $since:literal, $summary:literal; )*) => {
        /// A command quorra serves; `COMMANDS[id as usize]` describes it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum CommandId {
            $( #[doc = $summary] $id, )*
        }

        /// Every supported command, in the order COMMAND lists them.
        pub static COMMANDS: &[CommandInfo] = &[$(
            CommandInfo {
                id: CommandId::$id,
                name: $name,
                arity: $arity,
                flags: &[$($flag),*],
                keys: $keys,
                group: $group,
                summary: $summary,
                since: $since,
            },
        )*];
    };
}

const NO_KEYS: (i32, i32, i32) = (0, 0, 0);
const ONE_KEY: (i32, i32, i32) = (1, 1, 1);
const ALL_KEYS: (i32, i32, i32) = (1, -1, 1);
const TWO_KEYS: (i32, i32, i32) = (1, 2, 1);
/// A container command's key, after its subcommand (`OBJECT ENCODING key`).
const SECOND_KEY: (i32, i32, i32) = (2, 2, 1);
const KEY_VALUE_PAIRS: (i32, i32, i32) = (1, -1, 2);
/// EVAL's keys: `numkeys` is argument 2, the keys are the next `numkeys` arguments.
pub const NUMKEYS: (i32, i32, i32) = (3, 0, 1);

commands! {
    // Strings.
    Get "get", 2, ["readonly", "fast"], ONE_KEY, "string", "1.0.0", "Returns the string value of a key.";
    Set "set", -3, ["write", "denyoom"], ONE_KEY, "string", "1.0.0", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.";
    Setnx "setnx", 3, ["write", "denyoom", "fast"], ONE_KEY, "string", "1.0.0", "Set the string value of a key only when the key doesn't exist.";
    Setex "setex", 4, ["write", "denyoom"], ONE_KEY, "string", "2.0.0", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.";
    Psetex "psetex", 4, ["write", "denyoom"], ONE_KEY, "string", "2.6.0", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.";
    Getex "getex", -2, ["write", "fast"], ONE_KEY, "string", "6.2.0", "Returns the string value of a key after setting its expiration time.";
    Getdel "getdel", 2, ["write", "fast"], ONE_KEY, "string", "6.2.0", "Returns the string value of a key after deleting the key.";
    Getset "getset", 3, ["write", "denyoom", "fast"], ONE_KEY, "string", "1.0.0", "Returns the previous string value of a key after setting it to a new value.";
    Mget "mget", -2, ["readonly", "fast"], ALL_KEYS, "string", "1.0.0", "Atomically returns the string values of one or more keys.";
    Mset "mset", -3, ["write", "denyoom"], KEY_VALUE_PAIRS, "string", "1.0.1", "Atomically creates or modifies the string values of one or more keys.";
    Msetnx "msetnx", -3, ["write", "denyoom"], KEY_VALUE_PAIRS, "string", "1.0.1", "Atomically modifies the string values of one or more keys only when all keys don't exist.";
    Incr "incr", 2, ["write", "denyoom", "fast"], ONE_KEY, "string", "1.0.0", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.";
    Decr "decr", 2, ["write", "denyoom", "fast"], ONE_KEY, "string", "1.0.0", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.";
    Incrby "incrby", 3, ["write", "denyoom", "fast"], ONE_KEY, "string", "1.0.0", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.";
    Decrby "decrby", 3, ["write", "denyoom", "fast"], ONE_KEY, "string", "1.0.0", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.";
    Incrbyfloat "incrbyfloat", 3, ["write", "denyoom", "fast"], ONE_KEY, "string", "2.6.0", "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.";
    Append "append", 3, ["write", "denyoom", "fast"], ONE_KEY, "string", "2.0.0", "Appends a string to the value of a key. Creates the key if it doesn't exist.";
    Strlen "strlen", 2, ["readonly", "fast"], ONE_KEY, "string", "2.2.0", "Returns the length of a string value.";
    Getrange "getrange", 4, ["readonly"], ONE_KEY, "string", "2.4.0", "Returns a substring of the string stored at a key.";
    Substr "substr", 4, ["readonly"], ONE_KEY, "string", "1.0.0", "Returns a substring from a string value.";
    Setrange "setrange", 4, ["write", "denyoom"], ONE_KEY, "string", "2.2.0", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.";
    Lcs "lcs", -3, ["readonly"], TWO_KEYS, "string", "7.0.0", "Finds the longest common substring.";
    // Hashes.
    Hset "hset", -4, ["write", "denyoom", "fast"], ONE_KEY, "hash", "2.0.0", "Creates or modifies the value of a field in a hash.";
    Hsetnx "hsetnx", 4, ["write", "denyoom", "fast"], ONE_KEY, "hash", "2.0.0", "Sets the value of a field in a hash only when the field doesn't exist.";
    Hmset "hmset", -4, ["write", "denyoom", "fast"], ONE_KEY, "hash", "2.0.0", "Sets the values of multiple fields.";
    Hget "hget", 3, ["readonly", "fast"], ONE_KEY, "hash", "2.0.0", "Returns the value of a field in a hash.";
    Hmget "hmget", -3, ["readonly", "fast"], ONE_KEY, "hash", "2.0.0", "Returns the values of all fields in a hash.";
    Hgetall "hgetall", 2, ["readonly"], ONE_KEY, "hash", "2.0.0", "Returns all fields and values in a hash.";
    Hgetdel "hgetdel", -5, ["write", "fast"], ONE_KEY, "hash", "8.0.0", "Returns the value of a field and deletes it from the hash.";
    Hdel "hdel", -3, ["write", "fast"], ONE_KEY, "hash", "2.0.0", "Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain.";
    Hlen "hlen", 2, ["readonly", "fast"], ONE_KEY, "hash", "2.0.0", "Returns the number of fields in a hash.";
    Hexists "hexists", 3, ["readonly", "fast"], ONE_KEY, "hash", "2.0.0", "Determines whether a field exists in a hash.";
    Hkeys "hkeys", 2, ["readonly"], ONE_KEY, "hash", "2.0.0", "Returns all fields in a hash.";
    Hvals "hvals", 2, ["readonly"], ONE_KEY, "hash", "2.0.0", "Returns all values in a hash.";
    Hstrlen "hstrlen", 3, ["readonly", "fast"], ONE_KEY, "hash", "3.2.0", "Returns the length of the value of a field.";
    Hincrby "hincrby", 4, ["write", "denyoom", "fast"], ONE_KEY, "hash", "2.0.0", "Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field doesn't exist.";
    Hincrbyfloat "hincrbyfloat", 4, ["write", "denyoom", "fast"], ONE_KEY, "hash", "2.6.0", "Increments the floating point value of a field by a number. Uses 0 as initial value if the field doesn't exist.";
    Hrandfield "hrandfield", -2, ["readonly"], ONE_KEY, "hash", "6.2.0", "Returns one or more random fields from a hash.";
    Hscan "hscan", -3, ["readonly"], ONE_KEY, "hash", "2.8.0", "Iterates over fields and values of a hash.";
    Hexpire "hexpire", -6, ["write", "fast"], ONE_KEY, "hash", "7.4.0", "Set expiry for hash field using relative time to expire (seconds)";
    Hpexpire "hpexpire", -6, ["write", "fast"], ONE_KEY, "hash", "7.4.0", "Set expiry for hash field using relative time to expire (milliseconds)";
    Hexpireat "hexpireat", -6, ["write", "fast"], ONE_KEY, "hash", "7.4.0", "Set expiry for hash field using an absolute Unix timestamp (seconds)";
    Hpexpireat "hpexpireat", -6, ["write", "fast"], ONE_KEY, "hash", "7.4.0", "Set expiry for hash field using an absolute Unix timestamp (milliseconds)";
    Httl "httl", -5, ["readonly", "fast"], ONE_KEY, "hash", "7.4.0", "Returns the TTL in seconds of a hash field.";
    Hpttl "hpttl", -5, ["readonly", "fast"], ONE_KEY, "hash", "7.4.0", "Returns the TTL in milliseconds of a hash field.";
    Hexpiretime "hexpiretime", -5, ["readonly", "fast"], ONE_KEY, "hash", "7.4.0", "Returns the expiration time of a hash field as a Unix timestamp, in seconds.";
    Hpexpiretime "hpexpiretime", -5, ["readonly", "fast"], ONE_KEY, "hash", "7.4.0", "Returns the expiration time of a hash field as a Unix timestamp, in msec.";
    Hpersist "hpersist", -5, ["write", "fast"], ONE_KEY, "hash", "7.4.0", "Removes the expiration time for each specified field";
    // Lists.
    Lpush "lpush", -3, ["write", "denyoom", "fast"], ONE_KEY, "list", "1.0.0", "Prepends one or more elements to a list. Creates the key if it doesn't exist.";
    Rpush "rpush", -3, ["write", "denyoom", "fast"], ONE_KEY, "list", "1.0.0", "Appends one or more elements to a list. Creates the key if it doesn't exist.";
    Lpushx "lpushx", -3, ["write", "denyoom", "fast"], ONE_KEY, "list", "2.2.0", "Prepends one or more elements to a list only when the list exists.";
    Rpushx "rpushx", -3, ["write", "denyoom", "fast"], ONE_KEY, "list", "2.2.0", "Appends an element to a list only when the list exists.";
    Lpop "lpop", -2, ["write", "fast"], ONE_KEY, "list", "1.0.0", "Returns the first elements in a list after removing it. Deletes the list if the last element was popped.";
    Rpop "rpop", -2, ["write", "fast"], ONE_KEY, "list", "1.0.0", "Returns and removes the last elements of a list. Deletes the list if the last element was popped.";
    Llen "llen", 2, ["readonly", "fast"], ONE_KEY, "list", "1.0.0", "Returns the length of a list.";
    Lrange "lrange", 4, ["readonly"], ONE_KEY, "list", "1.0.0", "Returns a range of elements from a list.";
    Lindex "lindex", 3, ["readonly"], ONE_KEY, "list", "1.0.0", "Returns an element from a list by its index.";
    Lset "lset", 4, ["write", "denyoom"], ONE_KEY, "list", "1.0.0", "Sets the value of an element in a list by its index.";
    Lrem "lrem", 4, ["write"], ONE_KEY, "list", "1.0.0", "Removes elements from a list. Deletes the list if the last element was removed.";
    Ltrim "ltrim", 4, ["write"], ONE_KEY, "list", "1.0.0", "Removes elements from both ends a list. Deletes the list if all elements were trimmed.";
    Linsert "linsert", 5, ["write", "denyoom"], ONE_KEY, "list", "2.2.0", "Inserts an element before or after another element in a list.";
    Lpos "lpos", -3, ["readonly"], ONE_KEY, "list", "6.0.6", "Returns the index of matching elements in a list.";
    Lmove "lmove", 5, ["write", "denyoom"], TWO_KEYS, "list", "6.2.0", "Returns an element after popping it from one list and pushing it to another. Deletes the list if the last element was moved.";
    Rpoplpush "rpoplpush", 3, ["write", "denyoom"], TWO_KEYS, "list", "1.2.0", "Returns the last element of a list after removing and pushing it to another list. Deletes the list if the last element was popped.";
    // Sets.
    Sadd "sadd", -3, ["write", "denyoom", "fast"], ONE_KEY, "set", "1.0.0", "Adds one or more members to a set. Creates the key if it doesn't exist.";
    Srem "srem", -3, ["write", "fast"], ONE_KEY, "set", "1.0.0", "Removes one or more members from a set. Deletes the set if the last member was removed.";
    Smembers "smembers", 2, ["readonly"], ONE_KEY, "set", "1.0.0", "Returns all members of a set.";
    Sismember "sismember", 3, ["readonly", "fast"], ONE_KEY, "set", "1.0.0", "Determines whether a member belongs to a set.";
    Smismember "smismember", -3, ["readonly", "fast"], ONE_KEY, "set", "6.2.0", "Determines whether multiple members belong to a set.";
    Scard "scard", 2, ["readonly", "fast"], ONE_KEY, "set", "1.0.0", "Returns the number of members in a set.";
    Spop "spop", -2, ["write", "fast"], ONE_KEY, "set", "1.0.0", "Returns one or more random members from a set after removing them. Deletes the set if the last member was popped.";
    Srandmember "srandmember", -2, ["readonly"], ONE_KEY, "set", "1.0.0", "Get one or multiple random members from a set";
    Smove "smove", 4, ["write", "fast"], TWO_KEYS, "set", "1.0.0", "Moves a member from one set to another.";
    Sinter "sinter", -2, ["readonly"], ALL_KEYS, "set", "1.0.0", "Returns the intersect of multiple sets.";
    Sunion "sunion", -2, ["readonly"], ALL_KEYS, "set", "1.0.0", "Returns the union of multiple sets.";
    Sdiff "sdiff", -2, ["readonly"], ALL_KEYS, "set", "1.0.0", "Returns the difference of multiple sets.";
    Sinterstore "sinterstore", -3, ["write", "denyoom"], ALL_KEYS, "set", "1.0.0", "Stores the intersect of multiple sets in a key.";
    Sunionstore "sunionstore", -3, ["write", "denyoom"], ALL_KEYS, "set", "1.0.0", "Stores the union of multiple sets in a key.";
    Sdiffstore "sdiffstore", -3, ["write", "denyoom"], ALL_KEYS, "set", "1.0.0", "Stores the difference of multiple sets in a key.";
    Sscan "sscan", -3, ["readonly"], ONE_KEY, "set", "2.8.0", "Iterates over members of a set.";
    // Sorted sets.
    Zadd "zadd", -4, ["write", "denyoom", "fast"], ONE_KEY, "sorted-set", "1.2.0", "Adds one or more members to a sorted set, or updates their scores. Creates the key if it doesn't exist.";
    Zincrby "zincrby", 4, ["write", "denyoom", "fast"], ONE_KEY, "sorted-set", "1.2.0", "Increments the score of a member in a sorted set.";
    Zrem "zrem", -3, ["write", "fast"], ONE_KEY, "sorted-set", "1.2.0", "Removes one or more members from a sorted set. Deletes the sorted set if all members were removed.";
    Zcard "zcard", 2, ["readonly", "fast"], ONE_KEY, "sorted-set", "1.2.0", "Returns the number of members in a sorted set.";
    Zscore "zscore", 3, ["readonly", "fast"], ONE_KEY, "sorted-set", "1.2.0", "Returns the score of a member in a sorted set.";
    Zmscore "zmscore", -3, ["readonly", "fast"], ONE_KEY, "sorted-set", "6.2.0", "Returns the score of one or more members in a sorted set.";
    Zrank "zrank", -3, ["readonly", "fast"], ONE_KEY, "sorted-set", "2.0.0", "Returns the index of a member in a sorted set ordered by ascending scores.";
    Zrevrank "zrevrank", -3, ["readonly", "fast"], ONE_KEY, "sorted-set", "2.0.0", "Returns the index of a member in a sorted set ordered by descending scores.";
    Zcount "zcount", 4, ["readonly", "fast"], ONE_KEY, "sorted-set", "2.0.0", "Returns the count of members in a sorted set that have scores within a range.";
    Zlexcount "zlexcount", 4, ["readonly", "fast"], ONE_KEY, "sorted-set", "2.8.9", "Returns the number of members in a sorted set within a lexicographical range.";
    Zrange "zrange", -4, ["readonly"], ONE_KEY, "sorted-set", "1.2.0", "Returns members in a sorted set within a range of indexes.";
    Zrangestore "zrangestore", -5, ["write", "denyoom"], TWO_KEYS, "sorted-set", "6.2.0", "Stores a range of members from sorted set in a key.";
    Zrangebyscore "zrangebyscore", -4, ["readonly"], ONE_KEY, "sorted-set", "1.0.5", "Returns members in a sorted set within a range of scores.";
    Zrevrangebyscore "zrevrangebyscore", -4, ["readonly"], ONE_KEY, "sorted-set", "2.2.0", "Returns members in a sorted set within a range of scores in reverse order.";
    Zrangebylex "zrangebylex", -4, ["readonly"], ONE_KEY, "sorted-set", "2.8.9", "Returns members in a sorted set within a lexicographical range.";
    Zrevrangebylex "zrevrangebylex", -4, ["readonly"], ONE_KEY, "sorted-set", "2.8.9", "Returns members in a sorted set within a lexicographical range in reverse order.";
    Zrevrange "zrevrange", -4, ["readonly"], ONE_KEY, "sorted-set", "1.2.0", "Returns members in a sorted set within a range of indexes in reverse order.";
    Zremrangebyrank "zremrangebyrank", 4, ["write"], ONE_KEY, "sorted-set", "2.0.0", "Removes members in a sorted set within a range of indexes. Deletes the sorted set if all members were removed.";
    Zremrangebyscore "zremrangebyscore", 4, ["write"], ONE_KEY, "sorted-set", "1.2.0", "Removes members in a sorted set within a range of scores. Deletes the sorted set if all members were removed.";
    Zremrangebylex "zremrangebylex", 4, ["write"], ONE_KEY, "sorted-set", "2.8.9", "Removes members in a sorted set within a lexicographical range. Deletes the sorted set if all members were removed.";
    Zpopmin "zpopmin", -2, ["write", "fast"], ONE_KEY, "sorted-set", "5.0.0", "Returns the lowest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.";
    Zpopmax "zpopmax", -2, ["write", "fast"], ONE_KEY, "sorted-set", "5.0.0", "Returns the highest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.";
    Zrandmember "zrandmember", -2, ["readonly"], ONE_KEY, "sorted-set", "6.2.0", "Returns one or more random members from a sorted set.";
    Zscan "zscan", -3, ["readonly"], ONE_KEY, "sorted-set", "2.8.0", "Iterates over members and scores of a sorted set.";
    // Generic key commands.
    Del "del", -2, ["write"], ALL_KEYS, "generic", "1.0.0", "Deletes one or more keys.";
    Unlink "unlink", -2, ["write", "fast"], ALL_KEYS, "generic", "4.0.0", "Asynchronously deletes one or more keys.";
    Exists "exists", -2, ["readonly", "fast"], ALL_KEYS, "generic", "1.0.0", "Determines whether one or more keys exist.";
    Touch "touch", -2, ["readonly", "fast"], ALL_KEYS, "generic", "3.2.1", "Returns the number of existing keys out of those specified after updating the time they were last accessed.";
    Type "type", 2, ["readonly", "fast"], ONE_KEY, "generic", "1.0.0", "Determines the type of value stored at a key.";
    Keys "keys", 2, ["readonly"], NO_KEYS, "generic", "1.0.0", "Returns all key names that match a pattern.";
    Scan "scan", -2, ["readonly"], NO_KEYS, "generic", "2.8.0", "Iterates over the key names in the database.";
    Randomkey "randomkey", 1, ["readonly"], NO_KEYS, "generic", "1.0.0", "Returns a random key name from the database.";
    Rename "rename", 3, ["write"], TWO_KEYS, "generic", "1.0.0", "Renames a key and overwrites the destination.";
    Renamenx "renamenx", 3, ["write", "fast"], TWO_KEYS, "generic", "1.0.0", "Renames a key only when the target key name doesn't exist.";
    Copy "copy", -3, ["write", "denyoom"], TWO_KEYS, "generic", "6.2.0", "Copies the value of a key to a new key.";
    Move "move", 3, ["write", "fast"], ONE_KEY, "generic", "1.0.0", "Moves a key to another database.";
    Expire "expire", -3, ["write", "fast"], ONE_KEY, "generic", "1.0.0", "Sets the expiration time of a key in seconds.";
    Pexpire "pexpire", -3, ["write", "fast"], ONE_KEY, "generic", "2.6.0", "Sets the expiration time of a key in milliseconds.";
    Expireat "expireat", -3, ["write", "fast"], ONE_KEY, "generic", "1.2.0", "Sets the expiration time of a key to a Unix timestamp.";
    Pexpireat "pexpireat", -3, ["write", "fast"], ONE_KEY, "generic", "2.6.0", "Sets the expiration time of a key to a Unix milliseconds timestamp.";
    Ttl "ttl", 2, ["readonly", "fast"], ONE_KEY, "generic", "1.0.0", "Returns the expiration time in seconds of a key.";
    Pttl "pttl", 2, ["readonly", "fast"], ONE_KEY, "generic", "2.6.0", "Returns the expiration time in milliseconds of a key.";
    Expiretime "expiretime", 2, ["readonly", "fast"], ONE_KEY, "generic", "7.0.0", "Returns the expiration time of a key as a Unix timestamp.";
    Pexpiretime "pexpiretime", 2, ["readonly", "fast"], ONE_KEY, "generic", "7.0.0", "Returns the expiration time of a key as a Unix milliseconds timestamp.";
    Persist "persist", 2, ["write", "fast"], ONE_KEY, "generic", "2.2.0", "Removes the expiration time of a key.";
    Object "object", -2, ["readonly"], SECOND_KEY, "generic", "2.2.3", "A container for object introspection commands: OBJECT ENCODING, FREQ, IDLETIME, REFCOUNT, HELP.";
    Memory "memory", -2, ["readonly"], SECOND_KEY, "server", "4.0.0", "A container for memory diagnostics commands: MEMORY USAGE, HELP.";
    Wait "wait", 3, ["noscript"], NO_KEYS, "generic", "3.0.0", "Blocks until the asynchronous replication of all preceding write commands sent by the connection is completed.";
    // Connection.
    Ping "ping", -1, ["fast"], NO_KEYS, "connection", "1.0.0", "Returns the server's liveliness response.";
    Echo "echo", 2, ["fast"], NO_KEYS, "connection", "1.0.0", "Returns the given string.";
    Hello "hello", -1, ["noscript", "loading", "stale", "fast", "no-auth"], NO_KEYS, "connection", "6.0.0", "Handshakes with the Redis server.";
    Auth "auth", -2, ["noscript", "loading", "stale", "fast", "no-auth"], NO_KEYS, "connection", "1.0.0", "Authenticates the connection.";
    Select "select", 2, ["loading", "stale", "fast"], NO_KEYS, "connection", "1.0.0", "Changes the selected database.";
    Quit "quit", -1, ["noscript", "loading", "stale", "fast", "no-auth"], NO_KEYS, "connection", "1.0.0", "Closes the connection.";
    Reset "reset", 1, ["noscript", "loading", "stale", "fast", "no-auth"], NO_KEYS, "connection", "6.2.0", "Resets the connection.";
    Client "client", -2, ["loading", "stale"], NO_KEYS, "connection", "2.4.0", "A container for client connection commands.";
    // Transactions.
    Multi "multi", 1, ["noscript", "loading", "stale", "fast", "allow_busy"], NO_KEYS, "transactions", "1.2.0", "Starts a transaction.";
    Exec "exec", 1, ["noscript", "loading", "stale", "skip_slowlog"], NO_KEYS, "transactions", "1.2.0", "Executes all commands in a transaction.";
    Discard "discard", 1, ["noscript", "loading", "stale", "fast", "allow_busy"], NO_KEYS, "transactions", "2.0.0", "Discards a transaction.";
    Watch "watch", -2, ["noscript", "loading", "stale", "fast", "allow_busy"], ALL_KEYS, "transactions", "2.2.0", "Monitors changes to keys to determine the execution of a transaction.";
    Unwatch "unwatch", 1, ["noscript", "loading", "stale", "fast", "allow_busy"], NO_KEYS, "transactions", "2.2.0", "Forgets about watched keys of a transaction.";
    // Scripting.
    Eval "eval", -3, ["noscript", "stale", "skip_monitor", "may_replicate", "no_mandatory_keys", "movablekeys"], NUMKEYS, "scripting", "2.6.0", "Executes a server-side Lua script.";
    Evalsha "evalsha", -3, ["noscript", "stale", "skip_monitor", "may_replicate", "no_mandatory_keys", "movablekeys"], NUMKEYS, "scripting", "2.6.0", "Executes a server-side Lua script by SHA1 digest.";
    EvalRo "eval_ro", -3, ["readonly", "noscript", "stale", "skip_monitor", "no_mandatory_keys", "movablekeys"], NUMKEYS, "scripting", "7.0.0", "Executes a read-only server-side Lua script.";
    EvalshaRo "evalsha_ro", -3, ["readonly", "noscript", "stale", "skip_monitor", "no_mandatory_keys", "movablekeys"], NUMKEYS, "scripting", "7.0.0", "Executes a read-only server-side Lua script by SHA1 digest.";
    Script "script", -2, ["noscript"], NO_KEYS, "scripting", "2.6.0", "A container for Lua scripts management commands: SCRIPT LOAD, EXISTS, FLUSH, KILL.";
    // Pub/sub. Channels are not keys: they are not placed on the ring, every node
    // relays every message (sharded channels too), so these run where they are sent.
    Subscribe "subscribe", -2, ["pubsub", "noscript", "loading", "stale"], NO_KEYS, "pubsub", "2.0.0", "Listens for messages published to channels.";
    Unsubscribe "unsubscribe", -1, ["pubsub", "noscript", "loading", "stale"], NO_KEYS, "pubsub", "2.0.0", "Stops listening to messages posted to channels.";
    Psubscribe "psubscribe", -2, ["pubsub", "noscript", "loading", "stale"], NO_KEYS, "pubsub", "2.0.0", "Listens for messages published to channels that match one or more patterns.";
    Punsubscribe "punsubscribe", -1, ["pubsub", "noscript", "loading", "stale"], NO_KEYS, "pubsub", "2.0.0", "Stops listening to messages published to channels that match one or more patterns.";
    Ssubscribe "ssubscribe", -2, ["pubsub", "noscript", "loading", "stale"], NO_KEYS, "pubsub", "7.0.0", "Listens for messages published to shard channels.";
    Sunsubscribe "sunsubscribe", -1, ["pubsub", "noscript", "loading", "stale"], NO_KEYS, "pubsub", "7.0.0", "Stops listening to messages posted to shard channels.";
    Publish "publish", 3, ["pubsub", "loading", "stale", "fast"], NO_KEYS, "pubsub", "2.0.0", "Posts a message to a channel.";
    Spublish "spublish", 3, ["pubsub", "loading", "stale", "fast"], NO_KEYS, "pubsub", "7.0.0", "Post a message to a shard channel";
    Pubsub "pubsub", -2, ["loading", "stale"], NO_KEYS, "pubsub", "2.8.0", "A container for Pub/Sub commands: PUBSUB CHANNELS, NUMSUB, NUMPAT, SHARDCHANNELS, SHARDNUMSUB.";
    // Server.
    Command "command", -1, ["loading", "stale"], NO_KEYS, "server", "2.8.13", "Returns detailed information about all commands.";
    Info "info", -1, ["loading", "stale"], NO_KEYS, "server", "1.0.0", "Returns information and statistics about the server.";
    Config "config", -2, ["admin", "loading", "stale"], NO_KEYS, "server", "2.0.0", "A container for server configuration commands.";
    Dbsize "dbsize", 1, ["readonly", "fast"], NO_KEYS, "server", "1.0.0", "Returns the number of keys in the database.";
    Flushall "flushall", -1, ["write"], NO_KEYS, "server", "1.0.0", "Removes all keys from all databases.";
    Flushdb "flushdb", -1, ["write"], NO_KEYS, "server", "1.0.0", "Remove all keys from the current database.";
    Time "time", 1, ["loading", "stale", "fast"], NO_KEYS, "server", "2.6.0", "Returns the server time.";
    Acl "acl", -2, ["loading", "stale"], NO_KEYS, "server", "6.0.0", "A container for Access List Control commands: ACL LOG, ACL WHOAMI.";
    // quorra's own.
    Quorra "quorra", -2, ["loading", "stale"], NO_KEYS, "server", "0.1.0", "Shows the cluster, its hot keys and the namespaces as this node sees them: QUORRA NODES, RING, OWNERS key, FORGET node, LEAVE, CONSISTENCY, HOTKEYS, NAMESPACES.";
}

impl CommandId {
    /// What the command table says about this command.
    pub fn info(self) -> &'static CommandInfo {
        &COMMANDS[self as usize]
    }

    /// The command's position in [`COMMANDS`] (for per-command counters).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Longest command name in the table; longer names cannot match.
const MAX_NAME_LEN: usize = 16;

/// The commands grouped by name length and first letter (lower-cased, `& 31`): a name is
/// compared, ignoring case, with the one to three names of its group. Every request looks
/// its command up; this costs a fraction of hashing the lower-cased name.
struct ByShape {
    /// Ids sorted by (length, first letter).
    ids: Vec<CommandId>,
    /// For each (length, first letter): the range of `ids` holding that shape.
    ranges: Vec<(u16, u16)>,
}

fn shape(len: usize, first: u8) -> usize {
    len * 32 + usize::from(first.to_ascii_lowercase() & 31)
}

static BY_SHAPE: LazyLock<ByShape> = LazyLock::new(|| {
    let mut ids: Vec<CommandId> = COMMANDS
        .iter()
        .map(|info| {
            assert!(
                info.name.len() <= MAX_NAME_LEN,
                "raise MAX_NAME_LEN for {}",
                info.name
            );
            info.id
        })
        .collect();
    let shape_of = |id: &CommandId| shape(id.info().name.len(), id.info().name.as_bytes()[0]);
    ids.sort_by_key(shape_of);
    let mut ranges = vec![(0u16, 0u16); shape(MAX_NAME_LEN + 1, 0)];
    for (at, id) in ids.iter().enumerate() {
        let range = &mut ranges[shape_of(id)];
        if range.0 == range.1 {
            range.0 = at as u16;
        }
        range.1 = at as u16 + 1;
    }
    ByShape { ids, ranges }
});

/// The command called `name`, in any case.
#[inline]
pub fn lookup(name: &[u8]) -> Option<CommandId> {
    let (&first, _) = name.split_first()?;
    if name.len() > MAX_NAME_LEN {
        return None;
    }
    let table = &*BY_SHAPE;
    let (start, end) = table.ranges[shape(name.len(), first)];
    table.ids[usize::from(start)..usize::from(end)]
        .iter()
        .copied()
        .find(|id| id.info().name.as_bytes().eq_ignore_ascii_case(name))
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

/// The keys of the request `args` (name first), from the table's key positions; none
/// for an unknown command or one without keys.
pub fn keys_of<A>(args: &[A]) -> impl Iterator<Item = &A>
where
    A: AsRef<[u8]>,
{
    key_positions(args).map(move |position| &args[position])
}

/// The positions in `args` of the request's keys (see [`keys_of`]).
pub fn key_positions<A>(args: &[A]) -> std::iter::StepBy<std::ops::Range<usize>>
where
    A: AsRef<[u8]>,
{
    let (first, last, step) = args
        .first()
        .and_then(|name| lookup(name.as_ref()))
        .map_or((0, 0, 1), |id| id.info().keys);
    if (first, last, step) == NUMKEYS {
        // A count that is not a number, negative or too large: no keys (the command
        // refuses it).
        let count = args
            .get(2)
            .and_then(|count| crate::number::parse_i64(count.as_ref()))
            .and_then(|count| usize::try_from(count).ok())
            .filter(|&count| count <= args.len().saturating_sub(3))
            .unwrap_or(0);
        let first = 3.min(args.len());
        return (first..first + count).step_by(1);
    }
    let end = if last < 0 {
        args.len()
    } else {
        (last as usize + 1).min(args.len())
    };
    let start = match first as usize {
        0 => 0,
        first => first.min(end),
    };
    let end = if first == 0 { 0 } else { end };
    (start..end).step_by(step.max(1) as usize)
}

// SET's and GETEX's options: one family, which clients encode (`Command::Set`), the
// server parses into and the store executes (`quorra_store` re-exports them).

/// SET's `NX` / `XX` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetCondition {
    /// Write unconditionally.
    #[default]
    Always,
    /// `NX`: only if the key does not exist.
    IfAbsent,
    /// `XX`: only if the key exists.
    IfPresent,
}

/// SET's expiry option. Relative and absolute times must be > 0 (Redis's rule, which
/// the store checks and answers with `ERR invalid expire time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetExpiry {
    /// No option: the new value has no TTL (an old TTL is discarded).
    #[default]
    None,
    /// `KEEPTTL`: keep the existing TTL, if any.
    KeepTtl,
    /// `EX` seconds.
    Ex(i64),
    /// `PX` milliseconds.
    Px(i64),
    /// `EXAT` Unix seconds.
    ExAt(i64),
    /// `PXAT` Unix milliseconds.
    PxAt(i64),
}

/// SET's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetOptions {
    /// `NX` / `XX`.
    pub condition: SetCondition,
    /// `EX` / `PX` / `EXAT` / `PXAT` / `KEEPTTL`.
    pub expiry: SetExpiry,
    /// `GET`: reply with the previous value instead of `OK`.
    pub get: bool,
}

/// Why a command's options do not parse (the server answers with Redis's text for each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionError {
    /// An unknown, repeated or conflicting option, or one missing its value
    /// (`ERR syntax error`).
    Syntax,
    /// An option's value is not an integer (`ERR value is not an integer or out of
    /// range`).
    NotAnInteger,
}

/// The value after an option such as `EX`: the next argument, as an integer.
fn option_value<A: AsRef<[u8]>>(
    rest: &mut std::slice::Iter<'_, A>,
    make: fn(i64) -> SetExpiry,
) -> Result<SetExpiry, OptionError> {
    let value = rest.next().ok_or(OptionError::Syntax)?;
    let value = crate::number::parse_i64(value.as_ref()).ok_or(OptionError::NotAnInteger)?;
    Ok(make(value))
}

impl SetOptions {
    /// Parses SET's options (the arguments after the key and the value) as Redis does:
    /// each at most once, `NX` and `XX` exclusive, one expiry. The inverse of how
    /// [`Command::Set`] encodes them.
    pub fn parse<A: AsRef<[u8]>>(options: &[A]) -> Result<SetOptions, OptionError> {
        let mut parsed = SetOptions::default();
        let mut rest = options.iter();
        while let Some(option) = rest.next() {
            let option = option.as_ref();
            let is = |word: &str| option.eq_ignore_ascii_case(word.as_bytes());
            let no_expiry_yet = parsed.expiry == SetExpiry::None;
            let always = parsed.condition == SetCondition::Always;
            if is("NX") && always {
                parsed.condition = SetCondition::IfAbsent;
            } else if is("XX") && always {
                parsed.condition = SetCondition::IfPresent;
            } else if is("GET") && !parsed.get {
                parsed.get = true;
            } else if is("KEEPTTL") && no_expiry_yet {
                parsed.expiry = SetExpiry::KeepTtl;
            } else if is("EX") && no_expiry_yet {
                parsed.expiry = option_value(&mut rest, SetExpiry::Ex)?;
            } else if is("PX") && no_expiry_yet {
                parsed.expiry = option_value(&mut rest, SetExpiry::Px)?;
            } else if is("EXAT") && no_expiry_yet {
                parsed.expiry = option_value(&mut rest, SetExpiry::ExAt)?;
            } else if is("PXAT") && no_expiry_yet {
                parsed.expiry = option_value(&mut rest, SetExpiry::PxAt)?;
            } else {
                return Err(OptionError::Syntax);
            }
        }
        Ok(parsed)
    }
}

/// GETEX's expiry option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GetExExpiry {
    /// No option: leave the TTL alone.
    #[default]
    Keep,
    /// `PERSIST`: remove the TTL.
    Persist,
    /// `EX` seconds.
    Ex(i64),
    /// `PX` milliseconds.
    Px(i64),
    /// `EXAT` Unix seconds.
    ExAt(i64),
    /// `PXAT` Unix milliseconds.
    PxAt(i64),
}

/// The unit of an EXPIRE-family TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlUnit {
    /// Seconds (EXPIRE, TTL).
    Seconds,
    /// Milliseconds (PEXPIRE, PTTL).
    Millis,
}

/// A request as a typed value, for clients and the load generator. [`Command::encode`]
/// writes the RESP array Redis expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `PING`.
    Ping,
    /// `AUTH [username] password`.
    Auth {
        /// The ACL user; `None` for the default user (`requirepass`).
        username: Option<&'a str>,
        /// The password.
        password: &'a str,
    },
    /// `HELLO protover`: switch to RESP2 or RESP3.
    Hello {
        /// 2 or 3.
        protover: u8,
    },
    /// `GET key`.
    Get {
        /// The key.
        key: &'a [u8],
    },
    /// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`.
    Set {
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
        /// Condition, expiry, GET.
        options: SetOptions,
    },
    /// `GETDEL key`.
    GetDel {
        /// The key.
        key: &'a [u8],
    },
    /// `MGET key [key ...]`.
    MGet {
        /// The keys, at least one.
        keys: &'a [&'a [u8]],
    },
    /// `MSET key value [key value ...]`.
    MSet {
        /// The pairs, at least one.
        pairs: &'a [(&'a [u8], &'a [u8])],
    },
    /// `DEL key [key ...]`.
    Del {
        /// The keys, at least one.
        keys: &'a [&'a [u8]],
    },
    /// `EXISTS key [key ...]`.
    Exists {
        /// The keys, at least one.
        keys: &'a [&'a [u8]],
    },
    /// `EXPIRE key seconds` or `PEXPIRE key milliseconds`.
    Expire {
        /// The key.
        key: &'a [u8],
        /// The TTL.
        ttl: u64,
        /// Its unit.
        unit: TtlUnit,
    },
    /// `TTL key` or `PTTL key`.
    Ttl {
        /// The key.
        key: &'a [u8],
        /// The unit of the reply.
        unit: TtlUnit,
    },
    /// `INCRBY key increment`.
    IncrBy {
        /// The key.
        key: &'a [u8],
        /// The increment (negative to decrement).
        by: i64,
    },
}

impl Command<'_> {
    /// Which command this is.
    pub fn id(&self) -> CommandId {
        match self {
            Command::Ping => CommandId::Ping,
            Command::Auth { .. } => CommandId::Auth,
            Command::Hello { .. } => CommandId::Hello,
            Command::Get { .. } => CommandId::Get,
            Command::Set { .. } => CommandId::Set,
            Command::GetDel { .. } => CommandId::Getdel,
            Command::MGet { .. } => CommandId::Mget,
            Command::MSet { .. } => CommandId::Mset,
            Command::Del { .. } => CommandId::Del,
            Command::Exists { .. } => CommandId::Exists,
            Command::Expire {
                unit: TtlUnit::Seconds,
                ..
            } => CommandId::Expire,
            Command::Expire {
                unit: TtlUnit::Millis,
                ..
            } => CommandId::Pexpire,
            Command::Ttl {
                unit: TtlUnit::Seconds,
                ..
            } => CommandId::Ttl,
            Command::Ttl {
                unit: TtlUnit::Millis,
                ..
            } => CommandId::Pttl,
            Command::IncrBy { .. } => CommandId::Incrby,
        }
    }

    /// Appends the request, as a RESP array of bulk strings, to `buf`. The name goes out
    /// in lower case, as the table spells it (Redis ignores the case).
    pub fn encode(&self, buf: &mut BytesMut) {
        let name = self.id().info().name;
        let mut number = itoa::Buffer::new();
        match *self {
            Command::Ping => encode::command(buf, &[name]),
            Command::Auth { username, password } => match username {
                Some(user) => encode::command(buf, &[name, user, password]),
                None => encode::command(buf, &[name, password]),
            },
            Command::Hello { protover } => {
                encode::command(buf, &[name, number.format(protover)]);
            }
            Command::Get { key } | Command::GetDel { key } | Command::Ttl { key, .. } => {
                encode::command(buf, &[name.as_bytes(), key]);
            }
            Command::Set {
                key,
                value,
                options,
            } => encode_set(buf, name, key, value, options),
            Command::MGet { keys } | Command::Del { keys } | Command::Exists { keys } => {
                encode::array_header(buf, 1 + keys.len());
                encode::bulk(buf, name.as_bytes());
                for key in keys {
                    encode::bulk(buf, key);
                }
            }
            Command::MSet { pairs } => {
                encode::array_header(buf, 1 + 2 * pairs.len());
                encode::bulk(buf, name.as_bytes());
                for (key, value) in pairs {
                    encode::bulk(buf, key);
                    encode::bulk(buf, value);
                }
            }
            Command::Expire { key, ttl, .. } => {
                encode::command(buf, &[name.as_bytes(), key, number.format(ttl).as_bytes()]);
            }
            Command::IncrBy { key, by } => {
                encode::command(buf, &[name.as_bytes(), key, number.format(by).as_bytes()]);
            }
        }
    }
}

fn encode_set(buf: &mut BytesMut, name: &str, key: &[u8], value: &[u8], options: SetOptions) {
    let condition: Option<&[u8]> = match options.condition {
        SetCondition::Always => None,
        SetCondition::IfAbsent => Some(b"NX"),
        SetCondition::IfPresent => Some(b"XX"),
    };
    let (unit, amount): (Option<&[u8]>, Option<i64>) = match options.expiry {
        SetExpiry::None => (None, None),
        SetExpiry::Ex(n) => (Some(b"EX"), Some(n)),
        SetExpiry::Px(n) => (Some(b"PX"), Some(n)),
        SetExpiry::ExAt(n) => (Some(b"EXAT"), Some(n)),
        SetExpiry::PxAt(n) => (Some(b"PXAT"), Some(n)),
        SetExpiry::KeepTtl => (Some(b"KEEPTTL"), None),
    };
    let len = 3
        + usize::from(condition.is_some())
        + usize::from(options.get)
        + usize::from(unit.is_some())
        + usize::from(amount.is_some());
    encode::array_header(buf, len);
    encode::bulk(buf, name.as_bytes());
    encode::bulk(buf, key);
    encode::bulk(buf, value);
    if let Some(condition) = condition {
        encode::bulk(buf, condition);
    }
    if options.get {
        encode::bulk(buf, b"GET");
    }
    if let Some(unit) = unit {
        encode::bulk(buf, unit);
    }
    if let Some(amount) = amount {
        encode::bulk(buf, itoa::Buffer::new().format(amount).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_found_in_any_case_and_ids_match_positions() {
        let names: std::collections::HashSet<_> = COMMANDS.iter().map(|info| info.name).collect();
        assert_eq!(names.len(), COMMANDS.len(), "names are unique");
        assert_eq!(BY_SHAPE.ids.len(), COMMANDS.len());
        for (index, info) in COMMANDS.iter().enumerate() {
            assert_eq!(info.id.index(), index);
            assert_eq!(lookup(info.name.to_uppercase().as_bytes()), Some(info.id));
            assert_eq!(lookup(info.name.as_bytes()), Some(info.id));
            // A name one letter longer is no command (unless it is one: LPUSH, LPUSHX).
            let mut longer = info.name.to_owned();
            longer.push('x');
            if !names.contains(longer.as_str()) {
                assert_eq!(lookup(longer.as_bytes()), None);
            }
        }
        assert_eq!(lookup(b"gex"), None);
        assert_eq!(lookup(b"\xff\xff\xff"), None);
        assert_eq!(lookup(b"nosuchcommand"), None);
        assert_eq!(lookup(&[b'a'; 100]), None);
        assert_eq!(lookup(b""), None);
    }

    #[test]
    fn keys_come_from_the_table_positions() {
        fn keys(text: &str) -> Vec<&str> {
            let args: Vec<&str> = text.split(' ').collect();
            keys_of(&args).copied().collect()
        }
        assert_eq!(keys("SET k v EX 10"), ["k"]);
        assert_eq!(keys("MSET a 1 b 2"), ["a", "b"]);
        assert_eq!(keys("DEL a b c"), ["a", "b", "c"]);
        assert_eq!(keys("RENAME a b"), ["a", "b"]);
        assert!(keys("PING").is_empty() && keys("NOSUCH a").is_empty());
        assert!(
            keys("GET").is_empty(),
            "wrong arity has no keys, and no panic"
        );
        assert!(keys_of::<&str>(&[]).next().is_none());
        // EVAL's keys are counted by its second argument.
        assert_eq!(keys("EVAL body 2 a b x y"), ["a", "b"]);
        assert_eq!(keys("EVALSHA sha 1 a x"), ["a"]);
        assert!(keys("EVAL body 0 x").is_empty());
        for bad in [
            "EVAL body 3 a b",
            "EVAL body -1 a",
            "EVAL body x a",
            "EVAL body",
        ] {
            assert!(keys(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn arity_follows_redis() {
        assert!(arity_ok(2, 2) && !arity_ok(2, 3) && !arity_ok(2, 1));
        assert!(arity_ok(-3, 3) && arity_ok(-3, 9) && !arity_ok(-3, 2));
    }
}
