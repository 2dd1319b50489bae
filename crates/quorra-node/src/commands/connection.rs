//! Connection commands: PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET, CLIENT.

use std::borrow::Cow;

use bytes::Bytes;
use quorra_resp::{Protocol, encode};

use super::{CommandError, Ctx, int_arg, is};
use crate::auth_log::constant_time_eq;
use crate::pubsub::Subscriber;
use crate::tracking::{TrackingOn, TrackingOptions};
use crate::wall_clock::unix_ms;

/// The Redis version quorra's command set and replies follow; clients that gate features
/// on the server version read it from HELLO and INFO (redis-py turns client-side caching
/// on only for a server that calls itself `redis` at 7.4 or later). quorra's own version
/// is beside it: `quorra_version` in both.
pub const REDIS_COMPATIBLE_VERSION: &str = "7.4.0";

/// `PING [message]`
pub fn ping(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    if super::pubsub::in_subscribed_mode(ctx.session) {
        // A RESP2 subscriber's replies are arrays, so that its client can tell them from
        // messages: `pong` and the message (empty without one).
        ctx.array(2);
        ctx.bulk(b"pong");
        ctx.bulk(args.get(1).map_or(&b""[..], |message| &message[..]));
        return Ok(());
    }
    match args {
        [_] => encode::simple(ctx.out, "PONG"),
        [_, message] => ctx.bulk(message),
        _ => return Err(CommandError::arity("ping")),
    }
    Ok(())
}

/// ECHO message
pub fn echo(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    ctx.bulk(&args[1]);
    Ok(())
}

/// Checks a password for the default user. With no `requirepass`, the default user has
/// no password and any password given with a user name is accepted, as in Redis. A
/// wrong password is recorded ([`crate::auth_log`]), and after `max-auth-failures` of
/// them the connection is closed.
fn check_password(
    ctx: &mut Ctx<'_>,
    user: Option<&[u8]>,
    password: &[u8],
) -> Result<(), CommandError> {
    let required = ctx.shared.settings.read().requirepass.clone();
    let user_ok = user.is_none_or(|user| user == b"default");
    match required {
        None if user.is_none() => Err(CommandError::new(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        )),
        None if user_ok => {
            ctx.session.authenticated = true;
            Ok(())
        }
        Some(required) if user_ok && constant_time_eq(required.as_bytes(), password) => {
            ctx.session.authenticated = true;
            Ok(())
        }
        _ => {
            let username = user.map_or(Cow::Borrowed("default"), String::from_utf8_lossy);
            ctx.shared.auth_log.record(&ctx.session.info, &username);
            ctx.session.auth_failures += 1;
            let limit = ctx.shared.config.max_auth_failures;
            if limit > 0 && ctx.session.auth_failures >= limit {
                // The reply goes out, then the connection closes, as after QUIT.
                tracing::warn!(client = %ctx.session.info.addr, failures = limit,
                    "closing a connection after repeated failed authentication");
                ctx.session.close = true;
            }
            Err(CommandError::new(
                "WRONGPASS invalid username-password pair or user is disabled.",
            ))
        }
    }
}

/// `AUTH [username] password`
pub fn auth(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    match args {
        [_, password] => check_password(ctx, None, password)?,
        [_, user, password] => check_password(ctx, Some(user), password)?,
        _ => return Err(CommandError::syntax()),
    }
    ctx.ok();
    Ok(())
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
pub fn hello(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let mut protocol = ctx.session.protocol;
    if let Some(version) = args.get(1) {
        protocol = match quorra_store::numeric::parse_i64(version) {
            Ok(2) => Protocol::Resp2,
            Ok(3) => Protocol::Resp3,
            Ok(_) => return Err(CommandError::new("NOPROTO unsupported protocol version")),
            Err(_) => {
                return Err(CommandError::new(
                    "ERR Protocol version is not an integer or out of range",
                ));
            }
        };
    }
    let mut name = None;
    let mut rest = args.iter().skip(2);
    while let Some(option) = rest.next() {
        if is(option, "AUTH") {
            let (Some(user), Some(password)) = (rest.next(), rest.next()) else {
                return Err(CommandError::new(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(option)
                )));
            };
            check_password(ctx, Some(user), password)?;
        } else if is(option, "SETNAME") {
            let Some(value) = rest.next() else {
                return Err(CommandError::new(
                    "ERR Syntax error in HELLO option 'SETNAME'",
                ));
            };
            name = Some(valid_name(value, "Client names")?);
        } else {
            return Err(CommandError::new(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(option)
            )));
        }
    }
    if !ctx.session.authenticated && ctx.shared.settings.read().requirepass.is_some() {
        return Err(CommandError::new(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
             select the RESP protocol version at the same time",
        ));
    }
    if let Some(name) = name {
        *ctx.session.info.name.lock() = name;
    }
    ctx.session.set_protocol(protocol);
    ctx.map(8);
    // The name clients compare against to enable what Redis supports.
    ctx.bulk(b"server");
    ctx.bulk(b"redis");
    ctx.bulk(b"version");
    ctx.bulk(REDIS_COMPATIBLE_VERSION.as_bytes());
    ctx.bulk(b"quorra_version");
    ctx.bulk(env!("CARGO_PKG_VERSION").as_bytes());
    ctx.bulk(b"proto");
    ctx.int(if protocol == Protocol::Resp3 { 3 } else { 2 });
    ctx.bulk(b"id");
    ctx.int(ctx.session.info.id as i64);
    ctx.bulk(b"mode");
    ctx.bulk(b"standalone");
    ctx.bulk(b"role");
    ctx.bulk(b"master");
    ctx.bulk(b"modules");
    ctx.array(0);
    Ok(())
}

