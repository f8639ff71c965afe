//! The Lua scripts that read and change a breaker's fleet state atomically.
//!
//! Per breaker, under `cb:{<namespace>}:` (one hash slot per namespace):
//!
//! * a hash `b:<name>`: `kind` (the last change: `open`, `close`, `reset`,
//!   `forced_open`, `disabled`), `ver` (the breaker's version: bumped by every
//!   change, inside the script that makes it, to above the stored one and to
//!   at least Redis's clock in microseconds, so a server restarted empty
//!   never hands out a version a replica already holds), `per` (the version
//!   that started the current open period), `level` (backoff), `succ` (probe
//!   successes counted in this period), `cap` and `need` (the opener's
//!   `half_open_max_calls` and `success_threshold`: they govern the period),
//!   `cfg` and `by` (a configuration fingerprint and the replica it is
//!   from, for the warning about replicas that disagree);
//! * a marker `open:<name>` that exists while the circuit is open and
//!   expires when its open duration ends (time from Redis's key expiry and
//!   `PTTL`): kind `open` without the marker is the fleet's half-open;
//! * a sorted set `lease:<name>` of probe leases scored by their expiry on
//!   Redis's `TIME` (slots of `cap`, whatever the period: a probe that
//!   outlives its period keeps its slot until it ends; emptied by a close
//!   or a manual command), and a set `done:<name>` of the probe reports
//!   counted in this period (a retried report is counted once; emptied when
//!   a period starts);
//! * a sorted set `quorum:<name>` of the replicas whose own opens count
//!   towards the open quorum, scored by when each count ends (Redis's
//!   `TIME` plus the breaker's open duration); only with a quorum above 1;
//! * a hash `win:<name>`, the fleet's window of shared call counts (with
//!   `share_failures`): per bucket of a tenth of a time window `c<b>`,
//!   `f<b>`, `s<b>` (calls, failures, slow calls; `lo` the oldest bucket
//!   that may be left), or, for a count window, `c`, `f`, `s` scaled down to
//!   the window's size; and `consec`, the fleet's consecutive failures;
//! * a capped stream `log:<name>` of transitions.
//!
//! Per namespace: `names` (a sorted set of breaker names scored by when a
//! replica last had them), `active` (the names whose state is not closed:
//! what a joining replica adopts), `events` (the pub/sub channel) and
//! `replica:<id>` (which process uses a replica id).
//!
//! Every script declares every key it touches (so the layout works on Redis
//! Cluster too) and touches a bounded number of them. Each state-changing
//! script publishes the change with its version and answers the state after
//! it: `{kind, version, period, ms, level}` (`kind` is `none` when Redis holds
//! no state; `ms` is the open marker's `PTTL`, 0 in half-open).

use std::sync::OnceLock;

use redis::Script;

/// Helpers shared by the scripts.
const PRELUDE: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function bump(h)
  local t = redis.call('TIME')
  local clock = t[1] .. string.format('%06d', tonumber(t[2]))
  local v = redis.call('HINCRBY', h, 'ver', 1)
  if v < tonumber(clock) then redis.call('HSET', h, 'ver', clock) end
  return redis.call('HGET', h, 'ver')
end
local function state(h, o)
  local k = redis.call('HGET', h, 'kind')
  if not k then return {'none', '0', '0', '0', '0'} end
  local ms = 0
  if k == 'open' then
    ms = redis.call('PTTL', o)
    if ms < 0 then ms = 0 end
  end
  return {k, redis.call('HGET', h, 'ver') or '0', redis.call('HGET', h, 'per') or '0',
          tostring(ms), redis.call('HGET', h, 'level') or '0'}
end
local function start_open(h, o, done, ms, level, cap, need, cfg, by)
  redis.call('SET', o, '1', 'PX', ms)
  redis.call('DEL', done)
  local v = bump(h)
  redis.call('HSET', h, 'kind', 'open', 'per', v, 'level', level, 'succ', 0,
             'cap', cap, 'need', need, 'cfg', cfg, 'by', by)
