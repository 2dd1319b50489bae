//! A node's origins at run time: the drivers, each origin's health, the loads in flight,
//! the negative cache, and per-namespace figures.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;

use crate::flight::SingleFlight;
use crate::http::Http;
use crate::namespace::{Catalog, OriginKind, WriteMode};
use crate::negative::{DEFAULT_CAPACITY, NegativeCache};
use crate::origin::{Origin, OriginError};
use crate::postgres::Postgres;
use crate::sqlite::Sqlite;
use crate::write_behind::WriteBehind;

/// What a load gives: the value, `None` when the origin has no such row, or why it
/// failed.
pub type Loaded = Result<Option<Bytes>, OriginError>;

/// What every caller waiting for a key's flight is answered: the value, `None` when
/// the origin has no such row, or the error text the client gets.
pub type Answer = Result<Option<Bytes>, String>;

/// An origin's health, as the last check or load found it.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    /// Not checked yet.
    Unknown,
    /// Answering.
    Up,
    /// Not answering, with the reason.
    Down(String),
}

/// Figures of one namespace since start.
#[derive(Debug, Default)]
pub struct NamespaceStats {
    /// Loads run against the origin.
    pub loads: AtomicU64,
    /// Loads that failed (error or timeout).
    pub load_errors: AtomicU64,
    /// Loads that found no row.
    pub origin_misses: AtomicU64,
    /// Total time of the loads, microseconds.
    pub load_micros: AtomicU64,
    /// Misses that waited for a load already running instead of starting one.
    pub singleflight_dedup: AtomicU64,
    /// Misses answered from the negative cache, without a load.
    pub negative_hits: AtomicU64,
    /// Reads at the key's primary that found a value in its stale window.
    pub stale_served: AtomicU64,
    /// Background refreshes of stale values that loaded from the origin.
    pub refreshes: AtomicU64,
    /// Writes (stores and deletes) sent to the origin by write-through.
    pub origin_writes: AtomicU64,
    /// Those that failed or timed out.
    pub origin_write_errors: AtomicU64,
}

impl NamespaceStats {
    /// Adds `by` to one of the figures.
    pub fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The origins and namespaces of a node, ready to load.
pub struct Origins {
    catalog: Catalog,
    drivers: Vec<Arc<dyn Origin>>,
    health: Vec<RwLock<Health>>,
    stats: Vec<NamespaceStats>,
    /// Loads in flight, one per key.
    pub flights: SingleFlight<Answer>,
    /// Keys the origin has no row for.
    pub negative: NegativeCache,
    /// Keys queued or being refreshed, so that each is queued once.
    refreshing: Mutex<HashSet<Bytes>>,
    refresh_queue: mpsc::Sender<Bytes>,
    refresh_receiver: Mutex<Option<mpsc::Receiver<Bytes>>>,
    stale_windows: bool,
    /// Per namespace: its write-behind queue, if it writes behind.
    write_behind: Vec<Option<WriteBehind>>,
}

/// Most keys waiting for a refresh; stale reads beyond it do not queue one (the key
/// is refreshed when a later read finds room, or loaded when it expires).
pub const REFRESH_QUEUE: usize = 10_000;

impl Origins {
    /// Drivers for every origin of `catalog`. Nothing connects yet: an origin that is
    /// down shows in [`Origins::health`].
    pub fn open(catalog: Catalog) -> Origins {
        let mut drivers: Vec<Arc<dyn Origin>> = Vec::with_capacity(catalog.origins().len());
        for origin in catalog.origins() {
            drivers.push(match &origin.kind {
                OriginKind::Sqlite(path) => {
                    Arc::new(Sqlite::new(&origin.name, path.clone(), origin.pool))
                }
                OriginKind::Postgres(url) => {
                    Arc::new(Postgres::new(&origin.name, url, origin.pool))
                }
                OriginKind::Http(template) => {
                    Arc::new(Http::new(&origin.name, template, origin.pool))
                }
            });
        }
        let (refresh_queue, refresh_receiver) = mpsc::channel(REFRESH_QUEUE);
        Origins {
            refreshing: Mutex::new(HashSet::new()),
            refresh_queue,
            refresh_receiver: Mutex::new(Some(refresh_receiver)),
            stale_windows: catalog
                .namespaces()
                .iter()
                .any(|namespace| !namespace.stale_while_revalidate.is_zero()),
            write_behind: catalog
                .namespaces()
                .iter()
                .map(|namespace| {
                    (namespace.write == WriteMode::Behind)
                        .then(|| WriteBehind::new(namespace.write_behind.max_pending))
                })
                .collect(),
            health: catalog
                .origins()
                .iter()
                .map(|_| RwLock::new(Health::Unknown))
                .collect(),
            stats: catalog
                .namespaces()
                .iter()
                .map(|_| NamespaceStats::default())
                .collect(),
            drivers,
            catalog,
            flights: SingleFlight::default(),
            negative: NegativeCache::new(DEFAULT_CAPACITY),
        }
    }