/// SELECT index: only database 0 exists.
pub fn select(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let db = database_arg(ctx, &args[1])?;
    ctx.session.select(db);
    ctx.ok();
    Ok(())
}

/// A database number argument (SELECT, MOVE), checked against `databases` with
/// Redis's texts.
pub fn database_arg(ctx: &Ctx<'_>, arg: &[u8]) -> Result<u8, CommandError> {
    let index = int_arg(arg)?;
    usize::try_from(index)
        .ok()
        .filter(|&index| index < ctx.shared.config.databases)
        .and_then(|index| u8::try_from(index).ok())
        .ok_or_else(|| CommandError::new("ERR DB index is out of range"))
}

/// QUIT: replies OK, then the connection closes.
pub fn quit(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Result<(), CommandError> {
    ctx.ok();
    ctx.session.close = true;
    Ok(())
}

/// RESET: back to a fresh connection's state (RESP2, no name, authenticated only if no
/// password is required).
pub fn reset(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Result<(), CommandError> {
    ctx.session.set_protocol(Protocol::Resp2);
    ctx.session.select(0);
    ctx.session.authenticated = ctx.shared.settings.read().requirepass.is_none();
    ctx.session.info.name.lock().clear();
    ctx.session.transaction = None;
    ctx.session.watched.clear();
    ctx.session.tracking = None;
    ctx.session.caching = false;
    ctx.session.pubsub = None;
    encode::simple(ctx.out, "RESET");
    Ok(())
}

/// A client or library name: no spaces, newlines or other special characters.
fn valid_name(value: &[u8], what: &str) -> Result<String, CommandError> {
    if value.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Err(CommandError::new(format!(
            "ERR {what} cannot contain spaces, newlines or special characters."
        )));
    }
    Ok(String::from_utf8_lossy(value).into_owned())
}

/// CLIENT ID | SETNAME | GETNAME | INFO | LIST | SETINFO | HELP
pub fn client(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let sub = String::from_utf8_lossy(&args[1]).to_lowercase();
    let arity_error = || CommandError::arity(&format!("client|{sub}"));
    match (sub.as_str(), args.len()) {
        ("id", 2) => ctx.int(ctx.session.info.id as i64),
        ("setname", 3) => {
            *ctx.session.info.name.lock() = valid_name(&args[2], "Client names")?;
            ctx.ok();
        }
        ("getname", 2) => {
            let name = ctx.session.info.name.lock().clone();
            ctx.bulk_or_null((!name.is_empty()).then_some(name.as_bytes()));
        }
        ("info", 2) => {
            let line = ctx.session.info.describe(unix_ms()) + "\n";
            encode::verbatim_text(ctx.out, line.as_bytes(), ctx.protocol());
        }
        ("list", _) => client_list(ctx, &args[2..])?,
        ("setinfo", 4) => {
            let value = valid_name(
                &args[3],
                if is(&args[2], "LIB-NAME") {
                    "lib-name"
                } else {
                    "lib-ver"
                },
            )?;
            let mut lib = ctx.session.info.lib.lock();
            if is(&args[2], "LIB-NAME") {
                lib.0 = value;
            } else if is(&args[2], "LIB-VER") {
                lib.1 = value;
            } else {
                return Err(CommandError::new(format!(
                    "ERR Unrecognized option '{}'",
                    String::from_utf8_lossy(&args[2])
                )));
            }
            drop(lib);
            ctx.ok();
        }
        ("tracking", n) if n >= 3 => client_tracking(ctx, &args[2], &args[3..])?,
        ("caching", 3) => client_caching(ctx, &args[2])?,
        ("getredir", 2) => {
            let redirect = match &ctx.session.tracking {
                Some(on) => on.options.redirect.map_or(0, |id| id as i64),
                None => -1,
            };
            ctx.int(redirect);
        }
        ("trackinginfo", 2) => client_tracking_info(ctx),
        ("help", 2) => super::help(
            ctx,
            "CLIENT",
            &[
                (
                    "CACHING (YES|NO)",
                    &[
                        "Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
                    ],
                ),
                (
                    "GETREDIR",
                    &["Return the client ID we are redirecting to when tracking is enabled."],
                ),
                ("GETNAME", &["Return the name of the current connection."]),
                ("ID", &["Return the ID of the current connection."]),
                (
                    "INFO",
                    &["Return information about the current client connection."],
                ),
                (
                    "LIST [options ...]",
                    &[
                        "Return information about client connections. Options:",
                        "* TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
                        "  Return clients of specified type.",
                        "* ID <id> [<id> ...]",
                        "  Return clients with specified IDs only.",
                    ],
                ),
                (
                    "SETINFO <option> <value>",
                    &[
                        "Set client meta attr. Options are:",
                        "* LIB-NAME: the client lib name.",
                        "* LIB-VER: the client lib version.",
                    ],
                ),
                (
                    "SETNAME <name>",
                    &["Assign the name <name> to the current connection."],
                ),
                (
                    "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
                    &[
                        "         [OPTIN] [OPTOUT] [NOLOOP]",
                        "Control server assisted client side caching.",
                    ],
                ),
                (
                    "TRACKINGINFO",
                    &["Report tracking status for the current connection."],
                ),
            ],
        ),
        (
            "id" | "setname" | "getname" | "info" | "setinfo" | "help" | "tracking" | "caching"
            | "getredir" | "trackinginfo",
            _,
        ) => {
            return Err(arity_error());
        }
        _ => {
            return Err(super::unknown_subcommand("CLIENT", &args[1]));
        }
    }
    Ok(())
}

/// `CLIENT TRACKING (ON|OFF) [REDIRECT id] [BCAST] [PREFIX prefix ...] [OPTIN] [OPTOUT]
/// [NOLOOP]`, with Redis's checks and texts ([`crate::tracking`]).
fn client_tracking(
    ctx: &mut Ctx<'_>,
    switch: &[u8],
    options: &[Bytes],
) -> Result<(), CommandError> {
    let mut wanted = TrackingOptions::default();
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        if is(option, "REDIRECT") && rest.len() > 0 {
            if wanted.redirect.is_some() {
                return Err(CommandError::new(
                    "ERR A client can only redirect to a single other client",
                ));
            }
            let id = rest.next().expect("checked above");
            let id = int_arg(id)?;
            let target = u64::try_from(id)
                .ok()
                .filter(|&id| ctx.shared.clients.contains(id))
                .ok_or_else(|| {
                    CommandError::new("ERR The client ID you want redirect to does not exist")
                })?;
            wanted.redirect = Some(target);
        } else if is(option, "BCAST") {
            wanted.bcast = true;
        } else if is(option, "OPTIN") {
            wanted.optin = true;
        } else if is(option, "OPTOUT") {
            wanted.optout = true;
        } else if is(option, "NOLOOP") {
            wanted.noloop = true;
        } else if is(option, "PREFIX") && rest.len() > 0 {
            wanted
                .prefixes
                .push(rest.next().expect("checked above").clone());
        } else {
            return Err(CommandError::syntax());
        }
    }
    if is(switch, "OFF") {
        ctx.session.tracking = None;
        ctx.ok();
        return Ok(());
    }
    if !is(switch, "ON") {
        return Err(CommandError::syntax());
    }
    let current = ctx.session.tracking.as_ref().map(|on| &on.options);
    if !wanted.bcast && !wanted.prefixes.is_empty() {
        return Err(CommandError::new(
            "ERR PREFIX option requires BCAST mode to be enabled",
        ));
    }
    if current.is_some_and(|current| current.bcast != wanted.bcast) {
        return Err(CommandError::new(
            "ERR You can't switch BCAST mode on/off before disabling tracking for this client, \
             and then re-enabling it with a different mode.",
        ));
    }
    if wanted.bcast && (wanted.optin || wanted.optout) {
        return Err(CommandError::new(
            "ERR OPTIN and OPTOUT are not compatible with BCAST",
        ));
    }
    if wanted.optin && wanted.optout {
        return Err(CommandError::new("ERR You can't use both OPTIN and OPTOUT"));
    }
    if current
        .is_some_and(|current| (wanted.optin && current.optout) || (wanted.optout && current.optin))
    {
        return Err(CommandError::new(
            "ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, \
             and then re-enabling it with a different mode.",
        ));
    }
    if wanted.bcast {
        // The client's prefixes so far stay, as in Redis; none may overlap another.
        let mut prefixes: Vec<Bytes> = current.map(|c| c.prefixes.clone()).unwrap_or_default();
        for prefix in std::mem::take(&mut wanted.prefixes) {
            if let Some(other) = prefixes.iter().find(|other| {
                **other != prefix && (other.starts_with(&prefix) || prefix.starts_with(other))
            }) {
                return Err(CommandError::new(format!(
                    "ERR Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single \
                     client must not overlap.",
                    String::from_utf8_lossy(&prefix),
                    String::from_utf8_lossy(other)
                )));
            }
            if !prefixes.contains(&prefix) {
                prefixes.push(prefix);
            }
        }
        wanted.prefixes = prefixes;
    }
    // The mailbox that invalidations wait in.
    let hub = ctx.shared.pubsub.clone();
    let info = ctx.session.info.clone();
    ctx.session
        .pubsub
        .get_or_insert_with(|| Subscriber::new(hub, info));
    // The old registration goes before the new one is made.
    ctx.session.tracking = None;
    ctx.session.tracking = Some(TrackingOn::new(
        ctx.shared.tracking.clone(),
        ctx.session.info.id,
        wanted,
    ));
    ctx.ok();
    Ok(())
}