end
local function publish(ch, replica, h, o, name)
  local s = state(h, o)
  redis.call('PUBLISH', ch, 'v2|' .. s[1] .. '|' .. replica .. '|' .. s[2] .. '|' .. s[3] .. '|' .. s[4] .. '|' .. s[5] .. '|' .. name)
end
";

/// Every script, for loading them all on connecting.
pub(crate) fn all(publish: Publish) -> [&'static Script; 12] {
    [
        open(publish),
        share(publish),
        close(publish),
        probe(publish),
        acquire(publish),
        renew(publish),
        manual(publish),
        seed(publish),
        states(publish),
        touch(publish),
        hello(publish),
        close_checked(publish),
    ]
}

/// How the scripts publish a change: `PUBLISH` on one server, `SPUBLISH`
/// (sharded pub/sub, Redis 7) on a Redis Cluster, where the channel
/// `cb:{<namespace>}:events` lives in the namespace's slot, so the message
/// goes to that shard's nodes alone instead of every node of the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Publish {
    /// `PUBLISH`, heard by `SUBSCRIBE`.
    Plain = 0,
    /// `SPUBLISH`, heard by `SSUBSCRIBE`.
    Sharded = 1,
}

/// A script's text with each way of publishing, made on first use.
struct Variants([OnceLock<Script>; 2]);

impl Variants {
    const fn new() -> Self {
        Variants([OnceLock::new(), OnceLock::new()])
    }

