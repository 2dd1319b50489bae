//! The Lua engine behind EVAL: Lua 5.1 (the version Redis embeds, through mlua with its
//! own copy of the interpreter), sandboxed as Redis sandboxes it, with Redis's `redis`
//! library and its conversions between Lua and RESP values.
//!
//! - **Sandbox.** The base, table, string and math libraries only (no `os`, `io`,
//!   `package`, `debug`; no `print`, `dofile`, `loadfile`, `require`). Globals are read
//!   only: creating one is `Attempt to modify a readonly table`, reading a missing one
//!   `Script attempted to access nonexistent global variable`, as in Redis 7.
//! - **`redis` library.** `call` and `pcall` (which run a command through the caller's
//!   [`Runner`] — the node's one command path — after Redis's checks: unknown command,
//!   `noscript` commands, writes from a read-only script), `error_reply`,
//!   `status_reply`, `sha1hex`, `log` and its levels.
//! - **Conversions**, both ways, as Redis documents them: integer ↔ number, bulk ↔
//!   string, nil bulk → `false`, array ↔ table, status → `{ok=...}`, error →
//!   `{err=...}`; a returned number is truncated to an integer, `true` is 1, `false`
//!   and `nil` are nil.
//! - **Errors** carry Redis's suffix: ` script: <sha1>, on @user_script:<line>.`
//! - **Other work goes on.** A script runs on the runtime worker that received it. One
//!   that runs past [`HAND_OFF_AFTER`] gives that worker's other tasks, and the I/O
//!   driver it may be the one to poll, to another thread (tokio's `block_in_place`), so
//!   that peers and new clients are still served while it runs. Not sooner: handing off
//!   costs more than most scripts take (EVAL `return 1` went from 133,000 to 35,000
//!   requests/s when every script did it).
//! - **Memory.** Each thread's interpreter allocates at most `lua-max-memory`; a script
//!   past it fails with Lua's "not enough memory", and the next one runs.
//! - **Time budget.** Every 100,000 instructions the script checks [`Scripts`]: past the
//!   busy threshold it marks the node busy (other clients get `BUSY`), and a
//!   SCRIPT KILL stops it — unless it has written, since its writes cannot be undone.
//!
//! One interpreter per thread, created on first use, with the scripts it compiled cached
//! by their SHA1 — at most `max-scripts` of them, and none kept across a SCRIPT FLUSH; the engine itself never runs a command, so it does not depend on how
//! or where the node runs it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mlua::{HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};
use parking_lot::Mutex;
use quorra_resp::command::lookup;
use quorra_resp::{Frame, Limits, Protocol, encode, parse_frame};
use sha1::{Digest, Sha1};

/// Instructions between two checks of the script's time.
const CHECK_EVERY_INSTRUCTIONS: u32 = 100_000;

/// How long a script runs before its worker's other tasks move to another thread.
pub const HAND_OFF_AFTER: Duration = Duration::from_millis(100);

/// Checks at which a long script tries to hand its worker's tasks off; one is normally
/// enough (see [`hand_off_worker`]).
const HAND_OFF_ATTEMPTS: u32 = 5;

/// Moves the current runtime worker's tasks and I/O driver to another thread while the
/// script goes on here. tokio's `block_in_place` hands the worker over to a new thread
/// and takes it back when its closure returns, unless that thread has taken it by then:
/// the closure waits a millisecond for it to. Nothing to do outside a multi-threaded
/// runtime.
fn hand_off_worker() {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::try_current()
        .is_ok_and(|runtime| runtime.runtime_flavor() == RuntimeFlavor::MultiThread)
    {
        tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(1)));
    }
}

/// Runs one command of a script (its arguments, name first) and returns its RESP2
/// reply, or refuses it with an error text.
pub type Runner<'r> = dyn FnMut(&[Bytes]) -> Result<Bytes, String> + 'r;