    /// The namespaces and origins.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The write-behind queue of the namespace at `namespace`, if it writes behind.
    pub fn write_behind(&self, namespace: usize) -> Option<&WriteBehind> {
        self.write_behind[namespace].as_ref()
    }

    /// True if some namespace writes behind.
    pub fn writes_behind(&self) -> bool {
        self.write_behind.iter().any(Option::is_some)
    }

    /// True if some namespace serves stale values while it refreshes them.
    pub fn has_stale_windows(&self) -> bool {
        self.stale_windows
    }

    /// Notes that a read at `key`'s primary found its value (of the namespace at
    /// `namespace`) in its stale window, and queues one refresh of it unless one is
    /// queued or running. The node's refresh task takes the queue
    /// ([`Origins::take_refresh_queue`]) and calls [`Origins::refresh_done`].
    pub fn serve_stale(&self, namespace: usize, key: &Bytes) {
        NamespaceStats::bump(&self.stats[namespace].stale_served, 1);
        let mut refreshing = self.refreshing.lock();
        if refreshing.contains(key) {
            return;
        }
        if self.refresh_queue.try_send(key.clone()).is_ok() {
            refreshing.insert(key.clone());
        }
    }

    /// The queue of keys to refresh, for the one task that refreshes them; `None` after
    /// the first call.
    pub fn take_refresh_queue(&self) -> Option<mpsc::Receiver<Bytes>> {
        self.refresh_receiver.lock().take()
    }

    /// The refresh of `key` ended (loaded, failed, or found nothing to do); a later
    /// stale read may queue it again.
    pub fn refresh_done(&self, key: &[u8]) {
        self.refreshing.lock().remove(key);
    }

    /// Counts a refresh that loaded from the origin.
    pub fn count_refresh(&self, namespace: usize) {
        NamespaceStats::bump(&self.stats[namespace].refreshes, 1);
    }

    /// The figures of the namespace at `index`.
    pub fn stats(&self, namespace: usize) -> &NamespaceStats {
        &self.stats[namespace]
    }

    /// Each origin's name and health.
    pub fn health(&self) -> Vec<(&str, Health)> {
        self.catalog
            .origins()
            .iter()
            .zip(&self.health)
            .map(|(origin, health)| (origin.name.as_str(), health.read().clone()))
            .collect()
    }

    /// Asks every origin whether it answers, within its timeout, and records the
    /// answers.
    pub async fn check_all(&self) {
        for (index, origin) in self.catalog.origins().iter().enumerate() {
            let outcome = tokio::time::timeout(origin.timeout, self.drivers[index].check())
                .await
                .unwrap_or_else(|_| Err(self.timeout(index)));
            self.record_health(index, outcome.as_ref().map(|_| ()));
        }
    }

    fn timeout(&self, origin: usize) -> OriginError {
        let config = &self.catalog.origins()[origin];
        OriginError::Timeout {
            origin: config.name.clone(),
            timeout: config.timeout,
        }
    }

    fn record_health(&self, origin: usize, outcome: Result<(), &OriginError>) {
        let health = match outcome {
            Ok(()) | Err(OriginError::Query(_) | OriginError::Shape(_)) => Health::Up,
            Err(error) => Health::Down(error.to_string()),
        };
        let current = &self.health[origin];
        if *current.read() != health {
            *current.write() = health;
        }
    }