    fn get(&'static self, publish: Publish, body: &str) -> &'static Script {
        self.0[publish as usize].get_or_init(|| {
            let text = format!("{PRELUDE}\n{body}");
            match publish {
                Publish::Plain => Script::new(&text),
                Publish::Sharded => {
                    Script::new(&text.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'"))
                }
            }
        })
    }
}

/// A local open. KEYS: hash, open, lease, done, names, active, quorum.
/// ARGV: ms, reopen ('1' for a failed probe's), the period the failed probe
/// belonged to, replica, name, channel, cap, need, cfg, name_ttl_ms, the
/// open quorum, the breaker's open duration in ms (how long the open
/// counts towards the quorum), keep ('1' for a throttled open: a rate
/// limit is not an outage, and an open from half-open keeps the backoff
/// level instead of raising it).
///
/// A failed fleet probe's reopen (reopen '1' with its period, not '0')
/// counts only in the period it was admitted in: not once the fleet has
/// closed or been reset since (another replica's probes succeeded first),
/// nor in a later half-open period. While a later period is open it may
/// only lengthen that open, as any open does. A reopen with period '0' is
/// a probe of this replica's own open (below the quorum, or while
/// disconnected), an open like any other.
///
/// Answers the state and a sixth element: '0' when the open was shared
/// (or the fleet's state left alone), else the distinct replicas counted
/// towards the quorum, this one included, while that is below the quorum.
/// With a quorum above 1, an open while the fleet is not in an open period
/// is first counted in the sorted set `quorum` (replica id scored by when
/// its count ends, on Redis's `TIME`; the same replica again renews its
/// entry, counted once); below the quorum nothing else changes (no version,
/// no message), and at the quorum the open is shared as any other.
pub(crate) fn open(publish: Publish) -> &'static Script {
    static SCRIPT: Variants = Variants::new();
    SCRIPT.get(
        publish,
        r"
local h, o = KEYS[1], KEYS[2]
local function answer(votes)
  local s = state(h, o)
  s[6] = tostring(votes)
  return s
end
local k = redis.call('HGET', h, 'kind')
if k == 'forced_open' or k == 'disabled' then return answer(0) end
local ms = math.max(1, math.floor(tonumber(ARGV[1])))
local pttl = redis.call('PTTL', o)
if ARGV[2] == '1' and ARGV[3] ~= '0' and k and k ~= 'open' then
  return answer(0)
end
if ARGV[2] == '1' and k == 'open' and pttl <= 0 and redis.call('HGET', h, 'per') ~= ARGV[3] then
  return answer(0)
end
local quorum = tonumber(ARGV[11])
if quorum > 1 and k ~= 'open' then
  local now = now_ms()
  local span = math.max(1, math.floor(tonumber(ARGV[12])))
  local q = KEYS[7]
  redis.call('ZREMRANGEBYSCORE', q, '-inf', now)
  redis.call('ZADD', q, now + span, ARGV[4])
  if redis.call('PTTL', q) < span then redis.call('PEXPIRE', q, span) end
  local votes = redis.call('ZCARD', q)
  if votes < quorum then return answer(votes) end
end
if k == 'open' and pttl > 0 then
  if ms <= pttl then return answer(0) end
  redis.call('SET', o, '1', 'PX', ms)
  bump(h)
else
  local level = 0
  if k == 'open' then
    level = tonumber(redis.call('HGET', h, 'level') or '0')
    if ARGV[13] ~= '1' then level = level + 1 end
  end
  start_open(h, o, KEYS[4], ms, level, ARGV[7], ARGV[8], ARGV[9], ARGV[4])
end
redis.call('PEXPIRE', h, ARGV[10])
redis.call('ZADD', KEYS[5], now_ms(), ARGV[5])
redis.call('ZADD', KEYS[6], 0, ARGV[5])
publish(ARGV[6], ARGV[4], h, o, ARGV[5])
return answer(0)
",
    )
}

/// A replica's batch of call counts (`share_failures`), added to the
/// fleet's window; the fleet opens when the window's sums cross the
/// breaker's thresholds. Counted only while the fleet is closed. KEYS:
/// hash, open, done, names, active, win. ARGV: calls, failures, slow,
/// '1' when the batch had a success (the fleet's consecutive failures
/// restart from the batch's trailing failures), trailing failures, window
/// kind ('t' time, 'c' count), window (ms or calls), minimum_calls,
/// failure rate threshold, slow rate threshold (-1: off),
/// failure_threshold, open ms, cap, need, cfg, replica, name, channel,
/// name_ttl_ms.
pub(crate) fn share(publish: Publish) -> &'static Script {
    static SCRIPT: Variants = Variants::new();
    SCRIPT.get(
        publish,
            r"
local h, o, w = KEYS[1], KEYS[2], KEYS[6]
local k = redis.call('HGET', h, 'kind')
if k == 'open' or k == 'forced_open' or k == 'disabled' then return state(h, o) end
local calls, fails, slow = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local consec
if ARGV[4] == '1' then
  consec = tonumber(ARGV[5])
  redis.call('HSET', w, 'consec', consec)
else
  consec = redis.call('HINCRBY', w, 'consec', fails)
end
local c, f, sl = 0, 0, 0
local span = tonumber(ARGV[7])
if ARGV[6] == 't' then
  local size = math.max(1, math.floor(span / 10))
  local b = math.floor(now_ms() / size)
  local lo = tonumber(redis.call('HGET', w, 'lo') or b)
  if b - lo >= 20 then
    redis.call('DEL', w)
    redis.call('HSET', w, 'consec', consec)
  else
    for j = lo, b - 10 do redis.call('HDEL', w, 'c' .. j, 'f' .. j, 's' .. j) end
  end
  redis.call('HSET', w, 'lo', math.max(math.min(lo, b), b - 9))
  redis.call('HINCRBY', w, 'c' .. b, calls)
  redis.call('HINCRBY', w, 'f' .. b, fails)
  redis.call('HINCRBY', w, 's' .. b, slow)
  for j = b - 9, b do
    c = c + tonumber(redis.call('HGET', w, 'c' .. j) or '0')
    f = f + tonumber(redis.call('HGET', w, 'f' .. j) or '0')
    sl = sl + tonumber(redis.call('HGET', w, 's' .. j) or '0')
  end
  redis.call('PEXPIRE', w, span * 2)
else
  c = tonumber(redis.call('HGET', w, 'c') or '0') + calls
  f = tonumber(redis.call('HGET', w, 'f') or '0') + fails
  sl = tonumber(redis.call('HGET', w, 's') or '0') + slow
  if c > span then
    f = f * span / c
    sl = sl * span / c
    c = span
  end
  redis.call('HSET', w, 'c', tostring(c), 'f', tostring(f), 's', tostring(sl))
  redis.call('PEXPIRE', w, ARGV[19])
end
local judged = c >= tonumber(ARGV[8]) and c > 0
local trip = consec >= tonumber(ARGV[11])
  or (judged and f > 0 and f / c >= tonumber(ARGV[9]))
  or (judged and tonumber(ARGV[10]) >= 0 and sl > 0 and sl / c >= tonumber(ARGV[10]))
if not trip then return state(h, o) end
start_open(h, o, KEYS[3], math.max(1, math.floor(tonumber(ARGV[12]))), 0, ARGV[13], ARGV[14], ARGV[15], ARGV[16])
redis.call('DEL', w)
redis.call('PEXPIRE', h, ARGV[19])
redis.call('ZADD', KEYS[4], now_ms(), ARGV[17])
redis.call('ZADD', KEYS[5], 0, ARGV[17])
publish(ARGV[18], ARGV[16], h, o, ARGV[17])
return state(h, o)
",
    )
}

