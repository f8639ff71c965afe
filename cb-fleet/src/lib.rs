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
//!   for the time that remains, through Redis pub/sub; with an
//!   [open quorum](#open-quorum), once enough distinct replicas opened it.
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
//!   after about a second. A probe that outlives its open period (a failed
//!   probe elsewhere reopened the fleet) keeps its slot until it ends, so the
//!   cap holds across periods too.
//! * **Probe successes are counted fleet-wide**, each once, in the period it
//!   was admitted in; `success_threshold` of them close every replica. A
//!   failed probe reopens every replica, and the backoff level is shared.
//!   A throttled probe (or any open whose reason is
//!   [`Reason::Throttled`](cb_runtime::Reason::Throttled)) reopens every
//!   replica too, but keeps the level: a rate limit is not an outage.
//! * **Manual control** with a fleet scope: [`Fleet::force_open`],
//!   [`Fleet::reset`], [`Fleet::disable`]. See "Which wins" below.
//! * **A transition log**: every transition of every replica goes to a capped
//!   Redis stream per breaker; read it with [`Fleet::transitions`]. Its
//!   reasons are [`Reason::as_str`](cb_runtime::Reason::as_str)'s words, the
//!   runtime's one table of reasons: a new reason needs nothing here.
//!
//! # Keyed breakers
//!
//! Every key of a [`Family`](cb_runtime::Family) is shared like any breaker,
//! under its own identity, [`CircuitBreaker::id`]: the family's name, U+001F
//! ([`cb_runtime::family::ID_SEPARATOR`]) and the key, as is, in its Redis
//! keys (`b:openai\u{1f}gpt-4o`, ...), its messages and its transition log.
//! A name or key may hold no control character, and U+001F is the one
//! [`is_shareable_name`] allows, once, between a non-empty name and key: a
//! key's identity never equals an unkeyed breaker's name, nor another key's.
//! `gpt-4o` opening on one replica opens `gpt-4o` on every replica that has
//! that key, and no other key. The fleet-wide commands take the identity
//! (`fleet.force_open("openai\u{1f}gpt-4o")`).
//!
//! * **A replica without the key** has nothing to refuse: it creates no
//!   key for a message. It keeps the fleet's state of the identity while it
//!   is not closed, as for any name it has no breaker of, so a key it
//!   creates later starts in the fleet's state (an open key refuses its
//!   first call).
//! * **Attaching a key** (at its first call) takes the fleet's local lock
//!   and queues one message for the background task: no network, no wait.
//! * **An evicted key** (see the family's `max_keys`) leaves the fleet on
//!   this replica at once: its breaker gets no more fleet state, reports
//!   nothing more, and its unused probe leases go back at the next tick.
//!   Its state in Redis stays, for the replicas that still have the key;
//!   unused by all, it is forgotten after [`name_ttl`](FleetBuilder::name_ttl).
//!
//! # Consistency
//!
//! **Versions from Redis.** Every change of a breaker's fleet state (an
//! open, its extension, the start of a half-open probe period, a close, a
//! fleet-wide reset, force-open or disable, and the backoff level with them)
//! is made by one Lua script, which gives the breaker a new *version* inside
//! the same script: above the stored one, and at least Redis's clock in
//! microseconds, so a server restarted empty never hands out a version that
//! some replica already holds. Every script's answer and every published
//! message carries the version. A replica holds, per breaker, the version of
//! the state it applied last, and applies an answer or a message only if its
//! version is newer. The script's answer and the pub/sub message of one
//! change arrive on two connections in either order; a message published
//! before a replica's own script ran is older than that script's answer, and
//! is dropped.
//!
//! The fleet's half-open is the open state of the last version after its
//! open marker expired (Redis's key expiry ends the open period; no script
//! runs then, so there is no new version), or a half-open that a replica
//! asking for a lease gave a Redis that held no state.
//!
//! **Periods.** The version that opened the breaker is its *period*. A
//! probe is admitted in the period its replica knows, and its result is
//! reported with that period and a unique id: Redis counts a success only
//! in the current period, only while half-open, and only once per id, so a
//! report retried after its answer was lost (the script ran, the answer came
//! after `io_timeout`) is not counted twice, and a success from before a
//! failed probe reopened the fleet closes nothing. A failed probe reopens
//! the fleet (raising the backoff level) only from the period it belongs to;
//! an open from closed is always shared. Leases are slots of the fleet's cap,
//! whatever the period; a replica gives one back per probe that ends, so a
//! probe never frees a slot another one still needs (also after a reconnect:
//! a lease that lapsed while away is found on reconnecting and freed by
//! nobody). A lease is granted in a period and its probe's result reported
//! with that period, but its slot is not voided when a new period starts:
//! a probe of an old period that still runs still loads the dependency, and
//! counting it keeps "never more than `half_open_max_calls` probes at once"
//! true across periods. When probes of two periods run at once on one replica, which of
//! them ended is not known: the result is then given back uncounted, never
//! counted in the wrong period.
//!
//! **Resync.** On (re)connecting, a replica subscribes first, then shares
//! what it could not while away (its ledger, below), renews the leases it
//! still holds, and reads, in batches, the fleet's state of every breaker it
//! has and of every breaker the fleet holds open, forced open or disabled,
//! each with its version, and takes it as it is now:
//!
//! * Redis holds no state (a server restarted empty): the replica gives it
//!   its own, if its breaker is open or half-open (with the time left and
//!   the backoff level) or forced open or disabled by the fleet. The first
//!   replica to do so sets it; the others adopt it. Probe successes then
//!   close every replica again, and the backoff level goes on.
//! * The fleet's version is the one the replica applied last and local
//!   control changed the breaker since: local control holds (a stored
//!   fleet-wide command is not applied a second time).
//! * An open of the replica's own that the fleet has not heard of (made
//!   while away): it is shared, as any open.
//! * Otherwise the fleet's state is applied, as a message would be.
//!
//! **Bounded work.** No script touches more than a few hundred keys: names
//! are read and renewed in batches of 100. A replica reads only the names it
//! has and the names whose fleet state is not closed (a sorted set of them,
//! paged). Names are kept in a sorted set scored by when a replica last had
//! them; a name nobody has renewed for [`name_ttl`](FleetBuilder::name_ttl)
//! (default a week) is forgotten, a batch at a time, and its keys expire.
//!
//! | message kind (`v2\|kind\|replica\|version\|period\|ms\|level\|name`) | older version | same version | newer version |
//! |---|---|---|---|
//! | `open` (`ms` > 0: open for the time left) | dropped | dropped (applied already) | opens for the time left, never shortening its own open; leaves forced-open and disabled breakers alone |
//! | `open` (`ms` 0: the fleet is half-open) | dropped | dropped | an open or half-open breaker stays as it is (its probes stay valid); a closed one opens with no time left (half-open) |
//! | `close` | dropped | dropped | closes an open or half-open breaker |
//! | `reset` | dropped | dropped | closes the breaker, whatever its state (local control included) |
//! | `forced_open`, `disabled` | dropped | dropped | forces it open, or disables it, whatever its state |
//!
//! A script's answer is applied by the same rules. A replica's own messages
//! come back to it, and are dropped by version (its answer came first) or
//! applied (they came first; the answer is then dropped): the same state.
//!
//! # Which wins: fleet or local control
//!
//! A fleet-wide command ([`Fleet::force_open`], `?scope=fleet`) is stored in
//! Redis with its version and applied to every replica when it arrives, and
//! to every replica that joins later; it replaces whatever state each
//! replica had, local control included. Local control
//! ([`cb_runtime::CircuitBreaker::reset`] and friends, the admin API without
//! a scope) stays local: it is not published, and it wins on that replica
//! until a newer fleet state reaches it (a fleet-wide command, or a fleet
//! open over a local reset), also across reconnects: a resync does not apply
//! a state with the version the replica already applied. Automatic fleet
//! states (opens, closes) never override a local `force_open` or `disable`;
//! a fleet-wide force-open or disable that the fleet ended while the replica
//! was away is ended on it.
//!
//! Replicas with different configurations for one breaker: the
//! configuration of the replica that opens a period governs that period
//! fleet-wide: its open duration, its `half_open_max_calls` as the cap, and
//! its `success_threshold` as the successes, counted from any replicas,
//! that close the fleet. Each replica's own thresholds decide when it opens,
//! and when its own probes close it; such a close closes the fleet too, if
//! the fleet is still half-open in the period those probes belonged to. A replica that attaches a breaker whose
//! configuration differs from the fleet's logs a WARN naming both (and the
//! replica the fleet's is from). Two processes with the same replica id are
//! told apart (each has a random instance id) and the second logs a WARN.
//!
//! # Open quorum
//!
//! With [`FleetBuilder::open_quorum`]`(n)` above 1 (default 1: any
//! replica's open opens the fleet), the fleet opens a breaker only once `n`
//! distinct replicas have opened it on their own within its open duration,
//! so one replica with a broken path to a healthy dependency (a bad NIC, a
//! full connection pool, a stale DNS cache) cannot open every replica.
//!
//! * **Counted in Redis, in the open script.** A replica's own open (any
//!   trigger, or a failed probe of its own) made while the fleet is not in
//!   an open period goes into a sorted set per breaker, `quorum:<name>`,
//!   by replica id, scored by when it stops counting: Redis's `TIME` when
//!   the script ran plus the breaker's open duration. Expired entries are
//!   dropped by the same script before it counts, so old opens never add
//!   up. The same replica opening again renews its entry and counts once
//!   (two processes sharing a replica id count once too).
//! * **Below the quorum the open stays local.** The script changes nothing
//!   else: no version, no message, no open marker (a below-quorum report is
//!   not a versioned change, and its answer is not followed). The replica's
//!   breaker stays open on its own for its open duration, then probes on its
//!   own, without fleet leases; those probes decide only this replica (a
//!   success closes it; a failure is an open of its own again, counted
//!   again). [`Fleet::local_open`] says `local open, awaiting quorum k/n`,
//!   and the fleet's admin router marks the breaker with
//!   `"fleet": {"open": "local", ...}`. Other replicas, and replicas that
//!   join meanwhile, stay closed.
//! * **At the quorum** the open that reaches it is shared as any open: a new
//!   version and period, published; every replica opens for the time that
//!   remains, and a replica whose open was local takes the fleet's (its mark
//!   goes). From then on the period runs as without a quorum: an extension,
//!   a failed fleet probe's reopen and the close need no quorum.
//! * **Manual control** ignores the quorum: [`Fleet::force_open`] forces
//!   every replica open at once. A replica that finds no state in Redis on
//!   resync (a server restarted empty) counts its own open towards the
//!   quorum instead of seeding it.
//!
//! Set it in code or in the `[fleet]` table (`open_quorum = 2`); 0 or more
//! than 10,000 is refused.
//!
//! # Shared failure counts
//!
//! With [`FleetBuilder::share_failures`]`(true)`, the fleet also opens a
//! breaker on the counts of all replicas together: with 30 replicas each
//! seeing a thirtieth of a provider's failures, no replica crosses its
//! thresholds for a long time, while the fleet has long seen enough.
//!
//! * **Batched, off the call path.** Every
//!   [`share_interval`](FleetBuilder::share_interval) (default 1 s) the
//!   background task reads each breaker's totals (successes, failures with
//!   timeouts, slow calls) and sends what changed since its last report: one
//!   script run per breaker that had calls, none for an idle one. Calls
//!   never wait for it. A breaker created after the join is counted from its
//!   start; one the registry held at the join, from then on. A report lost
//!   with the connection is not sent again (counts are sent at most once).
//! * **A fleet-wide window in Redis** (`win:<name>`), summed over the
//!   breaker's window: for a time window, ten buckets of a tenth of it, as
//!   the runtime's own; for a count window of `n` calls, the sums scaled
//!   down to `n` calls when they exceed it (the last `n` calls fleet-wide,
//!   approximately). Counted only while the fleet is closed; emptied when
//!   it opens.
//! * **The breaker's thresholds, on the sums.** The fleet opens (a
//!   versioned open, shared as any, with the reporting replica's open
//!   duration) when the summed failure rate, or slow-call rate, reaches the
//!   breaker's threshold over at least `minimum_calls` calls, or when the
//!   fleet's consecutive failures reach `failure_threshold`: a batch's
//!   failures add to them, and a batch with a success sets them to that
//!   replica's failures since its last success. A shared-counts open is the
//!   whole fleet's evidence: the [open quorum](#open-quorum) does not apply
//!   to it. Each replica still opens on its own counts as before.
//!
//! Dead calls (calls let through and failed) before every replica is open,
//! in a uniform outage where every call fails; calls round-robin across the
//! replicas at one per millisecond fleet-wide; `minimum_calls` 20, failure
//! rate 50 %, a count window of 100; mean of 5 runs (min..max). The floor is
//! one replica's threshold, 20 calls, plus the calls in flight.
//! Measured with `cargo run --release -p cb-fleet --example dead_calls`
//! (one loopback redis-server, 2 shared cores):
//!
//! | replicas | `share_failures(false)` | `share_failures(true)`, `share_interval` 10 ms |
//! |---|---|---|
//! | 1 | 20 (20..20) | 20 (20..20) |
//! | 3 | 59 (58..59) | 22 (21..22) |
//! | 10 | 192 (191..192) | 22 (21..24) |
//!
//! Without sharing, the fleet opens when the first replica reaches its own
//! 20 calls, after about 20 × R calls fleet-wide. With sharing it opens
//! within 1.2× the floor, whatever R; what it adds over the floor is the
//! calls made during one `share_interval` and one round trip, so at the
//! default 1 s interval add the calls of a second.
//!
//! Sharing does not slow calls: `cargo bench --bench fleet_overhead` (in
//! the workspace root) measured a closed call at 7.09 ns with no fleet,
//! 7.08 ns joined, and 7.09 ns joined with `share_failures(true)` reporting
//! every 10 ms, since the reports are read from the counts the breaker keeps
//! anyway, by the background task.
//!
//! # No network on the call path
//!
//! `try_acquire` and `call` never wait on Redis. One background task per
//! [`Fleet`] does all the I/O, fed by a bounded queue ([`FleetBuilder::queue_capacity`]);
//! when it is full a message is dropped and counted ([`Fleet::dropped_messages`]),
//! but what it said is kept per breaker and sent when the task catches up
//! (as is a message whose script got no answer): probe reports are sent
//! again with their ids, a lost open is shared with the time that remains,
//! a lost close if the breaker is still closed. Only transition-log entries
//! are lost. An open is shared with the time its breaker has left when the
//! task gets to it, so a delay in the queue never stretches the fleet's open
//! period, whose end is then Redis's (the open marker's expiry). Time comes
//! from Redis only (key expiry, `PTTL`, `TIME` in scripts); wall clocks of
//! different hosts are never compared.
//!
//! # Losing Redis
//!
//! Calls go on with local state; no caller sees an error from the fleet.
//! [`Fleet::is_connected`] turns false, the gauge
//! `circuit_breaker_fleet_connected` drops to 0 and one WARN is logged. The
//! task reconnects with jittered exponential backoff (50 ms to 2 s) and
//! resynchronises (above). While disconnected: opens are not propagated,
//! and probes are not leased, so up to R × `half_open_max_calls` probes may
//! run across R replicas (their results decide only their own replica);
//! transitions are not logged. A fleet command that gets no answer in time
//! fails with [`FleetError::TimedOut`]: it may have run, and running it
//! again is safe (it sets a state).
//!
//! # Breakers, fleets and registries
//!
//! A breaker created before [`join`](FleetBuilder::join) is shared from the
//! join on, an open it is in included. A breaker removed from the registry
//! ([`Registry::remove`](cb_runtime::Registry::remove)) leaves the fleet:
//! it gets no more messages, its unused leases go back within a tick
//! (200 ms) and a running probe's when it ends. A second [`Fleet`] joined to
//! the same registry (or a rejoin after dropping the first) takes every
//! breaker over: its leases cap the probes, and the earlier fleet leaves
//! them alone.
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
//! # Keys
//!
//! Every key and channel of a namespace is `cb:{<namespace>}:...` (a Redis
//! Cluster hash tag: one slot per namespace), in every mode, and every
//! script declares the keys it touches.
//!
//! # Redis Cluster
//!
//! `Fleet::cluster_builder(&["redis://10.0.0.1:6379", ...])`, or
//! `Fleet::builder(url).cluster(true)`, joins a Redis Cluster (7.0 or later)
//! through redis-rs's cluster client; the nodes given are seeds, the
//! cluster tells the rest.
//!
//! - **One slot per namespace.** The hash tag puts every key of a namespace
//!   in one slot, so each script runs atomically on that slot's master, as
//!   on one server. A namespace is one breaker set's unit of scale: spread
//!   services over namespaces to spread them over masters.
//! - **Sharded pub/sub.** Scripts `SPUBLISH` to the namespace's channel and
//!   replicas `SSUBSCRIBE` to it (RESP3 pushes): a message goes to the
//!   slot's shard alone, not to every node over the cluster bus as
//!   `PUBLISH` would.
//! - **Failover.** When the slot's master dies, calls go on with local
//!   state (nothing on the call path waits for Redis), and what the fleet
//!   could not hear meanwhile is kept per breaker. A node's disconnection,
//!   or the cluster client subscribing again after a failover, ends the
//!   replica's connection on purpose: it reconnects once the promoted
//!   replica serves the slot, shares what it kept and resynchronises (reads
//!   every breaker's fleet state), since messages published in between are
//!   not replayed. `cb-fleet/tests/cluster.rs` starts 3 masters with a
//!   replica each, kills the namespace's master, promotes its replica
//!   (`CLUSTER FAILOVER TAKEOVER`), and checks that every call of a replica
//!   calling all along succeeded and that an open made while the slot had
//!   no master reached the other replica after.
//! - **ACL.** The single-server ACL (see the guide's fleet chapter,
//!   `docs/guide/fleet.md`, "ACL") plus `+cluster|slots +ssubscribe
//!   +sunsubscribe +spublish`, on every node; the cluster test runs it.
//! - TLS: `rediss://` node URLs, with the same `tls_*` settings as one
//!   server (built, not yet tested against a TLS cluster).
//! - **Costs** (computed from the table below, not measured on a cluster):
//!   a namespace costs its slot's master what it costs one server, plus
//!   that master's replication to its replicas; the other masters carry
//!   none of it. Sharded messages reach only the nodes of that shard, where
//!   `PUBLISH` would cross the cluster bus to every node.
//!
//! # Costs
//!
//! What one shared breaker costs Redis, measured by
//! `cargo run --release -p cb-fleet --example costs` (one redis-server 7.0,
//! every replica in one process on a 2-core machine; each phase 4 s, every
//! replica calling every 10 ms; an outage fails every call, and the breaker
//! opens, probes after its 1 s open duration, and opens again):
//!
//! | replicas | `share_failures` | Redis memory (keys) | commands/s per replica, at rest | commands/s per replica, in an outage | bytes/s Redis sends, at rest | bytes/s Redis sends, in an outage |
//! |---|---|---|---|---|---|---|
//! | 10 | false | 1.3 KiB (12) | 7.95 | 26.6 | 523 | 3,437 |
//! | 10 | true | 1.4 KiB (13) | 17.0 | 27.3 | 1,007 | 3,576 |
//! | 100 | false | 10.6 KiB (102) | 7.92 | 22.8 | 4,203 | 41,340 |
//! | 100 | true | 10.5 KiB (103) | 16.9 | 24.5 | 8,469 | 34,245 |
//! | 1,000 | false | 116 KiB (1,002) | 7.75 | 22.3 | 40,637 | 1,101,328 |
//! | 1,000 | true | 116 KiB (1,003) | 16.7 | 22.9 | 82,552 | 1,312,934 |
//!
//! - **Memory** (read at rest) is about 116 bytes per replica, the key that
//!   claims its replica id, whatever the number of breakers, plus about
//!   170 bytes per breaker (its hash and its entry in the names set). An
//!   outage adds the breaker's open marker, probe and quorum sets, and its
//!   transition stream, which is capped. It does not grow with calls.
//! - **Commands at rest** are the background task's ticks (every 200 ms:
//!   lease renewals and touches of the breakers in use), about 8 per second
//!   per replica, so Redis sees about 8 × replicas per second; with
//!   `share_failures` the reports (one round trip per breaker per
//!   `share_interval`, here the default 1 s, plus their window reads) about
//!   double it. Calls themselves send nothing.
//! - **In an outage** a replica adds the open script, the probe lease and the
//!   probe's result: about 22 to 27 commands per second per replica.
//! - **Bytes** are the script answers plus the pub/sub deliveries: one
//!   published change reaches every replica, so an outage's bytes grow with
//!   replicas squared over the period (1.1 MB/s with 1,000 replicas opening
//!   every second); at rest nothing is published. The outage columns vary
//!   from run to run with how the replicas' reopens fall: a second run gave
//!   17.6 and 21.9 commands/s and 0.74 and 1.75 MB/s for the 1,000-replica
//!   rows; the at-rest columns and the memory repeat within 1 %.

