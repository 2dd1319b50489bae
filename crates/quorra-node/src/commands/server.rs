//! Server commands: COMMAND, INFO, CONFIG, DBSIZE, FLUSHALL/FLUSHDB, TIME.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use quorra_cluster::membership::MemberState;
use quorra_origin::origins::Health;
use quorra_resp::encode;
use quorra_ring::{TokenRange, database};
use quorra_store::glob::glob_match;
use quorra_store::{DatabaseCounts, KeyspaceTally};

use super::connection::REDIS_COMPATIBLE_VERSION;
use super::{COMMANDS, CommandError, CommandId, CommandInfo, Ctx, int_arg, is, lookup};
use crate::config::{parse_bytes, parse_policy, policy_name};
use crate::notifications;
use crate::pubsub::Kind;
use crate::shared::Shared;
use crate::wall_clock::unix_ms;

/// `COMMAND [COUNT | LIST | INFO name... | DOCS name...]`
pub fn command(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let named = |names: &[Bytes]| -> Vec<Option<&'static CommandInfo>> {
        names
            .iter()
            .map(|name| lookup(name).map(CommandId::info))
            .collect()
    };
    let all: Vec<Option<&CommandInfo>> = COMMANDS.iter().map(Some).collect();
    match args.get(1) {
        None => command_info(ctx, &all),
        Some(sub) if is(sub, "COUNT") && args.len() == 2 => ctx.int(COMMANDS.len() as i64),
        Some(sub) if is(sub, "LIST") && args.len() == 2 => {
            ctx.array(COMMANDS.len());
            for spec in COMMANDS {
                ctx.bulk(spec.name.as_bytes());
            }
        }
        Some(sub) if is(sub, "INFO") => {
            let specs = if args.len() == 2 {
                all
            } else {
                named(&args[2..])
            };
            command_info(ctx, &specs);
        }
        Some(sub) if is(sub, "DOCS") => {
            let specs: Vec<&CommandInfo> = if args.len() == 2 {
                COMMANDS.iter().collect()
            } else {
                named(&args[2..]).into_iter().flatten().collect()
            };
            ctx.map(specs.len());
            for spec in specs {
                ctx.bulk(spec.name.as_bytes());
                ctx.map(3);
                ctx.bulk(b"summary");
                ctx.bulk(spec.summary.as_bytes());
                ctx.bulk(b"since");
                ctx.bulk(spec.since.as_bytes());
                ctx.bulk(b"group");
                ctx.bulk(spec.group.as_bytes());
            }
        }
        Some(sub) if is(sub, "HELP") && args.len() == 2 => super::help(
            ctx,
            "COMMAND",
            &[
                ("(no subcommand)", &["Return details about all commands."]),
                (
                    "COUNT",
                    &["Return the total number of commands in this server."],
                ),
                ("LIST", &["Return a list of all commands in this server."]),
                (
                    "INFO [<command-name> ...]",
                    &[
                        "Return details about multiple commands.",
                        "If no command names are given, documentation details for all",
                        "commands are returned.",
                    ],
                ),
                (
                    "DOCS [<command-name> ...]",
                    &[
                        "Return documentation details about multiple commands.",
                        "If no command names are given, documentation details for all",
                        "commands are returned.",
                    ],
                ),
            ],
        ),
        Some(sub) => {
            return Err(CommandError::new(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try COMMAND HELP.",
                String::from_utf8_lossy(sub)
            )));
        }
    }
    Ok(())
}

/// Redis 7's COMMAND INFO entry: name, arity, flags, first key, last key, step, ACL
/// categories, tips, key specs, subcommands. Unknown names are nulls.
fn command_info(ctx: &mut Ctx<'_>, specs: &[Option<&CommandInfo>]) {
    ctx.array(specs.len());
    for spec in specs {
        let Some(spec) = spec else {
            encode::null_array(ctx.out, ctx.protocol());
            continue;
        };
        ctx.array(10);
        ctx.bulk(spec.name.as_bytes());
        ctx.int(i64::from(spec.arity));
        encode::set_header(ctx.out, spec.flags.len(), ctx.protocol());
        for flag in spec.flags {
            encode::simple(ctx.out, flag);
        }
        let (first, last, step) = spec.legacy_key_positions();
        ctx.int(i64::from(first));
        ctx.int(i64::from(last));
        ctx.int(i64::from(step));
        let category = format!("@{}", spec.group);
        encode::set_header(ctx.out, 1, ctx.protocol());
        encode::simple(ctx.out, &category);
        ctx.array(0);
        ctx.array(0);
        ctx.array(0);
    }
}

