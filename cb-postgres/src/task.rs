//! The background task: the only code that writes to PostgreSQL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use cb_runtime::{CircuitBreaker, State};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

use crate::follow::{from_base, since_base};
use crate::{schema, Event, Persisted, Shared, StoreError, StoredTransition, MAX_BATCH};

/// How often the breakers' counters are read for `failure_count`,
/// `last_failure_at` and `last_success_at`.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Events and counter updates, in one statement: the events, then each
/// breaker's last state of the batch.
const WRITE: &str = r#"
WITH ev AS (
    INSERT INTO circuit_breaker_events
        (event_id, service, replica, name, key, "from", "to", reason, failures_in_window, occurred_at)
    SELECT e.id, $1, $2, e.name, e.key, e.f, e.t, e.r, e.w, e.at
    FROM unnest($3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int8[], $10::timestamptz[])
        AS e(id, name, key, f, t, r, w, at)
    ON CONFLICT (event_id) DO NOTHING
)
INSERT INTO circuit_breaker_state AS s
    (service, name, key, state, failure_count, next_probe_at, replica, updated_at)
SELECT $1, n.name, n.key, n.state, n.w, n.probe, $2, n.at
FROM unnest($11::text[], $12::text[], $13::text[], $14::int8[], $15::timestamptz[], $16::timestamptz[])
    AS n(name, key, state, w, at, probe)
ON CONFLICT (service, name, key) DO UPDATE SET
    state = EXCLUDED.state,
    failure_count = EXCLUDED.failure_count,
    next_probe_at = EXCLUDED.next_probe_at,
    replica = EXCLUDED.replica,
    updated_at = EXCLUDED.updated_at
WHERE s.updated_at <= EXCLUDED.updated_at
"#;

/// The counters of the breakers that were called since the last sync. A
/// row made here, for a breaker with no transition written yet, has
/// `updated_at` = `-infinity`: any transition, however late it is written,
/// is newer and replaces its state.
const COUNTERS: &str = r#"
INSERT INTO circuit_breaker_state AS s
    (service, name, key, state, failure_count, last_failure_at, last_success_at, replica, updated_at)
SELECT $1, c.name, c.key, c.state, c.w,
       CASE WHEN c.failed THEN now() END, CASE WHEN c.succeeded THEN now() END, $2, '-infinity'
FROM unnest($3::text[], $4::text[], $5::text[], $6::int8[], $7::bool[], $8::bool[])
    AS c(name, key, state, w, failed, succeeded)
ON CONFLICT (service, name, key) DO UPDATE SET
    failure_count = EXCLUDED.failure_count,
    last_failure_at = coalesce(EXCLUDED.last_failure_at, s.last_failure_at),
    last_success_at = coalesce(EXCLUDED.last_success_at, s.last_success_at)
"#;

/// A later next probe time for open rows: an open period extended in place.
const EXTEND: &str = r#"
UPDATE circuit_breaker_state AS s SET next_probe_at = n.probe
FROM unnest($2::text[], $3::text[], $4::timestamptz[]) AS n(name, key, probe)
WHERE s.service = $1 AND s.name = n.name AND s.key = n.key AND s.state = 'open'
  AND (s.next_probe_at IS NULL OR s.next_probe_at < n.probe)
"#;

const PERSISTED: &str = "SELECT name, key, extract(epoch FROM next_probe_at - now())::float8 \
     FROM circuit_breaker_state \
     WHERE service = $1 AND state = 'open' AND next_probe_at > now()";

const TRANSITIONS: &str = r#"SELECT name, key, "from", "to", reason, replica, occurred_at
     FROM circuit_breaker_events
     WHERE service = $1 AND name = $2
     ORDER BY occurred_at DESC, id DESC
     LIMIT $3"#;

