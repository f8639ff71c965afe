//! A durable state and transition log in PostgreSQL for cb circuit breakers:
//! operators query every state change with SQL, and a restarted service
//! remembers which circuits were open.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cb_postgres::StoreError> {
//! let store = cb_postgres::Store::builder("postgres://cb@127.0.0.1:5432/app")
//!     .service("checkout")               // required: which service's breakers these are
//!     .attach(cb_runtime::registry())    // takes &'static Registry
//!     .await?;
//! for t in store.transitions("payments", 10).await? {
//!     println!("{:?} {} -> {} ({})", t.occurred_at, t.from, t.to, t.reason);
//! }
//! # Ok(()) }
//! ```
//!
//! Every breaker of the attached registry, present or created later, is
//! followed: each transition becomes a row of `circuit_breaker_events`, and
//! the breaker's row of `circuit_breaker_state` is kept current. Keyed
//! breakers (the keys of a [`cb_runtime::Family`], one per model or tenant)
//! are followed as any breaker, each under its family's name and its key
//! (column `key`), from families made before or after attach and keys made
//! at any time. A key evicted from its family is no longer synced; a
//! transition it still makes (a call in flight at its eviction) is written.
//!
//! # Off the call path
//!
//! No call ever waits on PostgreSQL. A transition is put on a bounded queue
//! ([`StoreBuilder::queue_capacity`], default [`DEFAULT_QUEUE_CAPACITY`]) by
//! the breaker's transition observer, without waiting; a full queue drops the
//! event and counts it ([`Store::dropped_events`]), as does a queue whose
//! task has ended (its tokio runtime shut down). One background task per
//! store does all the I/O: it takes up to [`MAX_BATCH`] events at a time and
//! writes them in one transaction (one `INSERT ... SELECT FROM unnest(...)`
//! for the events, one upsert for the states). Closed calls are not observed
//! at all; once a second the task reads each breaker's counters to update
//! `failure_count`, `last_failure_at` and `last_success_at`, and moves
//! `next_probe_at` later for an open period extended in place (a later
//! `open_for`, a `Retry-After`, a fleet peer's longer open), which makes no
//! transition.
//!
//! **PostgreSQL down or hung.** Every statement has a timeout
//! ([`StoreBuilder::io_timeout`], default 2 s), and a connection attempt with
//! its schema check twice that. When one fails, the
//! task drops the connection, [`Store::is_connected`] turns `false`, one WARN
//! is logged, and it reconnects with jittered exponential backoff (50 ms to
//! 2 s). Meanwhile events wait in the queue (up to its bound, plus the one
//! batch the task holds) and are written after reconnecting, with the time
//! they happened on the database's clock: at each connection the task reads
//! the database's `clock_timestamp()` against this process's monotonic
//! clock, and stamps each event from that pair, so the events of one replica
//! keep their order however late they are written. A batch whose commit was cut off is sent
//! again; every event has a random `event_id` with a unique index, so a
//! retried batch is never written twice.
//!
//! # Restart adoption
//!
//! [`StoreBuilder::attach`] reads the service's persisted states before it
//! returns (when the server answers within the timeout). Each breaker whose
//! row says `open` with a `next_probe_at` in the future, as the database's
//! `now()` sees it, is opened for the time that remains before its first
//! call: breakers present at attach at once, breakers created later when
//! the registry creates them, and a keyed breaker when its family makes the
//! key's breaker (its first call on that key is refused). Each persisted
//! open is adopted once: a key reset, evicted and made again is closed. Its event is written with the reason
//! [`RESTORED`]. A server unreachable at attach is not an error; the first
//! connection later adopts the open states for the breakers still closed.
//! Only `open` is adopted: `forced_open` and `disabled` are a replica's local
//! manual control, and stay local.
//!
//! # Schema
//!
//! Created on attach when missing, under a transaction-scoped advisory lock
//! ([`SCHEMA_LOCK`]), so any number of replicas may attach at once. Each change of schema is a
//! numbered migration, recorded in `circuit_breaker_schema`; a replica
//! applies the ones a database lacks, and one that finds a newer version than
//! it knows leaves the schema alone.
//!
//! `circuit_breaker_state`: one row per service, breaker and key.
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `service` | `text` | the [`StoreBuilder::service`] that wrote it (primary key, 1 of 3) |
//! | `name` | `text` | the breaker's name (a keyed breaker's family) (primary key, 2 of 3) |
//! | `key` | `text` | the breaker's key in its family; `''` for an unkeyed breaker (primary key, 3 of 3) |
//! | `state` | `text` | the current state, as [`cb_runtime::State`] displays it: `closed`, `open`, `half_open`, `forced_open`, `disabled` |
//! | `failure_count` | `bigint` | failures in the breaker's sliding window at the last write |
//! | `last_failure_at` | `timestamptz` | the last time the breaker saw a failure or timeout (to within the one-second counter sync); `NULL` if never |
//! | `last_success_at` | `timestamptz` | likewise for a success |
//! | `next_probe_at` | `timestamptz` | while `open`: when the circuit lets a probe through; `NULL` otherwise |
//! | `replica` | `text` | the replica that wrote the state |
//! | `updated_at` | `timestamptz` | when the state was last changed, on the database's clock; `-infinity` for a breaker that has made no transition yet (its row holds its counters). A state is only replaced by a newer one, so a replica's late batch never overwrites a newer state |
//!
//! `circuit_breaker_events`: one row per transition, never updated.
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `id` | `bigserial` | insertion order (primary key) |
//! | `event_id` | `bigint` | a random id made by the replica (unique: a retried batch is written once) |
//! | `service` | `text` | the service |
//! | `replica` | `text` | the replica whose breaker moved ([`StoreBuilder::replica_id`]) |
//! | `name` | `text` | the breaker's name |
//! | `key` | `text` | its key; `''` for an unkeyed breaker |
//! | `from` | `text` | the state it left (a reserved word in SQL: write `"from"`) |
//! | `to` | `text` | the state it entered (write `"to"`) |
//! | `reason` | `text` | why: [`cb_runtime::Reason::as_str`]'s words (`consecutive failures`, `a probe failed`, ...), or [`RESTORED`] |
//! | `failures_in_window` | `bigint` | on opening from closed: the failures in the window that tripped it; else 0 |
//! | `occurred_at` | `timestamptz` | when it happened, on the database's clock |
//!
//! Index: `circuit_breaker_events (service, name, occurred_at)`.
//!
//! `circuit_breaker_schema`: `version integer` (primary key), `description
//! text`, `applied_at timestamptz`.
//!
//! # Queries
//!
//! Opens per breaker per day:
//!
//! ```sql
//! SELECT name, date_trunc('day', occurred_at) AS day, count(*) AS opens
//! FROM circuit_breaker_events
//! WHERE service = 'checkout' AND "to" = 'open' AND "from" = 'closed'
//! GROUP BY name, day
//! ORDER BY day DESC, opens DESC;
//! ```
//!
//! Total time open per breaker (each replica's own open periods: from a
//! transition into `open` or `half_open` out of `closed` to the replica's
//! next transition back to `closed`; a period still running counts until
//! now):
//!
//! ```sql
//! WITH ordered AS (
//!   SELECT name, key, replica, "from", "to", occurred_at,
//!          lead(occurred_at) OVER (PARTITION BY name, key, replica ORDER BY occurred_at, id) AS next_at
//!   FROM circuit_breaker_events
//!   WHERE service = 'checkout'
//! )
//! SELECT name, sum(coalesce(next_at, now()) - occurred_at) AS time_not_closed
//! FROM ordered
//! WHERE "to" <> 'closed'
//! GROUP BY name
//! ORDER BY time_not_closed DESC;
//! ```
//!
//! The last 20 transitions of one breaker (what [`Store::transitions`] reads):
//!
//! ```sql
//! SELECT occurred_at, replica, key, "from", "to", reason, failures_in_window
//! FROM circuit_breaker_events
//! WHERE service = 'checkout' AND name = 'payments'
//! ORDER BY occurred_at DESC, id DESC
//! LIMIT 20;
//! ```
//!
//! # With the fleet
//!
//! A [`cb-fleet`](https://docs.rs/cb-fleet) `Fleet` and a `Store` may both be
//! attached to one registry. **Redis is the source of truth for the live
//! state**: which breakers are open now, across replicas, and the probe
//! leases. **PostgreSQL is the source of truth for history and cold start**:
//! every transition of every replica, and the open states a service that
//! restarts whole (Redis included) comes back with. An open adopted from
//! either is not sent back to the other as a new decision. With a store
//! attached, the admin API's `GET /circuit-breakers/{name}/transitions`
//! (cb-runtime's router, and cb-fleet's, which hands the route to it) answers
//! from PostgreSQL, through [`cb_runtime::history::TransitionSource`].
//!
//! # TLS
//!
//! Not supported yet: a URL with `sslmode=require` is refused at
//! [`attach`](StoreBuilder::attach) (connect over a private network, or a
//! local proxy).

