//! Fleet mode for cb circuit breakers: one breaker state across every replica
//! of a service, through Redis.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cb_fleet::FleetError> {
//! let fleet = cb_fleet::Fleet::builder("redis://127.0.0.1:6379/")
//!     .namespace("checkout")          // required: the key prefix shared by one service's replicas
//!     .join(cb_runtime::registry())   // takes &'static Registry
//!     .await?;
//! assert!(fleet.is_connected() || !fleet.is_connected()); // never an error: it reconnects
//! # Ok(()) }
//! ```
//!
//! Every breaker of the joined registry, present or created later, shares its
//! state with the breakers of the same name in every replica that joined the
//! same namespace on the same server:
//!
//! * **Opening** anywhere (any trigger, or a failed probe) opens every replica
//!   for the time that remains, through Redis pub/sub.
//! * **A replica that joins later**, or restarts, adopts the fleet's state in
//!   [`join`](FleetBuilder::join), before it returns, and applies it to each
//!   breaker created later at its creation: if the fleet's breaker is open,
//!   the first call is refused.
//! * **Half-open probes are capped fleet-wide** by leases (a Redis sorted set
//!   scored by expiry on Redis's clock). The background task takes leases
//!   ahead, when a local caller found none; a probe is admitted only with a
//!   lease held locally. Holders renew their leases every third of
//!   [`lease_ttl`](FleetBuilder::lease_ttl) (default 3 s) while probes run; a
//!   crashed holder's lease expires within `lease_ttl`. Idle leases go back
//!   after about a second.
//! * **Probe successes are counted fleet-wide**; `success_threshold` of them
//!   close every replica. A failed probe reopens every replica, and the
//!   backoff level is shared.
//! * **Manual control** with a fleet scope: [`Fleet::force_open`],
//!   [`Fleet::reset`], [`Fleet::disable`]. See "Local and fleet control" below.
//! * **A transition log**: every transition of every replica goes to a capped
//!   Redis stream per namespace; read it with [`Fleet::transitions`].
//!
//! # No network on the call path
//!
//! `try_acquire` and `call` never wait on Redis. One background task per
//! [`Fleet`] does all the I/O, fed by a bounded queue ([`FleetBuilder::queue_capacity`]);
//! when it is full a message is dropped and counted ([`Fleet::dropped_messages`]),
//! but what it said is kept per breaker, in atomics, and sent when the task
//! catches up: probe successes are counted exactly, a lost open is shared
//! with the time that remains, a lost close if the breaker is still closed.
//! Only transition-log entries are lost.
//! Time comes from Redis only (key expiry, `PTTL`, `TIME` in scripts); wall
//! clocks of different hosts are never compared.
//!
//! # Losing Redis
//!
//! Calls go on with local state; no caller sees an error from the fleet.
//! [`Fleet::is_connected`] turns false, the gauge
//! `circuit_breaker_fleet_connected` drops to 0 and one WARN is logged. The
//! task reconnects with jittered exponential backoff (50 ms to 2 s),
//! resubscribes and resynchronises: it shares what it could not while away,
//! adopts the fleet's opens and fleet-wide manual states, closes a breaker
//! whose shared or followed open the fleet closed meanwhile, and ends a
//! fleet-wide force-open or disable that a fleet-wide reset ended meanwhile.
//! A restarted, empty server gets the replicas' opens again.
//! While disconnected: opens are not
//! propagated, and probes are not leased, so up to R × `half_open_max_calls`
//! probes may run across R replicas; transitions are not logged.
//!
//! # Local and fleet control
//!
//! A fleet-wide command ([`Fleet::force_open`], `?scope=fleet`) is stored in
//! Redis and applied to every replica when it arrives, and to every replica
//! that joins later; it replaces whatever state each replica had. Local
//! control ([`cb_runtime::CircuitBreaker::reset`] and friends, the admin API
//! without a scope) stays local: it is not published, and it wins on that
//! replica until the next fleet-wide command or fleet transition reaches it.
//! Automatic fleet transitions (opens, closes) never override a local
//! `force_open` or `disable`.
//!
//! # TLS (feature `tls`)
//!
//! `rediss://` URLs use redis-rs's rustls support with the `ring` provider
//! (no OpenSSL). The server's certificate is verified, host name or IP
//! address included, against Mozilla's root CAs (webpki-roots, compiled in),
//! or against the CA given to `FleetBuilder::tls_root_ca_pem` instead (for
//! a private or self-signed CA). `FleetBuilder::tls_client_identity_pem`
//! presents a client certificate to a server that asks for one.
//! `rediss://...#insecure` is refused.
//!
//! Redis Cluster is not supported (the sync script reads keys it does not
//! declare); use one Redis server (or a primary with replicas) per fleet.

