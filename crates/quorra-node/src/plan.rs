//! The plan: where a command runs, decided by a pure function of the command, whether
//! its client is authenticated, and the placement of keys under one view.
//!
//! Any node accepts any command. [`plan`] reads the command table's key positions:
//!
//! - one key, or several keys with one owner: on the owner — here ([`Plan::Local`]), or
//!   forwarded whole ([`Plan::Forward`]) and the owner's reply bytes passed back
//!   unchanged;
//! - MGET, MSET, DEL, UNLINK, EXISTS, TOUCH over several owners: split by owner
//!   ([`Spread::Split`]), the parts run at the same time, the replies merged in the
//!   caller's order. MSET is atomic per owner, not across owners;
//! - RENAME, RENAMENX, COPY, LCS, MSETNX over keys of different owners: refused with a
//!   `CROSSSLOT` error, as Redis Cluster refuses keys in different slots;
//! - EVAL and its family: on the owner of the keys the script declares (`CROSSSLOT` if
//!   they have several), as a write with copies; a script without keys runs here;
//! - DBSIZE, KEYS, FLUSHALL, FLUSHDB, RANDOMKEY, SCAN and the keyspace section of INFO:
//!   asked of every serving node and combined ([`Spread`]);
//! - everything else (connection and server commands) runs here, in order
//!   ([`Plan::InOrder`]).
//!
//! With copies (N > 1) GET, MGET and EXISTS become quorum reads by this node
//! ([`Plan::QuorumRead`]), and writes run at the key's primary: here
//! ([`Plan::PrimaryWrite`]) or forwarded, the primary copying what it wrote to the
//! replicas.
//!
//! Commands that would be refused anyway — unknown, wrong arity, not authenticated —
//! run here so that the refusal is this node's. On a node that has not joined its
//! cluster, commands on keys are refused ([`NOT_JOINED`]): it cannot tell which keys are
//! its own.
//!
//! How each plan is carried out is [`crate::executor`]'s, [`crate::scatter`]'s and
//! [`crate::pipeline`]'s business; this module only decides.

use bytes::Bytes;
use quorra_cluster::placement::Placement;
use quorra_resp::command::{NUMKEYS, arity_ok, keys_of, lookup};
use quorra_ring::NodeId;

use crate::commands::server::info_wants_keyspace;

/// The error for keys of one command that have different owners.
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same node";

/// The refusal of key commands on a node that has not joined its cluster yet.
pub const NOT_JOINED: &str = "LOADING this node has not joined its cluster yet";

/// The refusal of a command on a key none of whose replicas serves.
pub const NO_REPLICA: &str = "CLUSTERDOWN no replica of the key is serving";

/// Where a command runs.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// Here: its keys are this node's. May run before forwarded commands that came
    /// earlier in the pipeline (their keys are other nodes', so nothing can tell).
    Local,
    /// Whole, on this other node.
    Forward(NodeId),
    /// Here, after everything before it in the pipeline: commands without keys
    /// (connection and server commands, which may change the session) and commands that
    /// will be refused.
    InOrder,
    /// With copies: GET, MGET or EXISTS answered from a quorum of replicas.
    QuorumRead(QuorumRead),
    /// With copies: a write on keys this node is primary for, run here and copied to the
    /// replicas before it is answered.
    PrimaryWrite,
    /// On several nodes, after everything before it in the pipeline.
    Spread(Spread),
}

/// What a quorum read answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuorumRead {
    /// GET key
    Get,
    /// MGET key [key ...]
    Mget,
    /// EXISTS key [key ...]
    Exists,
}

impl QuorumRead {
    /// Whether the read promotes its keys in the replicas' LRU and counts as keyspace
    /// hits and misses, as the command does on a single node (GET and MGET do, EXISTS
    /// does not).
    pub fn promotes(self) -> bool {
        self != QuorumRead::Exists
    }
}

