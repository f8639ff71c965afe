//! Keyed breakers: one breaker per model, deployment or tenant, in a
//! [`Family`] named like an unkeyed breaker.
//!
//! `#[circuit_breaker(name = "openai", key = model)]` gives every distinct
//! `model` its own breaker, so an outage of `gpt-4o` never refuses calls to
//! `gpt-4o-mini`. By hand:
//!
//! ```
//! use cb_runtime::{Config, Registry, State};
//!
//! let registry = Registry::new();
//! let openai = registry.family_or_insert("openai", || Config::builder().failure_threshold(1).build().unwrap());
//! openai.get_or_insert("gpt-4o").force_open();
//! assert_eq!(openai.get_or_insert("gpt-4o-mini").state(), State::Closed);
//! assert_eq!(openai.keys(), ["gpt-4o", "gpt-4o-mini"]);
//! assert_eq!(openai.get("gpt-4o").unwrap().key(), Some("gpt-4o"));
//! ```
//!
//! # The lookup on the call path
//!
//! The keys live in a [`papaya`] hash map, hashed with [`foldhash`]. An
//! existing key is found with no lock and no allocation: papaya's reads are
//! lock-free (a guard is one thread-local epoch mark, no shared write),
//! where a sharded `RwLock` map (`dashmap`) takes a read lock, one shared
//! atomic write per lookup, on a shard that every thread calling a popular
//! key contends for. The map is made for read-heavy use, which a family is:
//! keys are created once and then looked up on every call. foldhash is
//! seeded per process, so request-chosen keys cannot be crafted to collide
//! in every process, and a family never holds more than `max_keys` of them
//! anyway. The lookup hands back an `Arc` of the breaker, so a call in
//! flight keeps its breaker even if the key is evicted meanwhile (a failure
//! is then handed over to the key's breaker: see [Bounded](#bounded)).
//!
//! Recency for eviction is a per-family logical clock: a lookup of the key
//! used last writes nothing; any other lookup writes the key's stamp. Creating
//! a key and evicting one are behind the family's mutex, so a
//! key is never created twice.
//!
//! # Bounded
//!
//! A family holds at most `max_keys` keys (a configuration field, default
//! 100). A new key beyond it evicts the least recently used key that holds
//! nothing worth keeping: a closed breaker, or a half-open one (its open
//! period is over) with no probe in flight. An open, forced-open or disabled
//! key is never evicted, so an open key is refused until its period ends
//! however many other keys come and go. Evictions are counted
//! ([`Family::evictions`], the metric `circuit_breaker_family_evictions_total`,
//! the admin API) and logged at DEBUG, and an evicted key's metric series
//! leave `/metrics`. A `max_keys` lowered at run time (a reload, or
//! [`Family::reconfigure`]) evicts such keys the same way at once.
//!
//! When every key holds something worth keeping, a new key is served
//! *unguarded*: its call goes through a breaker made for that call alone,
//! outside the family (the family's configuration, so `call_timeout` still
//! applies, and the family's forced-open, disabled or open state), and counted
//! in [`Family::unguarded_calls`]. A key that breaks the name rule
//! ([`cb_syntax::check_name`]: 1 to 256 bytes, not only white space, no
//! control characters) is served the same way, with one WARN per family.
//! No two keys ever share a breaker, so no key's failures can refuse
//! another key's calls; the only way one key refuses others is
//! `family_open_keys` (below). A key spelled `_overflow` is a key like any
//! other.
//!
//! A call in flight keeps its breaker even if its key is evicted meanwhile.
//! If it then fails, the failure is handed over to the key's breaker in the
//! family (see the `handover` module): it counts for the key, and if it
//! opened the evicted breaker, the key's breaker opens for the time that
//! remains.
//!
//! # The provider above the models
//!
//! With `family_open_keys = n` (default 0: off), once `n` keys of a family
//! are open at once the whole family opens for `open_duration`: every key
//! opens (reason [`Reason::FamilyOpen`]) for that long, and a key created
//! meanwhile starts open for the time that remains. [`Family::state`] is
//! [`State::Open`] meanwhile. Afterwards each key probes on its own.
//!
//! # Health checks
//!
//! [`Family::set_health_check`] gives every key, present and created later,
//! a health check that is told its key (see the
//! [`health`](crate::health) module): only open keys are checked, at most
//! [`MAX_CHECKS_IN_FLIGHT`] of a family's checks run at once (the others wait
//! for a slot), and an evicted key's checks stop.
//!
//! # Configuration
//!
//! A family's configuration is layered as an unkeyed breaker's (see
//! [runtime configuration](crate::Registry#runtime-configuration)):
//! `[breakers.<name>]` and `CB_<NAME>_<FIELD>` apply to every key, and a
//! `[breakers.<name>.keys."<key>"]` table to one key, above the family's
//! table and below the environment. A reloaded file reconfigures every key.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, Weak};
use std::time::Duration;