#![warn(missing_docs)]
#![deny(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use cb_runtime::history::{TransitionSource, TransitionsFuture};
use cb_runtime::{CircuitBreaker, Registry, State};
use tokio::sync::mpsc;
use tokio_postgres::Client;

mod follow;
mod schema;
mod shown;
mod task;
#[doc(hidden)]
pub mod testing;

pub use cb_runtime::history::StoredTransition;
pub use schema::{SCHEMA_LOCK, SCHEMA_VERSION};

/// The background task's queue of events, by default.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;
/// How long one statement or connection attempt may take, by default.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The most events written in one transaction.
pub const MAX_BATCH: usize = 512;
/// The `reason` of the event a store writes when it opens a breaker from its
/// persisted state (restart adoption).
pub const RESTORED: &str = "restored from the store";
/// The longest service name, replica id or breaker name stored.
pub const MAX_NAME_LEN: usize = 256;

/// Why a store could not be set up, or a read failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// A bad setting: the field, what was given (credentials redacted) and what is allowed.
    Invalid {
        /// The setting's name: `url`, `service`, `replica_id`, `queue_capacity`, ...
        field: &'static str,
        /// What was given.
        got: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// The read needs PostgreSQL, and the store is not connected.
    Disconnected,
    /// PostgreSQL answered with an error, or did not answer in time.
    Database(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Invalid { field, got, expected } => {
                write!(f, "cb-postgres: bad {field} {got}: expected {expected}")
            }
            StoreError::Disconnected => f.write_str("cb-postgres: not connected to PostgreSQL"),
            StoreError::Database(e) => write!(f, "cb-postgres: PostgreSQL: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    fn invalid(field: &'static str, got: impl Into<String>, expected: &'static str) -> Self {
        StoreError::Invalid {
            field,
            got: got.into(),
            expected,
        }
    }
}

/// Sets up a [`Store`]: [`Store::builder`].
#[derive(Clone, Debug)]
#[must_use = "a StoreBuilder does nothing until `attach`"]
pub struct StoreBuilder {
    url: String,
    service: Option<String>,
    replica_id: Option<String>,
    queue: usize,
    io_timeout: Duration,
}

/// A registry's breakers, persisted in PostgreSQL; see the [crate documentation](crate).
///
/// Cheap to clone; every clone is the same store. The background task and
/// the registry's observers live as long as the registry (the process, for
/// [`cb_runtime::registry()`]), whether or not a `Store` is kept.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("service", &self.shared.service)
            .field("replica_id", &self.shared.replica)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

/// One transition on its way to the table.
pub(crate) struct Event {
    pub(crate) id: i64,
    pub(crate) name: Arc<str>,
    pub(crate) key: Arc<str>,
    pub(crate) from: State,
    pub(crate) to: State,
    pub(crate) reason: &'static str,
    pub(crate) failures_in_window: u64,
    /// On opening: how long until the next probe.
    pub(crate) probe_in: Option<Duration>,
    /// When it happened, on this process's clock.
    pub(crate) at: Instant,
}

/// A followed breaker.
pub(crate) struct Member {
    pub(crate) breaker: Weak<CircuitBreaker>,
    pub(crate) name: Arc<str>,
    pub(crate) key: Arc<str>,
    /// Set while the store itself opens the breaker (restart adoption).
    pub(crate) restoring: Arc<AtomicBool>,
    /// The totals at the last counter sync: successes, failures and timeouts.
    pub(crate) synced: (u64, u64),
    /// While open: the next probe time last written or queued, in
    /// [`follow::since_base`]'s nanoseconds (0: none). The counter sync
    /// writes a later one when the open period was extended in place.
    pub(crate) probe_at: Arc<AtomicU64>,
}

/// An open state read from the table: open until `until`, on this process's clock.
pub(crate) type Persisted = HashMap<(String, String), Instant>;

pub(crate) struct Shared {
    metrics: Metrics,
    pub(crate) service: String,
    pub(crate) replica: String,
    pub(crate) io_timeout: Duration,
    pub(crate) connected: AtomicBool,
    pub(crate) dropped: AtomicU64,
    pub(crate) written: AtomicU64,
    pub(crate) tx: mpsc::Sender<Event>,
    /// The task's connection, for reads; `None` while disconnected.
    pub(crate) client: RwLock<Option<Arc<Client>>>,
    /// The breakers followed, by [`follow::id_of`].
    pub(crate) members: Mutex<HashMap<usize, Member>>,
    /// The open states read at attach, adopted by breakers created later.
    pub(crate) persisted: Mutex<Option<Persisted>>,
}

impl Shared {
    pub(crate) fn members(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Member>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn client(&self) -> Option<Arc<Client>> {
        self.client.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn set_client(&self, client: Option<Arc<Client>>) {
        self.connected.store(client.is_some(), Ordering::Release);
        self.metrics.connected.set(i64::from(client.is_some()));
        *self.client.write().unwrap_or_else(PoisonError::into_inner) = client;
    }

    /// Queues `event` without waiting; a full queue drops and counts it, as
    /// does a queue whose task has ended (its runtime shut down).
    pub(crate) fn send(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.metrics.dropped.inc();
        }
    }

    /// Opens `breaker` for what remains of a persisted open, if anything does
    /// and the breaker is closed.
    pub(crate) fn adopt(&self, breaker: &CircuitBreaker, restoring: &AtomicBool, until: Instant) {
        let remaining = until.saturating_duration_since(Instant::now());
        if remaining.is_zero() || breaker.state() != State::Closed {
            return;
        }
        restoring.store(true, Ordering::Release);
        breaker.follow_open(remaining, 0);
        restoring.store(false, Ordering::Release);
    }
}

/// The store's gauges.
struct Metrics {
    connected: prometheus::IntGauge,
    dropped: prometheus::IntCounter,
}

impl Metrics {
    fn new(service: &str) -> Self {
        let opts = |name: &str, help: &str| prometheus::Opts::new(name, help).const_label("service", service);
        Metrics {
            connected: prometheus::IntGauge::with_opts(opts(
                "circuit_breaker_store_connected",
                "1 while the cb-postgres store is connected to PostgreSQL, else 0",
            ))
            .expect("a valid gauge"),
            dropped: prometheus::IntCounter::with_opts(opts(
                "circuit_breaker_store_dropped_events_total",
                "transition events the cb-postgres store dropped because its queue was full",
            ))
            .expect("a valid counter"),
        }
    }
}

/// `true` for 1 to [`MAX_NAME_LEN`] bytes without control characters.
fn is_storable(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_LEN && !s.chars().any(char::is_control)
}

fn shown(s: &str) -> String {
    format!("{:?}", s.chars().take(40).collect::<String>())
}

/// A default replica id: the host name (if `HOSTNAME` says it), the process
/// id and a random suffix.
fn default_replica_id() -> String {
    let host: String = std::env::var("HOSTNAME")
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(64)
        .collect();
    let host = if host.is_empty() {
        "replica".to_owned()
    } else {
        host
    };
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

impl Store {
    /// Starts a store setup with the PostgreSQL server at `url`
    /// (`postgres://user[:password]@host[:port]/database[?options]`, or a
    /// `key=value` connection string).
    pub fn builder(url: &str) -> StoreBuilder {
        StoreBuilder {
            url: url.to_owned(),
            service: None,
            replica_id: None,
            queue: DEFAULT_QUEUE_CAPACITY,
            io_timeout: DEFAULT_IO_TIMEOUT,
        }
    }

    /// `true` while the background task holds a working connection (its
    /// schema checked).
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }

    /// Events dropped because the queue was full.
    pub fn dropped_events(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Events waiting in the queue for the background task (not counting
    /// the batch it is writing).
    pub fn queued_events(&self) -> usize {
        self.shared.tx.max_capacity() - self.shared.tx.capacity()
    }

    /// Events written to `circuit_breaker_events` so far by this store.
    pub fn written_events(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// The service.
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// This replica's id.
    pub fn replica_id(&self) -> &str {
        &self.shared.replica
    }

    /// Registers `circuit_breaker_store_connected` (1 or 0) and
    /// `circuit_breaker_store_dropped_events_total`, labelled with the
    /// service, with `prom`.
    pub fn register_metrics(&self, prom: &prometheus::Registry) -> prometheus::Result<()> {
        let m = &self.shared.metrics;
        prom.register(Box::new(m.connected.clone()))?;
        prom.register(Box::new(m.dropped.clone()))
    }

    /// The store's metrics in the Prometheus text format (append it to the
    /// admin API's `/metrics`, or serve it beside).
    pub fn metrics_text(&self) -> String {
        let prom = prometheus::Registry::new();
        let _ = self.register_metrics(&prom);
        let mut out = Vec::new();
        let _ = prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &prom.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The last `limit` transitions of breaker `name` (all its keys) in this
    /// service, written by any replica, newest first.
    pub async fn transitions(&self, name: &str, limit: usize) -> Result<Vec<StoredTransition>, StoreError> {
        if !is_storable(name) {
            return Err(StoreError::invalid(
                "name",
                shown(name),
                "a breaker name of 1 to 256 bytes without control characters",
            ));
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        let client = self.shared.client().ok_or(StoreError::Disconnected)?;
        task::transitions(&client, &self.shared, name, limit).await
    }
}

impl StoreBuilder {
    /// Which service's breakers these are (required): the rows of one service
    /// are read and adopted only by that service.
    pub fn service(mut self, service: &str) -> Self {
        self.service = Some(service.to_owned());
        self
    }

    /// This replica's id in the `replica` columns (default: `HOSTNAME`, the
    /// process id and a random suffix).
    pub fn replica_id(mut self, id: &str) -> Self {
        self.replica_id = Some(id.to_owned());
        self
    }

    /// The bound of the event queue (default [`DEFAULT_QUEUE_CAPACITY`]);
    /// at least 1.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue = n;
        self
    }

    /// How long one statement or connection attempt may take before the
    /// connection is given up and remade (default [`DEFAULT_IO_TIMEOUT`]).
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// Checks the settings, connects (waiting at most twice the I/O timeout),
    /// creates or migrates the schema, adopts the persisted open states, and
    /// starts following every breaker of `registry`, present and created
    /// later. Must be called within a tokio runtime, which runs the
    /// background task.
    ///
    /// An error only for a bad setting: a URL that does not parse or asks for
    /// TLS, a missing or bad service, a bad replica id or queue capacity, or
    /// a registry that has a store (a transition log) attached already. An
    /// unreachable server is not an error: the store starts unconnected and
    /// keeps trying.
    pub async fn attach(self, registry: &'static Registry) -> Result<Store, StoreError> {
        let config: tokio_postgres::Config =
            self.url
                .parse()
                .map_err(|_: tokio_postgres::Error| StoreError::Invalid {
                    field: "url",
                    got: shown::shown(&self.url),
                    expected: "postgres://user[:password]@host[:port]/database, or key=value pairs",
                })?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(StoreError::invalid(
                "url",
                format!("`{}`", shown::shown(&self.url)),
                "sslmode=disable or prefer: cb-postgres does not support TLS yet",
            ));
        }
        if config.get_hosts().is_empty() {
            return Err(StoreError::invalid(
                "url",
                format!("`{}`", shown::shown(&self.url)),
                "a URL that names a host",
            ));
        }
        let service = self.service.ok_or_else(|| {
            StoreError::invalid(
                "service",
                "(none)",
                "a service name: Store::builder(url).service(\"checkout\")",
            )
        })?;
        if !is_storable(&service) {
            return Err(StoreError::invalid(
                "service",
                shown(&service),
                "1 to 256 bytes without control characters",
            ));
        }
        let replica = self.replica_id.unwrap_or_else(default_replica_id);
        if !is_storable(&replica) {
            return Err(StoreError::invalid(
                "replica_id",
                shown(&replica),
                "1 to 256 bytes without control characters",
            ));
        }
        if self.queue == 0 {
            return Err(StoreError::invalid("queue_capacity", "0", "at least 1"));
        }
        if self.io_timeout.is_zero() {
            return Err(StoreError::invalid("io_timeout", "0s", "a positive duration"));
        }
        if let Some(other) = registry.transition_source() {
            return Err(StoreError::invalid(
                "registry",
                format!(
                    "a registry with a {} transition log attached already",
                    other.source()
                ),
                "a registry with no store attached (attach one store per registry)",
            ));
        }
        let (tx, rx) = mpsc::channel(self.queue);
        let shared = Arc::new(Shared {
            metrics: Metrics::new(&service),
            service,
            replica,
            io_timeout: self.io_timeout,
            connected: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            tx,
            client: RwLock::new(None),
            members: Mutex::new(HashMap::new()),
            persisted: Mutex::new(None),
        });
        let mut writer = task::Writer::new(Arc::clone(&shared), config, rx);
        // The first connection, schema and persisted states, before any
        // breaker is followed: present breakers adopt them below, later ones
        // at their creation.
        let ready = writer.connect().await;
        if !ready {
            tracing::warn!(
                target: "cb_postgres",
                service = %shared.service,
                "cb-postgres: PostgreSQL at {} is not reachable; the store keeps trying, and events wait in its queue",
                shown::shown(&self.url)
            );
        }
        registry.coordinate(Arc::new(follow::Follow(Arc::clone(&shared))));
        registry.set_transition_source(Arc::new(Store {
            shared: Arc::clone(&shared),
        }));
        tokio::spawn(writer.run(ready));
        Ok(Store { shared })
    }
}

impl TransitionSource for Store {
    fn source(&self) -> &'static str {
        "postgres"
    }

    fn transitions<'a>(&'a self, name: &'a str, limit: usize) -> TransitionsFuture<'a> {
        Box::pin(async move {
            Store::transitions(self, name, limit)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(is_storable("checkout"));
        assert!(!is_storable(""));
        assert!(!is_storable("a\nb"));
        assert!(!is_storable(&"x".repeat(257)));
        assert!(is_storable(&default_replica_id()));
    }
}