#![warn(missing_docs)]
#![deny(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use cb_runtime::coordination::{self, Coordinator, ProbeEnd, ProbeGate};
use cb_runtime::{CircuitBreaker, Registry, State, Transition};
use tokio::sync::{mpsc, oneshot};

#[cfg(feature = "admin")]
pub mod admin;
mod config;
mod ledger;
pub mod message;
mod names;
mod scripts;
mod task;
#[doc(hidden)]
pub mod testing;
mod tls;

pub use names::{is_shareable_name, MAX_NAMESPACE_LEN, MAX_NAME_LEN, MAX_REPLICA_ID_LEN};

/// How long a probe lease lives without renewal, by default.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(3);
/// How long one Redis command or connection attempt may take, by default.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_millis(500);
/// The background task's queue, by default.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;
/// The transition stream keeps about this many entries per namespace.
pub const LOG_MAX_LEN: usize = 10_000;

/// Why a fleet could not be set up, or a fleet operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FleetError {
    /// A bad setting: the field, what was given (credentials redacted) and what is allowed.
    Invalid {
        /// The setting's name: `url`, `namespace`, `replica_id`, ...
        field: &'static str,
        /// What was given.
        got: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// The operation needs Redis, and the fleet is not connected.
    Disconnected,
    /// Redis answered with an error, or did not answer in time.
    Redis(String),
}

impl FleetError {
    pub(crate) fn invalid(field: &'static str, got: String, expected: &'static str) -> Self {
        FleetError::Invalid { field, got, expected }
    }
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetError::Invalid { field, got, expected } => {
                write!(f, "invalid fleet `{field}`: got {got}, expected {expected}")
            }
            FleetError::Disconnected => f.write_str("the fleet is not connected to Redis"),
            FleetError::Redis(e) => write!(f, "fleet Redis error: {e}"),
        }
    }
}

impl std::error::Error for FleetError {}

/// Sets up a [`Fleet`]; from [`Fleet::builder`].
#[derive(Clone)]
pub struct FleetBuilder {
    url: String,
    namespace: Option<String>,
    replica_id: Option<String>,
    lease_ttl: Duration,
    io_timeout: Duration,
    queue: usize,
    tls: tls::TlsSettings,
}

impl fmt::Debug for FleetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetBuilder")
            .field("url", &names::redact(&self.url))
            .field("namespace", &self.namespace)
            .field("replica_id", &self.replica_id)
            .finish_non_exhaustive()
    }
}

