//! The process-wide registry of named breakers, and where runtime
//! configuration, metrics and transition events meet them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use crate::breaker::coordination::Coordinator;
use crate::breaker::CircuitBreaker;
use crate::config::{Config, ConfigError};
use crate::events::{EventHook, Events};
use crate::family::{Family, Link};
use crate::history::TransitionSource;
use crate::hook::Hook;
use crate::overrides::{self, FileConfig, CB_CONFIG};
use crate::preset::Preset;
use crate::state::State;
use crate::stats::Stats;
use crate::transition::Transition;

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
///    as [`env_name`](crate::env_name) spells it: upper-cased, other ASCII
///    characters turned into `_`, non-ASCII ones into `U<hex>`
///    (`CB_OPENAI_FAILURE_THRESHOLD=10`, `CB_HIDDEN_ENV_OPEN_DURATION=250ms`).
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
    /// The families of keyed breakers, by name (see [`Family`]).
    families: RwLock<BTreeMap<String, Arc<Family>>>,
    /// Serialises configuration changes (creation, reconfigure, load_file).
    /// Shared with the families, whose keys join under it too.
    config_lock: Arc<Mutex<()>>,
    file: Arc<RwLock<Option<Arc<FileConfig>>>>,
    /// Set once `CB_CONFIG` has been looked at and, when it names a file,
    /// that file loaded. Creators wait for it (exactly one load), and an
    /// explicit [`Registry::load_file`] waits for it too, so the explicit
    /// file always lands last and wins.
    cb_config_read: OnceLock<()>,
    env: EnvSource,
    /// The hook that sends transitions to subscribers; also in `hooks`.
    events: Arc<EventHook>,
    /// What a fleet that joined the registry reports about its link.
    fleet: RwLock<Option<FleetSource>>,
    /// A durable transition log attached to the registry, if any.
    history: RwLock<Option<Arc<dyn TransitionSource>>>,
    /// Told of every breaker as it joins and leaves: the metrics'
    /// histograms, the fleet's coordinators.
    hooks: Arc<RwLock<Vec<Arc<dyn Hook>>>>,
}

/// Where a registry reads its fleet's status.
type FleetSource = Arc<dyn Fn() -> FleetStatus + Send + Sync>;

/// The link of a registry to its fleet (the breakers shared across
/// replicas), as the fleet reports it through
/// [`Registry::set_fleet_status`]. The admin API and its status page show it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetStatus {
    /// The fleet's namespace: the replicas that share breakers.
    pub namespace: String,
    /// `true` while the replica is connected to the fleet's server.
    pub connected: bool,
}

impl FleetStatus {
    /// A status for the fleet `namespace`.
    pub fn new(namespace: impl Into<String>, connected: bool) -> Self {
        FleetStatus {
            namespace: namespace.into(),
            connected,
        }
    }
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
    /// The other configurations this name was asked for with, already
    /// warned about: one warning per call site and configuration.
    warned: Vec<(Option<&'static str>, Option<Preset>, Config)>,
    counts: Arc<TransitionCounts>,
}

/// What the registry counts per breaker: transitions, by from and to state.
pub(crate) use crate::transition::TransitionCounts;

impl Entry {
    /// `true` when a warning was given already for this call site, preset
    /// and configuration.
    fn warned_about(&self, origin: Option<&'static str>, preset: Option<Preset>, requested: &Config) -> bool {
        self.warned
            .iter()
            .any(|(o, p, c)| *o == origin && *p == preset && c == requested)
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
    /// Of the open and half-open breakers, those that are so after a rate
    /// limit ([`CircuitBreaker::throttling`]): the dependency asked callers
    /// to wait; it is not down.
    pub throttled: usize,
    /// `true` when no breaker is open or forced open for an outage: a
    /// breaker open only because it is throttled is not unhealthy.
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
        let events = Arc::new(EventHook::new());
        Registry {
            breakers: RwLock::default(),
            families: RwLock::default(),
            config_lock: Arc::default(),
            file: Arc::default(),
            cb_config_read: OnceLock::new(),
            env: Arc::new(vars),
            events: Arc::clone(&events),
            fleet: RwLock::default(),
            history: RwLock::default(),
            hooks: Arc::new(RwLock::new(vec![events as Arc<dyn Hook>])),
        }
    }

