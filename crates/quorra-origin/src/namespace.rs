//! Checked namespaces and origins ([`Catalog`]), the lookup of a key's namespace, and
//! TTL jitter.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

/// What kind of database an origin is, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginKind {
    /// An SQLite file, opened by the node itself.
    Sqlite(PathBuf),
    /// A PostgreSQL server: its connection URL.
    Postgres(String),
    /// An HTTP service: a URL template with `{key}`.
    Http(String),
}

/// A checked `[origins.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginConfig {
    /// Its name in the file.
    pub name: String,
    /// What and where.
    pub kind: OriginKind,
    /// Most connections.
    pub pool: usize,
    /// Longest a load may take.
    pub timeout: Duration,
}

/// What a namespace's writes do to its origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Nothing: SET and DEL change only the cache.
    None,
    /// SET and DEL write the origin first, and the cache only if that succeeded.
    Through,
    /// SET and DEL are acknowledged once cached; the origin is written in batches.
    Behind,
}

/// How a write-behind namespace flushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteBehindPolicy {
    /// Time between flushes.
    pub interval: Duration,
    /// Keys written together, a batch at a time, by one flush.
    pub batch: usize,
    /// Most keys waiting on a node.
    pub max_pending: usize,
}

impl WriteMode {
    /// Its name in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMode::None => "none",
            WriteMode::Through => "through",
            WriteMode::Behind => "behind",
        }
    }
}

/// A checked `[[namespaces]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Namespace {
    /// Its name.
    pub name: String,
    /// Keys that start with it are the namespace's.
    pub prefix: Bytes,
    /// Lifetime of a loaded value, before jitter.
    pub ttl: Duration,
    /// Each TTL is `ttl * (1 ± ttl_jitter)`.
    pub ttl_jitter: f64,
    /// How long the origin's "no such row" is remembered; zero: not at all.
    pub negative_ttl: Duration,
    /// How long past its TTL a value is served while it is refreshed; zero: off.
    pub stale_while_revalidate: Duration,
    /// Index of its origin in [`Catalog::origins`].
    pub origin: usize,
    /// The load query; `$1` is the key without the prefix.
    pub load: String,
    /// What writes do to the origin.
    pub write: WriteMode,
    /// With [`WriteMode::Through`] or [`WriteMode::Behind`]: the statement writing `$1`
    /// (key) = `$2` (value).
    pub store: Option<String>,
    /// With [`WriteMode::Through`] or [`WriteMode::Behind`]: the statement deleting
    /// `$1`; `None`: DEL changes only the cache.
    pub delete: Option<String>,
    /// With [`WriteMode::Behind`]: how it flushes.
    pub write_behind: WriteBehindPolicy,
}

impl Namespace {
    /// The TTL of one loaded value, given `unit`, a random number in `[0, 1)`: spread
    /// uniformly over `ttl * (1 - jitter) ..= ttl * (1 + jitter)`, so that keys loaded
    /// together do not all expire together. Never below a millisecond.
    pub fn jittered_ttl(&self, unit: f64) -> Duration {
        let factor = 1.0 - self.ttl_jitter + 2.0 * self.ttl_jitter * unit.clamp(0.0, 1.0);
        self.ttl.mul_f64(factor).max(Duration::from_millis(1))
    }

    /// The TTL a loaded value is stored with: the jittered TTL ([`Self::jittered_ttl`])
    /// plus the stale window, during which it is still served while it is refreshed.
    pub fn stored_ttl(&self, unit: f64) -> Duration {
        self.jittered_ttl(unit) + self.stale_while_revalidate
    }

    /// True if a value with `remaining_ms` left to live (as stored, with
    /// [`Self::stored_ttl`]) is past its TTL, inside its stale window: serve it, and
    /// refresh it.
    pub fn is_stale(&self, remaining_ms: i64) -> bool {
        let window = self.stale_while_revalidate.as_millis() as i64;
        window > 0 && (0..=window).contains(&remaining_ms)
    }

    /// The part of `key` the load query receives as `$1`.
    pub fn origin_key<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        &key[self.prefix.len()..]
    }
}

/// Every origin and namespace of a node, checked. Namespaces are kept longest prefix
/// first, so the first that matches a key is the longest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    origins: Vec<OriginConfig>,
    namespaces: Vec<Namespace>,
}