/// Settings CONFIG GET reports; the ones CONFIG SET can change are handled in `config`.
const CONFIG_NAMES: &[&str] = &[
    "maxmemory",
    "maxmemory-policy",
    "timeout",
    "requirepass",
    "maxclients",
    "protected-mode",
    "bind",
    "port",
    "hz",
    "proto-max-bulk-len",
    "proto-max-multibulk-len",
    "client-query-buffer-limit",
    "client-output-buffer-limit",
    "notify-keyspace-events",
    "save",
    "appendonly",
    "databases",
    "tracking-table-max-keys",
];

fn config_value(ctx: &Ctx<'_>, name: &str) -> String {
    let settings = ctx.shared.settings.read();
    let config = &ctx.shared.config;
    match name {
        "maxmemory" => ctx.shared.store.maxmemory().to_string(),
        "maxmemory-policy" => policy_name(ctx.shared.store.policy()).to_owned(),
        "timeout" => settings.timeout_secs.to_string(),
        "requirepass" => settings.requirepass.clone().unwrap_or_default(),
        "maxclients" => settings.maxclients.to_string(),
        "protected-mode" => if settings.protected_mode { "yes" } else { "no" }.to_owned(),
        "bind" => config.bind.to_string(),
        "port" => ctx.shared.resp_addr.port().to_string(),
        "hz" => config.hz.to_string(),
        "proto-max-bulk-len" => config.proto_max_bulk_len.to_string(),
        "proto-max-multibulk-len" => config.proto_max_multibulk_len.to_string(),
        "client-query-buffer-limit" => config.client_query_buffer_limit.to_string(),
        "notify-keyspace-events" => notifications::format(ctx.shared.notifier.flags()),
        // Redis's form; only the pubsub class's hard limit is enforced.
        "client-output-buffer-limit" => format!(
            "normal 0 0 0 slave 0 0 0 pubsub {} 0 0",
            config.client_output_buffer_limit_pubsub
        ),
        // quorra keeps nothing on disk.
        "save" => String::new(),
        "appendonly" => "no".to_owned(),
        "databases" => config.databases.to_string(),
        "tracking-table-max-keys" => config.tracking_table_max_keys.to_string(),
        _ => unreachable!("CONFIG_NAMES and config_value list the same settings"),
    }
}

/// `CONFIG GET pattern [pattern ...] | CONFIG SET name value [name value ...]`
pub fn config(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    if is(&args[1], "GET") {
        if args.len() < 3 {
            return Err(CommandError::arity("config|get"));
        }
        let names: Vec<&str> = CONFIG_NAMES
            .iter()
            .copied()
            .filter(|name| {
                args[2..]
                    .iter()
                    .any(|pattern| glob_match(&pattern.to_ascii_lowercase(), name.as_bytes()))
            })
            .collect();
        ctx.map(names.len());
        for name in names {
            let value = config_value(ctx, name);
            ctx.bulk(name.as_bytes());
            ctx.bulk(value.as_bytes());
        }
        Ok(())
    } else if is(&args[1], "SET") {
        if args.len() < 4 || args.len() % 2 != 0 {
            return Err(CommandError::arity("config|set"));
        }
        // Check every pair first, so a bad one changes nothing.
        let mut changes = Vec::new();
        for pair in args[2..].chunks_exact(2) {
            let name = String::from_utf8_lossy(&pair[0]).to_lowercase();
            let value = String::from_utf8_lossy(&pair[1]).into_owned();
            changes.push(parse_config_change(ctx, &name, &value)?);
        }
        for change in changes {
            apply_config_change(ctx, change);
        }
        ctx.ok();
        Ok(())
    } else if is(&args[1], "HELP") && args.len() == 2 {
        super::help(
            ctx,
            "CONFIG",
            &[
                (
                    "GET <pattern>",
                    &["Return parameters matching the glob-like <pattern> and their values."],
                ),
                (
                    "SET <directive> <value>",
                    &["Set the configuration <directive> to <value>."],
                ),
            ],
        );
        Ok(())
    } else {
        Err(super::unknown_subcommand("CONFIG", &args[1]))
    }
}

