//! Accounting, in one place: what a node counts about the commands its clients send.
//!
//! Every command a client sends is counted here once, at the node that answers the
//! client, whatever happened to it: run here, forwarded to its key's primary, answered
//! by a quorum of replicas, or scattered over every node. [`command`] counts it
//! (`total_commands_processed`, `rejected_calls`, `failed_calls`, the per-command
//! counters and latency histogram); [`lookups`] counts the keyspace hits and misses its
//! reads made, wherever they ran (a node that runs commands for a peer returns their
//! lookups to it instead of counting them; see [`crate::peer_handler`]). Commands run for a
//! peer are counted only as such (`quorra_peer_commands_processed`): the peer's node
//! accounts for them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use quorra_resp::command::CommandId;

use crate::shared::{ServerCounters, Shared};

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and answered.
    Ok,
    /// It ran and answered with an error.
    Failed,
    /// It was refused before it ran (unknown, wrong arity, not authenticated).
    Rejected,
}

impl Outcome {
    /// The outcome a reply shows: an error reply is a failure.
    pub fn of_reply(reply: &[u8]) -> Outcome {
        if reply.first() == Some(&b'-') {
            Outcome::Failed
        } else {
            Outcome::Ok
        }
    }
}

/// Keyspace reads that found their key, and reads that did not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lookups {
    /// Reads that found a live key.
    pub hits: u64,
    /// Reads that found none.
    pub misses: u64,
}

impl Lookups {
    /// Counts one read.
    pub fn found(&mut self, found: bool) {
        if found {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
    }

    /// Adds `other`'s reads.
    pub fn add(&mut self, other: Lookups) {
        self.hits += other.hits;
        self.misses += other.misses;
    }
}

/// Counts a client's command `id` (`None`: a name not in the command table) that ended
/// with `outcome` after `took`.
pub fn command(shared: &Shared, id: Option<CommandId>, outcome: Outcome, took: Duration) {
    let counters = &shared.counters;
    match (outcome, id) {
        (Outcome::Rejected, id) => {
            ServerCounters::bump(&counters.rejected_calls);
            if let Some(id) = id {
                shared.metrics.command_rejected(id);
            }
        }
        (outcome, Some(id)) => {
            ServerCounters::bump(&counters.commands_processed);
            if outcome == Outcome::Failed {
                ServerCounters::bump(&counters.failed_calls);
            }
            shared
                .metrics
                .command_done(id, outcome == Outcome::Ok, took);
        }
        // A command that ran always has an id.
        (_, None) => ServerCounters::bump(&counters.rejected_calls),
    }
}

/// Counts the keyspace reads of a client's command.
pub fn lookups(shared: &Shared, lookups: Lookups) {
    let counters = &shared.counters;
    if lookups.hits > 0 {
        counters
            .keyspace_hits
            .fetch_add(lookups.hits, Ordering::Relaxed);
    }
    if lookups.misses > 0 {
        counters
            .keyspace_misses
            .fetch_add(lookups.misses, Ordering::Relaxed);
    }
}

/// Counts commands run here for a peer's client.
pub fn peer_commands(shared: &Shared, count: usize) {
    shared
        .counters
        .peer_commands_processed
        .fetch_add(count as u64, Ordering::Relaxed);
}
