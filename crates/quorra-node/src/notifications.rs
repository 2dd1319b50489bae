//! Keyspace notifications: Redis's `notify-keyspace-events`, published over pub/sub.
//!
//! A command that changes a key tells [`Notifier::notify`] what happened (`set`, `del`,
//! `expire`, ...) with Redis's event names and classes; the store's expiry and eviction
//! tell it of `expired` and `evicted`. If the event's class is enabled, the event is
//! published on `__keyspace@<db>__:<key>` (message: the event) and/or
//! `__keyevent@<db>__:<event>` (message: the key), as Redis does.
//!
//! Each event is raised once in the cluster: commands run at their keys' owner (the
//! primary with copies), where the handlers raise them; replicas store copies without
//! running handlers. Expiry and eviction happen inside the store, on every replica, under
//! a shard lock: the store's removal hook only queues the key here
//! ([`Notifier::queue_removal`], when the class is enabled; bounded by
//! [`crate::removal_queue`]), and a task raises the
//! queued events for the keys this node is primary for
//! ([`crate::cluster_tasks::raise_removals`]). The message is published through [`crate::pubsub`],
//! which relays it to every node: a client subscribes to notifications on any node and
//! gets every key's. The setting is per node, as in Redis Cluster: set it on every node.

use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use quorra_ring::database;

use crate::pubsub::{Kind, PubSub};
use crate::removal_queue::RemovalQueue;

/// `K`: events on `__keyspace@<db>__:<key>`.
pub const KEYSPACE: u32 = 1 << 0;
/// `E`: events on `__keyevent@<db>__:<event>`.
pub const KEYEVENT: u32 = 1 << 1;
/// `g`: generic commands (DEL, EXPIRE, RENAME, ...).
pub const GENERIC: u32 = 1 << 2;
/// `$`: string commands.
pub const STRING: u32 = 1 << 3;
/// `l`: list commands.
pub const LIST: u32 = 1 << 4;
/// `s`: set commands.
pub const SET: u32 = 1 << 5;
/// `h`: hash commands.
pub const HASH: u32 = 1 << 6;
/// `z`: sorted set commands.
pub const ZSET: u32 = 1 << 7;
/// `x`: a key expired.
pub const EXPIRED: u32 = 1 << 8;
/// `e`: a key was evicted for memory.
pub const EVICTED: u32 = 1 << 9;
/// `t`: stream commands.
pub const STREAM: u32 = 1 << 10;
/// `m`: a read missed its key.
pub const KEY_MISS: u32 = 1 << 11;
/// `d`: module events.
pub const MODULE: u32 = 1 << 12;
/// `n`: a key was created.
pub const NEW: u32 = 1 << 13;
/// `A`: every class but `m` and `n`.
pub const ALL: u32 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

/// The classes named by a `notify-keyspace-events` value; `None` for a character that
/// names none.
pub fn parse(value: &[u8]) -> Option<u32> {
    value.iter().try_fold(0, |flags, byte| {
        Some(
            flags
                | match byte {
                    b'A' => ALL,
                    b'g' => GENERIC,
                    b'$' => STRING,
                    b'l' => LIST,
                    b's' => SET,
                    b'h' => HASH,
                    b'z' => ZSET,
                    b'x' => EXPIRED,
                    b'e' => EVICTED,
                    b'K' => KEYSPACE,
                    b'E' => KEYEVENT,
                    b't' => STREAM,
                    b'm' => KEY_MISS,
                    b'd' => MODULE,
                    b'n' => NEW,
                    _ => return None,
                },
        )
    })
}

/// The value CONFIG GET shows for `flags`, written as Redis writes it.
pub fn format(flags: u32) -> String {
    let mut text = String::new();
    if flags & ALL == ALL {
        text.push('A');
    } else {
        for (flag, class) in [
            (GENERIC, 'g'),
            (STRING, '$'),
            (LIST, 'l'),
            (SET, 's'),
            (HASH, 'h'),
            (ZSET, 'z'),
            (EXPIRED, 'x'),
            (EVICTED, 'e'),
            (STREAM, 't'),
            (MODULE, 'd'),
        ] {
            if flags & flag != 0 {
                text.push(class);
            }
        }
    }
    for (flag, class) in [
        (KEYSPACE, 'K'),
        (KEYEVENT, 'E'),
        (KEY_MISS, 'm'),
        (NEW, 'n'),
    ] {
        if flags & flag != 0 {
            text.push(class);
        }
    }
    text
}