/// A command that involves several nodes.
#[derive(Debug, PartialEq)]
pub enum Spread {
    /// Split by owner; keys are every `step`-th argument from the first, each followed
    /// by `step - 1` values.
    Split {
        /// How the parts' replies combine.
        merge: Merge,
        /// Arguments per key (1, or 2 for MSET's key-value pairs).
        step: usize,
    },
    /// On every serving node.
    Everywhere(Merge),
    /// SCAN, node by node.
    Scan,
    /// RANDOMKEY: nodes in random order until one has a key.
    RandomKey,
    /// INFO with the keyspace section summed over the cluster.
    Info,
    /// Refused with this error.
    Refuse(&'static str),
}

/// How the replies of the parts of a split or scattered command combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Arrays: MGET's values go back to their keys' positions; KEYS's are concatenated.
    Values,
    /// Integers are added (DEL, EXISTS, TOUCH, DBSIZE).
    Sum,
    /// Every part answers `OK` (MSET, FLUSHALL).
    AllOk,
}

/// Where the command `args` (name first, at least one element) of a client that is
/// `authenticated` (or needs no password) runs, with keys placed by `placement`.
pub fn plan(args: &[Bytes], authenticated: bool, placement: &Placement<'_>) -> Plan {
    let plan = plan_joined(args, authenticated, placement);
    if !placement.view().joined && !matches!(plan, Plan::InOrder | Plan::Spread(Spread::Info)) {
        return Plan::Spread(Spread::Refuse(NOT_JOINED));
    }
    plan
}

/// The primary shared by all these keys: `Err` with the refusal if they have several or
/// one has none.
/// A read of keys that all have one primary, run there instead of at a quorum: a
/// [`Plan::Local`] or [`Plan::Forward`]; `None` when the keys have several primaries or
/// none serving. For a client that WATCHes the keys: EXEC checks their versions at the
/// primary, and a quorum of replicas may not yet hold a write the primary already has
/// (it is still being copied), so a transaction built on a quorum read could commit over
/// a value it never saw.
pub fn read_at_primary(args: &[Bytes], placement: &Placement<'_>) -> Option<Plan> {
    let primary = one_primary(placement, keys_of(args)).ok()?;
    Some(match *primary == placement.view().self_id {
        true => Plan::Local,
        false => Plan::Forward(primary.clone()),
    })
}

/// True for `QUORRA HOT key ON|OFF`.
pub fn pins_a_hot_key(args: &[Bytes]) -> bool {
    args.len() == 4 && is(&args[1], "HOT") && (is(&args[3], "ON") || is(&args[3], "OFF"))
}

fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

fn one_primary<'v, 'k>(
    placement: &Placement<'v>,
    mut keys: impl Iterator<Item = &'k Bytes>,
) -> Result<&'v NodeId, &'static str> {
    let first = placement
        .primary(keys.next().ok_or(CROSSSLOT)?)
        .ok_or(NO_REPLICA)?;
    for key in keys {
        if placement.primary(key).ok_or(NO_REPLICA)? != first {
            return Err(CROSSSLOT);
        }
    }
    Ok(first)
}

