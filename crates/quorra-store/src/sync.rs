//! The synchronisation primitives the store is built on, swappable for model checking.
//!
//! Normally these are `parking_lot::Mutex` and `std`'s atomics. In the crate's own unit
//! tests built with the `shuttle` feature they are shuttle's, so that
//! `store::shuttle_tests` can run the real store code under shuttle's scheduler, which
//! explores thread interleavings and reports deadlocks. Shuttle primitives panic
//! outside `shuttle::check_*`, so unit tests that use the store's atomics directly
//! are compiled out in that configuration; integration tests are unaffected (they link
//! the normal build of the library).
//!
//! ```sh
//! cargo test -p quorra-store --features shuttle --lib shuttle
//! ```
//!
//! The plain `cargo test` does not run `store::shuttle_tests` (it needs the feature);
//! it does run `memory::tests::shuttle_reservation_protocol_never_overcommits`.

#[cfg(not(all(test, feature = "shuttle")))]
pub(crate) use parking_lot::{Mutex, MutexGuard};
#[cfg(not(all(test, feature = "shuttle")))]
pub(crate) use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize};

#[cfg(all(test, feature = "shuttle"))]
pub(crate) use shuttle::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize};
#[cfg(all(test, feature = "shuttle"))]
pub(crate) use shuttle_mutex::{Mutex, MutexGuard};

#[cfg(all(test, feature = "shuttle"))]
mod shuttle_mutex {
    /// shuttle's mutex with parking_lot's signature (no poisoning in the API).
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(shuttle::sync::Mutex<T>);

    pub(crate) type MutexGuard<'a, T> = shuttle::sync::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(shuttle::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().expect("no panics while a shard is locked")
        }
    }
}