/// Why the store removed a key on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Its TTL passed (`expired`, class `x`).
    Expired,
    /// It was evicted for memory (`evicted`, class `e`).
    Evicted,
}

impl Removal {
    /// The event's class and name.
    pub fn event(self) -> (u32, &'static str) {
        match self {
            Removal::Expired => (EXPIRED, "expired"),
            Removal::Evicted => (EVICTED, "evicted"),
        }
    }
}

/// Whether `flags` publish events of `class` on at least one of the two channels.
fn enabled(flags: u32, class: u32) -> bool {
    flags & class != 0 && flags & (KEYSPACE | KEYEVENT) != 0
}

/// The node's `notify-keyspace-events`, and the store's removals waiting for their event.
#[derive(Debug, Default)]
pub struct Notifier {
    flags: AtomicU32,
    /// Expired and evicted keys waiting for their event (its `dropped`: events dropped
    /// because it was full).
    pub removals: RemovalQueue<(Bytes, Removal)>,
}

impl Notifier {
    /// Notifications of the classes in `flags`.
    pub fn new(flags: u32) -> Notifier {
        Notifier {
            flags: AtomicU32::new(flags),
            ..Notifier::default()
        }
    }

    /// Queues the event of the store removing `stored_key`, if its class is enabled
    /// (called under a shard lock: no more than a lock of its own and a push).
    pub fn queue_removal(&self, stored_key: &[u8], removal: Removal) {
        if !self.wants(removal.event().0) {
            return;
        }
        self.removals
            .push((Bytes::copy_from_slice(stored_key), removal));
    }

    /// The classes enabled now.
    pub fn flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    /// Enables exactly the classes in `flags` (CONFIG SET).
    pub fn set_flags(&self, flags: u32) {
        self.flags.store(flags, Ordering::Relaxed);
    }

    /// Whether an event of `class` would be published: every command that changes a
    /// key asks, so it is one relaxed load.
    pub fn wants(&self, class: u32) -> bool {
        enabled(self.flags(), class)
    }

    /// Publishes `event` of `class` on the key `stored_key` (in its stored form, which
    /// carries its database) if that class is enabled.
    pub fn notify(&self, pubsub: &PubSub, class: u32, event: &str, stored_key: &[u8]) {
        let flags = self.flags();
        if !enabled(flags, class) {
            return;
        }
        let (db, key) = database::split(stored_key);
        if flags & KEYSPACE != 0 {
            let mut channel = format!("__keyspace@{db}__:").into_bytes();
            channel.extend_from_slice(key);
            pubsub.publish(Kind::Channel, channel.into(), Bytes::from(event.to_owned()));
        }
        if flags & KEYEVENT != 0 {
            let channel = format!("__keyevent@{db}__:{event}");
            pubsub.publish(Kind::Channel, channel.into(), Bytes::copy_from_slice(key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_print_as_redis_does() {
        assert_eq!(parse(b""), Some(0));
        assert_eq!(parse(b"KEA").map(format).as_deref(), Some("AKE"));
        assert_eq!(parse(b"Kx$").map(format).as_deref(), Some("$xK"));
        assert_eq!(parse(b"Eg$lshzxetdmn").map(format).as_deref(), Some("AEmn"));
        assert_eq!(parse(b"KEA?"), None);
    }

    #[test]
    fn an_event_is_published_on_the_enabled_channels_only() {
        let hub = PubSub::new(0);
        let off = Notifier::default();
        off.notify(&hub, GENERIC, "del", b"k");
        assert_eq!(hub.counters.published.load(Ordering::Relaxed), 0);
        let notifier = Notifier::new(parse(b"Kg").unwrap());
        assert!(!notifier.wants(STRING));
        notifier.notify(&hub, STRING, "set", b"k");
        notifier.notify(&hub, GENERIC, "del", b"k");
        assert_eq!(hub.counters.published.load(Ordering::Relaxed), 1);
        notifier.set_flags(parse(b"KEA").unwrap());
        notifier.notify(&hub, EXPIRED, "expired", &database::stored_key(3, b"k"));
        assert_eq!(hub.counters.published.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn removals_are_queued_only_for_enabled_classes() {
        let notifier = Notifier::new(parse(b"Ex").unwrap());
        notifier.queue_removal(b"gone", Removal::Evicted);
        notifier.queue_removal(b"old", Removal::Expired);
        assert_eq!(
            notifier.removals.take(),
            vec![(Bytes::from_static(b"old"), Removal::Expired)]
        );
    }
}
