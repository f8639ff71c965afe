//! The background task: the only code that talks to Redis.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cb_runtime::{CircuitBreaker, State};
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::sync::{mpsc, oneshot};

use crate::ledger::{Ledger, Loss, Repair};
use crate::message::{self, Kind};
use crate::{scripts, FleetError, LoggedTransition, Shared, View, LOG_MAX_LEN};

/// What the breakers and the `Fleet` ask of the task.
pub(crate) enum Cmd {
    /// A local breaker opened (not by a peer): share it.
    Opened {
        ledger: Arc<Ledger>,
        ms: u64,
        from_half_open: bool,
    },
    /// A local breaker closed after its probes succeeded.
    Closed { ledger: Arc<Ledger> },
    /// A probe ended; `leased` when it held a lease.
    Probe {
        ledger: Arc<Ledger>,
        ok: bool,
        leased: bool,
    },
    /// A caller found no lease: take one ahead for the next.
    WantLease { name: Arc<str> },
    /// A transition, for the log.
    Log {
        name: Arc<str>,
        from: State,
        to: State,
        reason: &'static str,
        wall_ms: u64,
    },
    /// A fleet-wide manual command; with `known_only`, only for a name some
    /// replica has created (the reply says whether it was applied).
    Manual {
        name: String,
        to: State,
        known_only: bool,
        reply: oneshot::Sender<Result<bool, FleetError>>,
    },
    /// A breaker joined the fleet here: its name goes in the namespace's set.
    Known { ledger: Arc<Ledger> },
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
            Cmd::Opened {
                ledger,
                from_half_open,
                ..
            } => (
                Arc::clone(ledger),
                Loss::Open {
                    reopen: *from_half_open,
                },
            ),
            Cmd::Closed { ledger } => (Arc::clone(ledger), Loss::Close),
            Cmd::Known { ledger } => (Arc::clone(ledger), Loss::Known),
            Cmd::Probe { ledger, ok, leased } => (
                Arc::clone(ledger),
                Loss::Probe {
                    ok: *ok,
                    leased: *leased,
                },
            ),
            // A lease asked again by the next caller after the tick; a log
            // entry counted as dropped; replies answered by their caller's timeout.
            _ => return None,
        })
    }
}

const TICK: Duration = Duration::from_millis(200);
/// Ticks an unused lease is kept before it goes back.
const IDLE_TICKS: u32 = 5;

/// How a connection ended.
struct Lost(String);

impl From<redis::RedisError> for Lost {
    fn from(e: redis::RedisError) -> Self {
        Lost(e.to_string())
    }
}

