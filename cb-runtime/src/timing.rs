//! Who a breaker tells each call's duration: an append-only list of
//! observers (the Prometheus histogram, the OpenTelemetry one), read on the
//! call path without a lock.

use std::sync::OnceLock;
use std::time::Duration;

/// Told the duration of each call that finished (not cancelled).
pub(crate) type DurationObserver = Box<dyn Fn(Duration) + Send + Sync>;

/// An append-only list of [`DurationObserver`]s. Telling them costs one
/// acquire load per observer and one more at the end; with none, one load.
/// Observers are never removed.
#[derive(Default)]
pub(crate) struct DurationObservers(OnceLock<Box<Node>>);

struct Node {
    observe: DurationObserver,
    next: DurationObservers,
}

impl DurationObservers {
    /// Adds `observe` at the end of the list. Safe to call concurrently with
    /// [`notify`](Self::notify) and with other adds: each add lands exactly once.
    pub(crate) fn add(&self, observe: DurationObserver) {
        let mut at = self;
        let mut pending = observe;
        loop {
            match at.0.set(Box::new(Node {
                observe: pending,
                next: DurationObservers::default(),
            })) {
                Ok(()) => return,
                // Another observer holds this slot: try the next one.
                Err(node) => pending = node.observe,
            }
            if let Some(node) = at.0.get() {
                at = &node.next;
            }
        }
    }

    /// `true` when no observer was added.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.get().is_none()
    }

    /// Tells every observer `d`, in the order they were added.
    #[inline]
    pub(crate) fn notify(&self, d: Duration) {
        let mut at = self;
        while let Some(node) = at.0.get() {
            (node.observe)(d);
            at = &node.next;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn every_observer_is_told_in_order_and_concurrent_adds_all_land() {
        let list = Arc::new(DurationObservers::default());
        assert!(list.is_empty());
        list.notify(Duration::from_secs(1));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        for i in 0..3u64 {
            let seen = Arc::clone(&seen);
            list.add(Box::new(move |d| seen.lock().unwrap().push((i, d.as_millis()))));
        }
        assert!(!list.is_empty());
        list.notify(Duration::from_millis(7));
        assert_eq!(*seen.lock().unwrap(), vec![(0, 7), (1, 7), (2, 7)]);

        let total = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (list, total) = (Arc::clone(&list), Arc::clone(&total));
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        let total = Arc::clone(&total);
                        list.add(Box::new(move |_| {
                            total.fetch_add(1, Ordering::Relaxed);
                        }));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        list.notify(Duration::ZERO);
        assert_eq!(total.load(Ordering::Relaxed), 100);
    }
}