/// The node's scripts: the SHA1-addressed cache SCRIPT LOAD and EVAL fill, and the
/// state of the script running now, which SCRIPT KILL and other clients see.
pub struct Scripts {
    bodies: Mutex<HashMap<String, Bytes>>,
    max_entries: usize,
    busy_after: Duration,
    /// Bytes each thread's interpreter may allocate.
    max_memory: u64,
    /// A script has run past `busy_after`: other clients get `BUSY`.
    busy: AtomicBool,
    /// SCRIPT KILL asked the running script to stop.
    kill: AtomicBool,
    /// The running script has written (it cannot be killed any more).
    wrote: AtomicBool,
    /// A script is running.
    running: AtomicBool,
    /// Bumped by SCRIPT FLUSH: interpreters drop their compiled scripts when it moves.
    generation: AtomicU64,
}

/// What SCRIPT KILL found.
#[derive(Debug, PartialEq, Eq)]
pub enum Kill {
    /// The script will stop at its next check.
    Stopping,
    /// No script is running.
    NotBusy,
    /// The script has written; it runs to its end.
    Unkillable,
}

impl Scripts {
    /// A cache of at most `max_entries` scripts; a script running longer than
    /// `busy_after` makes the node answer other clients `BUSY`; each thread's
    /// interpreter allocates at most `max_memory` bytes.
    pub fn new(max_entries: usize, busy_after: Duration, max_memory: u64) -> Scripts {
        Scripts {
            bodies: Mutex::new(HashMap::new()),
            max_entries,
            busy_after,
            max_memory,
            busy: AtomicBool::new(false),
            kill: AtomicBool::new(false),
            wrote: AtomicBool::new(false),
            running: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        }
    }

    /// Caches `body`: its SHA1, and whether it is cached (not when the cache is full).
    pub fn load(&self, body: &Bytes) -> (String, bool) {
        let sha = sha1_hex(body);
        let mut bodies = self.bodies.lock();
        let cached = bodies.contains_key(&sha) || bodies.len() < self.max_entries;
        if cached {
            bodies.entry(sha.clone()).or_insert_with(|| body.clone());
        }
        (sha, cached)
    }

    /// The script whose SHA1 (any case) is `sha`.
    pub fn get(&self, sha: &[u8]) -> Option<Bytes> {
        let sha = String::from_utf8_lossy(sha).to_ascii_lowercase();
        self.bodies.lock().get(&sha).cloned()
    }

    /// Whether each SHA1 is cached.
    pub fn exists(&self, shas: &[Bytes]) -> Vec<bool> {
        shas.iter().map(|sha| self.get(sha).is_some()).collect()
    }

    /// Forgets every script (SCRIPT FLUSH). Compiled copies are dropped by each thread
    /// the next time it runs a script.
    pub fn flush(&self) {
        self.bodies.lock().clear();
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// True while a script has run past the busy threshold.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// SCRIPT KILL.
    pub fn kill(&self) -> Kill {
        if !self.running.load(Ordering::Acquire) || !self.busy() {
            return Kill::NotBusy;
        }
        if self.wrote.load(Ordering::Acquire) {
            return Kill::Unkillable;
        }
        self.kill.store(true, Ordering::Release);
        Kill::Stopping
    }
}

/// SHA1 of `body`, in lower-case hex, as Redis names scripts.
pub fn sha1_hex(body: &[u8]) -> String {
    let digest = Sha1::digest(body);
    let mut hex = String::with_capacity(40);
    for byte in digest {
        hex.push(char::from_digit(u32::from(byte >> 4), 16).expect("a hex digit"));
        hex.push(char::from_digit(u32::from(byte & 15), 16).expect("a hex digit"));
    }
    hex
}

/// One script to run.
pub struct Script<'a> {
    /// Its source.
    pub body: &'a [u8],
    /// Its SHA1.
    pub sha: &'a str,
    /// `KEYS`.
    pub keys: &'a [Bytes],
    /// `ARGV`.
    pub argv: &'a [Bytes],
    /// EVAL_RO / EVALSHA_RO: write commands are refused.
    pub read_only: bool,
}