#![warn(missing_docs)]
#![deny(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use cb_runtime::{CircuitBreaker, Registry, State};
use tokio::sync::{mpsc, oneshot};

#[cfg(feature = "admin")]
pub mod admin;
mod builder;
mod config;
mod coord;
mod gate;
mod ledger;
pub mod message;
mod names;
mod scripts;
mod server;
mod task;
#[doc(hidden)]
pub mod testing;
mod tls;
mod view;

pub use builder::FleetBuilder;
pub(crate) use coord::fingerprint;
use gate::Gate;
use view::View;

pub use names::{is_shareable_name, MAX_NAMESPACE_LEN, MAX_NAME_LEN, MAX_REPLICA_ID_LEN};

/// How long a probe lease lives without renewal, by default.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(3);
/// How long one Redis command or connection attempt may take, by default.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_millis(500);
/// The background task's queue, by default.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;
/// Each breaker's transition stream keeps about this many entries.
pub const LOG_MAX_LEN: usize = 1_000;
/// How long Redis keeps a breaker's name and state after the last replica
/// that had it stopped renewing it, by default (a week).
pub const DEFAULT_NAME_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often each replica reports its call counts with
/// [`FleetBuilder::share_failures`], by default.
pub const DEFAULT_SHARE_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest [`FleetBuilder::share_interval`].
pub const MIN_SHARE_INTERVAL: Duration = Duration::from_millis(10);

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
    /// Redis answered with an error.
    Redis(String),
    /// No answer in time. The command may still have run in Redis; fleet
    /// commands set a state, so retrying one is safe.
    TimedOut(String),
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
            FleetError::TimedOut(e) => write!(
                f,
                "fleet command timed out ({e}): it may have run in Redis; retrying it is safe"
            ),
        }
    }
}

