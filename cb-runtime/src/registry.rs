//! The process-wide registry of named breakers, and where runtime
//! configuration, metrics and transition events meet them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, Weak};

use prometheus::HistogramVec;
use tokio::sync::broadcast;

use crate::breaker::coordination::Coordinator;
use crate::breaker::CircuitBreaker;
use crate::config::{Config, ConfigError};
use crate::events::{Event, Events, CAPACITY};
use crate::overrides::{self, FileConfig, CB_CONFIG};
use crate::preset::Preset;
use crate::state::State;
use crate::stats::Stats;

/// Where a registry reads environment variables: a function returning them all.
type EnvSource = Arc<dyn Fn() -> Vec<(String, String)> + Send + Sync>;

/// Named breakers, shared by everything in the process that uses a name.
///
/// Two call sites that use one name share one breaker, by design: the first
/// configuration wins, and a later, different one is logged as a warning
/// naming both call sites (pitfall 14). Lookups take a read lock; the
/// `#[circuit_breaker]` attribute keeps each function's breaker in a static
/// of its own, so calls never touch the registry after the first.
///
/// # Runtime configuration
///
/// A breaker's configuration is layered, lowest first:
///
/// 1. its preset, then the attribute's arguments (or the `Config` given to
///    [`get_or_insert`](Self::get_or_insert) or [`reconfigure`](Self::reconfigure));
/// 2. the config file ([`load_file`](Self::load_file), or the path in
///    `CB_CONFIG`, read when the first breaker is created): its `[defaults]`,
///    then `[presets.<preset>]` for the breaker's preset, then `[breakers.<name>]`;
/// 3. the environment: `CB_<NAME>_<FIELD>`, NAME being the breaker's name
///    upper-cased with every character but ASCII letters and digits turned
///    into `_` (`CB_OPENAI_FAILURE_THRESHOLD=10`, `CB_HIDDEN_ENV_OPEN_DURATION=250ms`).
///
/// A `preset` key (in the environment, `[breakers.<name>]` or `[defaults]`,
/// the first found) starts the breaker from that preset instead of its
/// compiled-in configuration. The layers apply when a breaker is created, on
/// [`reconfigure`](Self::reconfigure) and on [`load_file`](Self::load_file).
///
/// **Bad values**: [`validate_config`](Self::validate_config) (or
/// [`validate_env`](Self::validate_env)) returns the first bad value as a
/// [`ConfigError`] naming the variable or the file, line and key, with the
/// allowed values: call it at startup to refuse to start. A breaker created
/// with a bad value anyway (the first call of an annotated function) logs that
/// error at ERROR level and runs on its compiled-in configuration, ignoring the
/// file and environment for that breaker. A bad `CB_CONFIG` file is logged the
/// same way and not loaded. Nothing panics.
pub struct Registry {
    breakers: RwLock<BTreeMap<String, Entry>>,
    /// Serialises configuration changes (creation, reconfigure, load_file).
    config_lock: Mutex<()>,
    file: RwLock<Option<Arc<FileConfig>>>,
    /// Set once `CB_CONFIG` has been looked at.
    cb_config_read: OnceLock<()>,
    env: EnvSource,
    events: broadcast::Sender<Event>,
    durations: OnceLock<Option<HistogramVec>>,
    /// Told of every breaker (fleet mode); see [`Registry::coordinate`].
    coordinators: RwLock<Vec<Arc<dyn Coordinator>>>,
}

struct Entry {
    breaker: Arc<CircuitBreaker>,
    /// The configuration asked for at creation.
    requested: Config,
    /// The compiled-in configuration (or the last `reconfigure`'s), before
    /// the file and the environment.
    base: Config,
    /// The preset the breaker was made from, when known.
    preset: Option<Preset>,
    /// Where the breaker was created from, when known.
    origin: Option<&'static str>,
    counts: Arc<Counts>,
}

/// What the registry counts per breaker: transitions, by from and to state.
#[derive(Default)]
pub(crate) struct Counts {
    transitions: [[AtomicU64; 5]; 5],
}