/// The interpreter of this thread, and its compiled scripts by SHA1 as of the scripts'
/// `generation`.
struct Interpreter {
    lua: Lua,
    compiled: HashMap<String, mlua::Function>,
    generation: u64,
}

thread_local! {
    static INTERPRETER: RefCell<Option<Interpreter>> = const { RefCell::new(None) };
}

/// Runs `script`, each of its commands through `runner`, watched by `scripts` (busy
/// and kill), and returns its reply encoded for a client speaking `protocol`, or the
/// error text to answer with.
pub fn run(
    scripts: &Arc<Scripts>,
    script: &Script<'_>,
    runner: &mut Runner<'_>,
    protocol: Protocol,
) -> Result<Bytes, String> {
    INTERPRETER.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            let interpreter = new_interpreter(scripts.max_memory);
            *cell = Some(interpreter.map_err(|error| format!("ERR {error}"))?);
        }
        let interpreter = cell.as_mut().expect("just created");
        scripts.running.store(true, Ordering::Release);
        let result = run_in(interpreter, scripts, script, runner, protocol);
        scripts.running.store(false, Ordering::Release);
        scripts.busy.store(false, Ordering::Release);
        scripts.kill.store(false, Ordering::Release);
        scripts.wrote.store(false, Ordering::Release);
        result
    })
}

/// The Lua side of the sandbox: the `redis` helpers written in Lua, and the read-only
/// globals (installed last).
const PRELUDE: &str = r#"
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.status_reply = function(text) return {ok = text} end
redis.error_reply = function(text)
  if string.sub(text, 1, 1) == "-" then text = string.sub(text, 2) end
  if not string.find(text, " ", 1, true) then text = "ERR " .. text end
  return {err = text}
end
for _, name in ipairs({"print", "dofile", "loadfile", "require", "module", "collectgarbage"}) do
  _G[name] = nil
end
setmetatable(_G, {
  __newindex = function() error("Attempt to modify a readonly table", 2) end,
  __index = function(_, name)
    error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
  end,
})
"#;

fn new_interpreter(max_memory: u64) -> mlua::Result<Interpreter> {
    let lua = Lua::new_with(
        StdLib::TABLE | StdLib::STRING | StdLib::MATH,
        LuaOptions::default(),
    )?;
    lua.set_memory_limit(usize::try_from(max_memory).unwrap_or(usize::MAX))?;
    let redis = lua.create_table()?;
    redis.set(
        "sha1hex",
        lua.create_function(|lua, text: mlua::String| {
            lua.create_string(sha1_hex(&text.as_bytes()))
        })?,
    )?;
    redis.set(
        "log",
        lua.create_function(|_, (level, message): (i64, mlua::String)| {
            let message = message.to_string_lossy();
            match level {
                3 => tracing::warn!(target: "quorra::script", "{message}"),
                2 => tracing::info!(target: "quorra::script", "{message}"),
                _ => tracing::debug!(target: "quorra::script", "{message}"),
            }
            Ok(())
        })?,
    )?;
    lua.globals().set("redis", redis)?;
    lua.load(PRELUDE).set_name("@prelude").exec()?;
    Ok(Interpreter {
        lua,
        compiled: HashMap::new(),
        generation: 0,
    })
}