    /// Tells the registry how to read the status of the fleet it joined:
    /// `status` is called (without any lock held) each time the admin API
    /// answers `GET /circuit-breakers`. A later call replaces an earlier one.
    pub fn set_fleet_status(&self, status: impl Fn() -> FleetStatus + Send + Sync + 'static) {
        *self.fleet.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(status));
    }

    /// The fleet's status, or `None` when no fleet joined the registry.
    pub fn fleet_status(&self) -> Option<FleetStatus> {
        let source = self.fleet.read().unwrap_or_else(PoisonError::into_inner).clone();
        source.map(|status| status())
    }

    /// Attaches a durable transition log (the `cb-postgres` crate's store
    /// does this): the admin API's `GET /circuit-breakers/{name}/transitions`
    /// answers from it. A later call replaces an earlier one. See
    /// [`history`](crate::history).
    pub fn set_transition_source(&self, source: Arc<dyn TransitionSource>) {
        *self.history.write().unwrap_or_else(PoisonError::into_inner) = Some(source);
    }

    /// The durable transition log attached with
    /// [`set_transition_source`](Self::set_transition_source), if any.
    pub fn transition_source(&self) -> Option<Arc<dyn TransitionSource>> {
        self.history
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The breaker named `name`, created with `make()` (then the config file
    /// and the environment, see [above](Self#runtime-configuration)) if there
    /// is none yet. The first configuration for a name wins; `make` is
    /// called every time, and a later call with a different configuration
    /// is logged as a warning (once per configuration), since both share the
    /// first one's breaker.
    pub fn get_or_insert(&self, name: &str, make: impl FnOnce() -> Config) -> Arc<CircuitBreaker> {
        self.get_or_insert_from(name, None, None, make)
    }

    /// The breaker named `name`, made from `preset` if there is none yet:
    /// what `#[circuit_breaker(name = .., preset = ..)]` does, by hand. The
    /// config file's `[presets.<preset>]` table applies to it, then its own
    /// table and the environment.
    ///
    /// ```
    /// use cb_runtime::{Preset, Registry};
    ///
    /// let registry = Registry::new();
    /// let openai = registry.get_or_insert_preset("openai", Preset::Llm);
    /// assert_eq!(openai.config(), Preset::Llm.config());
    /// ```
    pub fn get_or_insert_preset(&self, name: &str, preset: Preset) -> Arc<CircuitBreaker> {
        self.get_or_insert_from(name, None, Some(preset), || preset.config())
    }

    /// [`get_or_insert`](Self::get_or_insert), remembering `origin` (the call
    /// site, for the warning about two configurations of one name) and the
    /// `preset` the configuration was made from (for the file's
    /// `[presets.<preset>]` table).
    pub(crate) fn get_or_insert_from(
        &self,
        name: &str,
        origin: Option<&'static str>,
        preset: Option<Preset>,
        make: impl FnOnce() -> Config,
    ) -> Arc<CircuitBreaker> {
        // A name that breaks the rule is repaired, as `CircuitBreaker::new`
        // does, so the registry's key is the breaker's name. The repair is
        // logged once, when the breaker is made, not on every lookup.
        let original = name;
        let repaired = crate::name::repair(name);
        let name = &*repaired;
        // Built outside the locks: `make` may itself use the registry. It is
        // built even when the name exists, to warn when it differs.
        let requested = make();
        if let Some(existing) = self.existing(name, origin, preset, &requested) {
            return existing;
        }
        self.read_cb_config();
        let _config = self.config_lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = self.existing(name, origin, preset, &requested) {
            return existing;
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
        if name != original {
            crate::name::log_repair(original, name);
        }
        let breaker = Arc::new(CircuitBreaker::new(name, config));
        breaker.adopt();
        let counts = self.attach(&breaker);
        // Before anyone can call through it. It has no observers of its
        // user's yet, so the hooks' transitions run no user code here.
        for hook in self.hooks() {
            hook.attach(&breaker);
        }
        self.insert(Entry {
            breaker: Arc::clone(&breaker),
            base: requested.clone(),
            requested,
            preset,
            origin,
            warned: Vec::new(),
            counts,
        });
        breaker
    }

    /// The breaker named `name` if there is one, after warning (once per
    /// call site and configuration) when it was asked for with another
    /// configuration or preset than the one it was made with (pitfall 14).
    fn existing(
        &self,
        name: &str,
        origin: Option<&'static str>,
        preset: Option<Preset>,
        requested: &Config,
    ) -> Option<Arc<CircuitBreaker>> {
        {
            let map = self.read();
            let entry = map.get(name)?;
            let same = entry.requested == *requested && (preset.is_none() || entry.preset == preset);
            if same || entry.warned_about(origin, preset, requested) {
                return Some(Arc::clone(&entry.breaker));
            }
        }
        let (breaker, first, first_preset) = {
            let mut map = self.write();
            let entry = map.get_mut(name)?;
            let breaker = Arc::clone(&entry.breaker);
            if entry.warned_about(origin, preset, requested) {
                return Some(breaker);
            }
            entry.warned.push((origin, preset, requested.clone()));
            (breaker, entry.origin, entry.preset)
        };
        // Logged with no lock of the registry held: a subscriber may call it.
        let first = first.unwrap_or("<unknown call site>");
        let second = origin.unwrap_or("<unknown call site>");
        let preset_of = |p: Option<Preset>| p.map_or("none", Preset::name);
        tracing::warn!(
            target: "cb_runtime",
            breaker = name,
            first,
            second,
            first_preset = preset_of(first_preset),
            second_preset = preset_of(preset),
            "circuit breaker `{name}` is asked for with a different configuration at {second} than at {first}; \
             both share the first one's breaker and configuration"
        );
        Some(breaker)
    }

    /// Adds `entry`, then warns, with no lock of the registry held, when
    /// another registered name reads the same environment variables.
    fn insert(&self, entry: Entry) {
        let name = entry.breaker.name().to_owned();
        let env = overrides::env_name(&name);
        let sharing: Vec<String> = {
            let mut map = self.write();
            let sharing = map
                .keys()
                .filter(|other| overrides::env_name(other) == env)
                .cloned()
                .collect();
            map.insert(name.clone(), entry);
            sharing
        };
        for other in sharing {
            tracing::warn!(
                target: "cb_runtime",
                breaker = %name,
                other = %other,
                "circuit breakers `{name}` and `{other}` both read the environment variables CB_{env}_*; \
                 rename one of them to configure them apart"
            );
        }
    }

    /// Adds a breaker made elsewhere. If its name is taken, the registry keeps
    /// the existing breaker and returns it as the error. The config file and
    /// the environment apply to it from then on (and at once, when they set
    /// any of its fields; a bad value is logged and leaves it unchanged).
    pub fn register(&self, breaker: Arc<CircuitBreaker>) -> Result<(), Arc<CircuitBreaker>> {
        self.read_cb_config();
        let (transition, hooks) = {
            let _config = self.config_lock.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(existing) = self.read().get(breaker.name()) {
                return Err(Arc::clone(&existing.breaker));
            }
            let base = breaker.config();
            let transition = match self.resolve(breaker.name(), &base, None) {
                Ok(config) if config != base => breaker.reconfigure_deferred(config).unwrap_or_else(|error| {
                    tracing::error!(target: "cb_runtime", breaker = breaker.name(), %error, "bad runtime configuration");
                    None
                }),
                Ok(_) => None,
                Err(error) => {
                    tracing::error!(target: "cb_runtime", breaker = breaker.name(), %error, "bad runtime configuration");
                    None
                }
            };
            breaker.adopt();
            let counts = self.attach(&breaker);
            self.insert(Entry {
                breaker: Arc::clone(&breaker),
                requested: base.clone(),
                base,
                preset: None,
                origin: None,
                warned: Vec::new(),
                counts,
            });
            // The hooks of now: one added later finds the breaker in the map.
            (transition, self.hooks())
        };
        // The breaker has its user's observers already, and a hook may make
        // it move (a fleet's open), so the hooks run with no lock of the
        // registry held: an observer may call it. They run first, so that
        // the subscribers hear of the transition the new configuration made.
        for hook in hooks {
            hook.attach(&breaker);
        }
        breaker.publish_transition(transition);
        Ok(())
    }

    /// The breaker named `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<CircuitBreaker>> {
        self.read().get(name).map(|e| Arc::clone(&e.breaker))
    }

    /// Removes and returns the breaker named `name`. Holders of its `Arc`
    /// keep using it; the next `get_or_insert` makes a new one. Its series
    /// leave the metrics exposition.
    pub fn remove(&self, name: &str) -> Option<Arc<CircuitBreaker>> {
        let _config = self.config_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let removed = self.write().remove(name).map(|e| e.breaker)?;
        for hook in self.hooks() {
            hook.detach(name);
        }
        Some(removed)
    }

    /// Replaces the configuration of breaker `name` with `config`, live,
    /// keeping its state and its counts (see [`CircuitBreaker::reconfigure`]).
    ///
    /// The config file and the environment still apply on top of `config`
    /// ([runtime configuration](Self#runtime-configuration)), so an operator's
    /// override keeps winning. An unknown name or a bad override is an error,
    /// and the breaker is left unchanged.
    pub fn reconfigure(&self, name: &str, config: Config) -> Result<(), ConfigError> {
        let (breaker, transition) = {
            let _config = self.config_lock.lock().unwrap_or_else(PoisonError::into_inner);
            let (breaker, preset) = {
                let map = self.read();
                let entry = map.get(name).ok_or_else(|| {
                    ConfigError::new("name", format!("`{name}`"), "the name of a registered breaker")
                })?;
                (Arc::clone(&entry.breaker), entry.preset)
            };
            let effective = self.resolve(name, &config, preset)?;
            let transition = breaker.reconfigure_deferred(effective)?;
            if let Some(entry) = self.write().get_mut(name) {
                entry.base = config;
            }
            (breaker, transition)
        };
        // Observers run with no lock of the registry held: one may call it.
        breaker.publish_transition(transition);
        Ok(())
    }

    /// Loads the TOML config file at `path` and applies it to every breaker
    /// now in the registry, and to those created later.
    ///
    /// The file has `[defaults]`, `[presets.<preset>]` and `[breakers.<name>]`
    /// tables, whose keys are the configuration fields of the table
    /// [`cb_syntax::FIELDS`] (the guide's "Configuring" chapter,
    /// `docs/guide/configuring.md`, lists them, with their ranges): an
    /// optional `preset = "..."`, then any field, written as the attribute
    /// writes it. Durations are written `"250ms"`, `"30s"`, `"2m"`; `"none"`
    /// turns a slow-call duration, a call timeout or an open backoff off.
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
        self.apply_file(file)
    }

    /// Like [`load_file`](Self::load_file), from the file's text; `source`
    /// names it in errors.
    pub fn load_str(&self, toml: &str, source: &str) -> Result<(), ConfigError> {
        let file = FileConfig::parse(toml, source)?;
        self.apply_file(file)
    }

    /// Makes `file` the registry's config file and applies it. An explicit
    /// file always wins over `CB_CONFIG`: this waits for a lazy load of
    /// `CB_CONFIG` under way, or keeps one from ever starting.
    fn apply_file(&self, file: FileConfig) -> Result<(), ConfigError> {
        self.cb_config_read.get_or_init(|| ());
        let mut published = Vec::new();
        let result = {
            let _config = self.config_lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.apply_file_locked(file, &mut published)
        };
        // Observers run with no lock of the registry held: one may call it.
        for (breaker, transition) in published {
            breaker.publish_transition(transition);
        }
        result
    }

    fn apply_file_locked(
        &self,
        file: FileConfig,
        published: &mut Vec<(Arc<CircuitBreaker>, Option<Transition>)>,
    ) -> Result<(), ConfigError> {
        let vars = (self.env)();
        let mut changes = Vec::new();
        for (name, entry) in self.read().iter() {
            let env = overrides::env_section(name, &vars)?;
            let config = overrides::resolve(name, &entry.base, entry.preset, Some(&file), &env)?;
            changes.push((Arc::clone(&entry.breaker), config));
        }
        let mut plans = Vec::new();
        for family in self.family_list() {
            let plan = family.plan(None, Some(&file), &vars)?;
            plans.push((family, plan));
        }
        *self.file.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(file));
        for (family, plan) in plans {
            published.extend(family.apply(plan));
        }
        for (breaker, config) in changes {
            if config != breaker.config() {
                let transition = breaker.reconfigure_deferred(config)?;
                published.push((breaker, transition));
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
    ///
    /// It also refuses a variable that two registered breakers would both
    /// read, their names mapping to the same `NAME` (see [`env_name`](crate::env_name)).
    pub fn validate_env(&self) -> Result<(), ConfigError> {
        let vars = (self.env)();
        overrides::validate_env(&vars)?;
        self.check_env_collisions(&vars)
    }

    /// Refuses a `CB_<NAME>_*` variable whose `NAME` two registered breakers share.
    fn check_env_collisions(&self, vars: &[(String, String)]) -> Result<(), ConfigError> {
        let names = self.names();
        let mut by_env: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for name in &names {
            by_env.entry(overrides::env_name(name)).or_default().push(name);
        }
        for (env, sharing) in by_env.iter().filter(|(_, n)| n.len() > 1) {
            let prefix = format!("CB_{env}_");
            if let Some((var, _)) = vars.iter().find(|(k, _)| k.starts_with(&prefix)) {
                let list: Vec<String> = sharing.iter().map(|n| format!("`{n}`")).collect();
                return Err(ConfigError::new(
                    "name",
                    format!("CB_{env}, read by circuit breakers {}", list.join(" and ")),
                    "a variable prefix that only one breaker reads: rename one of them",
                )
                .at(format!("environment variable {var}")));
            }
        }
        Ok(())
    }

    /// [`validate_env`](Self::validate_env), and the file named by `CB_CONFIG`
    /// when it is set: it must exist and be valid.
    pub fn validate_config(&self) -> Result<(), ConfigError> {
        let vars = (self.env)();
        overrides::validate_env(&vars)?;
        self.check_env_collisions(&vars)?;
        if let Some((_, path)) = vars.iter().find(|(k, _)| k == CB_CONFIG) {
            FileConfig::load(path)?;
        }
        Ok(())
    }

    /// Whether the registry's runtime configuration has **loaded** and
    /// **validated**: the check behind the admin API's `GET /health/startup`
    /// (a Kubernetes startup probe).
    ///
    /// - **Loaded**: the config-file layer is settled. When `CB_CONFIG` names
    ///   a file and no breaker has read it yet, this reads it now, as the
    ///   first breaker would. It must have loaded at that first read, or a
    ///   file must have been loaded in its place by
    ///   [`load_file`](Self::load_file) / [`load_str`](Self::load_str). A
    ///   `CB_CONFIG` file that failed to load at its first read is not read
    ///   again (breakers run without it), so this stays an error until the
    ///   process restarts, even once the file is fixed.
    /// - **Validated**: [`validate_config`](Self::validate_config) passes now:
    ///   every `CB_*` variable is valid, and the `CB_CONFIG` file, re-read,
    ///   exists and is valid.
    ///
    /// Without `CB_CONFIG` only the environment is checked. The error is the
    /// first problem found, loading first.
    ///
    /// ```
    /// use cb_runtime::Registry;
    ///
    /// let registry = Registry::with_env(|| vec![("CB_CONFIG".into(), "/nonexistent/cb.toml".into())]);
    /// let err = registry.check_startup().unwrap_err();
    /// assert!(err.to_string().contains("/nonexistent/cb.toml"));
    /// assert!(Registry::with_env(Vec::new).check_startup().is_ok());
    /// ```
    pub fn check_startup(&self) -> Result<(), ConfigError> {
        self.read_cb_config();
        let vars = (self.env)();
        if let Some((_, path)) = vars.iter().find(|(k, _)| k == CB_CONFIG) {
            if self.file.read().unwrap_or_else(PoisonError::into_inner).is_none() {
                // Say why it failed, when it still does.
                FileConfig::load(path)?;
                return Err(ConfigError::new(
                    "file",
                    format!("`{path}`, which did not load when the registry first read it"),
                    "a config file that loads at its first read (it is not read again: restart the process)",
                )
                .at(format!("environment variable {CB_CONFIG}")));
            }
        }
        self.validate_config()
    }

    /// The configuration breaker `name` gets from `base`: `base` with the
    /// file and the environment on top.
    fn resolve(&self, name: &str, base: &Config, preset: Option<Preset>) -> Result<Config, ConfigError> {
        let env = overrides::env_section(name, &(self.env)())?;
        let file = self.file.read().unwrap_or_else(PoisonError::into_inner).clone();
        overrides::resolve(name, base, preset, file.as_deref(), &env)
    }

    /// Loads the file named by `CB_CONFIG`, exactly once, unless a file was
    /// loaded explicitly first. Concurrent creators wait for the load, so
    /// none resolves its configuration without the file.
    fn read_cb_config(&self) {
        self.cb_config_read.get_or_init(|| {
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
        });
    }

    /// Counts `breaker`'s transitions.
    fn attach(&self, breaker: &Arc<CircuitBreaker>) -> Arc<TransitionCounts> {
        let counts = Arc::new(TransitionCounts::default());
        let c = Arc::clone(&counts);
        breaker.on_transition(move |t| c.record(t));
        counts
    }

    /// Tells `coordinator` of every breaker in the registry now, and of every
    /// breaker created or registered later, before that breaker is handed to
    /// anyone (fleet mode: the `cb-fleet` crate). See
    /// [`coordination`](crate::coordination).
    pub fn coordinate(&self, coordinator: Arc<dyn Coordinator>) {
        self.add_hook(Arc::new(CoordinatorHook(coordinator)));
    }

    /// Adds `hook`: it is told of every breaker in the registry now, and of
    /// every breaker that joins or leaves later.
    pub(crate) fn add_hook(&self, hook: Arc<dyn Hook>) {
        let _config = self.config_lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.add_hook_locked(hook);
    }

    /// Adds a hook of type `H`, the one `make` returns, unless there is one
    /// already (checked under the configuration lock, so exactly one is ever
    /// added).
    pub(crate) fn add_hook_once<H: Hook>(&self, make: impl FnOnce() -> Option<H>) {
        if self.hook::<H>().is_some() {
            return;
        }
        let _config = self.config_lock.lock().unwrap_or_else(PoisonError::into_inner);
        if self.hook::<H>().is_none() {
            if let Some(hook) = make() {
                self.add_hook_locked(Arc::new(hook));
            }
        }
    }

    /// Tells `hook` of every breaker, then keeps it. Call with the
    /// configuration lock held, so no breaker joins in between.
    fn add_hook_locked(&self, hook: Arc<dyn Hook>) {
        for breaker in self.breakers() {
            hook.attach(&breaker);
        }
        for family in self.family_list() {
            for breaker in family.breakers() {
                hook.attach(&breaker);
            }
        }
        self.hooks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(hook);
    }

    /// The first hook of type `H`, if one was added.
    pub(crate) fn hook<H: Hook>(&self) -> Option<Arc<H>> {
        self.hooks()
            .into_iter()
            .find_map(|h| h.as_any().downcast::<H>().ok())
    }

    fn hooks(&self) -> Vec<Arc<dyn Hook>> {
        self.hooks.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Subscribes to every transition of every breaker in the registry.
    ///
    /// Each event carries the breaker's name, the states, the time and the
    /// breaker's stats; see [`Events`] and the `alerting` example.
    pub fn subscribe(&self) -> Events {
        self.events.subscribe()
    }

    /// Every breaker with the registry's counts for it, sorted by name.
    pub(crate) fn observed(&self) -> Vec<(Arc<CircuitBreaker>, Arc<TransitionCounts>)> {
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

    /// How many breakers are in each state, the keys of every family
    /// counted one by one.
    pub fn health(&self) -> Health {
        let mut h = Health {
            healthy: true,
            ..Health::default()
        };
        let mut throttled_open = 0;
        for b in self.all_breakers() {
            h.total += 1;
            let state = b.state();
            let throttled = matches!(state, State::Open | State::HalfOpen) && b.throttling();
            h.throttled += usize::from(throttled);
            match state {
                State::Closed => h.closed += 1,
                State::Open => {
                    h.open += 1;
                    throttled_open += usize::from(throttled);
                }
                State::HalfOpen => h.half_open += 1,
                State::ForcedOpen => h.forced_open += 1,
                State::Disabled => h.disabled += 1,
            }
        }
        h.healthy = h.open == throttled_open && h.forced_open == 0;
        h
    }

    /// Resets every breaker (see [`CircuitBreaker::reset`]), and every
    /// family ([`Family::reset`]).
    pub fn reset_all(&self) {
        for b in self.breakers() {
            b.reset();
        }
        for f in self.family_list() {
            f.reset();
        }
    }

    /// `true` when some breaker, keyed ones included, is open or forced open.
    pub fn has_open(&self) -> bool {
        self.all_breakers().iter().any(|b| b.state().is_open())
    }

    /// Every breaker: the unkeyed ones sorted by name, then every family's
    /// keys (see [`Family::breakers`]), families sorted by name.
    pub fn all_breakers(&self) -> Vec<Arc<CircuitBreaker>> {
        let mut all = self.breakers();
        for f in self.family_list() {
            all.extend(f.breakers());
        }
        all
    }

    /// The family of keyed breakers named `name`, if there is one.
    pub fn family(&self, name: &str) -> Option<Arc<Family>> {
        self.families
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// The family named `name`, created with `make()` (then the config file
    /// and the environment) if there is none yet; the first configuration
    /// for a name wins. Every key of the family starts from it.
    ///
    /// ```
    /// use cb_runtime::{Config, Registry};
    ///
    /// let registry = Registry::new();
    /// let openai = registry.family_or_insert("openai", Config::default);
    /// let gpt = openai.get_or_insert("gpt-4o");
    /// assert_eq!((gpt.name(), gpt.key()), ("openai", Some("gpt-4o")));
    /// assert_eq!(registry.families(), ["openai"]);
    /// ```
    pub fn family_or_insert(&self, name: &str, make: impl FnOnce() -> Config) -> Arc<Family> {
        self.family_or_insert_from(name, None, make)
    }

    /// The family named `name`, made from `preset` if there is none yet: what
    /// [`get_or_insert_preset`](Self::get_or_insert_preset) is to a breaker.
    /// The config file's `[presets.<preset>]` table applies to it, then its
    /// own table and the environment.
    ///
    /// ```
    /// use cb_runtime::{Preset, Registry};
    ///
    /// let registry = Registry::new();
    /// let hosts = registry.family_or_insert_preset("upstream", Preset::HttpApi);
    /// assert_eq!(hosts.config(), Preset::HttpApi.config());
    /// ```
    pub fn family_or_insert_preset(&self, name: &str, preset: Preset) -> Arc<Family> {
        self.family_or_insert_from(name, Some(preset), || preset.config())
    }

    /// [`family_or_insert`](Self::family_or_insert), remembering the preset
    /// the configuration was made from (for the file's `[presets.<preset>]`).
    pub(crate) fn family_or_insert_from(
        &self,
        name: &str,
        preset: Option<Preset>,
        make: impl FnOnce() -> Config,
    ) -> Arc<Family> {
        let repaired = crate::name::repair(name);
        if let Some(family) = self.family(&repaired) {
            return family;
        }
        let requested = make();
        self.read_cb_config();
        let _config = self.config_lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(family) = self.family(&repaired) {
            return family;
        }
        if *repaired != *name {
            crate::name::log_repair(name, &repaired);
        }
        let file = self.file.read().unwrap_or_else(PoisonError::into_inner).clone();
        let config = Family::resolve_family(&repaired, &requested, preset, file.as_deref(), &(self.env)())
            .unwrap_or_else(|error| {
                tracing::error!(
                    target: "cb_runtime",
                    breaker = &*repaired,
                    %error,
                    "bad runtime configuration for circuit breaker family `{repaired}`: {error}; \
                     it runs on its compiled-in configuration"
                );
                requested.clone()
            });
        let link = Link {
            hooks: Arc::clone(&self.hooks),
            file: Arc::clone(&self.file),
            env: Arc::clone(&self.env),
            config_lock: Arc::clone(&self.config_lock),
        };
        let family = Family::new(&repaired, requested, config, preset, link);
        self.families
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(repaired.into_owned(), Arc::clone(&family));
        family
    }

    /// Every family's name, sorted.
    pub fn families(&self) -> Vec<String> {
        self.families
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Every family, sorted by name.
    pub fn family_list(&self) -> Vec<Arc<Family>> {
        self.families
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("names", &self.names()).finish()
    }
}

/// A fleet's coordinator, as a hook.
struct CoordinatorHook(Arc<dyn Coordinator>);

impl Hook for CoordinatorHook {
    fn attach(&self, breaker: &Arc<CircuitBreaker>) {
        // A coordinator that keys its store by name alone would share one
        // state among all the keys of a family: it must say it knows keys.
        if breaker.key().is_none() || self.0.coordinates_keys() {
            self.0.attach(breaker);
        }
    }

    fn detach_key(&self, breaker: &Arc<CircuitBreaker>) {
        if self.0.coordinates_keys() {
            self.0.detach_key(breaker);
        }
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}
