//! Failed authentication: counted, logged without flooding the log, and kept for `ACL
//! LOG`.
//!
//! Every wrong password (AUTH, HELLO ... AUTH) bumps `acl_access_denied_auth` (INFO
//! stats, as Redis names it) and the `quorra_auth_failures_total` metric, and adds an
//! entry to a bounded log of recent failures that `ACL LOG` shows with Redis's fields.
//! As Redis does, a failure from the same client within [`GROUPING_WINDOW`] of the
//! previous one updates that entry (its count and last-updated time) instead of adding
//! one. A warning goes to the server log at most once per [`LOG_INTERVAL`], with the
//! number of failures since the last line, so a password-guessing client cannot flood it.
//!
//! The connection side (closing a connection after `max-auth-failures` failures) is in
//! the AUTH handler; this module only keeps the record.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::clients::ClientInfo;
use crate::log_limiter::LogLimiter;
use crate::wall_clock::unix_ms;

/// Entries `ACL LOG` keeps, as Redis's default `acllog-max-len`.
pub const MAX_ENTRIES: usize = 128;

/// A failure within this many ms of an entry's last update, by the same client and
/// user, updates it instead of adding one (Redis: 60 s).
pub const GROUPING_WINDOW: u64 = 60_000;

/// Least ms between two log lines about failed authentication.
pub const LOG_INTERVAL: u64 = 10_000;

/// One `ACL LOG` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthFailure {
    /// Unique, increasing.
    pub entry_id: u64,
    /// Failures this entry stands for.
    pub count: u64,
    /// The user name tried.
    pub username: String,
    /// The client's CLIENT INFO line at the last failure.
    pub client_info: String,
    /// The client's id, to group its failures.
    pub client_id: u64,
    /// When the first failure happened, ms since the epoch.
    pub created_ms: u64,
    /// When the last failure happened, ms since the epoch.
    pub updated_ms: u64,
}

/// The node's record of failed authentication.
#[derive(Debug)]
pub struct AuthLog {
    failures: AtomicU64,
    entries: Mutex<Entries>,
    log: LogLimiter,
}

impl Default for AuthLog {
    fn default() -> Self {
        AuthLog {
            failures: AtomicU64::new(0),
            entries: Mutex::new(Entries::default()),
            log: LogLimiter::new(LOG_INTERVAL),
        }
    }
}

#[derive(Debug, Default)]
struct Entries {
    /// Newest first.
    recent: VecDeque<AuthFailure>,
    next_id: u64,
}

impl AuthLog {
    /// Records a failed attempt by `client` as `username`.
    pub fn record(&self, client: &ClientInfo, username: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let now = unix_ms();
        let mut entries = self.entries.lock();
        let grouped = entries.recent.iter_mut().find(|entry| {
            entry.client_id == client.id
                && entry.username == username
                && now.saturating_sub(entry.updated_ms) < GROUPING_WINDOW
        });
        match grouped {
            Some(entry) => {
                entry.count += 1;
                entry.updated_ms = now;
                entry.client_info = client.describe(now);
            }
            None => {
                let entry_id = entries.next_id;
                entries.next_id += 1;
                entries.recent.push_front(AuthFailure {
                    entry_id,
                    count: 1,
                    username: username.to_owned(),
                    client_info: client.describe(now),
                    client_id: client.id,
                    created_ms: now,
                    updated_ms: now,
                });
                entries.recent.truncate(MAX_ENTRIES);
            }
        }
        drop(entries);
        if let Some(held_back) = self.log.admit() {
            tracing::warn!(client = %client.addr, username, not_logged_since_last_line = held_back,
                "authentication failed");
        }
    }

    /// Failed attempts since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Up to `count` entries, newest first.
    pub fn recent(&self, count: usize) -> Vec<AuthFailure> {
        self.entries
            .lock()
            .recent
            .iter()
            .take(count)
            .cloned()
            .collect()
    }

    /// Empties the log (`ACL LOG RESET`); the counter keeps counting.
    pub fn reset(&self) {
        self.entries.lock().recent.clear();
    }
}

/// Compares without stopping at the first difference, so response time does not reveal
/// how much of a guessed password or token was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::ClientRegistry;

    #[test]
    fn failures_of_one_client_group_and_the_log_stays_bounded() {
        let log = AuthLog::default();
        let registry = ClientRegistry::default();
        let addr = "127.0.0.1:1".parse().unwrap();
        let one = registry.connect(addr, addr);
        let two = registry.connect(addr, addr);
        log.record(&one, "default");
        log.record(&one, "default");
        log.record(&one, "admin");
        log.record(&two, "default");
        assert_eq!(log.failures(), 4);
        let recent = log.recent(10);
        let summary: Vec<(u64, &str, u64)> = recent
            .iter()
            .map(|entry| (entry.client_id, entry.username.as_str(), entry.count))
            .collect();
        assert_eq!(
            summary,
            [
                (two.id, "default", 1),
                (one.id, "admin", 1),
                (one.id, "default", 2)
            ]
        );
        for _ in 0..MAX_ENTRIES * 2 {
            let client = registry.connect(addr, addr);
            log.record(&client, "default");
        }
        assert_eq!(log.recent(usize::MAX).len(), MAX_ENTRIES);
        log.reset();
        assert!(log.recent(10).is_empty());
        assert_eq!(log.failures(), 4 + 2 * MAX_ENTRIES as u64);
    }
}
