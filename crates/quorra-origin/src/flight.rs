//! Single-flight: one load per key at a time, however many callers miss it at once.
//!
//! The first caller to [`SingleFlight::join`] a key leads: it runs the load and
//! [`Leader::finish`]es with the outcome. Callers that join while it runs follow: they
//! wait for that outcome and count as collapsed. The leader finishes only after it has
//! stored the value, so a caller that comes after the flight ended finds the value in
//! the cache (it checks before it loads) instead of loading again.
//!
//! A write to the key while its load runs ([`SingleFlight::overtake`]) marks the flight:
//! the value loaded may predate the write, so the leader does not store it.
//!
//! A leader dropped before it finishes (its client went away, its task was cancelled)
//! ends the flight without an outcome: each follower gets `None` from
//! [`Follower::wait`] and joins again, and one of them leads the next flight. No one
//! waits for a load that nobody runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

/// Loads in flight, by key, each sharing its outcome `V` with everyone waiting.
pub struct SingleFlight<V> {
    flights: Mutex<HashMap<Bytes, Flight<V>>>,
    collapsed: AtomicU64,
}

/// A load in flight: its outcome, when it comes, and whether a write to its key
/// arrived meanwhile.
struct Flight<V> {
    outcome: watch::Receiver<Option<V>>,
    overtaken: Arc<AtomicBool>,
}

impl<V> Default for SingleFlight<V> {
    fn default() -> Self {
        SingleFlight {
            flights: Mutex::new(HashMap::new()),
            collapsed: AtomicU64::new(0),
        }
    }
}

/// A caller's part in a key's flight.
pub enum Turn<'f, V> {
    /// Run the load, then [`Leader::finish`].
    Lead(Leader<'f, V>),
    /// Wait for the leader's outcome.
    Follow(Follower<V>),
}

/// The caller that runs a flight's load.
pub struct Leader<'f, V> {
    flights: &'f SingleFlight<V>,
    key: Bytes,
    outcome: watch::Sender<Option<V>>,
    overtaken: Arc<AtomicBool>,
}

/// A caller waiting for a flight's outcome.
pub struct Follower<V> {
    outcome: watch::Receiver<Option<V>>,
}

impl<V: Clone> SingleFlight<V> {
    /// Joins `key`'s flight: leads it if none runs, follows the running one otherwise.
    pub fn join(&self, key: &Bytes) -> Turn<'_, V> {
        let mut flights = self.flights.lock();
        if let Some(flight) = flights.get(key) {
            self.collapsed.fetch_add(1, Ordering::Relaxed);
            return Turn::Follow(Follower {
                outcome: flight.outcome.clone(),
            });
        }
        let (sender, receiver) = watch::channel(None);
        let overtaken = Arc::new(AtomicBool::new(false));
        flights.insert(
            key.clone(),
            Flight {
                outcome: receiver,
                overtaken: overtaken.clone(),
            },
        );
        Turn::Lead(Leader {
            flights: self,
            key: key.clone(),
            outcome: sender,
            overtaken,
        })
    }

    /// Notes that `key` is being written: a load of it in flight read the origin
    /// before the write, so its leader must not store what it loaded
    /// ([`Leader::overtaken`]).
    pub fn overtake(&self, key: &[u8]) {
        if let Some(flight) = self.flights.lock().get(key) {
            flight.overtaken.store(true, Ordering::Release);
        }
    }

    /// Callers that waited for another caller's load instead of loading, since start.
    pub fn collapsed(&self) -> u64 {
        self.collapsed.load(Ordering::Relaxed)
    }

    /// Keys being loaded now.
    pub fn in_flight(&self) -> usize {
        self.flights.lock().len()
    }
}

impl<V> Leader<'_, V> {
    /// True if the key was written since the flight began: what it loaded may be older
    /// than the cache, so the leader answers from the cache instead of storing it.
    pub fn overtaken(&self) -> bool {
        self.overtaken.load(Ordering::Acquire)
    }

    /// Ends the flight with `outcome`, which every follower receives. Call it after the
    /// value is stored: from then on, callers find it in the cache.
    pub fn finish(self, outcome: V) {
        self.flights.flights.lock().remove(&self.key);
        // Followers may all have gone; nobody to tell then.
        let _ = self.outcome.send(Some(outcome));
    }
}

impl<V> Drop for Leader<'_, V> {
    fn drop(&mut self) {
        // Finished or abandoned, the flight is over; removing twice is harmless.
        self.flights.flights.lock().remove(&self.key);
    }
}

impl<V: Clone> Follower<V> {
    /// The leader's outcome, or `None` if the leader gave up without one (join again).
    pub async fn wait(mut self) -> Option<V> {
        match self.outcome.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn callers_during_a_flight_share_its_outcome() {
        let flights = SingleFlight::<u32>::default();
        let Turn::Lead(leader) = flights.join(&key("k")) else {
            panic!("the first caller leads");
        };
        let followers: Vec<_> = (0..5)
            .map(|_| match flights.join(&key("k")) {
                Turn::Follow(follower) => follower,
                Turn::Lead(_) => panic!("a flight runs; the caller follows"),
            })
            .collect();
        // Another key has its own flight.
        assert!(matches!(flights.join(&key("other")), Turn::Lead(_)));
        leader.finish(7);
        for follower in followers {
            assert_eq!(follower.wait().await, Some(7));
        }
        assert_eq!(flights.collapsed(), 5);
        assert_eq!(flights.in_flight(), 0);
        // After the flight, the next caller leads a new one (it finds the value stored).
        assert!(matches!(flights.join(&key("k")), Turn::Lead(_)));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_write_during_a_flight_overtakes_it() {
        let flights = SingleFlight::<u32>::default();
        let Turn::Lead(leader) = flights.join(&key("k")) else {
            panic!("the first caller leads");
        };
        flights.overtake(b"other");
        assert!(!leader.overtaken());
        flights.overtake(b"k");
        assert!(leader.overtaken());
        leader.finish(1);
        // The next flight starts clean.
        let Turn::Lead(next) = flights.join(&key("k")) else {
            panic!("no flight runs");
        };
        assert!(!next.overtaken());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_abandoned_flight_releases_its_followers_to_lead_again() {
        let flights = SingleFlight::<u32>::default();
        let leader = flights.join(&key("k"));
        let Turn::Follow(follower) = flights.join(&key("k")) else {
            panic!("a flight runs");
        };
        drop(leader);
        assert_eq!(follower.wait().await, None);
        assert!(matches!(flights.join(&key("k")), Turn::Lead(_)));
    }
}