impl Counts {
    pub(crate) fn transitions(&self, from: State, to: State) -> u64 {
        self.transitions[usize::from(from.code())][usize::from(to.code())].load(Ordering::Relaxed)
    }
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

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl Registry {
    /// An empty registry reading the process environment (most code wants the
    /// global [`registry()`]).
    pub fn new() -> Self {
        Registry::with_env(|| {
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect()
        })
    }

    /// An empty registry that reads its environment variables (`CB_CONFIG`
    /// and `CB_<NAME>_<FIELD>`) from `vars` instead of the process
    /// environment: for tests, or to take them from elsewhere.
    ///
    /// ```
    /// use cb_runtime::{Config, Registry};
    ///
    /// let registry = Registry::with_env(|| vec![("CB_BILLING_FAILURE_THRESHOLD".into(), "9".into())]);
    /// let billing = registry.get_or_insert("billing", Config::default);
    /// assert_eq!(billing.config().failure_threshold(), 9);
    /// ```
    pub fn with_env(vars: impl Fn() -> Vec<(String, String)> + Send + Sync + 'static) -> Self {
        Registry {
            breakers: RwLock::default(),
            config_lock: Mutex::default(),
            file: RwLock::default(),
            cb_config_read: OnceLock::new(),
            env: Arc::new(vars),
            events: broadcast::channel(CAPACITY).0,
            durations: OnceLock::new(),
            coordinators: RwLock::default(),
        }
    }

    /// The breaker named `name`, created with `make()` (then the config file
    /// and the environment, see [above](Self#runtime-configuration)) if there
    /// is none yet. The first configuration for a name wins.
    pub fn get_or_insert(&self, name: &str, make: impl FnOnce() -> Config) -> Arc<CircuitBreaker> {
        self.get_or_insert_inner(name, None, None, make)
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
        self.get_or_insert_inner(name, Some(origin), None, make)
    }

    /// Like [`get_or_insert_at`](Self::get_or_insert_at), for a configuration
    /// made from `preset`: the config file's `[presets.<preset>]` table then
    /// applies to the breaker.
    pub fn get_or_insert_preset_at(
        &self,
        name: &str,
        origin: &'static str,
        preset: Preset,
        make: impl FnOnce() -> Config,
    ) -> Arc<CircuitBreaker> {
        self.get_or_insert_inner(name, Some(origin), Some(preset), make)
    }

    fn get_or_insert_inner(
        &self,
        name: &str,
        origin: Option<&'static str>,
        preset: Option<Preset>,
        make: impl FnOnce() -> Config,
    ) -> Arc<CircuitBreaker> {
        if origin.is_none() {
            if let Some(b) = self.get(name) {
                return b;
            }
        }
        // Built outside the locks: `make` may itself use the registry.
        let requested = make();
        self.read_cb_config();
        let _config = self.config_lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = self.read().get(name) {
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
        let config = match self.resolve(name, &requested, preset) {
            Ok(config) => config,
            Err(error) => {
                tracing::error!(
                    target: "cb_runtime",
                    breaker = name,
                    %error,
                    "bad runtime configuration for circuit breaker `{name}`: {error}; \
                     it runs on its compiled-in configuration"
                );
                requested.clone()
            }
        };
        let breaker = Arc::new(CircuitBreaker::new(name, config));
        let counts = self.attach(&breaker);
        self.tell_coordinators(&breaker);
        self.write().insert(
            name.to_owned(),
            Entry {
                breaker: Arc::clone(&breaker),
                base: requested.clone(),
                requested,
                preset,
                origin,
                counts,
            },
        );
        breaker
    }

    /// Adds a breaker made elsewhere. If its name is taken, the registry keeps
    /// the existing breaker and returns it as the error. The config file and
    /// the environment apply to it from then on (and at once, when they set
    /// any of its fields; a bad value is logged and leaves it unchanged).
    pub fn register(&self, breaker: Arc<CircuitBreaker>) -> Result<(), Arc<CircuitBreaker>> {
        self.read_cb_config();
        let _config = self.config_lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = self.read().get(breaker.name()) {
            return Err(Arc::clone(&existing.breaker));
        }
        let base = breaker.config();
        match self.resolve(breaker.name(), &base, None) {
            Ok(config) if config != base => {
                if let Err(error) = breaker.reconfigure(config) {
                    tracing::error!(target: "cb_runtime", breaker = breaker.name(), %error, "bad runtime configuration");
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::error!(target: "cb_runtime", breaker = breaker.name(), %error, "bad runtime configuration");
            }
        }
        let counts = self.attach(&breaker);
        self.tell_coordinators(&breaker);
        self.write().insert(
            breaker.name().to_owned(),
            Entry {
                breaker,
                requested: base.clone(),
                base,
                preset: None,
                origin: None,
                counts,
            },
        );
        Ok(())
    }

    /// The breaker named `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<CircuitBreaker>> {
        self.read().get(name).map(|e| Arc::clone(&e.breaker))
    }

    /// Removes and returns the breaker named `name`. Holders of its `Arc`
    /// keep using it; the next `get_or_insert` makes a new one.
    pub fn remove(&self, name: &str) -> Option<Arc<CircuitBreaker>> {
        self.write().remove(name).map(|e| e.breaker)
    }

    /// Replaces the configuration of breaker `name` with `config`, live,
    /// keeping its state and its counts (see [`CircuitBreaker::reconfigure`]).
    ///
    /// The config file and the environment still apply on top of `config`
    /// ([runtime configuration](Self#runtime-configuration)), so an operator's
    /// override keeps winning. An unknown name or a bad override is an error,
    /// and the breaker is left unchanged.
    pub fn reconfigure(&self, name: &str, config: Config) -> Result<(), ConfigError> {
        let _config = self.config_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let (breaker, preset) = {
            let map = self.read();
            let entry = map.get(name).ok_or_else(|| {
                ConfigError::new("name", format!("`{name}`"), "the name of a registered breaker")
            })?;
            (Arc::clone(&entry.breaker), entry.preset)
        };
        let effective = self.resolve(name, &config, preset)?;
        breaker.reconfigure(effective)?;
        if let Some(entry) = self.write().get_mut(name) {
            entry.base = config;
        }
        Ok(())
    }

    /// Loads the TOML config file at `path` and applies it to every breaker
    /// now in the registry, and to those created later.
    ///
    /// The file has `[defaults]`, `[presets.<preset>]` and `[breakers.<name>]`
    /// tables, each with an optional `preset = "..."` and any of the fields
    /// `failure_threshold`, `failure_rate_threshold`, `sliding_window` (a
    /// number of calls, or a duration for a time window), `minimum_calls`,
    /// `slow_call_duration`, `slow_call_rate_threshold`, `open_duration`,
    /// `half_open_max_calls`, `success_threshold` and `call_timeout`. Durations
    /// are written `"250ms"`, `"30s"`, `"2m"`; `"none"` turns a slow-call
    /// duration or a call timeout off.
    ///
    /// ```toml
    /// [defaults]
    /// open_duration = "30s"
    ///
    /// [presets.llm]
    /// call_timeout = "45s"
    ///
    /// [breakers.openai]
    /// preset = "llm"
    /// failure_threshold = 5
    /// ```
    ///
    /// A syntax error, an unknown table or key, or a bad value is an error
    /// naming the file, the line, the key and the allowed values; so is a file
    /// that would give some existing breaker a configuration `build` refuses.
    /// On an error nothing changes.
    pub fn load_file(&self, path: impl AsRef<std::path::Path>) -> Result<(), ConfigError> {
        let path = path.as_ref().display().to_string();
        let file = FileConfig::load(&path)?;
        // Setting it now keeps `CB_CONFIG` from replacing it later.
        let _ = self.cb_config_read.set(());
        self.apply_file(file)
    }

    /// Like [`load_file`](Self::load_file), from the file's text; `source`
    /// names it in errors.
    pub fn load_str(&self, toml: &str, source: &str) -> Result<(), ConfigError> {
        let file = FileConfig::parse(toml, source)?;
        let _ = self.cb_config_read.set(());
        self.apply_file(file)
    }

    fn apply_file(&self, file: FileConfig) -> Result<(), ConfigError> {
        let _config = self.config_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let vars = (self.env)();
        let mut changes = Vec::new();
        for (name, entry) in self.read().iter() {
            let env = overrides::env_section(name, &vars)?;
            let config = overrides::resolve(name, &entry.base, entry.preset, Some(&file), &env)?;
            changes.push((Arc::clone(&entry.breaker), config));
        }
        *self.file.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(file));
        for (breaker, config) in changes {
            if config != breaker.config() {
                breaker.reconfigure(config)?;
            }
        }
        Ok(())
    }

    /// Checks every `CB_*` environment variable: each must be `CB_CONFIG` or
    /// `CB_<NAME>_<FIELD>` with a known field and a valid value. The error
    /// names the variable. Call it at startup to refuse to start with a typo
    /// in the environment (see [runtime configuration](Self#runtime-configuration)).
    ///
    /// ```
    /// use cb_runtime::Registry;
    ///
    /// let registry = Registry::with_env(|| vec![("CB_OPENAI_OPEN_DURATION".into(), "30".into())]);
    /// let err = registry.validate_env().unwrap_err();
    /// assert!(err.to_string().starts_with("environment variable CB_OPENAI_OPEN_DURATION: "));
    /// ```
    pub fn validate_env(&self) -> Result<(), ConfigError> {
        overrides::validate_env(&(self.env)())
    }

    /// [`validate_env`](Self::validate_env), and the file named by `CB_CONFIG`
    /// when it is set: it must exist and be valid.
    pub fn validate_config(&self) -> Result<(), ConfigError> {
        let vars = (self.env)();
        overrides::validate_env(&vars)?;
        if let Some((_, path)) = vars.iter().find(|(k, _)| k == CB_CONFIG) {
            FileConfig::load(path)?;
        }
        Ok(())
    }

    /// The configuration breaker `name` gets from `base`: `base` with the
    /// file and the environment on top.
    fn resolve(&self, name: &str, base: &Config, preset: Option<Preset>) -> Result<Config, ConfigError> {
        let env = overrides::env_section(name, &(self.env)())?;
        let file = self.file.read().unwrap_or_else(PoisonError::into_inner).clone();
        overrides::resolve(name, base, preset, file.as_deref(), &env)
    }

    /// Loads the file named by `CB_CONFIG`, once, unless a file was loaded already.
    fn read_cb_config(&self) {
        if self.cb_config_read.get().is_some() {
            return;
        }
        let mut first = false;
        self.cb_config_read.get_or_init(|| first = true);
        if !first {
            return;
        }
        let vars = (self.env)();
        let Some((_, path)) = vars.iter().find(|(k, _)| k == CB_CONFIG) else {
            return;
        };
        match FileConfig::load(path) {
            Ok(file) => *self.file.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(file)),
            Err(error) => tracing::error!(
                target: "cb_runtime",
                %error,
                "{CB_CONFIG}={path} not loaded: {error}"
            ),
        }
    }