impl std::error::Error for FleetError {}

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
        FleetBuilder::new(url.to_owned())
    }

    /// Starts a fleet setup with a Redis Cluster, reached first through any
    /// of the nodes at `urls` (`redis://host:port`, each a master or a
    /// replica of the cluster; the cluster tells the rest): the same as
    /// [`builder`](Self::builder) with [`cluster(true)`](FleetBuilder::cluster).
    ///
    /// ```no_run
    /// # async fn join() -> Result<(), cb_fleet::FleetError> {
    /// let fleet = cb_fleet::Fleet::cluster_builder(&["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"])
    ///     .namespace("checkout")
    ///     .join(cb_runtime::registry())
    ///     .await?;
    /// # drop(fleet); Ok(()) }
    /// ```
    pub fn cluster_builder(urls: &[&str]) -> FleetBuilder {
        FleetBuilder::new(urls.join(",")).cluster(true)
    }

    /// The fleet settings of the environment (`CB_FLEET_URL`,
    /// `CB_FLEET_NAMESPACE`, `CB_FLEET_REPLICA_ID`, `CB_FLEET_OPEN_QUORUM`
    /// (1 to 10000), `CB_FLEET_SHARE_FAILURES` (`true` or `false`),
    /// `CB_FLEET_SHARE_INTERVAL` (a duration of at least 10 ms, such as
    /// `250ms`) and `CB_FLEET_CLUSTER` (`true` or `false`; with `true` the URL
    /// may list several cluster nodes, comma-separated)) over the `[fleet]` table
    /// of the config file named by `CB_CONFIG`, if any: `Ok(None)` when no URL
    /// is configured (fleet mode off). See [`from_config`](Self::from_config).
    pub fn from_env() -> Result<Option<FleetBuilder>, FleetError> {
        let path = std::env::var("CB_CONFIG").ok();
        config::settings(path.as_deref().map(std::path::Path::new), &|k| {
            std::env::var(k).ok()
        })
    }

    /// The fleet settings of the `[fleet]` table of the TOML file at `path`
    /// (`url`, `namespace`, `replica_id`, `name_ttl`, `open_quorum`,
    /// `share_failures`, `share_interval`, `cluster`), with the environment's
    /// `CB_FLEET_*` variables on top: `Ok(None)` when no URL is configured.
    /// An unreadable file, an unknown key or a value of the wrong type is an
    /// error naming it.
    ///
    /// ```toml
    /// [fleet]
    /// url = "redis://cb-fleet:secret@redis.internal:6379/"
    /// namespace = "checkout"
    /// name_ttl = "168h"   # optional: how long Redis keeps names nobody has
    /// open_quorum = 2     # optional: replicas that must open a breaker to open the fleet's
    /// share_failures = true    # optional: the fleet opens on all replicas' counts together
    /// share_interval = "1s"    # optional: how often each replica reports them
    /// cluster = false          # optional: true when `url` lists Redis Cluster nodes, comma-separated
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

    /// The version of breaker `name`'s fleet state that this replica holds
    /// (Redis gave it to the change; see "Consistency" in the crate docs):
    /// `None` when it holds none (the fleet has no state for it, or it has
    /// not heard of it).
    pub fn version(&self, name: &str) -> Option<u64> {
        self.shared.local().views.get(name).map(|v| v.version)
    }

    /// The open quorum ([`FleetBuilder::open_quorum`]).
    pub fn open_quorum(&self) -> u32 {
        self.shared.open_quorum
    }

    /// `Some` while breaker `name` is open (or half-open) here on its own,
    /// below the fleet's open quorum: the fleet has not opened it, and its
    /// probes decide only this replica. `None` otherwise (closed, or in the
    /// fleet's state, or no such shared breaker).
    pub fn local_open(&self, name: &str) -> Option<LocalOpen> {
        let local = self.shared.local();
        let member = local.members.get(name)?;
        let breaker = member.breaker.upgrade()?;
        if !matches!(breaker.state(), State::Open | State::HalfOpen) {
            return None;
        }
        let (opens, quorum) = member.gate.local_open()?;
        Some(LocalOpen { opens, quorum })
    }

    /// Forces breaker `name` open on every replica of the fleet, now and for
    /// replicas that join later, until a fleet-wide [`reset`](Self::reset).
    ///
    /// Like [`reset`](Self::reset) and [`disable`](Self::disable), it sets
    /// a state: a [`FleetError::TimedOut`] command may have run, and running
    /// it again is safe.
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
    /// newest first, from the breaker's own transition stream (which keeps
    /// about [`LOG_MAX_LEN`] entries): a noisy breaker never hides a quiet
    /// one's.
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
        let limit = self.shared.io_timeout * 4;
        match tokio::time::timeout(limit, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(FleetError::Disconnected),
            Err(_) => Err(FleetError::TimedOut(format!("no answer within {limit:?}"))),
        }
    }
}

