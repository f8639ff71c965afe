//! The background task: the only code that talks to Redis.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use cb_runtime::{CircuitBreaker, Reason, State};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::ledger::{Ledger, Loss, Repair, Report};
use crate::message::{self, Kind};
use crate::server::{Con, Messages, Server};
use crate::{fingerprint, scripts, FleetError, LoggedTransition, Shared, View, LOG_MAX_LEN};

// Probe and health-check leases.
mod leases;

/// What the breakers and the `Fleet` ask of the task.
pub(crate) enum Cmd {
    /// A local breaker opened (not by a peer): share it, for the time that
    /// remains when the task gets to it. `reopen`: a failed probe's, with
    /// the period it was admitted in.
    Opened {
        ledger: Arc<Ledger>,
        breaker: Weak<CircuitBreaker>,
        reopen: Option<u64>,
    },
    /// A local breaker closed after its probes of period `period` succeeded.
    Closed { ledger: Arc<Ledger>, period: u64 },
    /// The local breaker closed by health checks in this period, before it ended.
    ClosedByCheck { ledger: Arc<Ledger>, period: u64 },
    /// A probe ended.
    Probe { ledger: Arc<Ledger>, report: Report },
    /// A caller found no lease: take one ahead for the next.
    WantLease { name: Arc<str> },
    /// A health check is due: take (or renew) the breaker's check lease.
    WantCheckLease { name: Arc<str> },
    /// A transition, for the log.
    Log {
        name: Arc<str>,
        from: State,
        to: State,
        reason: &'static str,
        wall_ms: u64,
    },
    /// A fleet-wide manual command; with `known_only`, only for a name some
    /// replica has (the reply says whether it was applied).
    Manual {
        name: String,
        to: State,
        known_only: bool,
        reply: oneshot::Sender<Result<bool, FleetError>>,
    },
    /// A breaker joined the fleet here: record its name, read its fleet state.
    Attached { ledger: Arc<Ledger> },
    /// Read the transition log.
    Transitions {
        name: String,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<LoggedTransition>, FleetError>>,
    },
}

impl Cmd {
    /// What is lost if this message is never handled, for the breaker's ledger.
    pub(crate) fn loss(&self) -> Option<(Arc<Ledger>, Loss)> {
        Some(match self {
            Cmd::Opened { ledger, reopen, .. } => (Arc::clone(ledger), Loss::Open { reopen: *reopen }),
            Cmd::Closed { ledger, period } | Cmd::ClosedByCheck { ledger, period } => {
                (Arc::clone(ledger), Loss::Close { period: *period })
            }
            Cmd::Attached { ledger } => (Arc::clone(ledger), Loss::Known),
            Cmd::Probe { ledger, report } => (Arc::clone(ledger), Loss::Probe(report.clone())),
            // A lease asked again by the next caller after the tick; a log
            // entry counted as dropped; replies answered by their caller's timeout.
            _ => return None,
        })
    }
}

const TICK: Duration = Duration::from_millis(200);
/// Ticks an unused lease is kept before it goes back.
const IDLE_TICKS: u32 = 5;
/// Names per script call: no script touches more than a few hundred keys.
const BATCH: usize = 100;

/// How a connection ended.
pub(crate) struct Lost {
    why: String,
    /// No answer in time: the command may have run.
    timed_out: bool,
}

impl From<redis::RedisError> for Lost {
    fn from(e: redis::RedisError) -> Self {
        Lost {
            timed_out: e.is_timeout(),
            why: e.to_string(),
        }
    }
}

impl Lost {
    fn to_error(&self) -> FleetError {
        if self.timed_out {
            FleetError::TimedOut(self.why.clone())
        } else {
            FleetError::Redis(self.why.clone())
        }
    }
}

