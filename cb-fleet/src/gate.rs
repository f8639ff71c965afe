//! The probe gate of one shared breaker: the fleet's probe leases held by
//! this replica, and the probes running on them.
//!
//! A lease is one of the fleet's `half_open_max_calls` slots, in Redis,
//! whatever the period: a probe that outlives its open period (a failed probe
//! elsewhere reopened the fleet) keeps its slot until it ends, so the cap
//! holds across periods. Slots are counted, not matched to probes: this
//! replica holds one slot per running probe (fewer when a lease lapsed while
//! the replica could not renew it), and any probe's end gives back one slot,
//! the oldest first, so a probe never frees a slot that another probe of
//! this replica still needs.
//!
//! A probe's result is reported with the period it was admitted in and a
//! fresh id. The runtime does not say which probe ended, so when probes of
//! two periods run at once an end is attributed to the older period, and
//! the result of the next end of the newer period is reported without being
//! counted (counting it might count an old probe's success in the new
//! period): conservative, never wrong.
//!
//! The gate is consulted only on the half-open admission path and when a
//! probe ends; its state is behind a lock held for a few instructions,
//! never across I/O or a call into the breaker.
//!
//! [`GateSlot`] is what a breaker holds: it points at the gate of the
//! [`Fleet`](crate::Fleet) that joined last, so a second fleet on the same
//! registry, or a rejoin, takes the breaker's probes over.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use cb_runtime::coordination::{ProbeEnd, ProbeGate};

use crate::ledger::{Ledger, Report};
use crate::task::Cmd;
use crate::Link;

/// The leases and probes of one breaker on this replica.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    /// The fleet period this replica's probes are admitted in (0: unknown,
    /// such as while disconnected).
    pub(crate) period: u64,
    /// Leases held and not in use.
    pub(crate) available: Vec<String>,
    /// Leases held by running probes, oldest first.
    pub(crate) in_use: VecDeque<String>,
    /// Running probes without a lease in Redis: admitted while disconnected,
    /// or whose lease lapsed.
    pub(crate) lapsed: u32,
    /// Running probes, by the period they were admitted in, oldest first.
    flights: VecDeque<(u64, u32)>,
    /// Ends of the newest period whose result is not to be counted.
    suspect: u32,
}

impl Leases {
    /// Probes running.
    pub(crate) fn running(&self) -> u32 {
        self.flights.iter().map(|(_, n)| n).sum()
    }

    fn admit(&mut self, period: u64) {
        match self.flights.back_mut() {
            Some((p, n)) if *p == period => *n += 1,
            _ => self.flights.push_back((period, 1)),
        }
    }

    /// Undoes the last `admit` (a grant that no probe used).
    fn unadmit(&mut self) {
        if let Some((_, n)) = self.flights.back_mut() {
            *n -= 1;
            if *n == 0 {
                self.flights.pop_back();
            }
        }
    }

    /// One probe ended: its period, and whether its result may be counted.
    fn end(&mut self) -> (u64, bool) {
        let several = self.flights.len() > 1;
        let Some((period, n)) = self.flights.front_mut() else {
            return (0, false);
        };
        let period = *period;
        *n -= 1;
        if *n == 0 {
            self.flights.pop_front();
        }
        if several {
            // Maybe a probe of the newer period ended: the next end of that
            // period may be this older probe's.
            self.suspect += 1;
            return (period, false);
        }
        if self.suspect > 0 {
            self.suspect -= 1;
            return (period, false);
        }
        (period, true)
    }

    /// The slot a probe's end gives back: a lapsed one first (nothing to
    /// give back), then the oldest lease.
    fn release_one(&mut self) -> Option<String> {
        if self.lapsed > 0 {
            self.lapsed -= 1;
            return None;
        }
        self.in_use.pop_front()
    }

    /// Every lease id held, for renewal.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.in_use.iter().chain(&self.available).cloned().collect()
    }

    /// Leases Redis no longer holds (expired, or removed by a close or a
    /// manual command): unused ones are forgotten, used ones lapse.
    pub(crate) fn gone(&mut self, ids: &[String]) {
        for id in ids {
            if let Some(i) = self.available.iter().position(|a| a == id) {
                self.available.swap_remove(i);
            } else if let Some(i) = self.in_use.iter().position(|a| a == id) {
                self.in_use.remove(i);
                self.lapsed += 1;
            }
        }
    }
}