enum ConfigChange {
    Maxmemory(u64),
    Policy(quorra_store::MaxmemoryPolicy),
    Timeout(u64),
    Requirepass(Option<String>),
    Maxclients(usize),
    ProtectedMode(bool),
    NotifyKeyspaceEvents(u32),
}

fn parse_config_change(
    ctx: &Ctx<'_>,
    name: &str,
    value: &str,
) -> Result<ConfigChange, CommandError> {
    let failed = |reason: &str| {
        CommandError::new(format!(
            "ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}"
        ))
    };
    let integer = || {
        value
            .parse::<u64>()
            .map_err(|_| failed("argument couldn't be parsed into an integer"))
    };
    Ok(match name {
        "maxmemory" => ConfigChange::Maxmemory(
            parse_bytes(value).map_err(|_| failed("argument must be a memory value"))?,
        ),
        "maxmemory-policy" => ConfigChange::Policy(parse_policy(value).map_err(|_| {
            failed("argument(s) must be one of the following: allkeys-lru, noeviction")
        })?),
        "timeout" => ConfigChange::Timeout(integer()?),
        "requirepass" => ConfigChange::Requirepass((!value.is_empty()).then(|| value.to_owned())),
        "maxclients" => match integer()? {
            0 => {
                return Err(failed(
                    "argument must be between 1 and 4294967295 inclusive",
                ));
            }
            n => {
                let http = ctx.shared.config.http_max_connections;
                let fits = crate::fd_limit::maxclients_within(
                    crate::fd_limit::current_limit(),
                    n as usize,
                    http,
                );
                if fits < n as usize {
                    return Err(failed(&format!(
                        "The operating system is not able to handle the specified number of clients, try with {fits}"
                    )));
                }
                ConfigChange::Maxclients(n as usize)
            }
        },
        "protected-mode" => {
            ConfigChange::ProtectedMode(match value.to_ascii_lowercase().as_str() {
                "yes" => true,
                "no" => false,
                _ => return Err(failed("argument must be 'yes' or 'no'")),
            })
        }
        "notify-keyspace-events" => ConfigChange::NotifyKeyspaceEvents(
            notifications::parse(value.as_bytes())
                .ok_or_else(|| failed("Invalid event class character. Use 'Ag$lshzxeKEtmdn'."))?,
        ),
        _ if CONFIG_NAMES.contains(&name) => return Err(failed("can't set immutable config")),
        _ => {
            return Err(CommandError::new(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
            )));
        }
    })
}

fn apply_config_change(ctx: &mut Ctx<'_>, change: ConfigChange) {
    let mut settings = ctx.shared.settings.write();
    match change {
        ConfigChange::Maxmemory(limit) => {
            ctx.shared.store.set_maxmemory(limit);
            ctx.shared.metrics.maxmemory.set(limit as i64);
        }
        ConfigChange::Policy(policy) => ctx.shared.store.set_policy(policy),
        ConfigChange::Timeout(secs) => settings.timeout_secs = secs,
        ConfigChange::Requirepass(password) => settings.requirepass = password,
        ConfigChange::Maxclients(n) => settings.maxclients = n,
        ConfigChange::ProtectedMode(on) => settings.protected_mode = on,
        ConfigChange::NotifyKeyspaceEvents(flags) => ctx.shared.notifier.set_flags(flags),
    }
}