/// The health-check lease of an open period: one replica checks a breaker per
/// open period. Granted (or renewed) when the fleet is open and the lease is
/// free, this replica's, or of an earlier period. KEYS: hash, check.
/// ARGV: replica, ttl_ms. Returns 1 when granted.
pub(crate) fn check_lease() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| {
        Script::new(
            r"
if redis.call('HGET', KEYS[1], 'kind') ~= 'open' then return 0 end
local mine = (redis.call('HGET', KEYS[1], 'per') or '0') .. '|' .. ARGV[1]
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= mine and string.sub(holder, 1, string.find(holder, '|', 1, true)) ==
   string.sub(mine, 1, string.find(mine, '|', 1, true)) then
  return 0
end
redis.call('SET', KEYS[2], mine, 'PX', ARGV[2])
return 1
",
        )
    })
}

/// A local close by health checks in period `per`: as [`close`], and before
/// the open period ends (its open key goes), since the checks saw the
/// dependency back. A close of an earlier period, or of a fleet that is not
/// open, changes nothing. KEYS and ARGV as [`close`]'s.
pub(crate) fn close_checked(publish: Publish) -> &'static Script {
    static SCRIPT: Variants = Variants::new();
    SCRIPT.get(
        publish,
        r"
local h, o = KEYS[1], KEYS[2]
if redis.call('HGET', h, 'kind') == 'open' and redis.call('HGET', h, 'per') == ARGV[1] then
  redis.call('DEL', KEYS[3], KEYS[4], o)
  bump(h)
  redis.call('HSET', h, 'kind', 'close', 'level', 0, 'succ', 0)
  redis.call('PEXPIRE', h, ARGV[5])
  redis.call('ZREM', KEYS[5], ARGV[3])
  publish(ARGV[4], ARGV[2], h, o, ARGV[3])
end
return state(h, o)
",
    )
}

/// A local close after this replica's probes succeeded in period `per`.
/// KEYS: hash, open, lease, done, active. ARGV: period, replica, name,
/// channel, name_ttl_ms.
pub(crate) fn close(publish: Publish) -> &'static Script {
    static SCRIPT: Variants = Variants::new();
    SCRIPT.get(
        publish,
        r"
local h, o = KEYS[1], KEYS[2]
if redis.call('HGET', h, 'kind') == 'open' and redis.call('PTTL', o) <= 0
   and redis.call('HGET', h, 'per') == ARGV[1] then
  redis.call('DEL', KEYS[3], KEYS[4])
  bump(h)
  redis.call('HSET', h, 'kind', 'close', 'level', 0, 'succ', 0)
  redis.call('PEXPIRE', h, ARGV[5])
  redis.call('ZREM', KEYS[5], ARGV[3])
  publish(ARGV[4], ARGV[2], h, o, ARGV[3])
end
return state(h, o)
",
    )
}