/// `CLIENT CACHING (YES|NO)`: whether the next command's reads are tracked, in OPTIN or
/// OPTOUT mode.
fn client_caching(ctx: &mut Ctx<'_>, choice: &[u8]) -> Result<(), CommandError> {
    let Some(on) = &ctx.session.tracking else {
        return Err(CommandError::new(
            "ERR CLIENT CACHING can be called only when the client is in tracking mode with \
             OPTIN or OPTOUT mode enabled",
        ));
    };
    if is(choice, "YES") {
        if !on.options.optin {
            return Err(CommandError::new(
                "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
            ));
        }
    } else if is(choice, "NO") {
        if !on.options.optout {
            return Err(CommandError::new(
                "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
            ));
        }
    } else {
        return Err(CommandError::syntax());
    }
    ctx.session.caching = true;
    ctx.ok();
    Ok(())
}

/// `CLIENT TRACKINGINFO`: flags, redirect and prefixes, as Redis answers.
fn client_tracking_info(ctx: &mut Ctx<'_>) {
    let (flags, redirect, prefixes) = match &ctx.session.tracking {
        None => (vec!["off"], -1, Vec::new()),
        Some(on) => {
            let options = &on.options;
            let mut flags = vec!["on"];
            for (set, flag) in [
                (options.bcast, "bcast"),
                (options.optin, "optin"),
                (options.optout, "optout"),
                (ctx.session.caching && options.optin, "caching-yes"),
                (ctx.session.caching && options.optout, "caching-no"),
                (options.noloop, "noloop"),
            ] {
                if set {
                    flags.push(flag);
                }
            }
            if options
                .redirect
                .is_some_and(|id| !ctx.shared.clients.contains(id))
            {
                flags.push("broken_redirect");
            }
            let redirect = options.redirect.map_or(0, |id| id as i64);
            (flags, redirect, options.prefixes.clone())
        }
    };
    ctx.map(3);
    ctx.bulk(b"flags");
    encode::set_header(ctx.out, flags.len(), ctx.protocol());
    for flag in flags {
        ctx.bulk(flag.as_bytes());
    }
    ctx.bulk(b"redirect");
    ctx.int(redirect);
    ctx.bulk(b"prefixes");
    ctx.array(prefixes.len());
    for prefix in &prefixes {
        ctx.bulk(prefix);
    }
}