/// DBSIZE
pub fn dbsize(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Result<(), CommandError> {
    let db = ctx.session.db;
    let keys = if ctx.session.primary_only {
        keyspace_counts(ctx.shared, true)
            .into_iter()
            .find(|counts| counts.db == db)
            .map_or(0, |counts| counts.keys)
    } else {
        ctx.shared.store.dbsize(db)
    };
    ctx.int(keys as i64);
    Ok(())
}

/// `FLUSHALL [ASYNC | SYNC]`
pub fn flushall(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    flush_mode(args)?;
    ctx.shared.store.flushall();
    ctx.ok();
    Ok(())
}

/// `FLUSHDB [ASYNC | SYNC]`: the session's database only.
pub fn flushdb(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    flush_mode(args)?;
    ctx.shared.store.flushdb(ctx.session.db);
    ctx.ok();
    Ok(())
}

/// FLUSHALL's and FLUSHDB's `ASYNC` or `SYNC` (both run at once here).
fn flush_mode(args: &[Bytes]) -> Result<(), CommandError> {
    match &args[1..] {
        [] => Ok(()),
        [mode] if is(mode, "ASYNC") || is(mode, "SYNC") => Ok(()),
        _ => Err(CommandError::syntax()),
    }
}

/// `ACL LOG [count | RESET]` and `ACL WHOAMI`. quorra has one user, `default`; the log
/// holds failed authentication ([`crate::auth_log`]), with Redis's fields.
pub fn acl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let sub = String::from_utf8_lossy(&args[1]).to_lowercase();
    match (sub.as_str(), args.len()) {
        ("whoami", 2) => ctx.bulk(b"default"),
        ("log", 3) if is(&args[2], "RESET") => {
            ctx.shared.auth_log.reset();
            ctx.ok();
        }
        ("log", 2 | 3) => {
            let count = match args.get(2) {
                None => 10,
                Some(count) => match int_arg(count) {
                    Ok(count) if count > 0 => count as usize,
                    _ => {
                        return Err(CommandError::new(
                            "ERR value is out of range, must be positive",
                        ));
                    }
                },
            };
            let now = unix_ms();
            let entries = ctx.shared.auth_log.recent(count);
            ctx.array(entries.len());
            for entry in entries {
                ctx.map(10);
                ctx.bulk(b"count");
                ctx.int(entry.count as i64);
                for (name, value) in [
                    ("reason", "auth"),
                    ("context", "toplevel"),
                    ("object", "AUTH"),
                    ("username", entry.username.as_str()),
                ] {
                    ctx.bulk(name.as_bytes());
                    ctx.bulk(value.as_bytes());
                }
                ctx.bulk(b"age-seconds");
                let age = now.saturating_sub(entry.created_ms) as f64 / 1000.0;
                encode::double(ctx.out, age, ctx.session.protocol);
                ctx.bulk(b"client-info");
                ctx.bulk(entry.client_info.as_bytes());
                for (name, value) in [
                    ("entry-id", entry.entry_id),
                    ("timestamp-created", entry.created_ms),
                    ("timestamp-last-updated", entry.updated_ms),
                ] {
                    ctx.bulk(name.as_bytes());
                    ctx.int(value as i64);
                }
            }
        }
        ("whoami" | "log", _) => return Err(CommandError::arity(&format!("acl|{sub}"))),
        _ => {
            return Err(super::unknown_subcommand("ACL", &args[1]));
        }
    }
    Ok(())
}

/// `TIME`: [seconds, microseconds] as bulk strings.
pub fn time(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Result<(), CommandError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    ctx.array(2);
    ctx.bulk(now.as_secs().to_string().as_bytes());
    ctx.bulk(now.subsec_micros().to_string().as_bytes());
    Ok(())
}

/// INFO sections quorra reports, in order; `default`, `all` and `everything` mean all.
const INFO_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "stats",
    "cpu",
    "cluster",
    "namespaces",
    "keyspace",
];

/// The sections `INFO <sections>` asks for, lower-cased: every one for no argument,
/// `default`, `all` or `everything`.
fn wanted_sections(sections: &[Bytes]) -> Vec<&'static str> {
    let wanted: Vec<String> = sections
        .iter()
        .map(|s| String::from_utf8_lossy(s).to_lowercase())
        .collect();
    let everything = wanted.is_empty()
        || wanted
            .iter()
            .any(|s| ["default", "all", "everything"].contains(&s.as_str()));
    INFO_SECTIONS
        .iter()
        .copied()
        .filter(|section| everything || wanted.iter().any(|w| w == section))
        .collect()
}

/// True if `INFO <sections>` reports the keyspace section (which in cluster mode sums
/// over every node).
pub fn info_wants_keyspace(sections: &[Bytes]) -> bool {
    wanted_sections(sections).contains(&"keyspace")
}