impl FleetBuilder {
    /// Required: the key prefix shared by one service's replicas (1 to 64
    /// ASCII letters, digits, `_`, `-`, `.`). Namespaces do not see each other.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_owned());
        self
    }

    /// This replica's id, in the transition log and in messages (default:
    /// `HOSTNAME`, the process id and a random suffix).
    pub fn replica_id(mut self, id: &str) -> Self {
        self.replica_id = Some(id.to_owned());
        self
    }

    /// How long a probe lease lives without renewal (default 3 s; at least
    /// 300 ms): a crashed replica's probe lease expires within this.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(300));
        self
    }

    /// How long one Redis command or connection attempt may take before the
    /// fleet counts as disconnected (default 500 ms).
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// The background task's queue length (default 4096; at least 1). A
    /// message that finds it full is dropped and counted, and what it said
    /// (an open, a close, probe results) is kept per breaker and sent when the
    /// task catches up: the fleet's state converges anyway. Only transition
    /// log entries are lost.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue = n.max(1);
        self
    }

    /// Feature `tls`: trusts the CA certificates in `pem` (one or more PEM
    /// `CERTIFICATE` blocks) for the `rediss://` server, instead of the
    /// built-in Mozilla roots (webpki-roots). Use it for a private or
    /// self-signed CA; the server's certificate must still name the URL's
    /// host (DNS name or IP address) in its subject alternative names.
    /// Checked in [`join`](Self::join): unreadable PEM, or a `redis://` URL,
    /// is an error naming this setting.
    #[cfg(feature = "tls")]
    pub fn tls_root_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.root_ca = Some(pem.into());
        self
    }

    /// Feature `tls`: the client certificate chain and private key (PEM) to
    /// present to a server that asks for one (`tls-auth-clients yes`, mutual
    /// TLS). The key is never logged or shown in errors.
    #[cfg(feature = "tls")]
    pub fn tls_client_identity_pem(
        mut self,
        cert_chain: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.identity = Some((cert_chain.into(), key.into()));
        self
    }

    /// Joins the fleet with every breaker of `registry`, present and future.
    ///
    /// Connects and adopts the fleet's state before it returns (waiting at
    /// most about [`io_timeout`](Self::io_timeout) per step). An unreachable
    /// server is not an error: the fleet starts unconnected and keeps
    /// reconnecting in the background. Errors: a bad URL, namespace or
    /// replica id. Needs a tokio runtime.
    pub async fn join(self, registry: &'static Registry) -> Result<Fleet, FleetError> {
        names::check_url(&self.url)?;
        let namespace = self.namespace.clone().ok_or_else(|| {
            FleetError::invalid(
                "namespace",
                "nothing".to_owned(),
                "a namespace: call `.namespace(..)`",
            )
        })?;
        names::check_namespace(&namespace)?;
        let replica = self.replica_id.clone().unwrap_or_else(names::default_replica_id);
        names::check_replica_id(&replica)?;
        let client = tls::client(&self.url, &self.tls)?;
        let (tx, rx) = mpsc::channel(self.queue);
        let metrics = Metrics::new(&namespace);
        let shared = Arc::new(Shared {
            keys: names::Keys::new(&namespace),
            namespace,
            replica,
            url_shown: names::redact(&self.url),
            lease_ttl: self.lease_ttl,
            io_timeout: self.io_timeout,
            link: Arc::new(Link {
                connected: AtomicBool::new(false),
                tx,
                dropped: AtomicU64::new(0),
                metrics,
                dirty: ledger::Dirty::default(),
            }),
            local: Mutex::new(Local::default()),
            malformed: AtomicU64::new(0),
        });
        let (first_tx, first_rx) = oneshot::channel();
        let handle = tokio::spawn(task::run(Arc::clone(&shared), client, rx, first_tx));
        // The first attempt: connected and synchronised, or given up.
        let _ = tokio::time::timeout(self.io_timeout * 4 + Duration::from_millis(100), first_rx).await;
        registry.coordinate(Arc::new(Coord(Arc::clone(&shared))));
        Ok(Fleet { shared, handle })
    }
}

/// Membership of one replica in a fleet; see the [crate documentation](crate).
///
/// Keep it alive: dropping it stops the background task, and the breakers go
/// on with local state alone.
pub struct Fleet {
    shared: Arc<Shared>,
    handle: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("url", &self.shared.url_shown)
            .field("namespace", &self.shared.namespace)
            .field("replica_id", &self.shared.replica)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.handle.abort();
        self.shared.link.set_connected(false);
    }
}