fn plan_joined(args: &[Bytes], authenticated: bool, placement: &Placement<'_>) -> Plan {
    let Some(id) = lookup(&args[0]) else {
        return Plan::InOrder;
    };
    let spec = id.info();
    if !arity_ok(spec.arity, args.len()) || !authenticated {
        return Plan::InOrder;
    }
    let view = placement.view();
    let replicated = placement.replicated();
    if replicated {
        match spec.name {
            "get" => return Plan::QuorumRead(QuorumRead::Get),
            "mget" => return Plan::QuorumRead(QuorumRead::Mget),
            "exists" => return Plan::QuorumRead(QuorumRead::Exists),
            _ => {}
        }
    }
    let writes = spec.writes();
    let on = |owner: &NodeId| {
        if *owner != view.self_id {
            Plan::Forward(owner.clone())
        } else if replicated && writes {
            Plan::PrimaryWrite
        } else {
            Plan::Local
        }
    };
    let spread = match (spec.keys, spec.name) {
        ((1, 1, 1), _) => match placement.primary(&args[1]) {
            Some(owner) => return on(owner),
            None => Spread::Refuse(NO_REPLICA),
        },
        // OBJECT and MEMORY: their key follows the subcommand.
        ((2, 2, 1), _) => match args.get(2).map(|key| placement.primary(key)) {
            None => return Plan::InOrder,
            Some(Some(owner)) => return on(owner),
            Some(None) => Spread::Refuse(NO_REPLICA),
        },
        ((1, 2, 1), _) => match one_primary(placement, args[1..3].iter()) {
            Ok(owner) => return on(owner),
            Err(refusal) => Spread::Refuse(refusal),
        },
        ((1, -1, step), name) => {
            let step = step as usize;
            match one_primary(placement, args[1..].iter().step_by(step)) {
                Ok(owner) => return on(owner),
                Err(NO_REPLICA) => return Plan::Spread(Spread::Refuse(NO_REPLICA)),
                Err(_) => {}
            }
            match name {
                "mget" => Spread::Split {
                    merge: Merge::Values,
                    step,
                },
                "mset" => Spread::Split {
                    merge: Merge::AllOk,
                    step,
                },
                "del" | "unlink" | "exists" | "touch" => Spread::Split {
                    merge: Merge::Sum,
                    step,
                },
                _ => Spread::Refuse(CROSSSLOT),
            }
        }
        // A script: at the primary of the keys it declares; without keys, here.
        (NUMKEYS, _) => match keys_of(args).next() {
            None => return Plan::InOrder,
            Some(_) => match one_primary(placement, keys_of(args)) {
                Ok(owner) => return on(owner),
                Err(refusal) => Spread::Refuse(refusal),
            },
        },
        (_, "dbsize") => Spread::Everywhere(Merge::Sum),
        (_, "keys") => Spread::Everywhere(Merge::Values),
        (_, "flushall" | "flushdb") => Spread::Everywhere(Merge::AllOk),
        (_, "scan") => Spread::Scan,
        (_, "randomkey") => Spread::RandomKey,
        (_, "info") if info_wants_keyspace(&args[1..]) => Spread::Info,
        // A hot-key pin holds on every node.
        (_, "quorra") if pins_a_hot_key(args) => Spread::Everywhere(Merge::AllOk),
        _ => return Plan::InOrder,
    };
    Plan::Spread(spread)
}

#[cfg(test)]
mod tests {
    use quorra_cluster::membership::{ClusterView, MemberState};

    use super::*;
    use crate::in_memory_cluster::{node_id, view};

    const UP3: [MemberState; 3] = [MemberState::Up; 3];

    fn args(command: &str) -> Vec<Bytes> {
        command
            .split(' ')
            .map(|arg| Bytes::copy_from_slice(arg.as_bytes()))
            .collect()
    }

    /// A key whose first replica under `view` is node `owner`.
    fn key_of(view: &ClusterView, owner: usize, prefix: &str) -> String {
        let placement = Placement::new(view, 1);
        (0..)
            .map(|n| format!("{prefix}{n}"))
            .find(|key| placement.primary(key.as_bytes()) == Some(&node_id(owner)))
            .unwrap()
    }

    fn plan_at(view: &ClusterView, copies: usize, command: &str) -> Plan {
        plan(&args(command), true, &Placement::new(view, copies))
    }

    #[test]
    fn commands_that_will_be_refused_run_here_in_order() {
        let view = view(0, &UP3);
        let placement = Placement::new(&view, 1);
        let elsewhere = key_of(&view, 1, "k");
        for command in ["NOSUCH x", "GET", "SET onlykey"] {
            assert_eq!(
                plan(&args(command), true, &placement),
                Plan::InOrder,
                "{command}"
            );
        }
        // Not authenticated: the refusal is this node's, wherever the key lives.
        let get = args(&format!("GET {elsewhere}"));
        assert_eq!(plan(&get, false, &placement), Plan::InOrder);
    }

