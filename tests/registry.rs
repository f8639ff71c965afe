//! The registry on the contract, `reconfigure` under load, and what breakers
//! write to `tracing`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

mod support;

use support::logs_of;

use cb_runtime::{registry, Config, Health, Registry, State};

fn config(threshold: u32) -> Config {
    Config::builder().failure_threshold(threshold).build().unwrap()
}

#[test]
fn contract_names_health_and_snapshot() {
    let r = Registry::with_env(Vec::new);
    let b = r.get_or_insert("zeta", || config(1));
    let again = r.get_or_insert("zeta", || config(9));
    assert!(Arc::ptr_eq(&b, &again), "one breaker per name");
    assert_eq!(again.config().failure_threshold(), 1, "the first config wins");
    r.get_or_insert("alpha", || config(2));
    r.get_or_insert("mid", || config(2));
    assert_eq!(r.names(), ["alpha", "mid", "zeta"]);
    assert!(r.get("nope").is_none());
    assert!(!r.has_open());

    b.try_acquire().unwrap().record(false);
    r.get("mid").unwrap().force_open();
    let h: Health = r.health();
    assert_eq!(
        (h.total, h.closed, h.open, h.half_open, h.forced_open),
        (3, 1, 1, 0, 1)
    );
    assert!(!h.healthy);
    assert!(r.has_open());

    let snapshot = r.snapshot();
    let names: Vec<&str> = snapshot.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);
    assert_eq!(snapshot[2].1.failures, 1);
    assert_eq!(snapshot[2].1.state, State::Open);

    r.reset_all();
    assert!(r.health().healthy);
    assert_eq!(r.health().closed, 3);
    assert_eq!(r.snapshot()[2].1.failures, 1, "reset keeps the totals");
}

#[test]
fn the_global_registry_is_one() {
    let a = registry().get_or_insert("registry-test-global", Config::default);
    assert!(Arc::ptr_eq(&a, &registry().get("registry-test-global").unwrap()));
    assert!(registry().names().contains(&"registry-test-global".to_owned()));
}

#[test]
fn reconfigure_unknown_name_is_an_error() {
    let r = Registry::with_env(Vec::new);
    let err = r.reconfigure("ghost", Config::default()).unwrap_err();
    assert_eq!(err.field(), "name");
    assert!(err.to_string().contains("ghost"));
}

#[test]
fn reconfigure_under_load_keeps_state_and_exact_counts() {
    let r = Arc::new(Registry::with_env(Vec::new));
    let b = r.get_or_insert("busy", || config(1_000_000));
    let stop = Arc::new(AtomicBool::new(false));
    const PER_THREAD: u64 = 20_000;
    let workers: Vec<_> = (0..2)
        .map(|t| {
            let b = Arc::clone(&b);
            thread::spawn(move || {
                for i in 0..PER_THREAD {
                    if let Ok(p) = b.try_acquire() {
                        p.record((i + t) % 10 != 0);
                    }
                }
            })
        })
        .collect();
    let tuner = {
        let r = Arc::clone(&r);
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let threshold = 1_000_000 + n % 7;
                r.reconfigure("busy", config(threshold)).unwrap();
            }
            n
        })
    };
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let reconfigurations = tuner.join().unwrap();
    assert!(reconfigurations > 0);
    let s = b.stats();
    assert_eq!(s.state, State::Closed);
    assert_eq!(
        s.successes + s.failures,
        2 * PER_THREAD,
        "every call counted once"
    );
    assert_eq!(s.failures, 2 * PER_THREAD / 10);
    assert_eq!(s.rejected, 0);

    // The new threshold applies to the next outcome, and the totals stay.
    b.try_acquire().unwrap().record(true);
    r.reconfigure("busy", config(1)).unwrap();
    assert_eq!(b.state(), State::Closed);
    b.try_acquire().unwrap().record(false);
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.stats().failures, 2 * PER_THREAD / 10 + 1);
    assert_eq!(b.stats().successes, 2 * PER_THREAD - 2 * PER_THREAD / 10 + 1);
}

#[test]
fn register_adds_an_outside_breaker_and_applies_the_environment() {
    let r = Registry::with_env(|| vec![("CB_OUTSIDE_FAILURE_THRESHOLD".into(), "3".into())]);
    let b = Arc::new(cb_runtime::CircuitBreaker::new("outside", config(10)));
    r.register(Arc::clone(&b)).unwrap();
    assert_eq!(b.config().failure_threshold(), 3);
    let clash = Arc::new(cb_runtime::CircuitBreaker::new("outside", Config::default()));
    assert!(Arc::ptr_eq(&r.register(clash).unwrap_err(), &b));
    b.force_open();
    assert_eq!(r.transitions("outside", State::Closed, State::ForcedOpen), 1);
}