fn run_in(
    interpreter: &mut Interpreter,
    scripts: &Arc<Scripts>,
    script: &Script<'_>,
    runner: &mut Runner<'_>,
    protocol: Protocol,
) -> Result<Bytes, String> {
    let suffix = |line: i32| format!(" script: {}, on @user_script:{line}.", script.sha);
    let lua = &interpreter.lua;
    // After SCRIPT FLUSH, or with as many scripts as the cache may hold (EVAL of ever new
    // scripts): start over, so that compiled scripts cannot grow without bound.
    let generation = scripts.generation.load(Ordering::Acquire);
    if interpreter.generation != generation || interpreter.compiled.len() >= scripts.max_entries {
        interpreter.compiled.clear();
        interpreter.generation = generation;
    }
    let function = match interpreter.compiled.get(script.sha) {
        Some(function) => function.clone(),
        None => {
            let function = lua
                .load(script.body)
                .set_name("@user_script")
                .into_function()
                .map_err(|error| {
                    let message = first_line(&error);
                    format!(
                        "ERR Error compiling script (new function): {}",
                        clean(&message)
                    )
                })?;
            interpreter
                .compiled
                .insert(script.sha.to_owned(), function.clone());
            function
        }
    };
    let globals = lua.globals();
    let set = |name: &str, values: &[Bytes]| -> mlua::Result<()> {
        let table = lua.create_table()?;
        for (index, value) in values.iter().enumerate() {
            table.raw_set(index + 1, lua.create_string(value)?)?;
        }
        globals.raw_set(name, table)
    };
    set("KEYS", script.keys)
        .and_then(|()| set("ARGV", script.argv))
        .map_err(|error| format!("ERR {error}"))?;
    let started = Instant::now();
    let watched = Arc::clone(scripts);
    // The line a SCRIPT KILL stopped the script at.
    let killed_at = Rc::new(Cell::new(None));
    let kill_line = Rc::clone(&killed_at);
    let hand_offs = Cell::new(0);
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(CHECK_EVERY_INSTRUCTIONS),
        move |_, debug| {
            let scripts = &watched;
            let elapsed = started.elapsed();
            if elapsed >= HAND_OFF_AFTER && hand_offs.get() < HAND_OFF_ATTEMPTS {
                hand_offs.set(hand_offs.get() + 1);
                hand_off_worker();
            }
            if elapsed >= scripts.busy_after {
                scripts.busy.store(true, Ordering::Release);
            }
            if scripts.kill.load(Ordering::Acquire) {
                kill_line.set(Some(debug.curr_line()));
                return Err(mlua::Error::RuntimeError(KILLED.to_owned()));
            }
            Ok(VmState::Continue)
        },
    );
    // The error a failed redis.call raised, with the line it was called from.
    let failed_call: RefCell<Option<(String, i32)>> = RefCell::new(None);
    let call = |lua: &Lua, args: MultiValue, protected: bool| -> mlua::Result<Value> {
        let reply = command(lua, args, script.read_only, scripts, &mut *runner);
        match reply {
            Ok(frame) => to_lua(lua, frame),
            Err(text) if protected => error_table(lua, &text),
            Err(text) => {
                let line = lua.inspect_stack(1).map_or(0, |debug| debug.curr_line());
                *failed_call.borrow_mut() = Some((text.clone(), line));
                Err(mlua::Error::RuntimeError(text))
            }
        }
    };
    let call = RefCell::new(call);
    let result = lua.scope(|scope| {
        let redis: Table = globals.raw_get("redis")?;
        redis.raw_set(
            "call",
            scope.create_function(|lua, args: MultiValue| (call.borrow_mut())(lua, args, false))?,
        )?;
        redis.raw_set(
            "pcall",
            scope.create_function(|lua, args: MultiValue| (call.borrow_mut())(lua, args, true))?,
        )?;
        function.call::<Value>(())
    });
    lua.remove_hook();
    let value = result.map_err(|error| match (failed_call.take(), killed_at.get()) {
        (Some((text, line)), _) => format!("{text}{}", suffix(line)),
        (None, Some(line)) => format!("{KILLED}{}", suffix(line)),
        (None, None) => {
            let message = first_line(&error);
            format!("ERR {}{}", clean(&message), suffix(line_of(&message)))
        }
    })?;
    let mut out = BytesMut::new();
    to_resp(&value, protocol, &mut out, 0);
    Ok(out.freeze())
}

