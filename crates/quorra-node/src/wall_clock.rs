//! The wall clock, for what is not the store's business: client idle times, connection
//! ages, the deadlines of requests between nodes. Keys' expiry reads the store's
//! [`Clock`](quorra_store::Clock) instead, which tests can control.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, from the system clock.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}