/// One entry of the transition log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct LoggedTransition {
    /// The stream entry's id (Redis's time of the append, and a sequence).
    pub id: String,
    /// The replica whose breaker made the transition.
    pub replica: String,
    /// The breaker's name.
    pub name: String,
    /// The state it left.
    pub from: String,
    /// The state it entered.
    pub to: String,
    /// Why.
    pub reason: String,
    /// The replica's wall time, in milliseconds since the Unix epoch (for
    /// reading only; ordering is the stream id's).
    pub wall_time_ms: u64,
}

impl Fleet {
    /// Starts a fleet setup with the Redis server at `url`
    /// (`redis://[user:password@]host:port[/db]`, or `rediss://` with feature `tls`).
    pub fn builder(url: &str) -> FleetBuilder {
        FleetBuilder {
            url: url.to_owned(),
            namespace: None,
            replica_id: None,
            lease_ttl: DEFAULT_LEASE_TTL,
            io_timeout: DEFAULT_IO_TIMEOUT,
            queue: DEFAULT_QUEUE_CAPACITY,
            tls: tls::TlsSettings::default(),
        }
    }

    /// The fleet settings of the environment (`CB_FLEET_URL`,
    /// `CB_FLEET_NAMESPACE`, `CB_FLEET_REPLICA_ID`) over the `[fleet]` table
    /// of the config file named by `CB_CONFIG`, if any: `Ok(None)` when no URL
    /// is configured (fleet mode off). See [`from_config`](Self::from_config).
    pub fn from_env() -> Result<Option<FleetBuilder>, FleetError> {
        let path = std::env::var("CB_CONFIG").ok();
        config::settings(path.as_deref().map(std::path::Path::new), &|k| {
            std::env::var(k).ok()
        })
    }

    /// The fleet settings of the `[fleet]` table of the TOML file at `path`
    /// (`url`, `namespace`, `replica_id`), with the environment's
    /// `CB_FLEET_*` variables on top: `Ok(None)` when no URL is configured.
    /// An unreadable file, an unknown key or a value of the wrong type is an
    /// error naming it.
    ///
    /// ```toml
    /// [fleet]
    /// url = "redis://cb-fleet:secret@redis.internal:6379/"
    /// namespace = "checkout"
    /// ```
    pub fn from_config(path: &std::path::Path) -> Result<Option<FleetBuilder>, FleetError> {
        config::settings(Some(path), &|k| std::env::var(k).ok())
    }

    /// `true` while the background task is connected to Redis, subscribed and
    /// synchronised.
    pub fn is_connected(&self) -> bool {
        self.shared.link.connected.load(Ordering::Acquire)
    }

    /// This replica's id.
    pub fn replica_id(&self) -> &str {
        &self.shared.replica
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.shared.namespace
    }

    /// Messages dropped because the background task's queue was full.
    pub fn dropped_messages(&self) -> u64 {
        self.shared.link.dropped.load(Ordering::Relaxed)
    }

    /// Malformed messages received and ignored.
    pub fn malformed_messages(&self) -> u64 {
        self.shared.malformed.load(Ordering::Relaxed)
    }

    /// Forces breaker `name` open on every replica of the fleet, now and for
    /// replicas that join later, until a fleet-wide [`reset`](Self::reset).
    pub async fn force_open(&self, name: &str) -> Result<(), FleetError> {
        self.manual(name, State::ForcedOpen).await
    }

    /// Closes breaker `name` on every replica, ending a fleet-wide force-open
    /// or disable.
    pub async fn reset(&self, name: &str) -> Result<(), FleetError> {
        self.manual(name, State::Closed).await
    }

    /// Disables breaker `name` on every replica (every call passes), until a
    /// fleet-wide [`reset`](Self::reset).
    pub async fn disable(&self, name: &str) -> Result<(), FleetError> {
        self.manual(name, State::Disabled).await
    }

    async fn manual(&self, name: &str, to: State) -> Result<(), FleetError> {
        self.manual_if(name, to, false).await.map(|_| ())
    }