/// The task: connect, serve, and on any failure reconnect with backoff.
pub(crate) async fn run(
    shared: Arc<Shared>,
    client: redis::Client,
    mut rx: mpsc::Receiver<Cmd>,
    first: oneshot::Sender<()>,
) {
    let mut first = Some(first);
    let mut attempt: u32 = 0;
    let mut warned = false;
    loop {
        let mut conn = Conn {
            shared: Arc::clone(&shared),
            leases: HashMap::new(),
            seq: 0,
        };
        let why = match conn.connect(&client).await {
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
                conn.forget_leases();
                match why {
                    Some(why) => why,
                    None => return, // the Fleet is gone
                }
            }
            Err(why) => why,
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
                why.0
            );
            warned = true;
        } else {
            tracing::debug!(target: "cb_fleet", "fleet reconnection failed: {}", why.0);
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

/// One connection's life.
struct Conn {
    shared: Arc<Shared>,
    /// Lease members this replica holds in Redis, per breaker.
    leases: HashMap<Arc<str>, Vec<String>>,
    seq: u64,
}

/// A shared breaker as the tick sees it: its name, gate and breaker (if alive).
type Tracked = (Arc<str>, Arc<crate::Gate>, Option<Arc<CircuitBreaker>>);

type Messages = std::pin::Pin<Box<dyn futures_util::Stream<Item = redis::Msg> + Send>>;

impl Conn {
    fn io<'a, T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>> + 'a,
    ) -> impl Future<Output = Result<T, Lost>> + 'a {
        let limit = self.shared.io_timeout;
        async move {
            match tokio::time::timeout(limit, fut).await {
                Ok(r) => r.map_err(Lost::from),
                Err(_) => Err(Lost(format!("no answer within {limit:?}"))),
            }
        }
    }

    async fn connect(&mut self, client: &redis::Client) -> Result<(MultiplexedConnection, Messages), Lost> {
        let io = self.shared.io_timeout;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(io)
            .set_response_timeout(io);
        let con = self
            .io(client.get_multiplexed_async_connection_with_config(&config))
            .await?;
        let mut pubsub = self.io(client.get_async_pubsub()).await?;
        self.io(pubsub.subscribe(self.shared.keys.channel())).await?;
        let stream: Messages = Box::pin(pubsub.into_on_message());
        let mut con = con;
        self.sync(&mut con).await?;
        Ok((con, stream))
    }

    /// Reads every shared breaker's fleet state, applies it, and shares the
    /// local opens the fleet has not heard of (made while disconnected).
    async fn sync(&mut self, con: &mut MultiplexedConnection) -> Result<(), Lost> {
        // What was lost while away first, so the fleet's state read next has it.
        self.repair_dirty(con).await?;
        let names: Vec<Arc<str>> = self
            .shared
            .local()
            .members
            .values()
            .map(|m| Arc::clone(&m.gate.ledger.name))
            .collect();
        self.known(con, &names.iter().collect::<Vec<_>>()).await?;
        let flat: Vec<String> = self
            .io(scripts::sync()
                .key(self.shared.keys.names())
                .arg(self.shared.keys.prefix())
                .invoke_async(con))
            .await?;
        let mut views = HashMap::new();
        for row in flat.chunks_exact(4) {
            let level = row[2].parse().unwrap_or(0i64);
            let pttl: i64 = row[3].parse().unwrap_or(-2);
            // `none`: Redis holds no state for it (never opened or
            // controlled, or a restarted server forgot it).
            if let Some(view) = View::from_fleet(&row[1], pttl, level) {
                views.insert(row[0].clone(), view);
            }
        }
        let mut report = Vec::new();
        {
            let mut local = self.shared.local();
            for (name, member) in &local.members {
                let Some(b) = member.breaker.upgrade() else {
                    continue;
                };
                let ledger = &member.gate.ledger;
                match views.get(name) {
                    Some(v) if v.state != State::Closed => v.apply(&b),
                    // Redis has no state for it: share our own open, if any
                    // (a restarted server lost the fleet's).
                    None => {
                        if let Some(rem) = b.open_remaining() {
                            report.push((Arc::clone(&ledger.name), rem));
                        }
                    }
                    // The fleet is closed.
                    Some(_) => match b.state() {
                        // An open of our own the fleet has not heard of: share it.
                        State::Open if ledger.has_unshared_open() => {
                            if let Some(rem) = b.open_remaining() {
                                report.push((Arc::clone(&ledger.name), rem));
                            }
                        }
                        // A shared or followed open, and the fleet closed meanwhile.
                        State::Open | State::HalfOpen if !ledger.has_unshared_open() => {
                            b.follow_close();
                        }
                        // A fleet-wide force-open or disable, and a fleet-wide reset meanwhile
                        // (a local one stays: local control wins on its replica).
                        State::ForcedOpen | State::Disabled
                            if ledger.manual_from_fleet.load(Ordering::Acquire) =>
                        {
                            b.follow_manual(State::Closed);
                        }
                        _ => {}
                    },
                }
            }
            local.views = views;
        }
        for (name, rem) in report {
            self.opened(con, &name, rem.as_millis().max(1) as u64, false)
                .await?;
        }
        Ok(())
    }

    /// Repairs every breaker on the dirty list (see [`crate::ledger`]).
    async fn repair_dirty(&mut self, con: &mut MultiplexedConnection) -> Result<(), Lost> {
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
    async fn repair(
        &mut self,
        con: &mut MultiplexedConnection,
        ledger: &Arc<Ledger>,
        r: &mut Repair,
    ) -> Result<(), Lost> {
        let name = Arc::clone(&ledger.name);
        if r.known {
            self.known(con, &[&name]).await?;
            r.known = false;
        }
        if r.leases > 0 {
            let gone: Vec<String> = match self.leases.get_mut(&name) {
                Some(list) => {
                    let take = (r.leases as usize).min(list.len());
                    list.drain(list.len() - take..).collect()
                }
                None => Vec::new(),
            };
            if !gone.is_empty() {
                let [_, _, lease] = self.keys(&name);
                let _: i64 = self
                    .io(redis::cmd("ZREM").arg(lease).arg(gone).query_async(con))
                    .await?;
            }
            r.leases = 0;
        }
        if r.successes > 0 {
            // Counted in one script run: exactly once, or not at all.
            self.probe_result(con, &name, String::new(), true, r.successes)
                .await?;
            r.successes = 0;
        }
        let breaker = self.breaker(&name);
        if r.opens > 0 {
            if let Some(rem) = breaker.as_ref().and_then(|b| b.open_remaining()) {
                self.opened(con, &name, rem.as_millis().max(1) as u64, r.reopen)
                    .await?;
            }
            (r.opens, r.reopen) = (0, false);
        }
        if r.close {
            if breaker.is_some_and(|b| b.state() == State::Closed) {
                self.closed(con, &name).await?;
            }
            r.close = false;
        }
        Ok(())
    }

    /// Serves until the connection is lost (`Some(why)`) or the fleet is dropped (`None`).
    async fn serve(
        &mut self,
        mut con: MultiplexedConnection,
        mut stream: Messages,
        rx: &mut mpsc::Receiver<Cmd>,
    ) -> Option<Lost> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_renew = Instant::now();
        loop {
            let step = tokio::select! {
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
                    None => Err(Lost("the subscription closed".to_owned())),
                    Some(msg) => { self.on_message(msg.get_payload_bytes()); Ok(()) }
                },
                _ = tick.tick() => {
                    let renew = last_renew.elapsed() >= self.shared.lease_ttl / 3;
                    if renew {
                        last_renew = Instant::now();
                    }
                    self.on_tick(&mut con, renew).await
                }
            };
            // Catch up with what a full queue dropped (one atomic load when nothing was).
            let step = match step {
                Ok(()) => self.repair_dirty(&mut con).await,
                err => err,
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
        if m.replica == self.shared.replica {
            return; // our own echo: applied already
        }
        let view = match m.kind {
            Kind::Open { ms, level } => View::open(ms, level),
            Kind::Close | Kind::Reset => View::closed(),
            Kind::ForcedOpen => View::manual(State::ForcedOpen),
            Kind::Disabled => View::manual(State::Disabled),
        };
        let mut local = self.shared.local();
        local.views.insert(m.name.clone(), view);
        if let Some(b) = local.members.get(&m.name).and_then(|mb| mb.breaker.upgrade()) {
            match m.kind {
                Kind::Close => {
                    b.follow_close();
                }
                Kind::Reset => b.follow_manual(State::Closed),
                _ => view.apply(&b),
            }
        }
    }

    fn breaker(&self, name: &str) -> Option<Arc<CircuitBreaker>> {
        self.shared
            .local()
            .members
            .get(name)
            .and_then(|m| m.breaker.upgrade())
    }

    /// Adopts what a script answered: `{state, ms, level}`.
    fn follow(&self, name: &str, answer: &(String, i64, i64)) {
        let (state, ms, level) = answer;
        let Some(view) = View::from_fleet(state, *ms, *level) else {
            return;
        };
        let mut local = self.shared.local();
        local.views.insert(name.to_owned(), view);
        if let Some(b) = local.members.get(name).and_then(|m| m.breaker.upgrade()) {
            view.apply(&b);
        }
    }

    fn keys(&self, name: &str) -> [String; 3] {
        self.shared.keys.breaker(name)
    }

    async fn opened(
        &mut self,
        con: &mut MultiplexedConnection,
        name: &str,
        ms: u64,
        from_half_open: bool,
    ) -> Result<(), Lost> {
        let [hash, open, lease] = self.keys(name);
        let answer: (String, i64, i64) = self
            .io(scripts::open()
                .key(hash)
                .key(open)
                .key(lease)
                .key(self.shared.keys.names())
                .arg(ms)
                .arg(if from_half_open { "1" } else { "0" })
                .arg(&self.shared.replica)
                .arg(name)
                .arg(self.shared.keys.channel())
                .invoke_async(con))
            .await?;
        self.follow(name, &answer);
        Ok(())
    }

    /// Adds `names` to the namespace's set of breaker names.
    async fn known(&mut self, con: &mut MultiplexedConnection, names: &[&Arc<str>]) -> Result<(), Lost> {
        if names.is_empty() {
            return Ok(());
        }
        let mut sadd = redis::cmd("SADD");
        sadd.arg(self.shared.keys.names());
        for n in names {
            sadd.arg(&***n);
        }
        let _: i64 = self.io(sadd.query_async(con)).await?;
        Ok(())
    }

    /// Shares a close after this replica's probes succeeded.
    async fn closed(&mut self, con: &mut MultiplexedConnection, name: &Arc<str>) -> Result<(), Lost> {
        let [hash, open, lease] = self.keys(name);
        let answer: (String, i64, i64) = self
            .io(scripts::close()
                .key(hash)
                .key(open)
                .key(lease)
                .arg(&self.shared.replica)
                .arg(&**name)
                .arg(self.shared.keys.channel())
                .invoke_async(con))
            .await?;
        self.leases.remove(name);
        if answer.0 != "closed" {
            self.follow(name, &answer);
        }
        Ok(())
    }

    /// Counts `n` probe successes, or one failure, and gives back `member`'s lease.
    async fn probe_result(
        &mut self,
        con: &mut MultiplexedConnection,
        name: &Arc<str>,
        member: String,
        ok: bool,
        n: u32,
    ) -> Result<(), Lost> {
        let threshold = self.breaker(name).map_or(1, |b| b.config().success_threshold());
        let [hash, open, lease] = self.keys(name);
        let answer: (String, i64, i64) = self
            .io(scripts::probe()
                .key(hash)
                .key(open)
                .key(lease)
                .arg(member)
                .arg(if ok { "1" } else { "0" })
                .arg(threshold)
                .arg(&self.shared.replica)
                .arg(&**name)
                .arg(self.shared.keys.channel())
                .arg(n)
                .invoke_async(con))
            .await?;
        if answer.0 == "closed" {
            if let Some(b) = self.breaker(name) {
                b.follow_close();
            }
            self.release_all(con, name).await?;
        }
        Ok(())
    }

    async fn handle(&mut self, con: &mut MultiplexedConnection, cmd: Cmd) -> Result<(), Lost> {
        let shared = Arc::clone(&self.shared);
        let channel = shared.keys.channel();
        match cmd {
            Cmd::Opened {
                ledger,
                ms,
                from_half_open,
            } => {
                let name = Arc::clone(&ledger.name);
                self.release_all(con, &name).await?;
                self.opened(con, &name, ms, from_half_open).await?;
                ledger.open_shared();
                Ok(())
            }
            Cmd::Closed { ledger } => self.closed(con, &ledger.name).await,
            Cmd::Probe { ledger, ok, leased } => {
                let name = Arc::clone(&ledger.name);
                let member = if leased {
                    self.leases.get_mut(&name).and_then(Vec::pop).unwrap_or_default()
                } else {
                    String::new()
                };
                self.probe_result(con, &name, member, ok, 1).await
            }
            Cmd::WantLease { name } => self.want_lease(con, name).await,
            Cmd::Log {
                name,
                from,
                to,
                reason,
                wall_ms,
            } => {
                let _: String = self
                    .io(redis::cmd("XADD")
                        .arg(shared.keys.log())
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(LOG_MAX_LEN)
                        .arg("*")
                        .arg("replica")
                        .arg(&shared.replica)
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
                        .query_async(con))
                    .await?;
                Ok(())
            }
            Cmd::Known { ledger } => self.known(con, &[&ledger.name]).await,
            Cmd::Manual {
                name,
                to,
                known_only,
                reply,
            } => {
                let [hash, open, lease] = self.keys(&name);
                let result: Result<(String, i64, i64), Lost> = self
                    .io(scripts::manual()
                        .key(hash)
                        .key(open)
                        .key(lease)
                        .key(shared.keys.names())
                        .arg(to.as_str())
                        .arg(&shared.replica)
                        .arg(&name)
                        .arg(&channel)
                        .arg(if known_only { "1" } else { "0" })
                        .invoke_async(con))
                    .await;
                match result {
                    Ok((answer, _, _)) if answer == "unknown" => {
                        let _ = reply.send(Ok(false));
                        Ok(())
                    }
                    Ok(_) => {
                        {
                            let mut local = shared.local();
                            local.views.insert(name.clone(), View::manual(to));
                            if let Some(b) = local.members.get(&name).and_then(|m| m.breaker.upgrade()) {
                                b.follow_manual(to);
                            }
                        }
                        let _ = reply.send(Ok(true));
                        Ok(())
                    }
                    Err(lost) => {
                        let _ = reply.send(Err(FleetError::Redis(lost.0.clone())));
                        Err(lost)
                    }
                }
            }
            Cmd::Transitions { name, limit, reply } => {
                let scan = (limit.max(1) * 20).min(LOG_MAX_LEN);
                let result: Result<Vec<(String, Vec<String>)>, Lost> = self
                    .io(redis::cmd("XREVRANGE")
                        .arg(shared.keys.log())
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(scan)
                        .query_async(con))
                    .await;
                match result {
                    Ok(entries) => {
                        let list = entries
                            .into_iter()
                            .filter_map(|(id, fields)| logged(id, &fields))
                            .filter(|t| t.name == name)
                            .take(limit)
                            .collect();
                        let _ = reply.send(Ok(list));
                        Ok(())
                    }
                    Err(lost) => {
                        let _ = reply.send(Err(FleetError::Redis(lost.0.clone())));
                        Err(lost)
                    }
                }
            }
        }
    }

    async fn want_lease(&mut self, con: &mut MultiplexedConnection, name: Arc<str>) -> Result<(), Lost> {
        let Some(member) = self
            .shared
            .local()
            .members
            .get(&*name)
            .map(|m| Arc::clone(&m.gate))
        else {
            return Ok(());
        };
        let gate = member;
        let Some(b) = self.breaker(&name) else {
            return Ok(());
        };
        let cap = b.config().half_open_max_calls();
        let held = self.leases.get(&name).map_or(0, Vec::len);
        if held >= cap as usize {
            return Ok(());
        }
        self.seq += 1;
        let id = format!("{}:{}", self.shared.replica, self.seq);
        let [hash, open, lease] = self.keys(&name);
        let answer: (String, i64, i64) = self
            .io(scripts::acquire()
                .key(hash)
                .key(open)
                .key(lease)
                .arg(&id)
                .arg(self.shared.lease_ttl.as_millis() as u64)
                .arg(cap)
                .invoke_async(con))
            .await?;
        match answer.0.as_str() {
            "granted" => {
                self.leases.entry(Arc::clone(&name)).or_default().push(id);
                gate.available.fetch_add(1, Ordering::AcqRel);
                gate.idle_ticks.store(0, Ordering::Relaxed);
                gate.asked.store(false, Ordering::Release);
            }
            "full" => {}
            _ => self.follow(&name, &answer),
        }
        Ok(())
    }

    /// Gives back this replica's unused leases of `name`.
    async fn release_unused(
        &mut self,
        con: &mut MultiplexedConnection,
        name: &Arc<str>,
        n: u32,
    ) -> Result<(), Lost> {
        let Some(list) = self.leases.get_mut(name) else {
            return Ok(());
        };
        let take = (n as usize).min(list.len());
        let gone: Vec<String> = list.drain(list.len() - take..).collect();
        if gone.is_empty() {
            return Ok(());
        }
        let [_, _, lease] = self.keys(name);
        let _: i64 = self
            .io(redis::cmd("ZREM").arg(lease).arg(gone).query_async(con))
            .await?;
        Ok(())
    }

    /// Gives back every lease of `name` not in use.
    async fn release_all(&mut self, con: &mut MultiplexedConnection, name: &Arc<str>) -> Result<(), Lost> {
        let gate = self
            .shared
            .local()
            .members
            .get(&**name)
            .map(|m| Arc::clone(&m.gate));
        if let Some(gate) = gate {
            let n = gate.available.swap(0, Ordering::AcqRel);
            self.release_unused(con, name, n).await?;
        }
        Ok(())
    }

    async fn on_tick(&mut self, con: &mut MultiplexedConnection, renew: bool) -> Result<(), Lost> {
        let _: String = self.io(redis::cmd("PING").query_async(con)).await?;
        let members: Vec<Tracked> = self
            .shared
            .local()
            .members
            .iter()
            .map(|(n, m)| (Arc::from(n.as_str()), Arc::clone(&m.gate), m.breaker.upgrade()))
            .collect();
        for (name, gate, breaker) in members {
            gate.asked.store(false, Ordering::Release);
            if !self.leases.contains_key(&name) {
                continue;
            }
            let half_open = breaker.is_some_and(|b| b.state() == State::HalfOpen);
            let idle = gate.idle_ticks.fetch_add(1, Ordering::Relaxed) + 1 >= IDLE_TICKS;
            if !half_open || idle {
                self.release_all(con, &name).await?;
            }
        }
        self.leases.retain(|_, v| !v.is_empty());
        if renew && !self.leases.is_empty() {
            let ttl = self.shared.lease_ttl.as_millis() as u64;
            let all: Vec<(Arc<str>, Vec<String>)> = self
                .leases
                .iter()
                .map(|(k, v)| (Arc::clone(k), v.clone()))
                .collect();
            for (name, ids) in all {
                let [_, _, lease] = self.keys(&name);
                let _: i64 = self
                    .io(scripts::renew().key(lease).arg(ttl).arg(ids).invoke_async(con))
                    .await?;
            }
        }
        Ok(())
    }

    /// After a lost connection: leases held in Redis expire on their own.
    fn forget_leases(&mut self) {
        for m in self.shared.local().members.values() {
            m.gate.available.store(0, Ordering::Release);
            m.gate.ledger.forget_leases();
        }
        self.leases.clear();
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
