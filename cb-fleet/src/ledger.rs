//! What the fleet has not heard yet: a message that found the background
//! task's queue full, or whose script got no answer (the fleet disconnected,
//! or `io_timeout` passed), is dropped and counted, but what it said is kept
//! here, per breaker, and the breaker is put on a short "dirty" list. The
//! task repairs every dirty breaker as soon as it can (after each message it
//! handles, on each tick, and when it reconnects): it sends the lost probe
//! reports again, with their ids and periods (so a report whose script ran
//! is not counted twice, and one of an older period changes nothing), and
//! shares a lost open (with the time that remains) or a lost close, if the
//! breaker is still in that state. Marking costs the caller a few atomic
//! operations and a lock held for one `Vec::push`; nothing waits.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use cb_runtime::coordination;
use cb_runtime::{State, Transition};

/// Lost probe reports kept per breaker, at most (the oldest go first: a
/// period has at most `half_open_max_calls` probes at once anyway).
const MAX_REPORTS: usize = 256;

/// A probe's result, as sent to the fleet: a unique id (a retried report is
/// counted once), the lease it gives back, and the period the probe was
/// admitted in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) id: String,
    pub(crate) lease: Option<String>,
    pub(crate) period: u64,
    pub(crate) ok: bool,
    /// `false`: the result may belong to a probe of an older period (see
    /// `Gate::finished`): give the lease back, count nothing.
    pub(crate) count: bool,
}

/// What one breaker's lost messages said, and how its state relates to
/// the fleet's.
#[derive(Debug)]
pub(crate) struct Ledger {
    pub(crate) name: Arc<str>,
    /// Probe reports not yet answered by Redis.
    reports: Mutex<Vec<Report>>,
    /// Opens this replica made and the fleet has not heard of (lost or queued).
    unshared_opens: AtomicU32,
    /// Opens lost (not queued any more), of `unshared_opens`.
    lost_opens: AtomicU32,
    /// One of the lost opens was a failed probe's reopen, in this period.
    lost_reopen: AtomicU64,
    /// A close after this replica's probes succeeded, in this period, was lost.
    lost_close: AtomicU64,
    /// The message that puts the name in the namespace's set was lost.
    lost_known: AtomicBool,
    /// The breaker's last forced-open or disabled state came from the fleet.
    pub(crate) manual_from_fleet: AtomicBool,
    /// The breaker's state was set by local manual control after the last
    /// fleet state this replica applied: local control holds until a newer
    /// fleet state arrives.
    pub(crate) local_control: AtomicBool,
    /// On the dirty list.
    listed: AtomicBool,
}

/// What a repair must do for one breaker, taken out of its ledger.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Repair {
    pub(crate) reports: Vec<Report>,
    /// Lost opens (share the open if the breaker is still open).
    pub(crate) opens: u32,
    /// The period of a lost failed probe's reopen (0: none).
    pub(crate) reopen: u64,
    /// The period of a lost close (0: none).
    pub(crate) close: u64,
    pub(crate) known: bool,
}