    /// A fleet-wide manual command; with `known_only`, only for a name that
    /// some replica of the namespace has created: `Ok(false)` when none has.
    pub(crate) async fn manual_if(
        &self,
        name: &str,
        to: State,
        known_only: bool,
    ) -> Result<bool, FleetError> {
        check_name(name)?;
        let (reply, answer) = oneshot::channel();
        self.request(task::Cmd::Manual {
            name: name.to_owned(),
            to,
            known_only,
            reply,
        })?;
        self.await_reply(answer).await
    }

    /// The last `limit` transitions of breaker `name` across the fleet,
    /// newest first, from the namespace's transition stream (which keeps
    /// about [`LOG_MAX_LEN`] entries, all breakers together).
    pub async fn transitions(&self, name: &str, limit: usize) -> Result<Vec<LoggedTransition>, FleetError> {
        check_name(name)?;
        let (reply, answer) = oneshot::channel();
        self.request(task::Cmd::Transitions {
            name: name.to_owned(),
            limit,
            reply,
        })?;
        self.await_reply(answer).await
    }

    /// Registers `circuit_breaker_fleet_connected` (1 or 0) and
    /// `circuit_breaker_fleet_dropped_messages_total`, labelled with the
    /// namespace, with `prom`.
    pub fn register_metrics(&self, prom: &prometheus::Registry) -> prometheus::Result<()> {
        let m = &self.shared.link.metrics;
        prom.register(Box::new(m.connected.clone()))?;
        prom.register(Box::new(m.dropped.clone()))
    }

    /// The fleet's metrics in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let prom = prometheus::Registry::new();
        let _ = self.register_metrics(&prom);
        let mut out = Vec::new();
        let _ = prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &prom.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    fn request(&self, cmd: task::Cmd) -> Result<(), FleetError> {
        if !self.is_connected() {
            return Err(FleetError::Disconnected);
        }
        self.shared.link.tx.try_send(cmd).map_err(|_| {
            self.shared.link.count_dropped();
            FleetError::Redis("the fleet's queue is full".to_owned())
        })
    }

    async fn await_reply<T>(
        &self,
        answer: oneshot::Receiver<Result<T, FleetError>>,
    ) -> Result<T, FleetError> {
        match tokio::time::timeout(self.shared.io_timeout * 4, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(FleetError::Disconnected),
            Err(_) => Err(FleetError::Redis("timed out".to_owned())),
        }
    }
}

fn check_name(name: &str) -> Result<(), FleetError> {
    if is_shareable_name(name) {
        Ok(())
    } else {
        Err(FleetError::invalid(
            "name",
            format!("{:?}", name.chars().take(40).collect::<String>()),
            "a breaker name of 1 to 256 bytes without control characters",
        ))
    }
}

/// The fleet's gauges.
struct Metrics {
    connected: prometheus::IntGauge,
    dropped: prometheus::IntCounter,
}

impl Metrics {
    fn new(namespace: &str) -> Self {
        let opts =
            |name: &str, help: &str| prometheus::Opts::new(name, help).const_label("namespace", namespace);
        Metrics {
            connected: prometheus::IntGauge::with_opts(opts(
                "circuit_breaker_fleet_connected",
                "1 while the fleet is connected to Redis, else 0",
            ))
            .expect("a valid gauge"),
            dropped: prometheus::IntCounter::with_opts(opts(
                "circuit_breaker_fleet_dropped_messages_total",
                "fleet messages dropped because the queue was full",
            ))
            .expect("a valid counter"),
        }
    }
}

/// What breakers, gates and the task share: the queue and the connection flag.
pub(crate) struct Link {
    pub(crate) connected: AtomicBool,
    pub(crate) tx: mpsc::Sender<task::Cmd>,
    dropped: AtomicU64,
    metrics: Metrics,
    /// Breakers whose lost messages are still to repair.
    pub(crate) dirty: ledger::Dirty,
}