/// A probe's result. KEYS: hash, open, lease, done, active. ARGV: report
/// id, the lease to give back ('' for none), the probe's period, ok ('1'),
/// count ('1': a success to count), replica, name, channel, name_ttl_ms,
/// need (when the hash has none). A success is counted once per report id,
/// and only in the period it was admitted in.
pub(crate) fn probe(publish: Publish) -> &'static Script {
    static SCRIPT: Variants = Variants::new();
    SCRIPT.get(
        publish,
        r"
local h, o = KEYS[1], KEYS[2]
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[3], ARGV[2]) end
if ARGV[4] == '1' and ARGV[5] == '1' and redis.call('HGET', h, 'kind') == 'open'
   and redis.call('PTTL', o) <= 0 and redis.call('HGET', h, 'per') == ARGV[3]
   and redis.call('SADD', KEYS[4], ARGV[1]) == 1 then
  redis.call('PEXPIRE', KEYS[4], ARGV[9])
  local n = redis.call('HINCRBY', h, 'succ', 1)
  if n >= tonumber(redis.call('HGET', h, 'need') or ARGV[10]) then
    redis.call('DEL', KEYS[3], KEYS[4])
    bump(h)
    redis.call('HSET', h, 'kind', 'close', 'level', 0, 'succ', 0)
    redis.call('PEXPIRE', h, ARGV[9])
    redis.call('ZREM', KEYS[5], ARGV[7])
    publish(ARGV[8], ARGV[6], h, o, ARGV[7])
  end
end
return state(h, o)
",
    )
}

/// A probe lease for a half-open replica. KEYS: hash, open, lease, active,
/// names. ARGV: member, lease_ttl_ms, cap, level, need, cfg, replica, name,
/// channel, name_ttl_ms. Answers the state and a sixth element, '1' when
/// granted. With no state in Redis (never shared, or a server restarted
/// empty), the asking replica's half-open becomes the fleet's.
pub(crate) fn acquire(publish: Publish) -> &'static Script {
    static SCRIPT: Variants = Variants::new();
    SCRIPT.get(
        publish,
        r"
local h, o = KEYS[1], KEYS[2]
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local k = redis.call('HGET', h, 'kind')
if not k then
  local v = bump(h)
  redis.call('HSET', h, 'kind', 'open', 'per', v, 'level', ARGV[4], 'succ', 0,
             'cap', ARGV[3], 'need', ARGV[5], 'cfg', ARGV[6], 'by', ARGV[7])
  redis.call('PEXPIRE', h, ARGV[10])
  redis.call('ZADD', KEYS[4], 0, ARGV[8])
  redis.call('ZADD', KEYS[5], now, ARGV[8])
  publish(ARGV[9], ARGV[7], h, o, ARGV[8])
  k = 'open'
end
local s = state(h, o)
s[6] = '0'
if k ~= 'open' or redis.call('PTTL', o) > 0 then return s end
local cap = tonumber(redis.call('HGET', h, 'cap') or ARGV[3])
if redis.call('ZCARD', KEYS[3]) >= cap then return s end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[2]) * 2)
s[6] = '1'
return s
",
    )
}

/// KEYS: lease. ARGV: ttl_ms, members... Extends the members' leases that
/// have not expired; answers the members Redis no longer holds.
pub(crate) fn renew(publish: Publish) -> &'static Script {
    static SCRIPT: Variants = Variants::new();
    SCRIPT.get(
        publish,
        r"
local now = now_ms()
local ttl = tonumber(ARGV[1])
local gone = {}
for i = 2, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) > now then
    redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i])
  else
    redis.call('ZREM', KEYS[1], ARGV[i])
    table.insert(gone, ARGV[i])
  end
end
if #gone < #ARGV - 1 then redis.call('PEXPIRE', KEYS[1], ttl * 2) end
return gone
",
    )
}