    #[test]
    fn a_key_command_runs_on_the_keys_owner() {
        let view = view(0, &UP3);
        let here = key_of(&view, 0, "k");
        let there = key_of(&view, 2, "k");
        assert_eq!(plan_at(&view, 1, &format!("GET {here}")), Plan::Local);
        assert_eq!(plan_at(&view, 1, &format!("INCR {here}")), Plan::Local);
        assert_eq!(
            plan_at(&view, 1, &format!("SET {there} v")),
            Plan::Forward(node_id(2))
        );
        assert_eq!(
            plan_at(&view, 1, &format!("TTL {there}")),
            Plan::Forward(node_id(2))
        );
    }

    #[test]
    fn commands_without_keys_run_here_in_order() {
        let view = view(0, &UP3);
        for command in [
            "PING",
            "ECHO hi",
            "HELLO 3",
            "CLIENT ID",
            "CONFIG GET maxmemory",
            "INFO server",
            "TIME",
            "QUORRA NODES",
        ] {
            assert_eq!(plan_at(&view, 1, command), Plan::InOrder, "{command}");
        }
    }

    #[test]
    fn scripts_run_at_their_declared_keys_owner_as_writes() {
        let view = view(0, &UP3);
        let (a1, a2) = (key_of(&view, 1, "a"), key_of(&view, 1, "b"));
        let other = key_of(&view, 2, "c");
        let here = key_of(&view, 0, "d");
        assert_eq!(
            plan_at(&view, 1, &format!("EVAL body 2 {a1} {a2} arg")),
            Plan::Forward(node_id(1))
        );
        assert_eq!(
            plan_at(&view, 1, &format!("EVALSHA sha 2 {a1} {other}")),
            Plan::Spread(Spread::Refuse(CROSSSLOT))
        );
        // With copies, a script at its own primary is a replicated write; a read-only
        // one is not.
        assert_eq!(
            plan_at(&view, 3, &format!("EVAL body 1 {here}")),
            Plan::PrimaryWrite
        );
        assert_eq!(
            plan_at(&view, 3, &format!("EVAL_RO body 1 {here}")),
            Plan::Local
        );
        assert_eq!(plan_at(&view, 1, "EVAL body 0 arg"), Plan::InOrder);
    }

    #[test]
    fn two_key_commands_run_on_one_owner_or_are_refused() {
        let view = view(0, &UP3);
        let (a1, a2) = (key_of(&view, 1, "a"), key_of(&view, 1, "b"));
        let other = key_of(&view, 2, "c");
        assert_eq!(
            plan_at(&view, 1, &format!("RENAME {a1} {a2}")),
            Plan::Forward(node_id(1))
        );
        for command in ["RENAME", "RENAMENX", "COPY", "LCS"] {
            assert_eq!(
                plan_at(&view, 1, &format!("{command} {a1} {other}")),
                Plan::Spread(Spread::Refuse(CROSSSLOT)),
                "{command}"
            );
        }
    }

    #[test]
    fn multi_key_commands_over_several_owners_are_split_and_merged() {
        let view = view(0, &UP3);
        let (a, b) = (key_of(&view, 1, "a"), key_of(&view, 2, "b"));
        let split = |merge, step| Plan::Spread(Spread::Split { merge, step });
        assert_eq!(
            plan_at(&view, 1, &format!("MGET {a} {b}")),
            split(Merge::Values, 1)
        );
        assert_eq!(
            plan_at(&view, 1, &format!("MSET {a} 1 {b} 2")),
            split(Merge::AllOk, 2)
        );
        for command in ["DEL", "UNLINK", "EXISTS", "TOUCH"] {
            assert_eq!(
                plan_at(&view, 1, &format!("{command} {a} {b}")),
                split(Merge::Sum, 1),
                "{command}"
            );
        }
        // MSETNX must be atomic: it cannot be split.
        assert_eq!(
            plan_at(&view, 1, &format!("MSETNX {a} 1 {b} 2")),
            Plan::Spread(Spread::Refuse(CROSSSLOT))
        );
        // Keys of one owner: the whole command goes there.
        let a2 = key_of(&view, 1, "c");
        assert_eq!(
            plan_at(&view, 1, &format!("MGET {a} {a2}")),
            Plan::Forward(node_id(1))
        );
    }

