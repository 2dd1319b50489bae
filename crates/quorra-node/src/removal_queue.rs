//! A bounded queue between the store's removal hook and the task that acts on it.
//!
//! The store reports evictions and expirations under a shard lock, so its hook may only
//! queue: a lock of the queue's own and a push. A task waits for the first item
//! ([`RemovalQueue::first_queued`], no timer while nothing happens) and takes the batch.
//! Past [`MAX_QUEUED`] items between two takes, items are dropped and counted: a storm
//! of removals must not grow memory without bound. Used by the eviction feed
//! ([`crate::evictions`]) and by keyspace notifications ([`crate::notifications`]).

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Most items queued between two takes; beyond it they are dropped and counted.
pub const MAX_QUEUED: usize = 100_000;

/// Items waiting for a task.
#[derive(Debug)]
pub struct RemovalQueue<T> {
    queued: Mutex<Vec<T>>,
    first: Notify,
    /// Items dropped because the queue was full.
    pub dropped: AtomicU64,
}

impl<T> Default for RemovalQueue<T> {
    fn default() -> Self {
        RemovalQueue {
            queued: Mutex::new(Vec::new()),
            first: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }
}

impl<T> RemovalQueue<T> {
    /// Queues `item`, or drops and counts it when the queue is full.
    pub fn push(&self, item: T) {
        let mut queued = self.queued.lock();
        if queued.is_empty() {
            self.first.notify_one();
        }
        if queued.len() < MAX_QUEUED {
            queued.push(item);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until something is queued (at once if something was queued since the last
    /// wait).
    pub async fn first_queued(&self) {
        self.first.notified().await;
    }

    /// Everything queued, emptying the queue.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.queued.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_wait_up_to_the_bound_and_a_waiter_is_woken_by_the_first() {
        let queue = RemovalQueue::default();
        queue.push(1);
        // The permit left by the first push wakes the next wait at once.
        tokio::time::timeout(std::time::Duration::from_secs(5), queue.first_queued())
            .await
            .unwrap();
        for n in 2..=MAX_QUEUED + 3 {
            queue.push(n);
        }
        assert_eq!(queue.take().len(), MAX_QUEUED);
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 3);
        assert!(queue.take().is_empty());
    }
}