/// One message's worth of loss, described without the message.
pub(crate) enum Loss {
    Open { reopen: Option<u64> },
    Close { period: u64 },
    Known,
    Probe(Report),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Ledger {
    pub(crate) fn new(name: Arc<str>) -> Self {
        Ledger {
            name,
            reports: Mutex::new(Vec::new()),
            unshared_opens: AtomicU32::new(0),
            lost_opens: AtomicU32::new(0),
            lost_reopen: AtomicU64::new(0),
            lost_close: AtomicU64::new(0),
            lost_known: AtomicBool::new(false),
            manual_from_fleet: AtomicBool::new(false),
            local_control: AtomicBool::new(false),
            listed: AtomicBool::new(false),
        }
    }

    /// Notes what a transition means for a resynchronisation: an open of
    /// this replica's own that the fleet has yet to hear, whether a manual
    /// state came from the fleet, and local control. Called before the
    /// message is queued.
    pub(crate) fn saw(&self, t: &Transition, shared: bool) {
        if matches!(t.to, State::ForcedOpen | State::Disabled) {
            self.manual_from_fleet
                .store(coordination::is_from_peer(t), Ordering::Release);
        }
        if coordination::is_manual(t) {
            self.local_control.store(true, Ordering::Release);
        }
        if shared && t.to == State::Open {
            self.unshared_opens.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// An open reached Redis.
    pub(crate) fn open_shared(&self) {
        let _ = self
            .unshared_opens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// `true` while an open of this replica's own has not reached Redis.
    pub(crate) fn has_unshared_open(&self) -> bool {
        self.unshared_opens.load(Ordering::Acquire) > 0
    }

    /// Records a lost message; `true` when the breaker must go on the dirty list.
    pub(crate) fn lose(&self, loss: Loss) -> bool {
        match loss {
            Loss::Open { reopen } => {
                if let Some(period) = reopen {
                    self.lost_reopen.store(period.max(1), Ordering::Release);
                }
                self.lost_opens.fetch_add(1, Ordering::AcqRel);
            }
            Loss::Close { period } => self.lost_close.store(period.max(1), Ordering::Release),
            Loss::Known => self.lost_known.store(true, Ordering::Release),
            Loss::Probe(report) => {
                let mut list = lock(&self.reports);
                if list.len() >= MAX_REPORTS {
                    list.remove(0);
                }
                list.push(report);
            }
        }
        self.list()
    }

    /// Takes what is to repair (the breaker leaves the dirty list first, so
    /// a loss recorded meanwhile lists it again).
    pub(crate) fn take(&self) -> Repair {
        self.listed.store(false, Ordering::Release);
        let opens = self.lost_opens.swap(0, Ordering::AcqRel);
        for _ in 0..opens {
            self.open_shared();
        }
        Repair {
            reports: std::mem::take(&mut *lock(&self.reports)),
            opens,
            reopen: self.lost_reopen.swap(0, Ordering::AcqRel),
            close: self.lost_close.swap(0, Ordering::AcqRel),
            known: self.lost_known.swap(false, Ordering::AcqRel),
        }
    }

    /// Puts back a repair that could not be made (the connection was lost).
    pub(crate) fn restore(&self, r: Repair) {
        {
            let mut list = lock(&self.reports);
            let newer = std::mem::replace(&mut *list, r.reports);
            list.extend(newer);
            let over = list.len().saturating_sub(MAX_REPORTS);
            list.drain(..over);
        }
        self.unshared_opens.fetch_add(r.opens, Ordering::AcqRel);
        self.lost_opens.fetch_add(r.opens, Ordering::AcqRel);
        if r.reopen != 0 {
            self.lost_reopen.store(r.reopen, Ordering::Release);
        }
        if r.close != 0 {
            self.lost_close.store(r.close, Ordering::Release);
        }
        if r.known {
            self.lost_known.store(true, Ordering::Release);
        }
    }

    /// Lists the breaker as dirty, unless it is listed already.
    pub(crate) fn list(&self) -> bool {
        !self.listed.swap(true, Ordering::AcqRel)
    }
}

/// The breakers with something to repair.
#[derive(Default)]
pub(crate) struct Dirty {
    list: Mutex<Vec<Arc<Ledger>>>,
    any: AtomicBool,
}

impl Dirty {
    pub(crate) fn push(&self, ledger: Arc<Ledger>) {
        lock(&self.list).push(ledger);
        self.any.store(true, Ordering::Release);
    }

    /// Takes the list, if anything is on it (one atomic load when not).
    pub(crate) fn take(&self) -> Vec<Arc<Ledger>> {
        if !self.any.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *lock(&self.list))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(lease: &str) -> Report {
        Report {
            id: lease.to_owned(),
            lease: Some(lease.to_owned()),
            period: 7,
            ok: true,
            count: true,
        }
    }

    #[test]
    fn losses_add_up_and_list_a_breaker_once() {
        let l = Ledger::new(Arc::from("dep"));
        assert!(l.lose(Loss::Probe(report("a"))));
        assert!(!l.lose(Loss::Probe(report("b"))), "listed already");
        assert!(!l.lose(Loss::Open { reopen: Some(7) }));
        assert_eq!(
            l.take(),
            Repair {
                reports: vec![report("a"), report("b")],
                opens: 1,
                reopen: 7,
                close: 0,
                known: false
            }
        );
        assert_eq!(l.take(), Repair::default());
        assert!(l.lose(Loss::Close { period: 9 }), "listed again after a take");
        let r = l.take();
        assert_eq!(r.close, 9);
        l.restore(r);
        assert_eq!(l.take().close, 9, "a repair not made goes back");
    }
}