/// The task: connect, serve, and on any failure reconnect with backoff.
pub(crate) async fn run(
    shared: Arc<Shared>,
    server: Server,
    mut rx: mpsc::Receiver<Cmd>,
    first: oneshot::Sender<()>,
) {
    let mut first = Some(first);
    let mut attempt: u32 = 0;
    let mut warned = false;
    let mut conn = Conn {
        shared: Arc::clone(&shared),
        pending: Vec::new(),
        warned_dup: false,
        warned_cfg: HashSet::new(),
        reported: HashMap::new(),
    };
    loop {
        let why = match conn.connect(&server).await {
            Ok((con, stream)) => {
                shared.link.set_connected(true);
                if warned {
                    tracing::info!(target: "cb_fleet", namespace = %shared.namespace, "fleet reconnected to Redis at {} and resynchronised", shared.url_shown());
                }
                warned = false;
                attempt = 0;
                if let Some(f) = first.take() {
                    let _ = f.send(());
                }
                let why = conn.serve(con, stream, &mut rx).await;
                shared.link.set_connected(false);
                conn.disconnected();
                match why {
                    Some(why) => why,
                    None => return, // the Fleet is gone
                }
            }
            Err(why) => {
                conn.disconnected();
                why
            }
        };
        if let Some(f) = first.take() {
            let _ = f.send(());
        }
        if !warned {
            tracing::warn!(
                target: "cb_fleet",
                namespace = %shared.namespace,
                "fleet lost Redis at {}: {}; breakers go on with local state, reconnecting",
                shared.url_shown(),
                why.why
            );
            warned = true;
        } else {
            tracing::debug!(target: "cb_fleet", "fleet reconnection failed: {}", why.why);
        }
        // Jittered exponential backoff, answering the queue meanwhile.
        let base = Duration::from_millis(50) * 2u32.saturating_pow(attempt.min(6));
        let delay = base.min(Duration::from_secs(2)).mul_f64(0.5 + fastrand::f64());
        attempt += 1;
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                cmd = rx.recv() => match cmd {
                    None => return,
                    Some(Cmd::Manual { reply, .. }) => { let _ = reply.send(Err(FleetError::Disconnected)); }
                    Some(Cmd::Transitions { reply, .. }) => { let _ = reply.send(Err(FleetError::Disconnected)); }
                    // Kept in the breaker's ledger; repaired on reconnect.
                    Some(cmd) => shared.link.lose(cmd),
                },
            }
        }
    }
}

/// The task's side of the fleet, across connections.
struct Conn {
    shared: Arc<Shared>,
    /// Breakers attached while connected, whose fleet state is still to read.
    pending: Vec<Arc<str>>,
    warned_dup: bool,
    warned_cfg: HashSet<String>,
    /// With `share_failures`: each breaker's totals when last reported.
    reported: HashMap<Arc<str>, Totals>,
}

/// A breaker's call totals, for the shared counts.
#[derive(Clone, Copy, Default)]
struct Totals {
    successes: u64,
    failures: u64,
    slow: u64,
}

impl Totals {
    fn of(s: &cb_runtime::Stats) -> Self {
        Totals {
            successes: s.successes,
            failures: s.failures + s.timeouts,
            slow: s.slow_calls,
        }
    }
}

/// A state-changing script's answer: kind, version, period, ms, level.
type Answer = (String, u64, u64, i64, i64);

/// A breaker's fleet state as `states` reads it, with its configuration's
/// fingerprint and the replica it is from.
struct Read {
    view: Option<View>,
    cfg: String,
    by: String,
}

/// A member as the task sees it, with its breaker (if alive and live).
struct Tracked {
    name: Arc<str>,
    gate: Arc<crate::Gate>,
    breaker: Option<Arc<CircuitBreaker>>,
    /// Created after the join.
    fresh: bool,
}