    #[test]
    fn keyspace_commands_are_asked_of_every_node() {
        let view = view(0, &UP3);
        let cases = [
            ("DBSIZE", Spread::Everywhere(Merge::Sum)),
            ("KEYS *", Spread::Everywhere(Merge::Values)),
            ("FLUSHALL", Spread::Everywhere(Merge::AllOk)),
            ("FLUSHDB", Spread::Everywhere(Merge::AllOk)),
            ("SCAN 0", Spread::Scan),
            ("RANDOMKEY", Spread::RandomKey),
            ("INFO", Spread::Info),
            ("INFO keyspace", Spread::Info),
            ("QUORRA HOT k ON", Spread::Everywhere(Merge::AllOk)),
            ("QUORRA HOT k off", Spread::Everywhere(Merge::AllOk)),
        ];
        for (command, spread) in cases {
            assert_eq!(
                plan_at(&view, 1, command),
                Plan::Spread(spread),
                "{command}"
            );
        }
        // A key's hot-key status is this node's own.
        assert_eq!(plan_at(&view, 1, "QUORRA HOT k"), Plan::InOrder);
    }

    #[test]
    fn with_copies_reads_are_quorum_reads_and_writes_run_at_the_primary() {
        let view = view(0, &UP3);
        let placement = Placement::new(&view, 3);
        let primary_key = |owner| {
            (0..)
                .map(|n| format!("k{n}"))
                .find(|key| placement.primary(key.as_bytes()) == Some(&node_id(owner)))
                .unwrap()
        };
        let (here, there) = (primary_key(0), primary_key(1));
        for (command, kind) in [
            ("GET", QuorumRead::Get),
            ("MGET", QuorumRead::Mget),
            ("EXISTS", QuorumRead::Exists),
        ] {
            assert_eq!(
                plan_at(&view, 3, &format!("{command} {there}")),
                Plan::QuorumRead(kind)
            );
        }
        assert_eq!(
            plan_at(&view, 3, &format!("SET {here} v")),
            Plan::PrimaryWrite
        );
        assert_eq!(
            plan_at(&view, 3, &format!("SET {there} v")),
            Plan::Forward(node_id(1))
        );
        // Other reads run at the primary, as on a single node, without copying.
        assert_eq!(plan_at(&view, 3, &format!("TTL {here}")), Plan::Local);
        assert_eq!(
            plan_at(&view, 3, &format!("STRLEN {there}")),
            Plan::Forward(node_id(1))
        );
    }

    #[test]
    fn a_key_whose_replicas_are_all_down_is_refused() {
        let mut states = UP3;
        states[1] = MemberState::Down;
        states[2] = MemberState::Down;
        let view = view(0, &states);
        // With three copies every key has node 0 as a replica, so it always has a
        // primary; with one copy a key moves to a serving node. Two copies out of three
        // nodes leave keys whose two replicas are both down.
        let placement = Placement::new(&view, 2);
        let orphan = (0..)
            .map(|n| format!("k{n}"))
            .find(|key| placement.primary(key.as_bytes()).is_none())
            .unwrap();
        assert_eq!(
            plan_at(&view, 2, &format!("SET {orphan} v")),
            Plan::Spread(Spread::Refuse(NO_REPLICA))
        );
        assert_eq!(
            plan_at(&view, 2, &format!("DEL {orphan} other")),
            Plan::Spread(Spread::Refuse(NO_REPLICA))
        );
    }

    #[test]
    fn a_node_that_has_not_joined_refuses_key_commands_only() {
        let mut view = view(0, &UP3);
        view.joined = false;
        assert_eq!(
            plan_at(&view, 1, "GET k"),
            Plan::Spread(Spread::Refuse(NOT_JOINED))
        );
        assert_eq!(
            plan_at(&view, 1, "DBSIZE"),
            Plan::Spread(Spread::Refuse(NOT_JOINED))
        );
        assert_eq!(plan_at(&view, 1, "PING"), Plan::InOrder);
        assert_eq!(plan_at(&view, 1, "INFO"), Plan::Spread(Spread::Info));
    }
}
