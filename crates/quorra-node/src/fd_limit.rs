//! File descriptors: fit `maxclients` to what the process may open, as Redis does.
//!
//! A node needs one descriptor per client, per admin HTTP connection, and a few more for
//! its listeners, gossip socket, connections to peers and files ([`RESERVED_FDS`]). At
//! start it raises its soft `RLIMIT_NOFILE` towards what that adds up to (never past the
//! hard limit) and, if the limit is still too low, lowers `maxclients` to fit and says so
//! in the log. Clients beyond `maxclients` are then refused with `-ERR max number of
//! clients reached` while descriptors remain to accept and answer them, instead of
//! hanging in the listen queue once none is left.

/// Descriptors kept for everything but clients and HTTP connections: listeners, the
/// gossip socket, RPC connections to peers, the roster file, the log. (Redis keeps 32.)
pub const RESERVED_FDS: u64 = 32;

/// What fitting did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fitted {
    /// The clients the node will accept.
    pub maxclients: usize,
    /// The soft limit in force afterwards.
    pub limit: u64,
}

/// The `maxclients` that fits in a descriptor limit of `limit`, given that
/// `http_connections` more may be open besides the reserve; at least 1.
pub fn maxclients_within(limit: u64, maxclients: usize, http_connections: usize) -> usize {
    let room = limit.saturating_sub(RESERVED_FDS + http_connections as u64);
    (maxclients as u64).min(room).max(1) as usize
}

/// The soft descriptor limit in force now.
pub fn current_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

/// Raises the soft descriptor limit towards `maxclients + http_connections +
/// RESERVED_FDS` (at most to the hard limit), then fits `maxclients` to the limit in
/// force, logging each change.
pub fn fit(maxclients: usize, http_connections: usize) -> Fitted {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let wanted = maxclients as u64 + http_connections as u64 + RESERVED_FDS;
    let limits = getrlimit(Resource::Nofile);
    let mut limit = limits.current.unwrap_or(u64::MAX);
    if limit < wanted {
        let raised = limits.maximum.map_or(wanted, |hard| hard.min(wanted));
        let mut new = limits;
        new.current = Some(raised);
        match setrlimit(Resource::Nofile, new) {
            Ok(()) => {
                tracing::info!(from = limit, to = raised, "raised the open-files limit");
                limit = raised;
            }
            Err(error) => tracing::warn!(%error, limit, "cannot raise the open-files limit"),
        }
    }
    let fitted = maxclients_within(limit, maxclients, http_connections);
    if fitted < maxclients {
        tracing::warn!(
            maxclients,
            lowered_to = fitted,
            open_files_limit = limit,
            "maxclients lowered to fit the open-files limit (raise it with ulimit -n)"
        );
    }
    Fitted {
        maxclients: fitted,
        limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maxclients_leaves_room_for_http_and_the_reserve() {
        assert_eq!(maxclients_within(1024, 10_000, 256), 1024 - 32 - 256);
        assert_eq!(maxclients_within(1_000_000, 10_000, 256), 10_000);
        assert_eq!(maxclients_within(100, 10_000, 256), 1, "never zero");
    }
}