/// The largest open quorum accepted.
pub const MAX_OPEN_QUORUM: u32 = 10_000;

pub(crate) fn check_open_quorum(n: u32) -> Result<(), FleetError> {
    if (1..=MAX_OPEN_QUORUM).contains(&n) {
        Ok(())
    } else {
        Err(FleetError::invalid(
            "open_quorum",
            n.to_string(),
            "a number of replicas from 1 to 10000",
        ))
    }
}

/// A breaker's open that stays on this replica: fewer than the fleet's
/// open quorum of replicas have opened it within its open duration
/// ([`Fleet::local_open`]). Displayed as
/// `local open, awaiting quorum <opens>/<quorum>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalOpen {
    /// Distinct replicas counted towards the quorum when this replica's
    /// open was last counted in Redis, this one included.
    pub opens: u32,
    /// The fleet's open quorum ([`FleetBuilder::open_quorum`]).
    pub quorum: u32,
}

impl fmt::Display for LocalOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "local open, awaiting quorum {}/{}", self.opens, self.quorum)
    }
}

fn check_name(name: &str) -> Result<(), FleetError> {
    if is_shareable_name(name) {
        Ok(())
    } else {
        Err(FleetError::invalid(
            "name",
            format!("{:?}", name.chars().take(40).collect::<String>()),
            "a breaker name of 1 to 256 bytes without control characters, or a keyed breaker's `<name>\\u{1f}<key>`",
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
    /// This process's instance of the replica id (`<replica>:<random>`): the
    /// prefix of its lease and report ids, and how a second process with
    /// the same replica id is told apart.
    pub(crate) instance: String,
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

/// A shared breaker of this replica.
pub(crate) struct Member {
    pub(crate) breaker: Weak<CircuitBreaker>,
    pub(crate) gate: Arc<Gate>,
    /// Found in the registry once (a breaker is attached just before the
    /// registry holds it).
    pub(crate) seen: AtomicBool,
    /// Created after the join: all its calls are new to the fleet (shared
    /// counts start from zero, not from its totals at the first report).
    pub(crate) fresh: bool,
}

/// What the task and the coordinator share, under one lock (never held
/// across I/O).
#[derive(Default)]
pub(crate) struct Local {
    /// The fleet state this replica holds, per name, with its version: for
    /// every member, and for other names while their fleet state is not
    /// closed (so a breaker created later adopts it at creation).
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
    pub(crate) name_ttl: Duration,
    pub(crate) open_quorum: u32,
    /// With `share_failures`: how often call counts are reported.
    pub(crate) share_interval: Option<Duration>,
    /// How scripts publish: `SPUBLISH` on a cluster.
    pub(crate) publish: scripts::Publish,
    pub(crate) link: Arc<Link>,
    pub(crate) local: Mutex<Local>,
    pub(crate) malformed: AtomicU64,
    pub(crate) registry: &'static Registry,
    /// `join` has attached the breakers the registry held.
    pub(crate) joined: AtomicBool,
}

impl Shared {
    pub(crate) fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn url_shown(&self) -> &str {
        &self.url_shown
    }

    /// `true` while `member` is the breaker of its name in the registry and
    /// this fleet's: a removed breaker, or one a later fleet took over,
    /// gets nothing from this fleet.
    pub(crate) fn is_live(&self, name: &str, member: &Member) -> bool {
        if member.gate.superseded.load(Ordering::Acquire) {
            return false;
        }
        if names::is_key_identity(name) {
            // A key is not in the registry by name: it leaves its family
            // through `detach_key`, which supersedes its gate.
            return true;
        }
        match self.registry.get(name) {
            Some(b) if std::ptr::eq(Arc::as_ptr(&b), member.breaker.as_ptr()) => {
                member.seen.store(true, Ordering::Release);
                true
            }
            Some(_) => false,
            None => !member.seen.load(Ordering::Acquire),
        }
    }
}
