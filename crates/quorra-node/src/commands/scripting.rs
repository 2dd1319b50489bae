//! Scripting: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT LOAD | EXISTS | FLUSH |
//! KILL, with Redis's replies and error texts. The interpreter is [`crate::lua`]'s.
//!
//! A script runs inside the store's exclusive section, as a transaction does: no other
//! command of the node runs between its commands. Its `redis.call`s go through
//! [`run`] like any command, in RESP2 as in Redis. In a cluster a script runs at its
//! keys' primary (the plan routes EVAL by its declared `KEYS`), its writes are copied as
//! one batch, and it may touch only the keys it declares: those are the keys the plan
//! routed and replication copies.
//!
//! A script runs in its client's database: its `KEYS` are the client's keys, and each of
//! its commands is scoped to the database like a client's ([`crate::databases`]). A
//! SELECT inside it lasts until it ends, as in Redis 7.

use bytes::{Bytes, BytesMut};
use quorra_resp::Protocol;
use quorra_ring::database;

use super::{CommandError, Ctx, enter_exclusive, int_arg, is, keys_of, run};
use crate::accounting::Lookups;
use crate::databases;
use crate::lua::{self, Kill, Script};

/// EVALSHA's answer for a SHA1 the node does not have.
pub const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";

/// `EVAL script numkeys [key ...] [arg ...]`
pub fn eval(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    run_script(ctx, args, false, false)
}

/// `EVALSHA sha1 numkeys [key ...] [arg ...]`
pub fn evalsha(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    run_script(ctx, args, true, false)
}

/// `EVAL_RO script numkeys [key ...] [arg ...]`
pub fn eval_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    run_script(ctx, args, false, true)
}

/// `EVALSHA_RO sha1 numkeys [key ...] [arg ...]`
pub fn evalsha_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    run_script(ctx, args, true, true)
}

/// The number of keys of an EVAL-family command, checked as Redis checks it.
fn numkeys(args: &[Bytes]) -> Result<usize, CommandError> {
    let count = int_arg(&args[2])?;
    if count < 0 {
        return Err(CommandError::new("ERR Number of keys can't be negative"));
    }
    usize::try_from(count)
        .ok()
        .filter(|&count| count <= args.len() - 3)
        .ok_or_else(|| CommandError::new("ERR Number of keys can't be greater than number of args"))
}

fn run_script(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    by_sha: bool,
    read_only: bool,
) -> Result<(), CommandError> {
    let count = numkeys(args)?;
    let shared = ctx.shared;
    let (sha, body) = match by_sha {
        true => {
            let body = shared
                .scripts
                .get(&args[1])
                .ok_or(CommandError::new(NOSCRIPT))?;
            (String::from_utf8_lossy(&args[1]).to_ascii_lowercase(), body)
        }
        false => (shared.scripts.load(&args[1]).0, args[1].clone()),
    };
    let (keys, argv) = args[3..].split_at(count);
    // Inside a transaction's EXEC the section is held already.
    let _section = match ctx.session.in_exclusive_section {
        true => None,
        false => Some(enter_exclusive(shared)?),
    };
    let declared_only = shared.cluster.is_some();
    let mut lookups = Lookups::default();
    let protocol = ctx.session.protocol;
    let result = ctx.session.inside_exclusive_section(|session| {
        // Commands of a script answer in RESP2, as in Redis.
        session.protocol = Protocol::Resp2;
        // A script's SELECT lasts until the script ends, as in Redis 7.
        let db = session.db;
        let mut runner = |command: &[Bytes]| -> Result<Bytes, String> {
            let scoped = databases::scope(session.db, command);
            let command = scoped.as_deref().unwrap_or(command);
            if declared_only
                && let Some(key) = keys_of(command)
                    .cloned()
                    .chain(databases::other_database_key(command))
                    .find(|key| !keys.contains(key))
            {
                return Err(format!(
                    "ERR Script attempted to access key '{}', which is not in its KEYS: in a \
                     cluster a script may use only the keys it declares",
                    String::from_utf8_lossy(database::user_key(&key))
                ));
            }
            let mut reply = BytesMut::new();
            lookups.add(run(shared, session, &mut reply, command).lookups);
            Ok(reply.freeze())
        };
        // The script sees its keys as the client named them.
        let client_keys: Vec<Bytes> = keys.iter().map(databases::client_key).collect();
        let script = Script {
            body: &body,
            sha: &sha,
            keys: &client_keys,
            argv,
            read_only,
        };
        let result = lua::run(&shared.scripts, &script, &mut runner, protocol);
        session.protocol = protocol;
        session.select(db);
        result
    });
    ctx.lookups.add(lookups);
    let reply = result.map_err(CommandError::new)?;
    ctx.out.extend_from_slice(&reply);
    Ok(())
}

/// `SCRIPT LOAD script | EXISTS sha1 [sha1 ...] | FLUSH [ASYNC|SYNC] | KILL | HELP`
pub fn script(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let sub = String::from_utf8_lossy(&args[1]).to_lowercase();
    let scripts = &ctx.shared.scripts;
    match (sub.as_str(), args.len()) {
        ("load", 3) => match scripts.load(&args[2]) {
            (sha, true) => ctx.bulk(sha.as_bytes()),
            (_, false) => {
                return Err(CommandError::new(format!(
                    "ERR the script cache is full: at most {} scripts (max-scripts)",
                    ctx.shared.config.max_scripts
                )));
            }
        },
        ("exists", n) if n >= 3 => {
            let found = scripts.exists(&args[2..]);
            ctx.array(found.len());
            for found in found {
                ctx.int(i64::from(found));
            }
        }
        ("flush", 2) => {
            scripts.flush();
            ctx.ok();
        }
        ("flush", 3) if is(&args[2], "ASYNC") || is(&args[2], "SYNC") => {
            scripts.flush();
            ctx.ok();
        }
        ("flush", 3) => return Err(CommandError::syntax()),
        ("kill", 2) => match scripts.kill() {
            Kill::Stopping => ctx.ok(),
            Kill::NotBusy => {
                return Err(CommandError::new(
                    "NOTBUSY No scripts in execution right now.",
                ));
            }
            Kill::Unkillable => {
                return Err(CommandError::new(
                    "UNKILLABLE Sorry the script already executed write commands against the \
                     dataset. You can either wait the script termination or kill the server in \
                     a hard way using the SHUTDOWN NOSAVE command.",
                ));
            }
        },
        ("help", 2) => super::help(
            ctx,
            "SCRIPT",
            &[
                (
                    "EXISTS <sha1> [<sha1> ...]",
                    &["Return information about the existence of the scripts in the script cache."],
                ),
                (
                    "FLUSH [ASYNC|SYNC]",
                    &["Flush the Lua scripts cache. Very dangerous on replicas."],
                ),
                ("KILL", &["Kill the currently executing Lua script."]),
                (
                    "LOAD <script>",
                    &["Load a script into the scripts cache without executing it."],
                ),
            ],
        ),
        ("load" | "exists" | "flush" | "kill" | "help", _) => {
            return Err(CommandError::arity(&format!("script|{sub}")));
        }
        _ => {
            return Err(super::unknown_subcommand("SCRIPT", &args[1]));
        }
    }
    Ok(())
}