/// The error a SCRIPT KILL ends a script with.
const KILLED: &str = "ERR Script killed by user with SCRIPT KILL...";

/// The first line of an mlua error (without its traceback).
fn first_line(error: &mlua::Error) -> String {
    let text = match error {
        mlua::Error::CallbackError { cause, .. } => cause.to_string(),
        other => other.to_string(),
    };
    text.lines().next().unwrap_or_default().to_owned()
}

/// An mlua message without the "runtime error: " label it adds.
fn clean(message: &str) -> &str {
    message
        .strip_prefix("runtime error: ")
        .or_else(|| message.strip_prefix("syntax error: "))
        .unwrap_or(message)
}

/// The line of `user_script:<line>:` in a Lua error message; 0 if there is none.
fn line_of(message: &str) -> i32 {
    message
        .find("user_script:")
        .and_then(|at| {
            let rest = &message[at + "user_script:".len()..];
            rest.split(':').next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// Checks and runs one `redis.call`: the reply as a frame, or the error text.
fn command(
    lua: &Lua,
    args: MultiValue,
    read_only: bool,
    scripts: &Scripts,
    runner: &mut Runner<'_>,
) -> Result<Frame, String> {
    if args.is_empty() {
        return Err("ERR Please specify at least one argument for this redis lib call".into());
    }
    let mut command = Vec::with_capacity(args.len());
    for arg in args {
        let text = match arg {
            Value::String(text) => Some(Bytes::copy_from_slice(&text.as_bytes())),
            number @ (Value::Integer(_) | Value::Number(_)) => lua
                .coerce_string(number)
                .ok()
                .flatten()
                .map(|text| Bytes::copy_from_slice(&text.as_bytes())),
            _ => None,
        };
        command.push(text.ok_or_else(|| {
            "ERR Lua redis lib command arguments must be strings or integers".to_owned()
        })?);
    }
    let Some(id) = lookup(&command[0]) else {
        return Err("ERR Unknown Redis command called from script".into());
    };
    let spec = id.info();
    if spec.has_flag("noscript") {
        return Err("ERR This Redis command is not allowed from script".into());
    }
    if read_only && spec.writes() {
        return Err("ERR Write commands are not allowed from read-only scripts.".into());
    }
    let reply = runner(&command)?;
    if spec.writes() {
        scripts.wrote.store(true, Ordering::Release);
    }
    match parse_frame(&reply, &Limits::default()) {
        Ok(Some((Frame::Error(text), _))) => Err(String::from_utf8_lossy(&text).into_owned()),
        Ok(Some((frame, _))) => Ok(frame),
        _ => Err("ERR a command of the script gave a reply that could not be read".into()),
    }
}

fn error_table(lua: &Lua, text: &str) -> mlua::Result<Value> {
    let table = lua.create_table()?;
    table.raw_set("err", lua.create_string(text)?)?;
    Ok(Value::Table(table))
}

/// A command's RESP2 reply as a Lua value (Redis's conversion).
fn to_lua(lua: &Lua, frame: Frame) -> mlua::Result<Value> {
    Ok(match frame {
        Frame::Integer(n) => Value::Number(n as f64),
        Frame::Bulk(bytes) => Value::String(lua.create_string(&bytes)?),
        Frame::Null => Value::Boolean(false),
        Frame::Simple(text) => {
            let table = lua.create_table()?;
            table.raw_set("ok", lua.create_string(&text)?)?;
            Value::Table(table)
        }
        Frame::Error(text) => error_table(lua, &String::from_utf8_lossy(&text))?,
        Frame::Boolean(flag) => Value::Boolean(flag),
        Frame::Double(number) => Value::Number(number),
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
            let table = lua.create_table()?;
            for (index, item) in items.into_iter().enumerate() {
                table.raw_set(index + 1, to_lua(lua, item)?)?;
            }
            Value::Table(table)
        }
        Frame::Map(pairs) => {
            let table = lua.create_table()?;
            for (key, value) in pairs {
                table.raw_set(to_lua(lua, key)?, to_lua(lua, value)?)?;
            }
            Value::Table(table)
        }
        Frame::BigNumber(text) | Frame::Verbatim { text, .. } => {
            Value::String(lua.create_string(&text)?)
        }
    })
}

/// Deepest table a script's reply may nest; deeper levels are answered as nil.
const MAX_REPLY_DEPTH: usize = 64;

/// A script's return value as a RESP reply (Redis's conversion).
fn to_resp(value: &Value, protocol: Protocol, out: &mut BytesMut, depth: usize) {
    match value {
        Value::Integer(n) => encode::integer(out, *n),
        Value::Number(n) => encode::integer(out, *n as i64),
        Value::String(text) => encode::bulk(out, &text.as_bytes()),
        Value::Boolean(true) => encode::integer(out, 1),
        Value::Table(table) if depth < MAX_REPLY_DEPTH => {
            if let Ok(Value::String(text)) = table.raw_get::<Value>("err") {
                let text = text.to_string_lossy().replace(['\r', '\n'], " ");
                out.extend_from_slice(b"-");
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(b"\r\n");
                return;
            }
            if let Ok(Value::String(text)) = table.raw_get::<Value>("ok") {
                let text = text.to_string_lossy().replace(['\r', '\n'], " ");
                encode::simple(out, &text);
                return;
            }
            let items: Vec<Value> = (1..)
                .map_while(|index| match table.raw_get::<Value>(index) {
                    Ok(Value::Nil) | Err(_) => None,
                    Ok(item) => Some(item),
                })
                .collect();
            encode::array_header(out, items.len());
            for item in &items {
                to_resp(item, protocol, out, depth + 1);
            }
        }
        _ => encode::null(out, protocol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(scripts: &Arc<Scripts>, body: &str) -> Result<Bytes, String> {
        let sha = sha1_hex(body.as_bytes());
        let script = Script {
            body: body.as_bytes(),
            sha: &sha,
            keys: &[],
            argv: &[],
            read_only: false,
        };
        let mut runner =
            |_: &[Bytes]| -> Result<Bytes, String> { Ok(Bytes::from_static(b"+OK\r\n")) };
        run(scripts, &script, &mut runner, Protocol::Resp2)
    }

    fn compiled() -> usize {
        INTERPRETER.with(|cell| {
            cell.borrow()
                .as_ref()
                .map_or(0, |interpreter| interpreter.compiled.len())
        })
    }

    #[test]
    fn compiled_scripts_stay_within_the_cache_bound_and_go_with_script_flush() {
        let scripts = Arc::new(Scripts::new(3, Duration::from_secs(5), 64 << 20));
        for n in 0..10 {
            assert_eq!(
                eval(&scripts, &format!("return {n}")).unwrap(),
                Bytes::from(format!(":{n}\r\n"))
            );
            assert!(compiled() <= 3, "{} compiled scripts", compiled());
        }
        scripts.flush();
        assert_eq!(
            eval(&scripts, "return redis.call('ping')").unwrap(),
            Bytes::from_static(b"+OK\r\n")
        );
        assert_eq!(compiled(), 1);
    }

    #[test]
    fn a_script_past_the_memory_limit_fails_and_the_next_one_runs() {
        let scripts = Arc::new(Scripts::new(10, Duration::from_secs(5), 8 << 20));
        let hungry = "local t = {} for i = 1, 10000000 do t[i] = tostring(i) end return #t";
        let error = eval(&scripts, hungry).unwrap_err();
        assert!(error.contains("not enough memory"), "{error}");
        assert_eq!(
            eval(&scripts, "return 7").unwrap(),
            Bytes::from_static(b":7\r\n")
        );
    }
}