/// `CLIENT LIST [TYPE NORMAL] [ID id [id ...]]`
fn client_list(ctx: &mut Ctx<'_>, options: &[Bytes]) -> Result<(), CommandError> {
    let mut ids: Option<Vec<u64>> = None;
    let mut only_normal = true;
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        if is(option, "TYPE") {
            let kind = rest.next().ok_or_else(CommandError::syntax)?;
            if !["normal", "master", "replica", "pubsub"]
                .iter()
                .any(|k| is(kind, k))
            {
                return Err(CommandError::new(format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(kind)
                )));
            }
            only_normal = is(kind, "normal");
        } else if is(option, "ID") {
            let mut list = Vec::new();
            for id in rest.by_ref() {
                let id = int_arg(id)
                    .ok()
                    .filter(|&id| id > 0)
                    .ok_or_else(|| CommandError::new("ERR Invalid client ID"))?;
                list.push(id as u64);
            }
            if list.is_empty() {
                return Err(CommandError::syntax());
            }
            ids = Some(list);
        } else {
            return Err(CommandError::syntax());
        }
    }
    let now = unix_ms();
    let mut text = String::new();
    for client in ctx.shared.clients.list() {
        if only_normal && ids.as_ref().is_none_or(|ids| ids.contains(&client.id)) {
            text.push_str(&client.describe(now));
            text.push('\n');
        }
    }
    encode::verbatim_text(ctx.out, text.as_bytes(), ctx.protocol());
    Ok(())
}