pub(crate) struct Writer {
    shared: Arc<Shared>,
    config: tokio_postgres::Config,
    rx: mpsc::Receiver<Event>,
    /// The task driving the connection, aborted when it is given up.
    connection: Option<JoinHandle<()>>,
    /// The batch being written; cleared only once it is committed.
    pending: Vec<Event>,
    /// The database's clock: its `clock_timestamp()` at an instant of this
    /// process's monotonic clock, read at each connection. Events are
    /// stamped from it, so one replica's events keep their order.
    clock: Option<(Instant, SystemTime)>,
    /// The persisted open states have been read (once, at the first connection).
    adopted: bool,
    /// `true` until the first connection: the states read then are kept for
    /// breakers created later. After a late first connection they are also
    /// applied to the breakers already followed.
    attaching: bool,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        mut config: tokio_postgres::Config,
        rx: mpsc::Receiver<Event>,
    ) -> Self {
        config.connect_timeout(shared.io_timeout);
        config.application_name("cb-postgres");
        Writer {
            shared,
            config,
            rx,
            connection: None,
            pending: Vec::new(),
            clock: None,
            adopted: false,
            attaching: true,
        }
    }

    /// Connects, checks the schema and, the first time, reads the persisted
    /// open states; `true` when all of it worked within the I/O timeout.
    pub(crate) async fn connect(&mut self) -> bool {
        let io = self.shared.io_timeout;
        // The schema may wait for another replica's migration: twice the budget.
        let result = tokio::time::timeout(io * 2, self.try_connect()).await;
        self.attaching = false;
        match result {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::debug!(target: "cb_postgres", "cb-postgres: connecting failed: {e}");
                self.give_up();
                false
            }
            Err(_) => {
                tracing::debug!(target: "cb_postgres", "cb-postgres: connecting timed out");
                self.give_up();
                false
            }
        }
    }

    async fn try_connect(&mut self) -> Result<(), Failure> {
        let (mut client, connection) = self.config.connect(NoTls).await?;
        self.connection = Some(tokio::spawn(async move {
            let _ = connection.await;
        }));
        schema::migrate(&mut client).await?;
        let before = Instant::now();
        let db_now: SystemTime = client.query_one("SELECT clock_timestamp()", &[]).await?.get(0);
        let after = Instant::now();
        self.clock = Some((before + (after - before) / 2, db_now));
        let client = Arc::new(client);
        if !self.adopted {
            if !self.attaching {
                // Events of the time away first: they are newer than the table.
                self.write_pending(&client).await?;
            }
            let mut persisted = read_persisted(&client, &self.shared).await?;
            self.adopted = true;
            if !self.attaching {
                self.adopt_late(&mut persisted);
            }
            *self
                .shared
                .persisted
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(persisted);
        }
        self.shared.set_client(Some(client));
        Ok(())
    }

    /// Applies the persisted open states to the breakers followed already,
    /// when the first connection came after attach; each state is adopted
    /// once, and the rest kept for breakers made later.
    fn adopt_late(&self, persisted: &mut Persisted) {
        let members: Vec<_> = self
            .shared
            .members()
            .values()
            .filter_map(|m| {
                let until = persisted.remove(&(m.name.to_string(), m.key.to_string()))?;
                Some((m.breaker.upgrade()?, Arc::clone(&m.restoring), until))
            })
            .collect();
        for (breaker, restoring, until) in members {
            self.shared.adopt(&breaker, &restoring, until);
        }
    }

    fn give_up(&mut self) {
        self.shared.set_client(None);
        if let Some(c) = self.connection.take() {
            c.abort();
        }
    }

    /// Runs until the runtime stops: writes batches, syncs counters,
    /// reconnects.
    pub(crate) async fn run(mut self, mut connected: bool) {
        let mut tick = tokio::time::interval(SYNC_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = MIN_BACKOFF;
        loop {
            if !connected {
                let jitter = backoff.mul_f64(fastrand::f64() * 0.5);
                tokio::time::sleep(backoff + jitter).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                connected = self.connect().await;
                if connected {
                    backoff = MIN_BACKOFF;
                    tracing::info!(
                        target: "cb_postgres",
                        service = %self.shared.service,
                        "cb-postgres: connected to PostgreSQL; {} events waiting are written now",
                        self.pending.len() + self.rx.len()
                    );
                }
                continue;
            }
            let Some(client) = self.shared.client() else {
                connected = false;
                continue;
            };
            if self.pending.is_empty() {
                tokio::select! {
                    n = self.rx.recv_many(&mut self.pending, MAX_BATCH) => {
                        if n == 0 {
                            return; // every sender is gone
                        }
                    }
                    _ = tick.tick() => {
                        if let Err(e) = self.sync_counters(&client).await {
                            connected = self.lost(&e);
                        }
                        continue;
                    }
                }
            }
            if let Err(e) = self.write_pending(&client).await {
                connected = self.lost(&e);
            }
        }
    }

    /// Logs the lost connection and gives it up; `false`.
    fn lost(&mut self, e: &dyn std::fmt::Display) -> bool {
        tracing::warn!(
            target: "cb_postgres",
            service = %self.shared.service,
            "cb-postgres: lost PostgreSQL ({e}); reconnecting, events wait in the queue"
        );
        self.give_up();
        false
    }

    /// Writes the batch held, topped up from the queue, until the queue is
    /// empty or a write fails.
    async fn write_pending(&mut self, client: &Client) -> Result<(), Failure> {
        loop {
            while self.pending.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(e) => self.pending.push(e),
                    Err(_) => break,
                }
            }
            if self.pending.is_empty() {
                return Ok(());
            }
            let io = self.shared.io_timeout;
            let clock = self.clock.unwrap_or_else(|| (Instant::now(), SystemTime::now()));
            tokio::time::timeout(io, write(client, &self.shared, clock, &self.pending))
                .await
                .map_err(|_| Failure::TimedOut)??;
            self.shared
                .written
                .fetch_add(self.pending.len() as u64, Ordering::Relaxed);
            self.pending.clear();
        }
    }

    /// Writes the counters of the breakers called since the last sync, and
    /// the next probe time of the open periods extended in place since.
    async fn sync_counters(&mut self, client: &Client) -> Result<(), Failure> {
        // Transitions first: an extension is written over its open's row.
        self.write_pending(client).await?;
        let mut changed = Vec::new();
        let mut extended = Vec::new();
        {
            let mut members = self.shared.members();
            members.retain(|_, m| m.breaker.strong_count() > 0);
            for (id, m) in members.iter() {
                let Some(b) = m.breaker.upgrade() else { continue };
                let s = b.stats();
                let now = (s.successes, s.failures + s.timeouts);
                if now != m.synced {
                    changed.push((*id, m.name.to_string(), m.key.to_string(), s, now));
                }
                if let Some(until) = extension(&b, &m.probe_at) {
                    extended.push((m.name.to_string(), m.key.to_string(), until));
                }
            }
        }
        if !extended.is_empty() {
            self.write_extensions(client, &extended).await?;
        }
        if changed.is_empty() {
            return Ok(());
        }
        let synced: Vec<(u64, u64)> = {
            let members = self.shared.members();
            changed
                .iter()
                .map(|(id, ..)| members.get(id).map_or((0, 0), |m| m.synced))
                .collect()
        };
        let names: Vec<&str> = changed.iter().map(|c| c.1.as_str()).collect();
        let keys: Vec<&str> = changed.iter().map(|c| c.2.as_str()).collect();
        let states: Vec<&str> = changed.iter().map(|c| c.3.state.as_str()).collect();
        let windows: Vec<i64> = changed.iter().map(|c| clamp(c.3.failures_in_window)).collect();
        let failed: Vec<bool> = changed.iter().zip(&synced).map(|(c, s)| c.4 .1 != s.1).collect();
        let succeeded: Vec<bool> = changed.iter().zip(&synced).map(|(c, s)| c.4 .0 != s.0).collect();
        let io = self.shared.io_timeout;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
            &self.shared.service,
            &self.shared.replica,
            &names,
            &keys,
            &states,
            &windows,
            &failed,
            &succeeded,
        ];
        tokio::time::timeout(io, client.execute(COUNTERS, &params))
            .await
            .map_err(|_| Failure::TimedOut)??;
        let mut members = self.shared.members();
        for (id, name, _, _, now) in &changed {
            if let Some(m) = members.get_mut(id).filter(|m| &*m.name == name.as_str()) {
                m.synced = *now;
            }
        }
        Ok(())
    }

    /// Moves `next_probe_at` of the open rows of `extended` (name, key, the
    /// new next probe time on this process's clock) later.
    async fn write_extensions(
        &mut self,
        client: &Client,
        extended: &[(String, String, Instant)],
    ) -> Result<(), Failure> {
        let (base, db_base) = self.clock.unwrap_or_else(|| (Instant::now(), SystemTime::now()));
        let names: Vec<&str> = extended.iter().map(|e| e.0.as_str()).collect();
        let keys: Vec<&str> = extended.iter().map(|e| e.1.as_str()).collect();
        let probes: Vec<SystemTime> = extended
            .iter()
            .map(|e| db_base + e.2.saturating_duration_since(base))
            .collect();
        let io = self.shared.io_timeout;
        tokio::time::timeout(
            io,
            client.execute(EXTEND, &[&self.shared.service, &names, &keys, &probes]),
        )
        .await
        .map_err(|_| Failure::TimedOut)??;
        Ok(())
    }
}