impl Catalog {
    /// A catalog of these origins and namespaces (whose `origin` fields index `origins`).
    pub fn new(origins: Vec<OriginConfig>, mut namespaces: Vec<Namespace>) -> Catalog {
        namespaces.sort_by_key(|namespace| std::cmp::Reverse(namespace.prefix.len()));
        Catalog {
            origins,
            namespaces,
        }
    }

    /// True when there is no namespace: every key behaves as in a plain store.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }

    /// The origins.
    pub fn origins(&self) -> &[OriginConfig] {
        &self.origins
    }

    /// The namespaces, longest prefix first.
    pub fn namespaces(&self) -> &[Namespace] {
        &self.namespaces
    }

    /// The index of the stored `key`'s namespace in [`Catalog::namespaces`]: the one
    /// with the longest prefix of it. Namespaces serve database 0: a key of another
    /// database ([`quorra_ring::database`]) has none, whatever its name.
    pub fn namespace_of(&self, key: &[u8]) -> Option<usize> {
        if quorra_ring::database::split(key).0 != 0 {
            return None;
        }
        self.namespaces
            .iter()
            .position(|namespace| key.starts_with(&namespace.prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(name: &str, prefix: &str) -> Namespace {
        Namespace {
            name: name.into(),
            prefix: Bytes::copy_from_slice(prefix.as_bytes()),
            ttl: Duration::from_secs(100),
            ttl_jitter: 0.1,
            negative_ttl: Duration::ZERO,
            stale_while_revalidate: Duration::ZERO,
            origin: 0,
            load: String::new(),
            write: WriteMode::None,
            store: None,
            delete: None,
            write_behind: WriteBehindPolicy {
                interval: Duration::from_secs(1),
                batch: 500,
                max_pending: 100,
            },
        }
    }

    #[test]
    fn the_longest_matching_prefix_wins() {
        let catalog = Catalog::new(
            Vec::new(),
            vec![
                namespace("all", ""),
                namespace("users", "user:"),
                namespace("admins", "user:admin:"),
            ],
        );
        let name = |key: &str| {
            catalog
                .namespace_of(key.as_bytes())
                .map(|i| catalog.namespaces()[i].name.as_str())
        };
        assert_eq!(name("user:admin:1"), Some("admins"));
        assert_eq!(name("user:7"), Some("users"));
        assert_eq!(name("order:7"), Some("all"));
        // Keys of another database (SELECT 1) have no namespace, not even the catch-all.
        let in_database_1 = quorra_ring::database::stored_key(1, b"user:7");
        assert_eq!(catalog.namespace_of(&in_database_1), None);
        let without_default = Catalog::new(Vec::new(), vec![namespace("users", "user:")]);
        assert_eq!(without_default.namespace_of(b"order:7"), None);
        assert_eq!(
            without_default.namespaces()[0].origin_key(b"user:42"),
            b"42"
        );
    }

    #[test]
    fn jitter_spreads_a_ttl_over_its_window() {
        let users = namespace("users", "user:");
        assert_eq!(users.jittered_ttl(0.0), Duration::from_secs(90));
        assert_eq!(users.jittered_ttl(0.5), Duration::from_secs(100));
        assert!(users.jittered_ttl(0.999_999) <= Duration::from_secs(110));
        let fixed = Namespace {
            ttl_jitter: 0.0,
            ..users
        };
        assert_eq!(fixed.jittered_ttl(0.7), Duration::from_secs(100));
    }

    #[test]
    fn a_value_is_stale_in_the_window_after_its_ttl() {
        let users = Namespace {
            stale_while_revalidate: Duration::from_secs(30),
            ttl_jitter: 0.0,
            ..namespace("users", "user:")
        };
        // Stored for 100 s + 30 s: fresh while more than 30 s remain.
        assert_eq!(users.stored_ttl(0.5), Duration::from_secs(130));
        assert!(!users.is_stale(30_001));
        assert!(users.is_stale(30_000));
        assert!(users.is_stale(0));
        // Gone (-2) or without a TTL (-1): not stale.
        assert!(!users.is_stale(-2));
        assert!(!users.is_stale(-1));
        let off = namespace("users", "user:");
        assert!(!off.is_stale(10));
    }
}