/// A fleet-wide manual command. KEYS: hash, open, lease, done, names,
/// active. ARGV: kind (reset, forced_open, disabled), replica, name,
/// channel, '1' to refuse a name no replica has (answers `unknown`),
/// name_ttl_ms. Setting a state, it is safe to run twice.
pub(crate) fn manual(publish: Publish) -> &'static Script {
    static SCRIPT: Variants = Variants::new();
    SCRIPT.get(
        publish,
            r"
local h, o = KEYS[1], KEYS[2]
if ARGV[5] == '1' and not redis.call('ZSCORE', KEYS[5], ARGV[3]) then
  return {'unknown', '0', '0', '0', '0'}
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
local v = bump(h)
redis.call('HSET', h, 'kind', ARGV[1], 'per', v, 'level', 0, 'succ', 0)
redis.call('PEXPIRE', h, ARGV[6])
if ARGV[1] == 'reset' then redis.call('ZREM', KEYS[6], ARGV[3]) else redis.call('ZADD', KEYS[6], 0, ARGV[3]) end
redis.call('ZADD', KEYS[5], now_ms(), ARGV[3])
publish(ARGV[4], ARGV[2], h, o, ARGV[3])
return state(h, o)
",
    )
}

/// Gives Redis a replica's state when Redis holds none (a server restarted
/// empty, or a breaker opened before its replica joined); with a state
/// there, answers it. KEYS: hash, open, active, names. ARGV: kind (open,
/// forced_open, disabled), ms (0: half-open), level, cap, need, cfg,
/// replica, name, channel, name_ttl_ms.
pub(crate) fn seed(publish: Publish) -> &'static Script {
    static SCRIPT: Variants = Variants::new();
    SCRIPT.get(
        publish,
        r"
local h, o = KEYS[1], KEYS[2]
if redis.call('HGET', h, 'kind') then return state(h, o) end
local v = bump(h)
redis.call('HSET', h, 'kind', ARGV[1], 'per', v, 'level', ARGV[3], 'succ', 0,
           'cap', ARGV[4], 'need', ARGV[5], 'cfg', ARGV[6], 'by', ARGV[7])
if ARGV[1] == 'open' and tonumber(ARGV[2]) > 0 then
  redis.call('SET', o, '1', 'PX', ARGV[2])
end
redis.call('PEXPIRE', h, ARGV[10])
redis.call('ZADD', KEYS[3], 0, ARGV[8])
redis.call('ZADD', KEYS[4], now_ms(), ARGV[8])
publish(ARGV[9], ARGV[7], h, o, ARGV[8])
return state(h, o)
",
    )
}

/// Reads the states of a batch of breakers. KEYS: active, then hash and
/// open marker per breaker. ARGV: the names. Answers, flat, per breaker:
/// the state (5 fields), `cfg`, `by`. A name in `active` whose hash has
/// expired leaves `active`.
pub(crate) fn states(publish: Publish) -> &'static Script {
    static SCRIPT: Variants = Variants::new();
    SCRIPT.get(
        publish,
        r"
local out = {}
for i = 1, #ARGV do
  local h, o = KEYS[2 * i], KEYS[2 * i + 1]
  local s = state(h, o)
  if s[1] == 'none' or s[1] == 'close' or s[1] == 'reset' then redis.call('ZREM', KEYS[1], ARGV[i]) end
  for _, x in ipairs(s) do table.insert(out, x) end
  table.insert(out, redis.call('HGET', h, 'cfg') or '')
  table.insert(out, redis.call('HGET', h, 'by') or '')
end
return out
",
    )
}

