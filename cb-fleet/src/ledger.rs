//! What the fleet has not heard yet: a message that found the background
//! task's queue full (or the fleet disconnected) is dropped and counted, but
//! what it said is kept here, per breaker, in atomics, and the breaker is put
//! on a short "dirty" list. The task repairs every dirty breaker as soon as it
//! can (after each message it handles, on each tick, and when it reconnects):
//! it counts lost probe successes exactly, gives back the leases of lost probe
//! ends, and publishes a lost open (with the time that remains and the
//! reopen flag, so the backoff level is shared) or a lost close, if the
//! breaker is still in that state. Marking costs the caller a few atomic
//! operations and, the first time only, a lock held for one `Vec::push`;
//! nothing waits.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use cb_runtime::coordination;
use cb_runtime::{State, Transition};

/// What one breaker's lost messages said.
#[derive(Debug)]
pub(crate) struct Ledger {
    pub(crate) name: Arc<str>,
    /// Probe successes not yet counted in Redis.
    successes: AtomicU32,
    /// Lease members of ended probes not yet given back.
    leases: AtomicU32,
    /// Opens this replica made and the fleet has not heard of (lost or queued).
    unshared_opens: AtomicU32,
    /// Opens lost (not queued any more), of `unshared_opens`.
    lost_opens: AtomicU32,
    /// One of the lost opens was a failed probe's reopen.
    lost_reopen: AtomicBool,
    /// A close after this replica's probes succeeded was lost.
    lost_close: AtomicBool,
    /// The message that puts the name in the namespace's set was lost.
    lost_known: AtomicBool,
    /// The breaker's last forced-open or disabled state came from the fleet.
    pub(crate) manual_from_fleet: AtomicBool,
    /// On the dirty list.
    listed: AtomicBool,
}

/// What a repair must do for one breaker, taken out of its ledger.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Repair {
    pub(crate) successes: u32,
    pub(crate) leases: u32,
    /// Lost opens (publish the open if the breaker is still open).
    pub(crate) opens: u32,
    pub(crate) reopen: bool,
    pub(crate) close: bool,
    pub(crate) known: bool,
}

/// One message's worth of loss, described without the message.
pub(crate) enum Loss {
    Open { reopen: bool },
    Close,
    Known,
    Probe { ok: bool, leased: bool },
}

impl Ledger {
    pub(crate) fn new(name: Arc<str>) -> Self {
        Ledger {
            name,
            successes: AtomicU32::new(0),
            leases: AtomicU32::new(0),
            unshared_opens: AtomicU32::new(0),
            lost_opens: AtomicU32::new(0),
            lost_reopen: AtomicBool::new(false),
            lost_close: AtomicBool::new(false),
            lost_known: AtomicBool::new(false),
            manual_from_fleet: AtomicBool::new(false),
            listed: AtomicBool::new(false),
        }
    }

    /// Notes what a transition means for a resynchronisation: an open of
    /// this replica's own that the fleet has yet to hear, and whether a
    /// manual state came from the fleet. Called before the message is queued.
    pub(crate) fn saw(&self, t: &Transition, shared: bool) {
        if matches!(t.to, State::ForcedOpen | State::Disabled) {
            self.manual_from_fleet
                .store(coordination::is_from_peer(t), Ordering::Release);
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
                if reopen {
                    self.lost_reopen.store(true, Ordering::Release);
                }
                self.lost_opens.fetch_add(1, Ordering::AcqRel);
            }
            Loss::Close => self.lost_close.store(true, Ordering::Release),
            Loss::Known => self.lost_known.store(true, Ordering::Release),
            Loss::Probe { ok, leased } => {
                if leased {
                    self.leases.fetch_add(1, Ordering::AcqRel);
                }
                if ok {
                    self.successes.fetch_add(1, Ordering::AcqRel);
                } else if !leased {
                    return false; // a failed unleased probe: its reopen is the Open's loss
                }
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
            successes: self.successes.swap(0, Ordering::AcqRel),
            leases: self.leases.swap(0, Ordering::AcqRel),
            opens,
            reopen: self.lost_reopen.swap(false, Ordering::AcqRel),
            close: self.lost_close.swap(false, Ordering::AcqRel),
            known: self.lost_known.swap(false, Ordering::AcqRel),
        }
    }

    /// Puts back a repair that could not be made (the connection was lost).
    pub(crate) fn restore(&self, r: Repair) {
        self.successes.fetch_add(r.successes, Ordering::AcqRel);
        self.leases.fetch_add(r.leases, Ordering::AcqRel);
        self.unshared_opens.fetch_add(r.opens, Ordering::AcqRel);
        self.lost_opens.fetch_add(r.opens, Ordering::AcqRel);
        if r.reopen {
            self.lost_reopen.store(true, Ordering::Release);
        }
        if r.close {
            self.lost_close.store(true, Ordering::Release);
        }
        if r.known {
            self.lost_known.store(true, Ordering::Release);
        }
    }

    /// Lists the breaker as dirty, unless it is listed already.
    pub(crate) fn list(&self) -> bool {
        !self.listed.swap(true, Ordering::AcqRel)
    }

    /// After a lost connection: the leases in Redis expire on their own.
    pub(crate) fn forget_leases(&self) {
        self.leases.store(0, Ordering::Release);
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
        self.list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ledger);
        self.any.store(true, Ordering::Release);
    }

    /// Takes the list, if anything is on it (one atomic load when not).
    pub(crate) fn take(&self) -> Vec<Arc<Ledger>> {
        if !self.any.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *self.list.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_add_up_and_list_a_breaker_once() {
        let l = Ledger::new(Arc::from("dep"));
        assert!(l.lose(Loss::Probe {
            ok: true,
            leased: true
        }));
        assert!(
            !l.lose(Loss::Probe {
                ok: true,
                leased: false
            }),
            "listed already"
        );
        assert!(!l.lose(Loss::Open { reopen: true }));
        assert_eq!(
            l.take(),
            Repair {
                successes: 2,
                leases: 1,
                opens: 1,
                reopen: true,
                close: false,
                known: false
            }
        );
        assert_eq!(l.take(), Repair::default());
        assert!(
            !l.lose(Loss::Probe {
                ok: false,
                leased: false
            }),
            "nothing to repair"
        );
        assert!(l.lose(Loss::Close), "listed again after a take");
    }
}