    /// Tells the registry about `breaker`'s transitions, and times its calls
    /// if call durations are on.
    fn attach(&self, breaker: &Arc<CircuitBreaker>) -> Arc<Counts> {
        let counts = Arc::new(Counts::default());
        let weak: Weak<CircuitBreaker> = Arc::downgrade(breaker);
        let sender = self.events.clone();
        let c = Arc::clone(&counts);
        breaker.on_transition(move |t| {
            c.transitions[usize::from(t.from.code())][usize::from(t.to.code())]
                .fetch_add(1, Ordering::Relaxed);
            if sender.receiver_count() > 0 {
                if let Some(b) = weak.upgrade() {
                    let _ = sender.send(Event::new(t, b.stats()));
                }
            }
        });
        if let Some(Some(durations)) = self.durations.get() {
            time_calls(breaker, durations);
        }
        counts
    }

    /// Tells `coordinator` of every breaker in the registry now, and of every
    /// breaker created or registered later, before that breaker is handed to
    /// anyone (fleet mode: the `cb-fleet` crate). See
    /// [`coordination`](crate::coordination).
    pub fn coordinate(&self, coordinator: Arc<dyn Coordinator>) {
        let _config = self.config_lock.lock().unwrap_or_else(PoisonError::into_inner);
        for entry in self.read().values() {
            coordinator.attach(&entry.breaker);
        }
        self.coordinators
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(coordinator);
    }