impl Link {
    /// Queues `cmd` for the task, never waiting: a full queue drops it,
    /// counts it, and keeps what it said in the breaker's ledger.
    pub(crate) fn send(&self, cmd: task::Cmd) {
        match self.tx.try_send(cmd) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                self.count_dropped();
                self.lose(cmd);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Keeps what a message that will not be sent said, for the repair.
    pub(crate) fn lose(&self, cmd: task::Cmd) {
        if let Some((ledger, loss)) = cmd.loss() {
            if ledger.lose(loss) {
                self.dirty.push(ledger);
            }
        }
    }

    fn count_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.metrics.dropped.inc();
    }

    pub(crate) fn set_connected(&self, on: bool) {
        self.connected.store(on, Ordering::Release);
        self.metrics.connected.set(i64::from(on));
    }
}

/// What the fleet knows of one breaker.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct View {
    pub(crate) state: State,
    pub(crate) level: u32,
    /// While open: when the fleet's open duration ends, on this process's clock.
    pub(crate) open_until: Option<Instant>,
}

impl View {
    pub(crate) fn closed() -> Self {
        View {
            state: State::Closed,
            level: 0,
            open_until: None,
        }
    }

    pub(crate) fn open(ms: u64, level: u32) -> Self {
        View {
            state: State::Open,
            level,
            open_until: Some(Instant::now() + Duration::from_millis(ms)),
        }
    }

    /// A fleet-wide manual state: `ForcedOpen`, `Disabled` or `Closed`.
    pub(crate) fn manual(state: State) -> Self {
        View {
            state,
            ..View::closed()
        }
    }

    /// The view of a state as Redis stores it (`{state, ms, level}`);
    /// `None` for an answer that is not a state.
    pub(crate) fn from_fleet(state: &str, ms: i64, level: i64) -> Option<Self> {
        Some(match state {
            "open" => View::open(ms.max(0) as u64, level.clamp(0, i64::from(u32::MAX)) as u32),
            "forced_open" => View::manual(State::ForcedOpen),
            "disabled" => View::manual(State::Disabled),
            "closed" => View::closed(),
            _ => return None,
        })
    }

    /// Applies the view to `breaker`: adopts an open, forced-open or disabled
    /// state. A closed view changes nothing (see the callers).
    pub(crate) fn apply(&self, breaker: &CircuitBreaker) {
        match self.state {
            State::Open => {
                let until = self.open_until.unwrap_or_else(Instant::now);
                breaker.follow_open(until.saturating_duration_since(Instant::now()), self.level);
            }
            State::ForcedOpen | State::Disabled if breaker.state() != self.state => {
                breaker.follow_manual(self.state);
            }
            _ => {}
        }
    }
}

/// A shared breaker of this replica.
pub(crate) struct Member {
    pub(crate) breaker: Weak<CircuitBreaker>,
    pub(crate) gate: Arc<Gate>,
}

#[derive(Default)]
pub(crate) struct Local {
    pub(crate) views: HashMap<String, View>,
    pub(crate) members: HashMap<String, Member>,
}

pub(crate) struct Shared {
    pub(crate) namespace: String,
    pub(crate) replica: String,
    url_shown: String,
    pub(crate) keys: names::Keys,
    pub(crate) lease_ttl: Duration,
    pub(crate) io_timeout: Duration,
    pub(crate) link: Arc<Link>,
    pub(crate) local: Mutex<Local>,
    pub(crate) malformed: AtomicU64,
}

impl Shared {
    pub(crate) fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn url_shown(&self) -> &str {
        &self.url_shown
    }
}

/// The probe gate of one breaker: leases held locally, granted by the task.
pub(crate) struct Gate {
    pub(crate) ledger: Arc<ledger::Ledger>,
    link: Arc<Link>,
    /// Leases held and not in use.
    pub(crate) available: AtomicU32,
    /// Leases in use by running probes.
    pub(crate) in_use: AtomicU32,
    /// A lease was asked for since the last tick.
    pub(crate) asked: AtomicBool,
    /// Ticks since a lease was last taken.
    pub(crate) idle_ticks: AtomicU32,
}