#[path = "family/evict.rs"]
mod evict;
#[path = "family/handover.rs"]
mod handover;
#[path = "family/lease.rs"]
mod lease;
pub use evict::UnguardedCalls;
pub use lease::Lease;

use crate::breaker::CircuitBreaker;
use crate::clock::duration_nanos;
use crate::config::{Config, ConfigError};
use crate::hook::Hook;
use crate::key::KeyTag;
use crate::overrides::{self, FileConfig};
use crate::preset::Preset;
use crate::state::State;
use crate::transition::{Reason, TransitionCounts};

/// A key that earlier versions gave a family's shared overflow breaker. A
/// family has no shared breaker any more (see the [module documentation](self)):
/// `"_overflow"` is a key like any other, with a breaker of its own.
pub const OVERFLOW_KEY: &str = "_overflow";

pub use crate::breaker::ID_SEPARATOR;

/// The most health checks of one family's keys in flight at once: an outage
/// of a provider opens many keys at once, and their checks should not become
/// a burst of their own.
pub const MAX_CHECKS_IN_FLIGHT: usize = 8;

/// A family's health check, given the key.
type KeyCheck =
    Arc<dyn Fn(&str) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send + Sync>;

type KeyMap = papaya::HashMap<Arc<str>, KeyEntry, foldhash::fast::RandomState>;

/// One key's breaker in the map.
struct KeyEntry {
    breaker: Arc<CircuitBreaker>,
    counts: Arc<TransitionCounts>,
}

impl KeyEntry {
    fn tag(&self) -> &KeyTag {
        self.breaker.key_tag().expect("a family's breakers are keyed")
    }
}

/// What a family shares with its registry: the configuration layers, the
/// hooks and the lock under which breakers join.
#[derive(Clone)]
pub(crate) struct Link {
    pub(crate) hooks: Arc<RwLock<Vec<Arc<dyn Hook>>>>,
    pub(crate) file: Arc<RwLock<Option<Arc<FileConfig>>>>,
    pub(crate) env: Arc<dyn Fn() -> Vec<(String, String)> + Send + Sync>,
    pub(crate) config_lock: Arc<Mutex<()>>,
}