/// How much later than the last written next probe time an open period
/// must end to be written again: it absorbs the reading of two clocks, and
/// bounds the writes of a breaker on a manual clock (whose open period does
/// not run down with real time) to one per second.
const EXTENSION_SLACK: Duration = Duration::from_millis(500);

/// The new next probe time of `b`, when it is open and its open period now
/// ends later than `probe_at` says (extended in place by `open_for`, a
/// `Retry-After` or a peer); `probe_at` is set to it.
fn extension(b: &CircuitBreaker, probe_at: &AtomicU64) -> Option<Instant> {
    let known = probe_at.load(Ordering::Acquire);
    if known == 0 || b.state() != State::Open {
        return None;
    }
    let until = Instant::now() + b.open_remaining()?;
    if until <= from_base(known) + EXTENSION_SLACK {
        return None;
    }
    probe_at
        .compare_exchange(known, since_base(until), Ordering::AcqRel, Ordering::Acquire)
        .ok()
        .map(|_| until)
}

/// Why a write did not happen.
#[derive(Debug)]
enum Failure {
    TimedOut,
    Db(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Db(e)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::TimedOut => f.write_str("a statement timed out"),
            Failure::Db(e) => write!(f, "{e}"),
        }
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Writes `batch`: every event, and each breaker's last state in it.
async fn write(
    client: &Client,
    shared: &Shared,
    (base, db_base): (Instant, SystemTime),
    batch: &[Event],
) -> Result<u64, Failure> {
    // When each event happened, on the database's clock.
    let at = |e: &Event| {
        if e.at >= base {
            db_base + (e.at - base)
        } else {
            db_base - (base - e.at)
        }
    };
    let ids: Vec<i64> = batch.iter().map(|e| e.id).collect();
    let names: Vec<&str> = batch.iter().map(|e| &*e.name).collect();
    let keys: Vec<&str> = batch.iter().map(|e| &*e.key).collect();
    let froms: Vec<&str> = batch.iter().map(|e| e.from.as_str()).collect();
    let tos: Vec<&str> = batch.iter().map(|e| e.to.as_str()).collect();
    let reasons: Vec<&str> = batch.iter().map(|e| e.reason).collect();
    let windows: Vec<i64> = batch.iter().map(|e| clamp(e.failures_in_window)).collect();
    let ats: Vec<SystemTime> = batch.iter().map(at).collect();
    // Each breaker's last event of the batch.
    let mut last: HashMap<(&str, &str), &Event> = HashMap::new();
    for e in batch {
        last.insert((&*e.name, &*e.key), e);
    }
    let last: Vec<&Event> = last.into_values().collect();
    let s_names: Vec<&str> = last.iter().map(|e| &*e.name).collect();
    let s_keys: Vec<&str> = last.iter().map(|e| &*e.key).collect();
    let s_states: Vec<&str> = last.iter().map(|e| e.to.as_str()).collect();
    let s_windows: Vec<i64> = last.iter().map(|e| clamp(e.failures_in_window)).collect();
    let s_ats: Vec<SystemTime> = last.iter().map(|e| at(e)).collect();
    let s_probes: Vec<Option<SystemTime>> = last.iter().map(|e| e.probe_in.map(|d| at(e) + d)).collect();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 16] = [
        &shared.service,
        &shared.replica,
        &ids,
        &names,
        &keys,
        &froms,
        &tos,
        &reasons,
        &windows,
        &ats,
        &s_names,
        &s_keys,
        &s_states,
        &s_windows,
        &s_ats,
        &s_probes,
    ];
    Ok(client.execute(WRITE, &params).await?)
}