/// The probe gate of one breaker, for one [`Fleet`](crate::Fleet).
pub(crate) struct Gate {
    pub(crate) ledger: Arc<Ledger>,
    link: Arc<Link>,
    pub(crate) leases: Mutex<Leases>,
    /// A lease was asked for since the last tick.
    pub(crate) asked: AtomicBool,
    /// Ticks since a lease was last taken.
    pub(crate) idle_ticks: AtomicU32,
    /// A fleet that joined later took this breaker over.
    pub(crate) superseded: AtomicBool,
    /// Reports sent, for their ids.
    seq: AtomicU64,
    /// While this replica's open stays local (the fleet's open quorum is
    /// not reached): the replicas counted (high 32 bits) and the quorum
    /// (low 32 bits), as Redis last answered; 0 otherwise. Its probes then
    /// run without leases, deciding only this replica.
    local_open: AtomicU64,
    /// The health-check lease of the open period is this replica's (the task
    /// answered); taken by the next check.
    pub(crate) check_granted: AtomicBool,
    /// The check lease was asked for and not answered yet.
    pub(crate) check_asked: AtomicBool,
}

impl Gate {
    pub(crate) fn new(ledger: Arc<Ledger>, link: Arc<Link>) -> Self {
        Gate {
            ledger,
            link,
            leases: Mutex::new(Leases::default()),
            asked: AtomicBool::new(false),
            idle_ticks: AtomicU32::new(0),
            superseded: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            local_open: AtomicU64::new(0),
            check_granted: AtomicBool::new(false),
            check_asked: AtomicBool::new(false),
        }
    }

    /// This replica's open stays local: `votes` of `quorum` replicas have
    /// opened the breaker within its open duration.
    pub(crate) fn set_local_open(&self, votes: u32, quorum: u32) {
        let packed = (u64::from(votes.max(1)) << 32) | u64::from(quorum);
        self.local_open.store(packed, Ordering::Release);
    }

    /// The breaker's state is the fleet's again (a fleet state applied, or
    /// the breaker closed or was put under manual control).
    pub(crate) fn clear_local_open(&self) {
        self.local_open.store(0, Ordering::Release);
    }

    /// `(votes, quorum)` while this replica's open stays local.
    pub(crate) fn local_open(&self) -> Option<(u32, u32)> {
        match self.local_open.load(Ordering::Acquire) {
            0 => None,
            packed => Some(((packed >> 32) as u32, packed as u32)),
        }
    }

    pub(crate) fn leases(&self) -> MutexGuard<'_, Leases> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The period probes are admitted in now.
    pub(crate) fn period(&self) -> u64 {
        self.leases().period
    }

    /// The fleet is in period `period` (the task learnt it from Redis).
    pub(crate) fn enter_period(&self, period: u64) {
        self.leases().period = period;
    }

    /// The connection is lost: probes admitted from now on have no period,
    /// and the leases held are renewed, or found lapsed, after reconnecting.
    pub(crate) fn disconnected(&self) {
        self.leases().period = 0;
    }

    /// Takes over the running probes of `old` (the gate of an earlier fleet):
    /// they hold no lease of this fleet's.
    fn inherit(&self, old: &Gate) {
        let running = {
            let l = old.leases();
            l.running()
        };
        let mut l = self.leases();
        for _ in 0..running {
            l.admit(0);
        }
        l.lapsed += running;
    }

    fn connected(&self) -> bool {
        self.link.connected.load(Ordering::Acquire)
    }
}

impl ProbeGate for Gate {
    fn try_take(&self) -> bool {
        if !self.connected() || self.local_open().is_some() {
            // Local state alone while disconnected, or while this replica's
            // open is its own (below the open quorum): a probe without a lease.
            let mut l = self.leases();
            l.admit(0);
            l.lapsed += 1;
            return true;
        }
        {
            let mut l = self.leases();
            if let Some(id) = l.available.pop() {
                l.in_use.push_back(id);
                let period = l.period;
                l.admit(period);
                self.idle_ticks.store(0, Ordering::Relaxed);
                return true;
            }
        }
        if !self.asked.swap(true, Ordering::AcqRel) {
            self.link.send(Cmd::WantLease {
                name: Arc::clone(&self.ledger.name),
            });
        }
        false
    }