fn take_one(a: &AtomicU32) -> bool {
    a.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

impl ProbeGate for Gate {
    fn try_take(&self) -> bool {
        if !self.link.connected.load(Ordering::Acquire) {
            return true; // local state alone while disconnected
        }
        if take_one(&self.available) {
            self.in_use.fetch_add(1, Ordering::AcqRel);
            self.idle_ticks.store(0, Ordering::Relaxed);
            return true;
        }
        if !self.asked.swap(true, Ordering::AcqRel) {
            self.link.send(task::Cmd::WantLease {
                name: Arc::clone(&self.ledger.name),
            });
        }
        false
    }

    fn give_back(&self) {
        if take_one(&self.in_use) {
            self.available.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn finished(&self, end: ProbeEnd) {
        let leased = take_one(&self.in_use);
        if end == ProbeEnd::Unused {
            if leased {
                self.available.fetch_add(1, Ordering::AcqRel);
            }
            return;
        }
        self.link.send(task::Cmd::Probe {
            ledger: Arc::clone(&self.ledger),
            ok: end == ProbeEnd::Success,
            leased,
        });
    }
}

/// The registry's coordinator: attaches each breaker to the fleet.
struct Coord(Arc<Shared>);

impl Coordinator for Coord {
    fn attach(&self, breaker: &Arc<CircuitBreaker>) {
        let shared = &self.0;
        let name = breaker.name().to_owned();
        if !is_shareable_name(&name) {
            tracing::warn!(
                target: "cb_fleet",
                "circuit breaker {:?} stays local: a fleet shares names of 1 to 256 bytes without control characters",
                name.chars().take(40).collect::<String>()
            );
            return;
        }
        let shared_name: Arc<str> = Arc::from(name.as_str());
        let ledger = Arc::new(ledger::Ledger::new(Arc::clone(&shared_name)));
        let gate = Arc::new(Gate {
            ledger: Arc::clone(&ledger),
            link: Arc::clone(&shared.link),
            available: AtomicU32::new(0),
            in_use: AtomicU32::new(0),
            asked: AtomicBool::new(false),
            idle_ticks: AtomicU32::new(0),
        });
        breaker.set_probe_gate(gate.clone());
        shared.link.send(task::Cmd::Known {
            ledger: Arc::clone(&ledger),
        });
        let link = Arc::clone(&shared.link);
        let weak = Arc::downgrade(breaker);
        breaker.on_transition(move |t| observe(&link, &ledger, &weak, t));
        let mut local = shared.local();
        if let Some(view) = local.views.get(&name) {
            view.apply(breaker);
        }
        local.members.insert(
            name,
            Member {
                breaker: Arc::downgrade(breaker),
                gate,
            },
        );
    }
}

/// A breaker's transition: logged, and reported to the fleet unless a peer
/// or local manual control made it.
fn observe(link: &Link, ledger: &Arc<ledger::Ledger>, breaker: &Weak<CircuitBreaker>, t: &Transition) {
    let shared = !coordination::is_from_peer(t) && !coordination::is_manual(t);
    ledger.saw(t, shared);
    // The state first, the log entry after: an open reaches the peers one
    // Redis round trip sooner.
    if shared && t.to == State::Open {
        let remaining = breaker
            .upgrade()
            .and_then(|b| b.open_remaining())
            .or(t.open_for)
            .unwrap_or_default();
        link.send(task::Cmd::Opened {
            ledger: Arc::clone(ledger),
            ms: remaining.as_millis().max(1) as u64,
            from_half_open: t.from == State::HalfOpen && t.reason != cb_runtime::Reason::Throttled,
        });
    } else if shared && t.from == State::HalfOpen && t.to == State::Closed {
        link.send(task::Cmd::Closed {
            ledger: Arc::clone(ledger),
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