/// `INFO [section ...]`
pub fn info(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let mut text = String::new();
    for section in wanted_sections(&args[1..]) {
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        info_section(ctx, section, &mut text);
    }
    encode::verbatim_text(ctx.out, text.as_bytes(), ctx.protocol());
    Ok(())
}

/// This node's live keys and keys with a TTL in each database that holds any; with
/// `primary_only`, only those it is the primary for (a pass over the store, instead of
/// reading counters).
pub fn keyspace_counts(shared: &Shared, primary_only: bool) -> Vec<DatabaseCounts> {
    let Some(node) = shared.cluster.as_ref().filter(|_| primary_only) else {
        return shared.store.keyspace();
    };
    let view = node.view();
    let placement = node.placement(&view);
    let mut tally = KeyspaceTally::default();
    let whole_ring = TokenRange { start: 0, end: 0 };
    shared.store.visit_range(whole_ring, |entry| {
        if !entry.tombstone && placement.primary(entry.key) == Some(&view.self_id) {
            let db = database::split(entry.key).0;
            tally.add(db, 1, u64::from(entry.expire_at_ms.is_some()));
        }
    });
    tally.databases()
}

/// Bytes as Redis's `bytesToHuman`: `1.50M`.
fn human(bytes: u64) -> String {
    const UNITS: [(&str, f64); 4] = [
        ("G", 1073741824.0),
        ("M", 1048576.0),
        ("K", 1024.0),
        ("B", 1.0),
    ];
    let value = bytes as f64;
    let (unit, size) = UNITS
        .iter()
        .find(|(_, size)| value >= *size)
        .copied()
        .unwrap_or(("B", 1.0));
    if unit == "B" {
        format!("{bytes}B")
    } else {
        format!("{:.2}{unit}", value / size)
    }
}