    /// One replica checks a breaker per open period: the one holding the
    /// period's check lease. Each check asks to renew it for the next; a
    /// replica without it skips its check and asks.
    fn may_health_check(&self) -> bool {
        if !self.connected() || self.local_open().is_some() {
            return true; // local state alone
        }
        let granted = self.check_granted.swap(false, Ordering::AcqRel);
        if !self.check_asked.swap(true, Ordering::AcqRel) {
            self.link.send(Cmd::WantCheckLease {
                name: Arc::clone(&self.ledger.name),
            });
        }
        granted
    }

    fn give_back(&self) {
        let mut l = self.leases();
        l.unadmit();
        // Slots are counted, not matched: one fewer running probe, one
        // fewer slot in use.
        match l.in_use.pop_back() {
            Some(id) => l.available.push(id),
            None => l.lapsed = l.lapsed.saturating_sub(1),
        }
    }

    fn finished(&self, end: ProbeEnd) {
        let (lease, period, count) = {
            let mut l = self.leases();
            let (period, count) = l.end();
            let lease = l.release_one();
            if end == ProbeEnd::Unused {
                // It said nothing about the dependency: the lease may serve again.
                if let Some(id) = lease {
                    l.available.push(id);
                }
                return;
            }
            (lease, period, count)
        };
        if lease.is_none() && (period == 0 || !count) {
            return; // nothing to give back, nothing to count
        }
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let report = Report {
            id: format!("{}:{n}", self.link.instance),
            lease,
            period,
            ok: end == ProbeEnd::Success,
            count,
        };
        self.link.send(Cmd::Probe {
            ledger: Arc::clone(&self.ledger),
            report,
        });
    }
}

/// What a breaker holds as its probe gate: the gate of the fleet that
/// joined last.
pub(crate) struct GateSlot {
    current: RwLock<Arc<Gate>>,
}

impl GateSlot {
    pub(crate) fn new(gate: Arc<Gate>) -> Self {
        GateSlot {
            current: RwLock::new(gate),
        }
    }

    fn current(&self) -> Arc<Gate> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// A later fleet takes the breaker over: its gate serves from now on,
    /// and the earlier fleet leaves the breaker alone.
    pub(crate) fn take_over(&self, gate: Arc<Gate>) {
        let old = {
            let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
            std::mem::replace(&mut *current, Arc::clone(&gate))
        };
        old.superseded.store(true, Ordering::Release);
        gate.inherit(&old);
    }
}

impl ProbeGate for GateSlot {
    fn try_take(&self) -> bool {
        self.current().try_take()
    }

    fn give_back(&self) {
        self.current().give_back();
    }

    fn may_health_check(&self) -> bool {
        self.current().may_health_check()
    }

    fn finished(&self, end: ProbeEnd) {
        self.current().finished(end);
    }

    fn as_any(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_of_two_periods_are_never_counted_in_the_wrong_one() {
        let mut l = Leases::default();
        l.admit(5); // an old probe, still running
        l.admit(9);
        // An end while both run: attributed to the old period, uncounted.
        assert_eq!(l.end(), (5, false));
        // The next end of period 9 may be the old probe's: uncounted.
        assert_eq!(l.end(), (9, false));
        l.admit(9);
        assert_eq!(l.end(), (9, true));
        assert_eq!(l.running(), 0);
    }

    #[test]
    fn lapsed_slots_are_given_back_first_and_the_oldest_lease_next() {
        let mut l = Leases::default();
        l.in_use.extend(["old".to_owned(), "new".to_owned()]);
        l.gone(&["old".to_owned()]);
        assert_eq!((l.lapsed, l.in_use.len()), (1, 1));
        assert_eq!(l.release_one(), None, "the lapsed probe's end frees nothing");
        assert_eq!(l.release_one().as_deref(), Some("new"));
    }
}