    /// Write-through: stores `key` = `value` at the origin of the namespace at
    /// `namespace` with its store statement, or deletes it (`value` `None`) with its
    /// delete statement, within the origin's timeout, counting it. `Ok(false)`: there is
    /// no such statement, nothing was sent.
    pub async fn write(
        &self,
        namespace: usize,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<bool, OriginError> {
        let policy = &self.catalog.namespaces()[namespace];
        let statement = match value {
            Some(_) => policy.store.as_deref(),
            None => policy.delete.as_deref(),
        };
        let Some(statement) = statement else {
            return Ok(false);
        };
        let origin = policy.origin;
        let timeout = self.catalog.origins()[origin].timeout;
        let origin_key = policy.origin_key(key);
        let parameters: Vec<&[u8]> = std::iter::once(origin_key).chain(value).collect();
        let outcome = tokio::time::timeout(
            timeout,
            self.drivers[origin].execute(statement, &parameters),
        )
        .await
        .unwrap_or_else(|_| Err(self.timeout(origin)));
        let stats = &self.stats[namespace];
        NamespaceStats::bump(&stats.origin_writes, 1);
        if outcome.is_err() {
            NamespaceStats::bump(&stats.origin_write_errors, 1);
        }
        self.record_health(origin, outcome.as_ref().map(|_| ()));
        outcome.map(|_| true)
    }

    /// Loads `key` of the namespace at `namespace` from its origin, within the origin's
    /// timeout, counting it. Single-flight and the negative cache are the caller's: this
    /// always queries.
    pub async fn load(&self, namespace: usize, key: &[u8]) -> Loaded {
        let policy = &self.catalog.namespaces()[namespace];
        let origin = policy.origin;
        let timeout: Duration = self.catalog.origins()[origin].timeout;
        let stats = &self.stats[namespace];
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            timeout,
            self.drivers[origin].load(&policy.load, policy.origin_key(key)),
        )
        .await
        .unwrap_or_else(|_| Err(self.timeout(origin)));
        NamespaceStats::bump(&stats.loads, 1);
        NamespaceStats::bump(&stats.load_micros, started.elapsed().as_micros() as u64);
        match &outcome {
            Ok(None) => NamespaceStats::bump(&stats.origin_misses, 1),
            Ok(Some(_)) => {}
            Err(_) => NamespaceStats::bump(&stats.load_errors, 1),
        }
        self.record_health(origin, outcome.as_ref().map(|_| ()));
        outcome
    }
}

/// One namespace's policy and figures, as `QUORRA NAMESPACES`, INFO and the HTTP API
/// show them.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceReport {
    /// `(field, value)` pairs, in a fixed order: the policy, then the origin's health,
    /// then the figures since start.
    pub fields: Vec<(&'static str, String)>,
}

impl Origins {
    /// Every namespace's policy and figures, longest prefix first; write-behind lag
    /// judged at `now_ms`.
    pub fn report(&self, now_ms: u64) -> Vec<NamespaceReport> {
        let health = self.health();
        self.catalog
            .namespaces()
            .iter()
            .enumerate()
            .map(|(index, namespace)| {
                let stats = &self.stats[index];
                let loads = NamespaceStats::get(&stats.loads);
                let average_us = NamespaceStats::get(&stats.load_micros)
                    .checked_div(loads)
                    .unwrap_or(0);
                let status = match &health[namespace.origin].1 {
                    Health::Unknown => "unknown".to_owned(),
                    Health::Up => "up".to_owned(),
                    Health::Down(reason) => format!("down: {reason}"),
                };
                let fields = vec![
                    ("name", namespace.name.clone()),
                    (
                        "prefix",
                        String::from_utf8_lossy(&namespace.prefix).into_owned(),
                    ),
                    ("origin", health[namespace.origin].0.to_owned()),
                    ("origin_status", status),
                    ("write", namespace.write.as_str().to_owned()),
                    ("ttl_ms", namespace.ttl.as_millis().to_string()),
                    ("ttl_jitter", namespace.ttl_jitter.to_string()),
                    (
                        "negative_ttl_ms",
                        namespace.negative_ttl.as_millis().to_string(),
                    ),
                    (
                        "stale_while_revalidate_ms",
                        namespace.stale_while_revalidate.as_millis().to_string(),
                    ),
                    ("loads", loads.to_string()),
                    (
                        "load_errors",
                        NamespaceStats::get(&stats.load_errors).to_string(),
                    ),
                    (
                        "origin_misses",
                        NamespaceStats::get(&stats.origin_misses).to_string(),
                    ),
                    ("avg_load_us", average_us.to_string()),
                    (
                        "singleflight_dedup",
                        NamespaceStats::get(&stats.singleflight_dedup).to_string(),
                    ),
                    (
                        "negative_hits",
                        NamespaceStats::get(&stats.negative_hits).to_string(),
                    ),
                    (
                        "stale_served",
                        NamespaceStats::get(&stats.stale_served).to_string(),
                    ),
                    (
                        "refreshes",
                        NamespaceStats::get(&stats.refreshes).to_string(),
                    ),
                    (
                        "origin_writes",
                        NamespaceStats::get(&stats.origin_writes).to_string(),
                    ),
                    (
                        "origin_write_errors",
                        NamespaceStats::get(&stats.origin_write_errors).to_string(),
                    ),
                ];
                let mut fields = fields;
                if let Some(queue) = &self.write_behind[index] {
                    fields.push(("write_behind_pending", queue.depth().to_string()));
                    fields.push(("write_behind_lag_ms", queue.lag_ms(now_ms).to_string()));
                }
                NamespaceReport { fields }
            })
            .collect()
    }
}
