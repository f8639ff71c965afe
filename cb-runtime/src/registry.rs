//! The process-wide registry of named breakers.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use crate::breaker::CircuitBreaker;
use crate::config::Config;
use crate::state::State;
use crate::stats::Stats;

/// Named breakers, shared by everything in the process that uses a name.
///
/// Two call sites that use one name share one breaker, by design: the first
/// configuration wins, and a later, different one is logged as a warning
/// naming both call sites (pitfall 14). Lookups take a read lock; the
/// `#[circuit_breaker]` attribute keeps each function's breaker in a static
/// of its own, so calls never touch the registry after the first.
#[derive(Default)]
pub struct Registry {
    breakers: RwLock<BTreeMap<String, Entry>>,
}

struct Entry {
    breaker: Arc<CircuitBreaker>,
    /// The configuration asked for at creation.
    requested: Config,
    /// Where the breaker was created from, when known.
    origin: Option<&'static str>,
}

/// How many breakers are in each state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// Breakers in the registry.
    pub total: usize,
    /// Closed breakers.
    pub closed: usize,
    /// Open breakers (not counting forced-open ones).
    pub open: usize,
    /// Half-open breakers.
    pub half_open: usize,
    /// Forced-open breakers.
    pub forced_open: usize,
    /// Disabled breakers.
    pub disabled: usize,
    /// `true` when no breaker is open or forced open.
    pub healthy: bool,
}

/// The process-wide registry.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::new)
}

impl Registry {
    /// An empty registry (most code wants the global [`registry()`]).
    pub fn new() -> Self {
        Registry::default()
    }

    /// The breaker named `name`, created with `make()` if there is none yet.
    /// The first configuration for a name wins.
    pub fn get_or_insert(&self, name: &str, make: impl FnOnce() -> Config) -> Arc<CircuitBreaker> {
        self.get_or_insert_inner(name, None, make)
    }

    /// Like [`get_or_insert`](Self::get_or_insert), remembering `origin` (say,
    /// a function's path) as where the breaker came from. When `name` exists
    /// already with a different configuration, a warning names both origins.
    pub fn get_or_insert_at(
        &self,
        name: &str,
        origin: &'static str,
        make: impl FnOnce() -> Config,
    ) -> Arc<CircuitBreaker> {
        self.get_or_insert_inner(name, Some(origin), make)
    }

    fn get_or_insert_inner(
        &self,
        name: &str,
        origin: Option<&'static str>,
        make: impl FnOnce() -> Config,
    ) -> Arc<CircuitBreaker> {
        if origin.is_none() {
            if let Some(b) = self.get(name) {
                return b;
            }
        }
        // Built outside the lock: `make` may itself use the registry.
        let requested = make();
        let mut map = self.breakers.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = map.get(name) {
            if existing.requested != requested && existing.origin != origin {
                tracing::warn!(
                    target: "cb_runtime",
                    breaker = name,
                    first = existing.origin.unwrap_or("<unknown>"),
                    second = origin.unwrap_or("<unknown>"),
                    "two call sites configure circuit breaker `{name}` differently; they share one breaker and the first configuration wins"
                );
            }
            return Arc::clone(&existing.breaker);
        }
        let breaker = Arc::new(CircuitBreaker::new(name, requested.clone()));
        map.insert(
            name.to_owned(),
            Entry {
                breaker: Arc::clone(&breaker),
                requested,
                origin,
            },
        );
        breaker
    }

    /// Adds a breaker made elsewhere. If its name is taken, the registry keeps
    /// the existing breaker and returns it as the error.
    pub fn register(&self, breaker: Arc<CircuitBreaker>) -> Result<(), Arc<CircuitBreaker>> {
        let mut map = self.breakers.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = map.get(breaker.name()) {
            return Err(Arc::clone(&existing.breaker));
        }
        let requested = breaker.config();
        map.insert(
            breaker.name().to_owned(),
            Entry {
                breaker,
                requested,
                origin: None,
            },
        );
        Ok(())
    }

    /// The breaker named `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<CircuitBreaker>> {
        let map = self.breakers.read().unwrap_or_else(PoisonError::into_inner);
        map.get(name).map(|e| Arc::clone(&e.breaker))
    }

    /// Removes and returns the breaker named `name`. Holders of its `Arc`
    /// keep using it; the next `get_or_insert` makes a new one.
    pub fn remove(&self, name: &str) -> Option<Arc<CircuitBreaker>> {
        let mut map = self.breakers.write().unwrap_or_else(PoisonError::into_inner);
        map.remove(name).map(|e| e.breaker)
    }

    /// Every breaker's name, sorted.
    pub fn names(&self) -> Vec<String> {
        let map = self.breakers.read().unwrap_or_else(PoisonError::into_inner);
        map.keys().cloned().collect()
    }

    /// Every breaker, sorted by name.
    pub fn breakers(&self) -> Vec<Arc<CircuitBreaker>> {
        let map = self.breakers.read().unwrap_or_else(PoisonError::into_inner);
        map.values().map(|e| Arc::clone(&e.breaker)).collect()
    }

    /// Every breaker's name and stats, sorted by name.
    pub fn snapshot(&self) -> Vec<(String, Stats)> {
        self.breakers()
            .into_iter()
            .map(|b| (b.name().to_owned(), b.stats()))
            .collect()
    }

    /// How many breakers are in each state.
    pub fn health(&self) -> Health {
        let mut h = Health {
            healthy: true,
            ..Health::default()
        };
        for b in self.breakers() {
            h.total += 1;
            match b.state() {
                State::Closed => h.closed += 1,
                State::Open => h.open += 1,
                State::HalfOpen => h.half_open += 1,
                State::ForcedOpen => h.forced_open += 1,
                State::Disabled => h.disabled += 1,
            }
        }
        h.healthy = h.open == 0 && h.forced_open == 0;
        h
    }

    /// Resets every breaker (see [`CircuitBreaker::reset`]).
    pub fn reset_all(&self) {
        for b in self.breakers() {
            b.reset();
        }
    }

    /// `true` when some breaker is open or forced open.
    pub fn has_open(&self) -> bool {
        self.breakers().iter().any(|b| b.state().is_open())
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("names", &self.names()).finish()
    }
}