fn info_section(ctx: &Ctx<'_>, section: &str, out: &mut String) {
    let shared = ctx.shared;
    let counters = &shared.counters;
    let load =
        |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    let uptime = shared.started.elapsed().as_secs();
    let _ = match section {
        "server" => write!(
            out,
            "# Server\r\nredis_version:{REDIS_COMPATIBLE_VERSION}\r\nquorra_version:{}\r\nredis_mode:standalone\r\n\
             os:{} {}\r\narch_bits:{}\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\n\
             uptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nhz:{}\r\nconfig_file:{}\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            usize::BITS,
            std::process::id(),
            shared.run_id,
            shared.resp_addr.port(),
            uptime / 86_400,
            shared.config.hz,
            shared
                .config
                .config_file
                .as_ref()
                .map(|path| path.display().to_string())
                .unwrap_or_default(),
        ),
        "clients" => write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:0\r\n\
             tracking_clients:{}\r\n",
            shared.clients.len(),
            shared.settings.read().maxclients,
            shared.tracking.figures().clients,
        ),
        "memory" => {
            let used = shared.store.used_memory();
            let rss = crate::health::rss_bytes();
            let max = shared.store.maxmemory();
            write!(
                out,
                "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\n\
                 used_memory_rss_human:{}\r\nmaxmemory:{max}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\n\
                 mem_fragmentation_ratio:{:.2}\r\nmem_clients_normal:{}\r\nmaxmemory_clients:{}\r\n",
                human(used),
                human(rss),
                human(max),
                policy_name(shared.store.policy()),
                if used == 0 {
                    0.0
                } else {
                    rss as f64 / used as f64
                },
                shared.clients.buffered(),
                shared.config.maxmemory_clients,
            )
        }
        "cpu" => {
            let cpu = crate::health::ProcessCpu::now();
            write!(
                out,
                "# CPU\r\nused_cpu_sys:{:.6}\r\nused_cpu_user:{:.6}\r\n\
                 used_cpu_sys_children:{:.6}\r\nused_cpu_user_children:{:.6}\r\n",
                cpu.system, cpu.user, cpu.children_system, cpu.children_user
            )
        }
        "stats" => {
            let stats = shared.store.stats().total;
            let pubsub = &shared.pubsub.counters;
            let tracking = shared.tracking.figures();
            write!(
                out,
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
                 total_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\nrejected_connections:{}\r\n\
                 expired_keys:{}\r\nevicted_keys:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\n\
                 rejected_calls:{}\r\nfailed_calls:{}\r\nacl_access_denied_auth:{}\r\nevicted_clients:{}\r\n\
                 pubsub_channels:{}\r\npubsub_patterns:{}\r\npubsub_shardchannels:{}\r\n\
                 quorra_peer_commands_processed:{}\r\nquorra_pubsub_published:{}\r\n\
                 quorra_pubsub_delivered:{}\r\nquorra_pubsub_relay_sent:{}\r\n\
                 quorra_pubsub_relay_retried:{}\r\nquorra_pubsub_relay_dropped:{}\r\n\
                 quorra_pubsub_relay_received:{}\r\nquorra_pubsub_relay_duplicates:{}\r\n\
                 quorra_pubsub_disconnected_subscribers:{}\r\nquorra_keyspace_events_dropped:{}\r\n\
                 tracking_total_keys:{}\r\ntracking_total_items:{}\r\ntracking_total_prefixes:{}\r\n\
                 quorra_tracking_invalidations_sent:{}\r\nquorra_tracking_keys_pushed_out:{}\r\n",
                load(&counters.connections_received),
                load(&counters.commands_processed),
                load(&counters.net_input_bytes),
                load(&counters.net_output_bytes),
                load(&counters.rejected_connections),
                stats.expirations,
                stats.evictions,
                load(&counters.keyspace_hits),
                load(&counters.keyspace_misses),
                load(&counters.rejected_calls),
                load(&counters.failed_calls),
                shared.auth_log.failures(),
                shared.clients.evicted(),
                shared.pubsub.channel_count(Kind::Channel),
                shared.pubsub.channel_count(Kind::Pattern),
                shared.pubsub.channel_count(Kind::Shard),
                load(&counters.peer_commands_processed),
                load(&pubsub.published),
                load(&pubsub.delivered),
                load(&pubsub.relay_sent),
                load(&pubsub.relay_retried),
                load(&pubsub.relay_dropped),
                load(&pubsub.relay_received),
                load(&pubsub.relay_duplicates),
                load(&pubsub.disconnected_subscribers),
                load(&shared.notifier.removals.dropped),
                tracking.keys,
                tracking.items,
                tracking.prefixes,
                tracking.sent,
                tracking.evicted,
            )
        }
        "cluster" => {
            out.push_str("# Cluster\r\ncluster_enabled:0\r\n");
            match &shared.cluster {
                None => write!(out, "quorra_cluster_mode:0\r\n"),
                Some(node) => {
                    let view = node.view();
                    let replication = node.replicator.stats();
                    let hot_copies = shared.hot_cache.size();
                    let count = |state| view.members.iter().filter(|m| m.state == state).count();
                    write!(
                        out,
                        "quorra_cluster_mode:1\r\nquorra_node_id:{}\r\nquorra_joined:{}\r\nquorra_cluster_members:{}\r\n\
                         quorra_cluster_nodes_up:{}\r\nquorra_cluster_nodes_down:{}\r\n\
                         quorra_ring_nodes:{}\r\nquorra_ring_vnodes:{}\r\nquorra_ring_version:{}\r\n\
                         quorra_replicas:{}\r\nquorra_copies:{}\r\nquorra_write_quorum:{}\r\n\
                         quorra_read_quorum:{}\r\nquorra_hints_pending:{}\r\nquorra_hints_stored:{}\r\n\
                         quorra_hints_replayed:{}\r\nquorra_hints_dropped:{}\r\n\
                         quorra_read_repairs:{}\r\nquorra_quorum_failures:{}\r\n\
                         quorra_anti_entropy_buckets:{}\r\nquorra_anti_entropy_keys:{}\r\n\
                         quorra_deltas_sent:{}\r\nquorra_deltas_resent_whole:{}\r\n\
                         quorra_hot_cache_keys:{}\r\nquorra_hot_cache_bytes:{}\r\n\
                         quorra_hot_cache_hits:{}\r\n\
                         quorra_gossip_accepted:{}\r\nquorra_gossip_dropped_forged:{}\r\n\
                         quorra_gossip_dropped_replayed:{}\r\nquorra_gossip_dropped_stale:{}\r\n\
                         quorra_gossip_dropped_malformed:{}\r\nquorra_evictions_sent:{}\r\n",
                        view.self_id,
                        u8::from(view.joined),
                        view.members.len(),
                        count(MemberState::Up),
                        count(MemberState::Down),
                        view.ring.len(),
                        view.ring.vnode_count(),
                        view.ring_version,
                        node.consistency.replicas,
                        node.placement(&view).copies(),
                        node.consistency.write,
                        node.consistency.read,
                        node.replicator.hints().len(),
                        load(&replication.hints_stored),
                        load(&replication.hints_replayed),
                        load(&replication.hints_dropped),
                        load(&replication.read_repairs),
                        load(&replication.quorum_failures),
                        load(&replication.anti_entropy_buckets),
                        load(&replication.anti_entropy_keys),
                        load(&replication.deltas_sent),
                        load(&replication.deltas_resent_whole),
                        hot_copies.0,
                        hot_copies.1,
                        load(&shared.hot_cache.hits),
                        load(&node.gossip_stats.accepted),
                        load(&node.gossip_stats.forged),
                        load(&node.gossip_stats.replayed),
                        load(&node.gossip_stats.stale),
                        load(&node.gossip_stats.malformed),
                        shared.evictions.as_ref().map_or(0, |feed| load(&feed.sent)),
                    )
                }
            }
        }
        "namespaces" => {
            // This node's figures: loads run at each key's primary, so a namespace's
            // loads over the cluster are the sum of every node's.
            out.push_str("# Namespaces\r\n");
            if let Some(origins) = &shared.origins {
                for (origin, health) in origins.health() {
                    let status = match health {
                        Health::Unknown => "unknown".to_owned(),
                        Health::Up => "up".to_owned(),
                        Health::Down(reason) => format!("down ({})", reason.replace(',', ";")),
                    };
                    let _ = write!(out, "origin_{origin}:status={status}\r\n");
                }
                for report in origins.report(shared.store.now_ms()) {
                    let mut fields = report.fields.iter();
                    let (_, name) = fields.next().expect("the name comes first");
                    let _ = write!(out, "namespace_{name}:");
                    let line: Vec<String> = fields
                        .filter(|(field, _)| *field != "origin_status")
                        .map(|(field, value)| format!("{field}={value}"))
                        .collect();
                    let _ = write!(out, "{}\r\n", line.join(","));
                }
            }
            Ok(())
        }
        "keyspace" => {
            // In cluster mode routing has summed every node's counts into the session.
            let databases = match &ctx.session.cluster_keyspace {
                Some(databases) => databases.clone(),
                None => shared.store.keyspace(),
            };
            out.push_str("# Keyspace\r\n");
            for DatabaseCounts { db, keys, expires } in databases {
                let _ = write!(out, "db{db}:keys={keys},expires={expires},avg_ttl=0\r\n");
            }
            Ok(())
        }
        _ => Ok(()),
    };
}

/// `MEMORY USAGE key [SAMPLES count]`, `MEMORY HELP`
pub fn memory(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let sub = String::from_utf8_lossy(&args[1]).to_lowercase();
    match (sub.as_str(), args.len()) {
        ("help", 2) => super::help(
            ctx,
            "MEMORY",
            &[(
                "USAGE <key> [SAMPLES <count>]",
                &[
                    "Return memory in bytes used by <key> and its value: what maxmemory counts",
                    "for it (key, value and a fixed overhead per entry).",
                ],
            )],
        ),
        ("usage", 3 | 5) => {
            // SAMPLES is checked and ignored: a string's size is exact.
            if let [_, _, _, option, count] = args {
                if !is(option, "SAMPLES") {
                    return Err(CommandError::syntax());
                }
                int_arg(count)?;
            }
            match ctx.shared.store.memory_usage(&args[2]) {
                Some(bytes) => ctx.int(bytes as i64),
                None => ctx.bulk_or_null(None),
            }
        }
        ("help" | "usage", _) => return Err(CommandError::arity(&format!("memory|{sub}"))),
        _ => {
            return Err(super::unknown_subcommand("MEMORY", &args[1]));
        }
    }
    Ok(())
}