/// The service's open states whose next probe is still ahead, by the
/// database's clock, as deadlines on this process's clock.
async fn read_persisted(client: &Client, shared: &Shared) -> Result<Persisted, tokio_postgres::Error> {
    let rows = client.query(PERSISTED, &[&shared.service]).await?;
    let now = Instant::now();
    Ok(rows
        .iter()
        .filter_map(|r| {
            let secs: Option<f64> = r.get(2);
            let secs = secs.filter(|s| s.is_finite() && *s > 0.0)?;
            let until = now + Duration::try_from_secs_f64(secs.min(1e9)).ok()?;
            Some(((r.get::<_, String>(0), r.get::<_, String>(1)), until))
        })
        .collect())
}

/// [`Store::transitions`](crate::Store::transitions), on `client`.
pub(crate) async fn transitions(
    client: &Client,
    shared: &Shared,
    name: &str,
    limit: usize,
) -> Result<Vec<StoredTransition>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = tokio::time::timeout(
        shared.io_timeout,
        client.query(TRANSITIONS, &[&shared.service, &name, &limit]),
    )
    .await
    .map_err(|_| StoreError::Database("the query timed out".to_owned()))?
    .map_err(|e| StoreError::Database(e.to_string()))?;
    rows.iter()
        .map(|r| {
            let state = |i: usize| -> Result<State, StoreError> {
                let word: String = r.get(i);
                word.parse().map_err(|_| {
                    StoreError::Database(format!("a stored state that is not a state: {word:?}"))
                })
            };
            let key: String = r.get(1);
            Ok(StoredTransition::new(
                r.get::<_, String>(0),
                (!key.is_empty()).then_some(key),
                state(2)?,
                state(3)?,
                r.get::<_, String>(4),
                r.get::<_, String>(5),
                r.get(6),
            ))
        })
        .collect()
}