/// Marks a batch of names as in use and forgets, a bounded batch at a time,
/// names no replica has had for the name TTL (their keys expire on their
/// own). KEYS: names, active, then hash and log per breaker. ARGV:
/// name_ttl_ms, replica, then name and cfg per breaker. Answers how many
/// names were forgotten.
pub(crate) fn touch(publish: Publish) -> &'static Script {
    static SCRIPT: Variants = Variants::new();
    SCRIPT.get(
        publish,
        r"
local now = now_ms()
local ttl = tonumber(ARGV[1])
local n = (#ARGV - 2) / 2
for i = 1, n do
  local name, cfg = ARGV[1 + 2 * i], ARGV[2 + 2 * i]
  local h, log = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  redis.call('ZADD', KEYS[1], now, name)
  redis.call('HSETNX', h, 'cfg', cfg)
  redis.call('HSETNX', h, 'by', ARGV[2])
  redis.call('PEXPIRE', h, ttl)
  redis.call('PEXPIRE', log, ttl)
end
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - ttl, 'LIMIT', 0, 100)
for _, name in ipairs(old) do
  redis.call('ZREM', KEYS[1], name)
  redis.call('ZREM', KEYS[2], name)
end
return #old
",
    )
}

/// Claims a replica id for this process. KEYS: replica key. ARGV: this
/// process's nonce, ttl_ms. Answers '' when the id is this process's, or
/// the other process's nonce.
pub(crate) fn hello(publish: Publish) -> &'static Script {
    static SCRIPT: Variants = Variants::new();
    SCRIPT.get(
        publish,
        r"
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ''
",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Keys;
    use crate::testing::redis_or_skip;

    /// Runs `open` for breaker `dep`: `reopen` with `period` for a failed
    /// probe's. Answers the fleet's state after it.
    async fn open_dep(con: &mut redis::aio::MultiplexedConnection, reopen: bool, period: &str) -> String {
        let keys = Keys::new("stale");
        let k = keys.breaker("dep");
        let answer: Vec<String> = open(Publish::Plain)
            .key(&k.hash)
            .key(&k.open)
            .key(&k.lease)
            .key(&k.done)
            .key(keys.names())
            .key(keys.active())
            .key(&k.quorum)
            .arg(60_000)
            .arg(if reopen { "1" } else { "0" })
            .arg(period)
            .arg("a")
            .arg("dep")
            .arg(keys.channel())
            .arg(1)
            .arg(1)
            .arg("")
            .arg(60_000)
            .arg(1)
            .arg(60_000)
            .arg("0")
            .invoke_async(con)
            .await
            .unwrap();
        answer[0].clone()
    }

    /// Issue 38: a failed probe of a period that another replica's probe
    /// already closed does not reopen the fleet (it did, since the period
    /// check applied only while the fleet was half-open).
    #[tokio::test]
    async fn a_stale_failed_probe_does_not_reopen_a_closed_fleet() {
        let Some(server) = redis_or_skip("a_stale_failed_probe_does_not_reopen_a_closed_fleet") else {
            return;
        };
        let mut con = redis::Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let keys = Keys::new("stale");
        let k = keys.breaker("dep");
        assert_eq!(open_dep(&mut con, false, "0").await, "open");
        let period: String = redis::cmd("HGET")
            .arg(&k.hash)
            .arg("per")
            .query_async(&mut con)
            .await
            .unwrap();
        // The open period ends: the fleet is half-open; replica b's probe
        // of this period succeeds and closes it.
        let _: () = redis::cmd("DEL")
            .arg(&k.open)
            .query_async(&mut con)
            .await
            .unwrap();
        let closed: Vec<String> = probe(Publish::Plain)
            .key(&k.hash)
            .key(&k.open)
            .key(&k.lease)
            .key(&k.done)
            .key(keys.active())
            .arg("b:1")
            .arg("")
            .arg(&period)
            .arg("1")
            .arg("1")
            .arg("b")
            .arg("dep")
            .arg(keys.channel())
            .arg(60_000)
            .arg(1)
            .invoke_async(&mut con)
            .await
            .unwrap();
        assert_eq!(closed[0], "close");
        // Replica a's probe of the same period fails after: stale.
        assert_eq!(open_dep(&mut con, true, &period).await, "close");
        let marker: i64 = redis::cmd("PTTL")
            .arg(&k.open)
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(marker, -2, "no open marker");
        // A probe of a replica's own open (period 0) opens as any open.
        assert_eq!(open_dep(&mut con, true, "0").await, "open");
    }
}