#[test]
fn transitions_are_logged_and_rejections_do_not_flood() {
    let r = Registry::with_env(Vec::new);
    let ((), logs) = logs_of(|| {
        let b = r.get_or_insert("logged", || config(2));
        b.try_acquire().unwrap().record(false);
        b.try_acquire().unwrap().record(false);
        for _ in 0..1000 {
            assert!(b.try_acquire().is_err());
        }
        b.reset();
    });
    let lines: Vec<&str> = logs.lines().collect();
    let opened: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("circuit breaker opened"))
        .collect();
    assert_eq!(opened.len(), 1, "{logs}");
    let open = opened[0];
    assert!(open.contains("WARN"), "{open}");
    for field in [
        "breaker=\"logged\"",
        "from=closed",
        "to=open",
        "failure_rate=1",
        "failures_in_window=2",
        "calls_in_window=2",
    ] {
        assert!(open.contains(field), "{field} in {open}");
    }
    let closed = lines.iter().find(|l| l.contains("to=closed")).expect(&logs);
    assert!(
        closed.contains("INFO") && closed.contains("from=open"),
        "{closed}"
    );
    let rejections = lines.iter().filter(|l| l.contains("call rejected")).count();
    assert_eq!(
        rejections, 1,
        "one line per open period, not one per rejection:\n{logs}"
    );
    let summary = lines
        .iter()
        .find(|l| l.contains("rejected while the circuit was open"))
        .expect(&logs);
    assert!(summary.contains("rejected=1000"), "{summary}");
    assert!(lines.len() < 10, "{logs}");
}

/// A coordinator that opens every breaker it is told of, as a fleet does for
/// a breaker that is open elsewhere.
struct OpensEverything;

impl cb_runtime::coordination::Coordinator for OpensEverything {
    fn attach(&self, breaker: &Arc<cb_runtime::CircuitBreaker>) {
        breaker.follow_open(std::time::Duration::from_secs(60), 0);
    }
}

/// `register` hands a breaker that already has its user's observers to the
/// coordinators; the transition a coordinator makes runs those observers,
/// which may use the registry. That must not deadlock on the registry's
/// configuration lock.
#[test]
fn a_coordinator_moving_a_registered_breaker_runs_its_observers_unlocked() {
    let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    registry.coordinate(Arc::new(OpensEverything));
    let breaker = Arc::new(cb_runtime::CircuitBreaker::new("registered-observed", config(3)));
    let created = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&created);
    breaker.on_transition(move |t| {
        if t.to == State::Open {
            registry.get_or_insert("made-by-an-observer", Config::default);
            seen.store(true, Ordering::SeqCst);
        }
    });
    let (done, finished) = std::sync::mpsc::channel();
    let registering = Arc::clone(&breaker);
    thread::spawn(move || {
        registry.register(registering).unwrap();
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("register deadlocked: a coordinator ran the breaker's observers under the registry's lock");
    assert_eq!(breaker.state(), State::Open);
    assert!(created.load(Ordering::SeqCst));
    assert!(registry.get("made-by-an-observer").is_some());
}

/// The same for a breaker the registry makes: the coordinator's transition
/// reaches the registry's subscribers, and the breaker is coordinated before
/// the first caller gets it.
#[test]
fn a_created_breaker_is_coordinated_before_anyone_gets_it() {
    let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    registry.coordinate(Arc::new(OpensEverything));
    let first = registry.get_or_insert("coordinated-at-birth", || config(3));
    assert_eq!(first.state(), State::Open);
    assert_eq!(
        registry.transitions("coordinated-at-birth", State::Closed, State::Open),
        1
    );
}

/// A name that breaks the rule is repaired when the breaker is made, and
/// that is logged once: later lookups with the same name find the repaired
/// breaker without logging again.
#[test]
fn a_repaired_name_is_logged_once_not_on_every_lookup() {
    let r = Registry::with_env(Vec::new);
    let (first, logs) = logs_of(|| {
        let first = r.get_or_insert("bad\nname", Config::default);
        for _ in 0..3 {
            assert!(Arc::ptr_eq(
                &first,
                &r.get_or_insert("bad\nname", Config::default)
            ));
        }
        first
    });
    assert_eq!(first.name(), "bad\u{FFFD}name");
    assert_eq!(logs.matches("circuit breaker name refused").count(), 1, "{logs}");
}