impl Link {
    /// The registry's config file now, if one was loaded.
    fn file(&self) -> Option<Arc<FileConfig>> {
        self.file.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn hooks(&self) -> Vec<Arc<dyn Hook>> {
        self.hooks.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The manual state of a whole family.
const MANUAL_NONE: u8 = 0;
const MANUAL_FORCED_OPEN: u8 = 1;
const MANUAL_DISABLED: u8 = 2;

/// A family of keyed breakers: one breaker per key, all named after the
/// family; see the [module documentation](self).
pub struct Family {
    name: &'static str,
    /// Unique in the process, unlike an address: the threads' caches of
    /// key breakers tell families apart by it.
    id: u64,
    me: Weak<Family>,
    keys: KeyMap,
    /// Keys in `keys`; changed only with `create` held.
    len: AtomicUsize,
    /// The logical clock of `KeyEntry::last_used`.
    tick: AtomicU64,
    /// Serialises creation and eviction of keys, and remembers the last
    /// search for a key to evict that found none.
    create: Mutex<evict::Scan>,
    /// Keys evicted, in all.
    evictions: AtomicU64,
    /// Calls served unguarded: the family was full, and the key broke the name rule.
    unguarded: [AtomicU64; 2],
    /// Bumped each time a key closes or half-opens: a key may be evictable again.
    settled: AtomicU64,
    /// The one WARN about keys that break the name rule has been given.
    warned_bad_key: AtomicBool,
    /// The configuration asked for at creation (or the last reconfigure's).
    base: RwLock<Config>,
    /// The family's own configuration: `base` with the file and the environment.
    config: RwLock<Config>,
    preset: Option<Preset>,
    /// The configuration the family was first asked for with, as its call
    /// site built it (before the file and the environment): what another
    /// call site's is compared with.
    requested: Config,
    /// The first `#[circuit_breaker]` call site that asked for the family.
    origin: OnceLock<&'static str>,
    link: Link,
    /// While the whole family is open: the clock reading it stays open until.
    open_until: AtomicU64,
    manual: AtomicU8,
    /// The health check of every key, once set.
    health_check: RwLock<Option<KeyCheck>>,
    /// The bound on the keys' checks in flight.
    check_slots: Arc<tokio::sync::Semaphore>,
}

impl Family {
    pub(crate) fn new(
        name: &str,
        base: Config,
        config: Config,
        preset: Option<Preset>,
        link: Link,
    ) -> Arc<Family> {
        static IDS: AtomicU64 = AtomicU64::new(0);
        Arc::new_cyclic(|me| Family {
            name: crate::intern::intern(name.to_owned()),
            id: IDS.fetch_add(1, Ordering::Relaxed),
            me: me.clone(),
            keys: KeyMap::with_hasher(foldhash::fast::RandomState::default()),
            len: AtomicUsize::new(0),
            tick: AtomicU64::new(0),
            create: Mutex::new(evict::Scan::default()),
            evictions: AtomicU64::new(0),
            unguarded: [AtomicU64::new(0), AtomicU64::new(0)],
            settled: AtomicU64::new(0),
            warned_bad_key: AtomicBool::new(false),
            requested: base.clone(),
            base: RwLock::new(base),
            config: RwLock::new(config),
            preset,
            origin: OnceLock::new(),
            link,
            open_until: AtomicU64::new(0),
            manual: AtomicU8::new(MANUAL_NONE),
            health_check: RwLock::new(None),
            check_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CHECKS_IN_FLIGHT)),
        })
    }

    /// Sets the health check of every key, present and created later; it is
    /// given the key and answers `true` when that key's dependency is
    /// healthy. See [`CircuitBreaker::set_health_check`] for when checks run;
    /// only open keys are checked, at most [`MAX_CHECKS_IN_FLIGHT`] at once
    /// for the whole family, and an evicted key's checks stop. It replaces
    /// any check set before.
    ///
    /// ```
    /// use cb_runtime::{Config, Registry};
    ///
    /// let registry = Registry::new();
    /// let openai = registry.family_or_insert("openai", Config::default);
    /// openai.set_health_check(|model: &str| {
    ///     let model = model.to_owned();
    ///     async move { !model.is_empty() } // e.g. GET /v1/models/{model}
    /// });
    /// assert!(openai.get_or_insert("gpt-4o").has_health_check());
    /// ```
    pub fn set_health_check<F, Fut>(&self, check: F)
    where
        F: Fn(&str) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = bool> + Send + 'static,
    {
        let check: KeyCheck = Arc::new(move |key| Box::pin(check(key)));
        *self.health_check.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&check));
        for breaker in self.breakers() {
            self.install_check(&breaker, &check);
        }
    }

    /// Gives `breaker` the family's check, bound to its key.
    fn install_check(&self, breaker: &Arc<CircuitBreaker>, check: &KeyCheck) {
        let key: Arc<str> = Arc::from(breaker.key().unwrap_or(OVERFLOW_KEY));
        let check = Arc::clone(check);
        breaker.share_health_check_slots(&self.check_slots);
        breaker.install_health_check(Arc::new(move || check(&key)));
    }

    /// Notes the call site `origin` asking for the family with `requested`
    /// and `preset`: the first is remembered, and a later one whose
    /// configuration or preset differs is warned about (each call site asks
    /// once), since every key runs on the first one's configuration.
    pub(crate) fn note_call_site(&self, origin: &'static str, preset: Option<Preset>, requested: &Config) {
        let first = *self.origin.get_or_init(|| origin);
        if first == origin || (self.requested == *requested && self.preset == preset) {
            return;
        }
        let preset_of = |p: Option<Preset>| p.map_or("none", Preset::name);
        tracing::warn!(
            target: "cb_runtime",
            breaker = self.name,
            first,
            second = origin,
            first_preset = preset_of(self.preset),
            second_preset = preset_of(preset),
            "circuit breaker family `{}` is asked for with a different configuration at {origin} than at {first}; \
             every key runs on the first one's configuration",
            self.name
        );
    }

    /// The family's name: every one of its breakers has it as
    /// [`name`](CircuitBreaker::name).
    pub fn name(&self) -> &str {
        self.name
    }

    /// The family's configuration: what every key starts from before its
    /// own `[breakers.<name>.keys."<key>"]` table.
    pub fn config(&self) -> Config {
        self.config.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The breaker of `key`, created if there is none yet (evicting the least
    /// recently used key that holds nothing worth keeping when the family
    /// holds `max_keys`). When no key can be evicted, or when `key` breaks
    /// the name rule, a breaker made for this call alone, outside the family
    /// (an unguarded call; see the [module documentation](self)).
    ///
    /// Finding an existing key takes no lock and allocates nothing.
    #[inline]
    pub fn get_or_insert(&self, key: &str) -> Arc<CircuitBreaker> {
        {
            let keys = self.keys.pin();
            if let Some(entry) = keys.get(key) {
                self.touch(entry.tag());
                return Arc::clone(&entry.breaker);
            }
        }
        self.insert(key)
    }

    /// The breaker of `key`, if the family has one. Counts as a use for
    /// eviction.
    pub fn get(&self, key: &str) -> Option<Arc<CircuitBreaker>> {
        let keys = self.keys.pin();
        let entry = keys.get(key)?;
        self.touch(entry.tag());
        Some(Arc::clone(&entry.breaker))
    }

    /// The family's keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.keys.pin().keys().map(|k| k.to_string()).collect();
        keys.sort_unstable();
        keys
    }

    /// How many keys the family holds: at most `max_keys`, or a few more
    /// while failures of calls in flight across an eviction reopen evicted
    /// keys (an open key is never forgotten).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// `true` when the family holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every breaker of the family, sorted by key.
    pub fn breakers(&self) -> Vec<Arc<CircuitBreaker>> {
        self.observed().into_iter().map(|(b, _)| b).collect()
    }

    /// How many of the family's keys are open or forced open now.
    pub fn open_keys(&self) -> usize {
        self.breakers().iter().filter(|b| b.state().is_open()).count()
    }

    /// The state of the family as a whole:
    ///
    /// * [`State::ForcedOpen`] or [`State::Disabled`] after
    ///   [`force_open`](Self::force_open) or [`disable`](Self::disable);
    /// * [`State::Open`] while the family is open (`family_open_keys` keys
    ///   were open at once; see the [module documentation](self));
    /// * [`State::Closed`] otherwise, whatever its keys' states.
    pub fn state(&self) -> State {
        match self.manual.load(Ordering::Acquire) {
            MANUAL_FORCED_OPEN => return State::ForcedOpen,
            MANUAL_DISABLED => return State::Disabled,
            _ => {}
        }
        if self.open_remaining().is_some() {
            State::Open
        } else {
            State::Closed
        }
    }

    /// While the whole family is open: how long it stays so.
    pub fn open_remaining(&self) -> Option<Duration> {
        let until = self.open_until.load(Ordering::Acquire);
        let now = self.clock_now();
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    /// Resets every key ([`CircuitBreaker::reset`]) and the family itself:
    /// it is no longer open, forced open or disabled, and new keys start closed.
    pub fn reset(&self) {
        self.manual.store(MANUAL_NONE, Ordering::Release);
        self.open_until.store(0, Ordering::Release);
        for b in self.breakers() {
            b.reset();
        }
    }

    /// Forces every key open, and every key created later, until
    /// [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.manual.store(MANUAL_FORCED_OPEN, Ordering::Release);
        for b in self.breakers() {
            b.force_open();
        }
    }

    /// Disables every key, and every key created later, until
    /// [`reset`](Self::reset): every call goes through, and is still counted.
    pub fn disable(&self) {
        self.manual.store(MANUAL_DISABLED, Ordering::Release);
        for b in self.breakers() {
            b.disable();
        }
    }

    /// Every breaker with its transition counts, sorted by key.
    pub(crate) fn observed(&self) -> Vec<(Arc<CircuitBreaker>, Arc<TransitionCounts>)> {
        let mut all: Vec<(Arc<CircuitBreaker>, Arc<TransitionCounts>)> = self
            .keys
            .pin()
            .values()
            .map(|e| (Arc::clone(&e.breaker), Arc::clone(&e.counts)))
            .collect();
        all.sort_unstable_by(|a, b| a.0.key().cmp(&b.0.key()));
        all
    }

    /// Marks the key of `tag` as the family's most recently used key:
    /// nothing is written when it already is.
    #[inline(always)]
    fn touch(&self, tag: &KeyTag) {
        let now = self.tick.load(Ordering::Relaxed);
        if tag.last_used.load(Ordering::Relaxed) != now {
            tag.last_used
                .store(self.tick.fetch_add(1, Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    fn clock_now(&self) -> u64 {
        self.config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clock()
            .now_nanos()
    }

    /// A key that is not in the map yet: created, after an eviction if the
    /// family is full, or served unguarded.
    #[cold]
    #[inline(never)]
    fn insert(&self, key: &str) -> Arc<CircuitBreaker> {
        if let Err(error) = cb_syntax::check_name(key) {
            if !self.warned_bad_key.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    target: "cb_runtime",
                    breaker = self.name,
                    %error,
                    "circuit breaker family `{}` was given a key that breaks the name rule ({error}); \
                     such calls are served unguarded, each with a breaker of its own for that call \
                     (warned once per family)",
                    self.name
                );
            }
            return self.unguarded(key, evict::Why::BadKey);
        }
        let (breaker, evicted) = {
            let mut scan = self.create.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = self.keys.pin().get(key) {
                self.touch(entry.tag());
                return Arc::clone(&entry.breaker);
            }
            let max = self.config().max_keys() as usize;
            let mut evicted = Vec::new();
            while self.len() >= max {
                match self.evict_one(&mut scan) {
                    Some(gone) => evicted.push(gone),
                    None => break,
                }
            }
            if self.len() >= max {
                drop(scan);
                self.detach(&evicted);
                return self.unguarded(key, evict::Why::Full);
            }
            let (breaker, counts) = self.make(Arc::from(key));
            self.add(breaker.clone(), counts);
            (breaker, evicted)
        };
        self.detach(&evicted);
        breaker
    }

    /// Puts a new key's breaker in the map. Call with `create` held.
    fn add(&self, breaker: Arc<CircuitBreaker>, counts: Arc<TransitionCounts>) {
        let key = Arc::clone(&breaker.key_tag().expect("a family's breakers are keyed").key);
        self.keys.pin().insert(key, KeyEntry { breaker, counts });
        self.len.fetch_add(1, Ordering::AcqRel);
    }

    /// Tells the hooks that the `evicted` breakers left (their metric series go).
    fn detach(&self, evicted: &[Arc<CircuitBreaker>]) {
        if evicted.is_empty() {
            return;
        }
        for breaker in evicted {
            breaker.stop_health_checks();
        }
        let hooks = self.link.hooks();
        for breaker in evicted {
            for hook in &hooks {
                hook.detach_key(breaker);
            }
        }
    }

    /// A new breaker for `key`, with its configuration, its observers and the
    /// registry's hooks, in the family's current manual or open state.
    fn make(&self, key: Arc<str>) -> (Arc<CircuitBreaker>, Arc<TransitionCounts>) {
        let config = match self.resolve_key(&key) {
            Ok(config) => config,
            Err(error) => {
                tracing::error!(
                    target: "cb_runtime",
                    breaker = self.name,
                    key = &*key,
                    %error,
                    "bad runtime configuration for key `{key}` of circuit breaker family `{}`: {error}; \
                     it runs on the family's configuration",
                    self.name
                );
                self.config()
            }
        };
        // The newest use: a new key is not the first to be evicted.
        let tag = KeyTag::new(key, self.id, self.tick.fetch_add(1, Ordering::Relaxed) + 1)
            .homed(self.me.clone() as Weak<dyn crate::home::Home>);
        let breaker = Arc::new(CircuitBreaker::keyed(self.name, tag, config));
        breaker.adopt();
        if let Some(check) = &*self.health_check.read().unwrap_or_else(PoisonError::into_inner) {
            self.install_check(&breaker, check);
        }
        let counts = Arc::new(TransitionCounts::default());
        let c = Arc::clone(&counts);
        breaker.on_transition(move |t| c.record(t));
        let family = self.me.clone();
        breaker.on_transition(move |t| {
            let Some(family) = family.upgrade() else {
                return;
            };
            match t.to {
                State::Open if t.reason != Reason::FamilyOpen => family.key_opened(),
                // The key may be evictable now.
                State::Closed | State::HalfOpen => crate::home::Home::key_settled(&*family),
                _ => {}
            }
        });
        {
            // As the registry attaches its own breakers: no hook is added
            // while this one joins, so it is told of each hook exactly once.
            let _config = self
                .link
                .config_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for hook in self.link.hooks() {
                hook.attach(&breaker);
            }
        }
        self.impose(&breaker);
        (breaker, counts)
    }

    /// Puts a new breaker in the family's manual or open state.
    fn impose(&self, breaker: &CircuitBreaker) {
        match self.manual.load(Ordering::Acquire) {
            MANUAL_FORCED_OPEN => breaker.force_open(),
            MANUAL_DISABLED => breaker.disable(),
            _ => {
                if let Some(left) = self.open_remaining() {
                    breaker.open_with_reason(left, Reason::FamilyOpen);
                }
            }
        }
    }

    /// A key opened on its own: opens the family when `family_open_keys`
    /// of its keys are open now.
    fn key_opened(&self) {
        let config = self.config();
        let threshold = config.family_open_keys() as usize;
        if threshold == 0 || self.manual.load(Ordering::Acquire) != MANUAL_NONE {
            return;
        }
        let open = self
            .breakers()
            .iter()
            .filter(|b| b.state() == State::Open)
            .count();
        if open < threshold {
            return;
        }
        let now = config.clock().now_nanos();
        let duration = config.open_duration();
        let until = now.saturating_add(duration_nanos(duration));
        let before = self.open_until.load(Ordering::Acquire);
        if before > now
            || self
                .open_until
                .compare_exchange(before, until, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return; // already open, or another caller opens it
        }
        tracing::warn!(
            target: "cb_runtime",
            breaker = self.name,
            open_keys = open,
            family_open_keys = threshold,
            open_for = ?duration,
            "circuit breaker family `{}` opened: {open} of its keys are open; every key refuses for {duration:?}",
            self.name
        );
        for breaker in self.breakers() {
            breaker.open_with_reason(duration, Reason::FamilyOpen);
        }
    }

    /// The configuration of `key`: the family's compiled configuration with
    /// the file (its `[breakers.<name>]` and `[breakers.<name>.keys."<key>"]`
    /// tables) and the environment on top.
    fn resolve_key(&self, key: &str) -> Result<Config, ConfigError> {
        let base = self.base.read().unwrap_or_else(PoisonError::into_inner).clone();
        let file = self.link.file();
        self.resolve_with(&base, Some(key), file.as_deref(), &(self.link.env)())
    }

    fn resolve_with(
        &self,
        base: &Config,
        key: Option<&str>,
        file: Option<&FileConfig>,
        vars: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        Family::resolve_layers(self.name, key, base, self.preset, file, vars)
    }

    /// The family's and every key's configuration under `file` (or the
    /// registry's file) and the environment, from `base` (or the current
    /// one): the first error, or the breakers to reconfigure. Nothing changes.
    pub(crate) fn plan(
        &self,
        base: Option<&Config>,
        file: Option<&FileConfig>,
        vars: &[(String, String)],
    ) -> Result<Plan, ConfigError> {
        let base = match base {
            Some(b) => b.clone(),
            None => self.base.read().unwrap_or_else(PoisonError::into_inner).clone(),
        };
        let family = self.resolve_with(&base, None, file, vars)?;
        let mut keys = Vec::new();
        for breaker in self.breakers() {
            let config = self.resolve_with(&base, breaker.key(), file, vars)?;
            // Checked now, so that nothing changes on an error.
            let config = config.to_builder().build()?;
            keys.push((breaker, config));
        }
        Ok(Plan { base, family, keys })
    }

    /// Applies a [`plan`](Self::plan): the transitions made are returned, to
    /// publish with no lock held.
    pub(crate) fn apply(
        &self,
        plan: Plan,
    ) -> Vec<(Arc<CircuitBreaker>, Option<crate::transition::Transition>)> {
        *self.base.write().unwrap_or_else(PoisonError::into_inner) = plan.base;
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = plan.family;
        self.trim();
        let mut published = Vec::new();
        for (breaker, config) in plan.keys {
            if config != breaker.config() {
                match breaker.reconfigure_deferred(config) {
                    Ok(transition) => published.push((breaker, transition)),
                    Err(error) => {
                        tracing::error!(target: "cb_runtime", breaker = self.name, %error, "bad runtime configuration")
                    }
                }
            }
        }
        published
    }

    /// Replaces the family's compiled configuration with `config`, live: the
    /// file and the environment still apply on top, and every key is
    /// reconfigured (see [`CircuitBreaker::reconfigure`]). On an error
    /// nothing changes.
    pub fn reconfigure(&self, config: Config) -> Result<(), ConfigError> {
        let published = {
            let _config = self
                .link
                .config_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let file = self.link.file();
            let plan = self.plan(Some(&config), file.as_deref(), &(self.link.env)())?;
            self.apply(plan)
        };
        for (breaker, transition) in published {
            breaker.publish_transition(transition);
        }
        Ok(())
    }

    /// The configuration a family named `name` gets from `base`: the
    /// file's and the environment's family layers on top.
    pub(crate) fn resolve_family(
        name: &str,
        base: &Config,
        preset: Option<Preset>,
        file: Option<&FileConfig>,
        vars: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        Family::resolve_layers(name, None, base, preset, file, vars)
    }

    /// The configuration of `key` (`None`: the family's own) of the family
    /// `name`, from `base`, under `file` and the environment `vars`.
    fn resolve_layers(
        name: &str,
        key: Option<&str>,
        base: &Config,
        preset: Option<Preset>,
        file: Option<&FileConfig>,
        vars: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let env = overrides::env_section(name, vars)?;
        overrides::resolve_key(name, key, base, preset, file, &env)
    }
}

/// What a configuration change does to a family; see [`Family::plan`].
pub(crate) struct Plan {
    base: Config,
    family: Config,
    keys: Vec<(Arc<CircuitBreaker>, Config)>,
}

impl std::fmt::Debug for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Family")
            .field("name", &self.name)
            .field("len", &self.len())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}