    /// Hands a new breaker to the coordinators. Call with the config lock held.
    fn tell_coordinators(&self, breaker: &Arc<CircuitBreaker>) {
        let coordinators = self
            .coordinators
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for c in coordinators {
            c.attach(breaker);
        }
    }

    /// Subscribes to every transition of every breaker in the registry.
    ///
    /// Each event carries the breaker's name, the states, the time and the
    /// breaker's stats; see [`Events`] and the `alerting` example.
    pub fn subscribe(&self) -> Events {
        Events::new(self.events.subscribe())
    }

    /// Turns on the `circuit_breaker_call_duration_seconds` histogram for every
    /// breaker in the registry, now and later (see [`crate::metrics`]). It
    /// costs two clock reads and a histogram update per call, and cannot be
    /// turned off again.
    pub fn record_call_durations(&self) {
        let _config = self.config_lock.lock().unwrap_or_else(PoisonError::into_inner);
        if self.durations.get().is_some() {
            return;
        }
        let durations = self.durations.get_or_init(crate::metrics::duration_histogram);
        if let Some(durations) = durations {
            for entry in self.read().values() {
                time_calls(&entry.breaker, durations);
            }
        }
    }

    /// The call-duration histogram, when it is on.
    pub(crate) fn durations(&self) -> Option<&HistogramVec> {
        self.durations.get().and_then(Option::as_ref)
    }

    /// Every breaker with the registry's counts for it, sorted by name.
    pub(crate) fn observed(&self) -> Vec<(Arc<CircuitBreaker>, Arc<Counts>)> {
        self.read()
            .values()
            .map(|e| (Arc::clone(&e.breaker), Arc::clone(&e.counts)))
            .collect()
    }

    /// How many transitions from `from` to `to` breaker `name` made since it
    /// joined the registry.
    pub fn transitions(&self, name: &str, from: State, to: State) -> u64 {
        self.read()
            .get(name)
            .map_or(0, |e| e.counts.transitions(from, to))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.breakers.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.breakers.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every breaker's name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Every breaker, sorted by name.
    pub fn breakers(&self) -> Vec<Arc<CircuitBreaker>> {
        self.read().values().map(|e| Arc::clone(&e.breaker)).collect()
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

/// Feeds `breaker`'s call durations to its series of `durations`.
fn time_calls(breaker: &CircuitBreaker, durations: &HistogramVec) {
    let histogram = durations.with_label_values(&[breaker.name()]);
    breaker.observe_call_durations(Box::new(move |d| histogram.observe(d.as_secs_f64())));
}
