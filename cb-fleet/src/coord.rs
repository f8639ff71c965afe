//! The registry's coordinator: attaches each breaker of the joined registry
//! (keyed ones included) to the fleet, and reports its transitions to the
//! background task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use cb_runtime::coordination::{self, Coordinator};
use cb_runtime::{CircuitBreaker, State, Transition};

use crate::gate::{Gate, GateSlot};
use crate::{is_shareable_name, ledger, task, Link, Member, Shared};

/// The fleet identity of `breaker`: the identity under which replicas share
/// it ([`CircuitBreaker::id`]: the name, or `<family>\u{1f}<key>` for a
/// keyed breaker), or `None` for a breaker that stays local (a name over 256
/// bytes or with control characters). The one place that says which
/// breakers are the same across replicas.
pub(crate) fn fleet_name(breaker: &CircuitBreaker) -> Option<String> {
    let id = breaker.id();
    is_shareable_name(&id).then(|| id.into_owned())
}

/// A configuration's fingerprint, as stored in Redis and compared between
/// replicas: what decides the fleet's behaviour in half-open and open.
pub(crate) fn fingerprint(config: &cb_runtime::Config) -> String {
    format!(
        "half_open_max_calls={} success_threshold={} open_duration={}ms failure_threshold={}",
        config.half_open_max_calls(),
        config.success_threshold(),
        config.open_duration().as_millis(),
        config.failure_threshold()
    )
}

/// The registry's coordinator: attaches each breaker to the fleet.
pub(crate) struct Coord(pub(crate) Arc<Shared>);

impl Coordinator for Coord {
    fn attach(&self, breaker: &Arc<CircuitBreaker>) {
        let shared = &self.0;
        let Some(name) = fleet_name(breaker) else {
            tracing::warn!(
                target: "cb_fleet",
                "circuit breaker {:?} stays local: a fleet shares names (and keys) of 1 to 256 bytes without control characters",
                breaker.id().chars().take(40).collect::<String>()
            );
            return;
        };
        let shared_name: Arc<str> = Arc::from(name.as_str());
        let ledger = Arc::new(ledger::Ledger::new(Arc::clone(&shared_name)));
        let gate = Arc::new(Gate::new(Arc::clone(&ledger), Arc::clone(&shared.link)));
        if !breaker.set_probe_gate(Arc::new(GateSlot::new(Arc::clone(&gate)))) {
            // A fleet joined this registry before (a rejoin, or a second
            // fleet): this one takes the breaker over.
            match breaker
                .probe_gate()
                .and_then(|g| g.as_any())
                .and_then(|a| a.downcast_ref::<GateSlot>())
            {
                Some(slot) => slot.take_over(Arc::clone(&gate)),
                None => {
                    tracing::warn!(
                        target: "cb_fleet",
                        "circuit breaker {name:?} stays local: it has a probe gate that is not a fleet's"
                    );
                    return;
                }
            }
        }
        let link = Arc::clone(&shared.link);
        let weak = Arc::downgrade(breaker);
        let observed = Arc::clone(&gate);
        breaker.on_transition(move |t| observe(&link, &observed, &weak, t));
        let mut local = shared.local();
        if let Some(view) = local.views.get(&name) {
            if view.apply(breaker) {
                ledger
                    .manual_from_fleet
                    .store(view.is_manual(), Ordering::Release);
            }
            gate.enter_period(view.period);
        }
        local.members.insert(
            name,
            Member {
                breaker: Arc::downgrade(breaker),
                gate,
                seen: AtomicBool::new(false),
                fresh: shared.joined.load(Ordering::Acquire),
            },
        );
        drop(local);
        // The task reads the fleet's state of this name (and shares an open
        // made before the join), and records the name in Redis.
        shared.link.send(task::Cmd::Attached { ledger });
    }

    fn coordinates_keys(&self) -> bool {
        true
    }

    /// The evicted key's breaker gets nothing more from this fleet and
    /// reports nothing more to it; the task's next tick gives back its unused
    /// leases. Its state in Redis stays: the key lives on in the other
    /// replicas, and comes back here as any new key.
    fn detach_key(&self, breaker: &Arc<CircuitBreaker>) {
        let Some(name) = fleet_name(breaker) else {
            return;
        };
        let local = self.0.local();
        if let Some(member) = local.members.get(&name) {
            // Only this breaker: the key may have been made again since.
            if std::ptr::eq(member.breaker.as_ptr(), Arc::as_ptr(breaker)) {
                member.gate.superseded.store(true, Ordering::Release);
            }
        }
    }
}

/// A breaker's transition: logged, and reported to the fleet unless a peer
/// or local manual control made it.
fn observe(link: &Link, gate: &Gate, breaker: &Weak<CircuitBreaker>, t: &Transition) {
    if gate.superseded.load(Ordering::Acquire) {
        return; // a fleet that joined later has this breaker now
    }
    let ledger = &gate.ledger;
    if !matches!(t.to, State::Open | State::HalfOpen) {
        gate.clear_local_open();
    }
    let shared = !coordination::is_from_peer(t) && !coordination::is_manual(t);
    ledger.saw(t, shared);
    // The state first, the log entry after: an open reaches the peers one
    // Redis round trip sooner.
    if shared && t.to == State::Open {
        link.send(task::Cmd::Opened {
            ledger: Arc::clone(ledger),
            breaker: breaker.clone(),
            // A probe of this replica's own open (below the quorum) has no fleet period.
            reopen: (t.from == State::HalfOpen).then(|| gate.local_open().map_or(gate.period(), |_| 0)),
        });
    } else if shared && t.from == State::HalfOpen && t.to == State::Closed {
        link.send(task::Cmd::Closed {
            ledger: Arc::clone(ledger),
            period: gate.period(),
        });
    } else if shared && t.reason == cb_runtime::Reason::HealthCheck {
        // Health checks saw the dependency back before the open period
        // ended: the close reaches every replica at once.
        link.send(task::Cmd::ClosedByCheck {
            ledger: Arc::clone(ledger),
            period: gate.period(),
        });
    }
    link.send(task::Cmd::Log {
        name: Arc::clone(&ledger.name),
        from: t.from,
        to: t.to,
        reason: t.reason.as_str(),
        wall_ms: t
            .wall_time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    });
}