impl Conn {
    fn io<'a, T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>> + 'a,
    ) -> impl Future<Output = Result<T, Lost>> + 'a {
        let limit = self.shared.io_timeout;
        async move {
            match tokio::time::timeout(limit, fut).await {
                Ok(r) => r.map_err(Lost::from),
                Err(_) => Err(Lost {
                    why: format!("no answer within {limit:?}"),
                    timed_out: true,
                }),
            }
        }
    }

    fn ttl_ms(&self) -> u64 {
        self.shared.name_ttl.as_millis() as u64
    }

    async fn connect(&mut self, server: &Server) -> Result<(Con, Messages), Lost> {
        // Subscribed before reading any state: a change made after the read
        // arrives as a message, and versions sort out the overlap.
        let channel = self.shared.keys.channel();
        let (mut con, stream) = self.io(server.connect(self.shared.io_timeout, &channel)).await?;
        // Every script loaded now: a script's first use later is one
        // `EVALSHA`, never a `NOSCRIPT` answer and a second try.
        for script in scripts::all(self.shared.publish) {
            let _: String = self.io(script.load_async(&mut con)).await?;
        }
        self.hello(&mut con).await?;
        self.sync(&mut con).await?;
        Ok((con, stream))
    }

    /// After a lost connection: probes admitted from now on have no period;
    /// the leases held are renewed, or found lapsed, after reconnecting.
    fn disconnected(&mut self) {
        for m in self.shared.local().members.values() {
            m.gate.disconnected();
        }
    }

    /// The live members, with their breakers.
    fn tracked(&self) -> Vec<Tracked> {
        let local = self.shared.local();
        local
            .members
            .iter()
            .map(|(n, m)| Tracked {
                name: Arc::clone(&m.gate.ledger.name),
                gate: Arc::clone(&m.gate),
                breaker: m.breaker.upgrade().filter(|_| self.shared.is_live(n, m)),
                fresh: m.fresh,
            })
            .collect()
    }

    /// Claims the replica id for this process; warns once when another
    /// process uses it.
    async fn hello(&mut self, con: &mut Con) -> Result<(), Lost> {
        let ttl = (self.shared.lease_ttl.as_millis() as u64).max(1000);
        let other: String = self
            .io(scripts::hello(self.shared.publish)
                .key(self.shared.keys.replica(&self.shared.replica))
                .arg(&self.shared.link.instance)
                .arg(ttl)
                .invoke_async(con))
            .await?;
        if !other.is_empty() && !self.warned_dup {
            self.warned_dup = true;
            tracing::warn!(
                target: "cb_fleet",
                namespace = %self.shared.namespace,
                replica_id = %self.shared.replica,
                "two processes use replica id {:?} in fleet namespace {:?} (this one, {}, and {}): \
                 give each replica its own `replica_id`, or leave it unset",
                self.shared.replica,
                self.shared.namespace,
                self.shared.link.instance,
                other
            );
        }
        Ok(())
    }

    /// Resynchronises after (re)connecting: shares what was lost, renews
    /// the leases still held, reads the fleet's state of every breaker here
    /// and of every breaker the fleet holds open, forced open or disabled
    /// (in batches), and reconciles.
    async fn sync(&mut self, con: &mut Con) -> Result<(), Lost> {
        self.repair_dirty(con).await?;
        self.renew(con).await?;
        self.pending.clear();
        let names: Vec<Arc<str>> = self.tracked().into_iter().map(|t| t.name).collect();
        for batch in names.chunks(BATCH) {
            self.sync_names(con, batch).await?;
        }
        // The fleet's other non-closed states, for breakers created here later.
        let mut seen: HashSet<String> = names.iter().map(|n| n.to_string()).collect();
        let mut start = 0usize;
        loop {
            let page: Vec<String> = self
                .io(redis::cmd("ZRANGE")
                    .arg(self.shared.keys.active())
                    .arg(start)
                    .arg(start + BATCH - 1)
                    .query_async(con))
                .await?;
            start += page.len();
            let fresh: Vec<Arc<str>> = page
                .iter()
                .filter(|n| seen.insert((*n).clone()))
                .map(|n| Arc::from(n.as_str()))
                .collect();
            if !fresh.is_empty() {
                let reads = self.read_states(con, &fresh).await?;
                for (name, read) in fresh.iter().zip(reads) {
                    if let Some(view) = read.view {
                        self.adopt(name, view, true);
                    }
                }
            }
            if page.len() < BATCH {
                break;
            }
        }
        // Views of other names the fleet no longer holds open are stale.
        self.shared.local().views.retain(|name, _| seen.contains(name));
        Ok(())
    }

    /// Records `names` in Redis, reads their fleet states and reconciles
    /// each breaker with its fleet state (see the crate docs, "Consistency").
    async fn sync_names(&mut self, con: &mut Con, names: &[Arc<str>]) -> Result<(), Lost> {
        self.touch(con, names).await?;
        let reads = self.read_states(con, names).await?;
        for (name, read) in names.iter().zip(reads) {
            let Some(b) = self.breaker(name) else {
                continue;
            };
            let mine = fingerprint(&b.config());
            if !read.cfg.is_empty() && read.cfg != mine && self.warned_cfg.insert(name.to_string()) {
                tracing::warn!(
                    target: "cb_fleet",
                    namespace = %self.shared.namespace,
                    breaker = %name,
                    "circuit breaker {name:?}: this replica ({}) is configured with {mine}, \
                     and the fleet with {} (by replica {}); the configuration of the replica that \
                     opens a period governs it fleet-wide (probe cap, successes to close, open duration)",
                    self.shared.replica,
                    read.cfg,
                    read.by
                );
            }
            self.reconcile(con, name, &b, read.view).await?;
        }
        Ok(())
    }

    /// One breaker's reconciliation with its fleet state `fleet`.
    async fn reconcile(
        &mut self,
        con: &mut Con,
        name: &Arc<str>,
        b: &Arc<CircuitBreaker>,
        fleet: Option<View>,
    ) -> Result<(), Lost> {
        let Some(ledger) = self.ledger(name) else {
            return Ok(());
        };
        let local_control = ledger.local_control.load(Ordering::Acquire);
        let Some(view) = fleet else {
            // Redis holds no state (never shared, or a server restarted
            // empty): it gets this replica's, unless local control set it.
            if local_control {
                return Ok(());
            }
            let state = b.state();
            let seed = match state {
                State::Open | State::HalfOpen => Some("open"),
                State::ForcedOpen if ledger.manual_from_fleet.load(Ordering::Acquire) => Some("forced_open"),
                State::Disabled if ledger.manual_from_fleet.load(Ordering::Acquire) => Some("disabled"),
                _ => None,
            };
            if let Some(kind) = seed {
                let ms = b.open_remaining().map_or(0, |r| r.as_millis().max(1) as u64);
                if kind == "open" && self.shared.open_quorum > 1 {
                    // An open of its own counts towards the quorum, as any.
                    if let Some(ms) = open_ms(b) {
                        self.opened(con, name, ms, None).await?;
                    }
                } else {
                    self.seed(con, name, kind, ms, b).await?;
                }
            }
            return Ok(());
        };
        let held = self.shared.local().views.get(&**name).map(|v| v.version);
        if held == Some(view.version) && local_control {
            return Ok(()); // nothing new in the fleet: local control made since holds
        }
        let local_open = self.member(name, |m| m.gate.local_open().is_some()) == Some(true);
        if held == Some(view.version) && local_open && matches!(b.state(), State::Open | State::HalfOpen) {
            return Ok(()); // nothing new in the fleet: an open below the quorum stays
        }
        if ledger.has_unshared_open() && b.state() == State::Open {
            // An open of this replica's own the fleet has not heard of.
            if let Some(rem) = b.open_remaining() {
                return self.opened(con, name, rem.as_millis().max(1) as u64, None).await;
            }
        }
        self.adopt(name, view, true);
        Ok(())
    }

    /// Applies `view` of `name`: to the breaker here (if any), its gate and
    /// the views held. Without `resync`, only a version newer than the one
    /// held; `true` when applied.
    fn adopt(&self, name: &str, view: View, resync: bool) -> bool {
        let mut local = self.shared.local();
        if let Some(held) = local.views.get(name) {
            if !resync && held.version >= view.version {
                return false; // older than, or the same as, what is applied
            }
        }
        let member = local
            .members
            .get(name)
            .filter(|m| self.shared.is_live(name, m))
            .and_then(|m| Some((m.breaker.upgrade()?, Arc::clone(&m.gate))));
        if let Some((b, gate)) = &member {
            let ledger = &gate.ledger;
            if !view.is_manual()
                && matches!(b.state(), State::ForcedOpen | State::Disabled)
                && ledger.manual_from_fleet.load(Ordering::Acquire)
                && !ledger.local_control.load(Ordering::Acquire)
            {
                // A fleet-wide force-open or disable that the fleet ended
                // (this replica missed the reset): end it here too.
                b.follow_manual(State::Closed);
                ledger.manual_from_fleet.store(false, Ordering::Release);
            }
            if view.apply(b) {
                gate.clear_local_open();
                gate.ledger.local_control.store(false, Ordering::Release);
                if view.is_manual() {
                    let fleet_manual = matches!(view.kind, Kind::ForcedOpen | Kind::Disabled);
                    gate.ledger
                        .manual_from_fleet
                        .store(fleet_manual, Ordering::Release);
                }
            }
            gate.enter_period(view.period);
        }
        if member.is_some() || !view.is_closed() {
            local.views.insert(name.to_owned(), view);
        } else {
            local.views.remove(name);
        }
        true
    }

    /// Adopts a script's answer, if newer than what is held.
    fn follow(&self, name: &str, answer: &Answer) {
        let (kind, version, period, ms, level) = answer;
        if let Some(view) = View::from_fleet(kind, *ms, *level, *version, *period) {
            self.adopt(name, view, false);
        }
    }

    /// Repairs every breaker on the dirty list (see [`crate::ledger`]).
    async fn repair_dirty(&mut self, con: &mut Con) -> Result<(), Lost> {
        let mut list = self.shared.link.dirty.take().into_iter();
        while let Some(ledger) = list.next() {
            let mut repair = ledger.take();
            if let Err(lost) = self.repair(con, &ledger, &mut repair).await {
                // What was not done yet goes back, for the next connection.
                ledger.restore(repair);
                if ledger.list() {
                    self.shared.link.dirty.push(ledger);
                }
                for rest in list {
                    self.shared.link.dirty.push(rest); // still listed, untouched
                }
                return Err(lost);
            }
        }
        Ok(())
    }

    /// One breaker's repair; each part done is cleared from `r`, so what is
    /// left in it after an error is what was not done.
    async fn repair(&mut self, con: &mut Con, ledger: &Arc<Ledger>, r: &mut Repair) -> Result<(), Lost> {
        let name = Arc::clone(&ledger.name);
        if r.known {
            if self.shared.link.connected.load(Ordering::Acquire) {
                self.pending.push(Arc::clone(&name));
            }
            r.known = false;
        }
        while let Some(report) = r.reports.first().cloned() {
            // Sent again with its id: counted once, whatever happened to
            // the first attempt.
            self.probe(con, &name, &report).await?;
            r.reports.remove(0);
        }
        let breaker = self.breaker(&name);
        if r.opens > 0 {
            if let Some(b) = &breaker {
                let reopen = (r.reopen != 0).then_some(r.reopen);
                if let Some(ms) = open_ms(b) {
                    self.opened(con, &name, ms, reopen).await?;
                }
            }
            (r.opens, r.reopen) = (0, 0);
        }
        if r.close != 0 {
            if breaker.is_some_and(|b| b.state() == State::Closed) {
                self.closed(con, &name, r.close, false).await?;
            }
            r.close = 0;
        }
        Ok(())
    }

    /// Serves until the connection is lost (`Some(why)`) or the fleet is dropped (`None`).
    async fn serve(
        &mut self,
        mut con: Con,
        mut stream: Messages,
        rx: &mut mpsc::Receiver<Cmd>,
    ) -> Option<Lost> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_renew = Instant::now();
        let mut last_touch = Instant::now();
        let touch_every = (self.shared.name_ttl / 4).min(Duration::from_secs(3600));
        let sharing = self.shared.share_interval;
        let mut share = tokio::time::interval(sharing.unwrap_or(Duration::from_secs(3600)));
        share.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                _ = share.tick(), if sharing.is_some() => self.share(&mut con).await,
                cmd = rx.recv() => match cmd {
                    None => return None,
                    Some(cmd) => {
                        let loss = cmd.loss();
                        let step = self.handle(&mut con, cmd).await;
                        if let (Err(_), Some((ledger, loss))) = (&step, loss) {
                            if ledger.lose(loss) {
                                self.shared.link.dirty.push(ledger);
                            }
                        }
                        step
                    }
                },
                msg = stream.next() => match msg {
                    None => Err(Lost { why: "the subscription closed".to_owned(), timed_out: false }),
                    Some(msg) => { self.on_message(msg.get_payload_bytes()); Ok(()) }
                },
                _ = tick.tick() => {
                    let renew = last_renew.elapsed() >= self.shared.lease_ttl / 3;
                    if renew {
                        last_renew = Instant::now();
                    }
                    let touch = last_touch.elapsed() >= touch_every;
                    if touch {
                        last_touch = Instant::now();
                    }
                    self.on_tick(&mut con, renew, touch).await
                }
            };
            // Catch up with what a full queue dropped (one atomic load when
            // nothing was), and read the state of breakers attached meanwhile.
            let step = match step {
                Ok(()) => self.repair_dirty(&mut con).await,
                err => err,
            };
            let step = match step {
                Ok(()) if !self.pending.is_empty() => {
                    let mut batch: Vec<Arc<str>> =
                        self.pending.drain(..self.pending.len().min(BATCH)).collect();
                    batch.sort();
                    batch.dedup();
                    self.sync_names(&mut con, &batch).await
                }
                other => other,
            };
            if let Err(lost) = step {
                return Some(lost);
            }
        }
    }

    fn on_message(&mut self, payload: &[u8]) {
        let m = match message::parse(payload) {
            Ok(m) => m,
            Err(e) => {
                self.shared.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target: "cb_fleet", "ignored: {e}");
                return;
            }
        };
        // Our own changes included: their version decides, as for anyone's.
        self.adopt(&m.name, View::from_message(&m), false);
    }

    fn member<T>(&self, name: &str, f: impl FnOnce(&crate::Member) -> T) -> Option<T> {
        let local = self.shared.local();
        local
            .members
            .get(name)
            .filter(|m| self.shared.is_live(name, m))
            .map(f)
    }

    fn breaker(&self, name: &str) -> Option<Arc<CircuitBreaker>> {
        self.member(name, |m| m.breaker.upgrade()).flatten()
    }

    fn ledger(&self, name: &str) -> Option<Arc<Ledger>> {
        self.member(name, |m| Arc::clone(&m.gate.ledger))
    }

    /// The breaker's probe cap, successes to close, and fingerprint.
    fn config_args(&self, name: &str) -> (u32, u32, String) {
        match self.breaker(name) {
            Some(b) => {
                let c = b.config();
                (c.half_open_max_calls(), c.success_threshold(), fingerprint(&c))
            }
            None => (1, 1, String::new()),
        }
    }

    async fn opened(&mut self, con: &mut Con, name: &str, ms: u64, reopen: Option<u64>) -> Result<(), Lost> {
        let (cap, need, cfg) = self.config_args(name);
        let breaker = self.breaker(name);
        let open_ms = breaker
            .as_ref()
            .map_or(ms, |b| b.config().open_duration().as_millis().max(1) as u64);
        // A rate limit is not an outage: a throttled open (a throttled probe
        // included) never raises the fleet's backoff level. The reason is
        // the breaker's now, as the time left is.
        let throttled = breaker.is_some_and(|b| b.open_reason() == Some(Reason::Throttled));
        let k = self.shared.keys.breaker(name);
        let (kind, version, period, left, level, votes): (String, u64, u64, i64, i64, u32) = self
            .io(scripts::open(self.shared.publish)
                .key(&k.hash)
                .key(&k.open)
                .key(&k.lease)
                .key(&k.done)
                .key(self.shared.keys.names())
                .key(self.shared.keys.active())
                .key(&k.quorum)
                .arg(ms)
                .arg(if reopen.is_some() { "1" } else { "0" })
                .arg(reopen.unwrap_or(0))
                .arg(&self.shared.replica)
                .arg(name)
                .arg(self.shared.keys.channel())
                .arg(cap)
                .arg(need)
                .arg(cfg)
                .arg(self.ttl_ms())
                .arg(self.shared.open_quorum)
                .arg(open_ms)
                .arg(if throttled { "1" } else { "0" })
                .invoke_async(con))
            .await?;
        if votes > 0 {
            // Below the quorum: the open stays this replica's own, and the
            // fleet's state (not changed) is not followed.
            if let Some(gate) = self.member(name, |m| Arc::clone(&m.gate)) {
                if self
                    .breaker(name)
                    .is_some_and(|b| matches!(b.state(), State::Open | State::HalfOpen))
                {
                    gate.set_local_open(votes, self.shared.open_quorum);
                }
            }
            return Ok(());
        }
        self.follow(name, &(kind, version, period, left, level));
        Ok(())
    }

    async fn seed(
        &mut self,
        con: &mut Con,
        name: &str,
        kind: &str,
        ms: u64,
        b: &CircuitBreaker,
    ) -> Result<(), Lost> {
        let (cap, need, cfg) = self.config_args(name);
        let k = self.shared.keys.breaker(name);
        let answer: Answer = self
            .io(scripts::seed(self.shared.publish)
                .key(&k.hash)
                .key(&k.open)
                .key(self.shared.keys.active())
                .key(self.shared.keys.names())
                .arg(kind)
                .arg(ms)
                .arg(b.backoff_level())
                .arg(cap)
                .arg(need)
                .arg(cfg)
                .arg(&self.shared.replica)
                .arg(name)
                .arg(self.shared.keys.channel())
                .arg(self.ttl_ms())
                .invoke_async(con))
            .await?;
        self.follow(name, &answer);
        Ok(())
    }

    /// Records `names` in the namespace's set (renewing their keys' TTL)
    /// and forgets a batch of names nobody has had for the name TTL.
    async fn touch(&mut self, con: &mut Con, names: &[Arc<str>]) -> Result<(), Lost> {
        let mut script = scripts::touch(self.shared.publish).prepare_invoke();
        script
            .key(self.shared.keys.names())
            .key(self.shared.keys.active())
            .arg(self.ttl_ms())
            .arg(&self.shared.replica);
        for name in names {
            let k = self.shared.keys.breaker(name);
            script.key(k.hash).key(k.log);
            let (_, _, cfg) = self.config_args(name);
            script.arg(&**name).arg(cfg);
        }
        let forgotten: i64 = self.io(script.invoke_async(con)).await?;
        if forgotten > 0 {
            tracing::debug!(target: "cb_fleet", "forgot {forgotten} breaker names no replica had for the name TTL");
        }
        Ok(())
    }

    async fn read_states(&mut self, con: &mut Con, names: &[Arc<str>]) -> Result<Vec<Read>, Lost> {
        let mut script = scripts::states(self.shared.publish).prepare_invoke();
        script.key(self.shared.keys.active());
        for name in names {
            let k = self.shared.keys.breaker(name);
            script.key(k.hash).key(k.open).arg(&**name);
        }
        let flat: Vec<String> = self.io(script.invoke_async(con)).await?;
        Ok(flat
            .chunks_exact(7)
            .map(|row| Read {
                view: View::from_fleet(
                    &row[0],
                    row[3].parse().unwrap_or(0),
                    row[4].parse().unwrap_or(0),
                    row[1].parse().unwrap_or(0),
                    row[2].parse().unwrap_or(0),
                ),
                cfg: row[5].clone(),
                by: row[6].clone(),
            })
            .collect())
    }

    /// Shares a close of `period`: after this replica's probes succeeded
    /// (`scripts::close`), or by health checks, which ends the fleet's open
    /// period early (`by_check`: `scripts::close_checked`).
    async fn closed(&mut self, con: &mut Con, name: &str, period: u64, by_check: bool) -> Result<(), Lost> {
        let k = self.shared.keys.breaker(name);
        let script = if by_check {
            scripts::close_checked(self.shared.publish)
        } else {
            scripts::close(self.shared.publish)
        };
        let answer: Answer = self
            .io(script
                .key(&k.hash)
                .key(&k.open)
                .key(&k.lease)
                .key(&k.done)
                .key(self.shared.keys.active())
                .arg(period)
                .arg(&self.shared.replica)
                .arg(name)
                .arg(self.shared.keys.channel())
                .arg(self.ttl_ms())
                .invoke_async(con))
            .await?;
        self.follow(name, &answer);
        Ok(())
    }

    /// Reports a probe's result (idempotent: see `scripts::probe`).
    async fn probe(&mut self, con: &mut Con, name: &str, report: &Report) -> Result<(), Lost> {
        let (_, need, _) = self.config_args(name);
        let k = self.shared.keys.breaker(name);
        let answer: Answer = self
            .io(scripts::probe(self.shared.publish)
                .key(&k.hash)
                .key(&k.open)
                .key(&k.lease)
                .key(&k.done)
                .key(self.shared.keys.active())
                .arg(&report.id)
                .arg(report.lease.as_deref().unwrap_or(""))
                .arg(report.period)
                .arg(if report.ok { "1" } else { "0" })
                .arg(if report.count { "1" } else { "0" })
                .arg(&self.shared.replica)
                .arg(name)
                .arg(self.shared.keys.channel())
                .arg(self.ttl_ms())
                .arg(need)
                .invoke_async(con))
            .await?;
        self.follow(name, &answer);
        Ok(())
    }

    async fn handle(&mut self, con: &mut Con, cmd: Cmd) -> Result<(), Lost> {
        match cmd {
            Cmd::Opened {
                ledger,
                breaker,
                reopen,
            } => {
                // The time that remains now, not when the breaker opened: a
                // delay in the queue never stretches the fleet's open period.
                let ms = breaker.upgrade().and_then(|b| open_ms(&b));
                if let Some(ms) = ms {
                    if self.ledger(&ledger.name).is_some() {
                        self.opened(con, &ledger.name, ms, reopen).await?;
                    }
                }
                ledger.open_shared();
                Ok(())
            }
            Cmd::Closed { ledger, period } => self.closed(con, &ledger.name, period, false).await,
            Cmd::ClosedByCheck { ledger, period } => self.closed(con, &ledger.name, period, true).await,
            Cmd::Probe { ledger, report } => self.probe(con, &ledger.name, &report).await,
            Cmd::WantLease { name } => self.want_lease(con, name).await,
            Cmd::WantCheckLease { name } => self.want_check_lease(con, name).await,
            Cmd::Log {
                name,
                from,
                to,
                reason,
                wall_ms,
            } => {
                let log = self.shared.keys.breaker(&name).log;
                let mut pipe = redis::pipe();
                pipe.cmd("XADD")
                    .arg(&log)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(LOG_MAX_LEN)
                    .arg("*")
                    .arg("replica")
                    .arg(&self.shared.replica)
                    .arg("name")
                    .arg(&*name)
                    .arg("from")
                    .arg(from.as_str())
                    .arg("to")
                    .arg(to.as_str())
                    .arg("reason")
                    .arg(reason)
                    .arg("wall_ms")
                    .arg(wall_ms)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&log)
                    .arg(self.ttl_ms())
                    .ignore();
                let () = self.io(pipe.query_async(con)).await?;
                Ok(())
            }
            Cmd::Attached { ledger } => {
                self.pending.push(Arc::clone(&ledger.name));
                Ok(())
            }
            Cmd::Manual {
                name,
                to,
                known_only,
                reply,
            } => {
                let kind = match to {
                    State::ForcedOpen => "forced_open",
                    State::Disabled => "disabled",
                    _ => "reset",
                };
                let k = self.shared.keys.breaker(&name);
                let result: Result<Answer, Lost> = self
                    .io(scripts::manual(self.shared.publish)
                        .key(&k.hash)
                        .key(&k.open)
                        .key(&k.lease)
                        .key(&k.done)
                        .key(self.shared.keys.names())
                        .key(self.shared.keys.active())
                        .arg(kind)
                        .arg(&self.shared.replica)
                        .arg(&name)
                        .arg(self.shared.keys.channel())
                        .arg(if known_only { "1" } else { "0" })
                        .arg(self.ttl_ms())
                        .invoke_async(con))
                    .await;
                match result {
                    Ok(answer) if answer.0 == "unknown" => {
                        let _ = reply.send(Ok(false));
                        Ok(())
                    }
                    Ok(answer) => {
                        self.follow(&name, &answer);
                        let _ = reply.send(Ok(true));
                        Ok(())
                    }
                    Err(lost) => {
                        let _ = reply.send(Err(lost.to_error()));
                        Err(lost)
                    }
                }
            }
            Cmd::Transitions { name, limit, reply } => {
                let log = self.shared.keys.breaker(&name).log;
                let result: Result<Vec<(String, Vec<String>)>, Lost> = self
                    .io(redis::cmd("XREVRANGE")
                        .arg(log)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(limit.clamp(1, LOG_MAX_LEN))
                        .query_async(con))
                    .await;
                match result {
                    Ok(entries) => {
                        let list = entries
                            .into_iter()
                            .filter_map(|(id, fields)| logged(id, &fields))
                            .take(limit)
                            .collect();
                        let _ = reply.send(Ok(list));
                        Ok(())
                    }
                    Err(lost) => {
                        let _ = reply.send(Err(lost.to_error()));
                        Err(lost)
                    }
                }
            }
        }
    }

    async fn on_tick(&mut self, con: &mut Con, renew: bool, touch: bool) -> Result<(), Lost> {
        // A keyed command (in the ACL's list), so that on a cluster it asks
        // the namespace's master.
        let _: i64 = self
            .io(redis::cmd("PTTL").arg(self.shared.keys.names()).query_async(con))
            .await?;
        // Breakers removed from the registry (or taken over by a later
        // fleet) leave: their unused leases go back, and they get nothing
        // more from this fleet. Running probes give theirs back as they end.
        let gone: Vec<Arc<crate::Gate>> = {
            let mut local = self.shared.local();
            let dead: Vec<String> = local
                .members
                .iter()
                .filter(|(n, m)| !self.shared.is_live(n, m) || m.breaker.strong_count() == 0)
                .map(|(n, _)| n.clone())
                .collect();
            dead.iter()
                .filter_map(|n| local.members.remove(n))
                .map(|m| m.gate)
                .collect()
        };
        for gate in gone {
            let unused = std::mem::take(&mut gate.leases().available);
            self.release(con, &gate.ledger.name, unused).await?;
        }
        for t in self.tracked() {
            t.gate.asked.store(false, Ordering::Release);
            let half_open = t.breaker.is_some_and(|b| b.state() == State::HalfOpen);
            let idle = t.gate.idle_ticks.fetch_add(1, Ordering::Relaxed) + 1 >= IDLE_TICKS;
            if !half_open || idle {
                let unused = std::mem::take(&mut t.gate.leases().available);
                self.release(con, &t.name, unused).await?;
            }
        }
        if renew {
            self.renew(con).await?;
            self.hello(con).await?;
        }
        if touch {
            let names: Vec<Arc<str>> = self.tracked().into_iter().map(|t| t.name).collect();
            for batch in names.chunks(BATCH) {
                self.touch(con, batch).await?;
            }
        }
        Ok(())
    }

    /// Reports each breaker's calls since its last report (`share_failures`):
    /// one script run per breaker that had calls. Counts are reported at
    /// most once: a report lost with the connection is not sent again.
    async fn share(&mut self, con: &mut Con) -> Result<(), Lost> {
        let live: Vec<(Arc<str>, Arc<CircuitBreaker>, bool)> = self
            .tracked()
            .into_iter()
            .filter_map(|t| Some((t.name, t.breaker?, t.fresh)))
            .collect();
        self.reported.retain(|n, _| live.iter().any(|(l, _, _)| l == n));
        for (name, b, fresh) in live {
            let stats = b.stats();
            let now = Totals::of(&stats);
            // A breaker created after the join is counted from its start;
            // one the registry held at the join, from the first report on
            // (its older calls may be long out of any window).
            let last = match self.reported.insert(Arc::clone(&name), now) {
                Some(last) => last,
                None if fresh => Totals::default(),
                None => continue,
            };
            let successes = now.successes.saturating_sub(last.successes);
            let failures = now.failures.saturating_sub(last.failures);
            let slow = now.slow.saturating_sub(last.slow);
            // Probes decide the fleet's half-open by their own rules.
            if successes + failures == 0 || stats.state == State::HalfOpen {
                continue;
            }
            let c = b.config();
            let (kind, window) = match c.sliding_window() {
                cb_runtime::Window::Count(n) => ("c", u64::from(n)),
                cb_runtime::Window::Time(d) => ("t", d.as_millis().max(1) as u64),
            };
            let slow_threshold = if c.slow_call_duration().is_some() {
                c.slow_call_rate_threshold()
            } else {
                -1.0
            };
            let (cap, need, cfg) = self.config_args(&name);
            let k = self.shared.keys.breaker(&name);
            let answer: Answer = self
                .io(scripts::share(self.shared.publish)
                    .key(&k.hash)
                    .key(&k.open)
                    .key(&k.done)
                    .key(self.shared.keys.names())
                    .key(self.shared.keys.active())
                    .key(&k.window)
                    .arg(successes + failures)
                    .arg(failures)
                    .arg(slow)
                    .arg(if successes > 0 { "1" } else { "0" })
                    .arg(stats.consecutive_failures)
                    .arg(kind)
                    .arg(window)
                    .arg(c.minimum_calls())
                    .arg(c.failure_rate_threshold())
                    .arg(slow_threshold)
                    .arg(c.failure_threshold())
                    .arg(c.open_duration().as_millis().max(1) as u64)
                    .arg(cap)
                    .arg(need)
                    .arg(cfg)
                    .arg(&self.shared.replica)
                    .arg(&*name)
                    .arg(self.shared.keys.channel())
                    .arg(self.ttl_ms())
                    .invoke_async(con))
                .await?;
            self.follow(&name, &answer);
        }
        Ok(())
    }
}

/// The open time `b` has left, in ms, to share: at least 1 ms while open or
/// half-open (its open period just ended), `None` in any other state.
fn open_ms(b: &CircuitBreaker) -> Option<u64> {
    match b.open_remaining() {
        Some(rem) => Some(rem.as_millis().max(1) as u64),
        None if b.state() == State::HalfOpen => Some(1),
        None => None,
    }
}

fn logged(id: String, fields: &[String]) -> Option<LoggedTransition> {
    let get = |k: &str| {
        fields
            .chunks_exact(2)
            .find(|kv| kv[0] == k)
            .map(|kv| kv[1].clone())
    };
    Some(LoggedTransition {
        id,
        replica: get("replica")?,
        name: get("name")?,
        from: get("from")?,
        to: get("to")?,
        reason: get("reason")?,
        wall_time_ms: get("wall_ms")?.parse().ok()?,
    })
}
