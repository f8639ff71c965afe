//! The Lua scripts that change a breaker's fleet state atomically.
//!
//! Per breaker, under `cb:<namespace>:`: a hash `b:<name>` (`state`: closed,
//! open, forced_open or disabled; `level`: the backoff level; `succ`: probe
//! successes counted in this half-open period), a marker `open:<name>` that
//! exists while the circuit is open and expires when its open duration ends
//! (so time comes from Redis's key expiry and `PTTL`), and a sorted set
//! `lease:<name>` of probe leases scored by their expiry on Redis's `TIME`.
//! State `open` with no marker is the fleet's half-open. Each script returns
//! `{state, ms, level}` for the caller to follow.

use redis::Script;

/// KEYS: hash, open, lease, names. ARGV: ms, from_half_open, replica, name, channel.
pub(crate) fn open() -> Script {
    Script::new(
        r"
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'forced_open' or st == 'disabled' then return {st, 0, 0} end
local ms = tonumber(ARGV[1])
if ms < 1 then ms = 1 end
local pttl = redis.call('PTTL', KEYS[2])
local level = tonumber(redis.call('HGET', KEYS[1], 'level') or '0')
if pttl > 0 then
  if ms > pttl then redis.call('SET', KEYS[2], '1', 'PX', ms) else ms = pttl end
else
  if ARGV[2] == '1' and st == 'open' then level = level + 1 else level = 0 end
  redis.call('SET', KEYS[2], '1', 'PX', ms)
end
redis.call('HSET', KEYS[1], 'state', 'open', 'level', level, 'succ', 0)
redis.call('DEL', KEYS[3])
redis.call('SADD', KEYS[4], ARGV[4])
redis.call('PUBLISH', ARGV[5], 'v1|open|' .. ARGV[3] .. '|' .. ms .. '|' .. level .. '|' .. ARGV[4])
return {'open', ms, level}
",
    )
}

/// KEYS: hash, open, lease. ARGV: replica, name, channel.
pub(crate) fn close() -> Script {
    Script::new(
        r"
local st = redis.call('HGET', KEYS[1], 'state')
local pttl = redis.call('PTTL', KEYS[2])
if st == 'forced_open' or st == 'disabled' then return {st, 0, 0} end
if st == 'open' and pttl > 0 then
  return {'open', pttl, tonumber(redis.call('HGET', KEYS[1], 'level') or '0')}
end
if st == 'open' then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'level', 0, 'succ', 0)
  redis.call('DEL', KEYS[3])
  redis.call('PUBLISH', ARGV[3], 'v1|close|' .. ARGV[1] .. '|0|0|' .. ARGV[2])
end
return {'closed', 0, 0}
",
    )
}

/// KEYS: hash, open, lease. ARGV: lease member or '', ok, success_threshold,
/// replica, name, channel, successes (how many, for a repair of lost ones).
pub(crate) fn probe() -> Script {
    Script::new(
        r"
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[3], ARGV[1]) end
if ARGV[2] ~= '1' then return {'ignored', 0, 0} end
local st = redis.call('HGET', KEYS[1], 'state')
if st ~= 'open' or redis.call('PTTL', KEYS[2]) > 0 then return {'ignored', 0, 0} end
local n = redis.call('HINCRBY', KEYS[1], 'succ', tonumber(ARGV[7]))
if n >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'level', 0, 'succ', 0)
  redis.call('DEL', KEYS[3])
  redis.call('PUBLISH', ARGV[6], 'v1|close|' .. ARGV[4] .. '|0|0|' .. ARGV[5])
  return {'closed', 0, 0}
end
return {'counted', n, 0}
",
    )
}

/// KEYS: hash, open, lease. ARGV: member, ttl_ms, cap.
pub(crate) fn acquire() -> Script {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'forced_open' or st == 'disabled' then return {st, 0, 0} end
local pttl = redis.call('PTTL', KEYS[2])
if pttl > 0 then return {'open', pttl, tonumber(redis.call('HGET', KEYS[1], 'level') or '0')} end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[3]) then return {'full', 0, 0} end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[2]) * 2)
return {'granted', 0, 0}
",
    )
}

/// KEYS: lease. ARGV: ttl_ms, members... Extends the members' leases that
/// have not expired; returns how many.
pub(crate) fn renew() -> Script {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local kept = 0
for i = 2, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) > now then
    redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i])
    kept = kept + 1
  end
end
if kept > 0 then redis.call('PEXPIRE', KEYS[1], ttl * 2) end
return kept
",
    )
}

/// KEYS: hash, open, lease, names. ARGV: state (closed, forced_open,
/// disabled), replica, name, channel, '1' to refuse a name no replica has
/// created (answers `unknown`).
pub(crate) fn manual() -> Script {
    Script::new(
        r"
if ARGV[5] == '1' and redis.call('SISMEMBER', KEYS[4], ARGV[3]) == 0 then return {'unknown', 0, 0} end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'level', 0, 'succ', 0)
redis.call('SADD', KEYS[4], ARGV[3])
local kind = ARGV[1]
if kind == 'closed' then kind = 'reset' end
redis.call('PUBLISH', ARGV[4], 'v1|' .. kind .. '|' .. ARGV[2] .. '|0|0|' .. ARGV[3])
return {ARGV[1], 0, 0}
",
    )
}

/// KEYS: names. ARGV: key prefix. Returns name, state (`none` when Redis
/// holds none), level, pttl for every shared breaker, flat, as strings.
pub(crate) fn sync() -> Script {
    Script::new(
        r"
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local h = ARGV[1] .. 'b:' .. name
  table.insert(out, name)
  table.insert(out, redis.call('HGET', h, 'state') or 'none')
  table.insert(out, redis.call('HGET', h, 'level') or '0')
  table.insert(out, tostring(redis.call('PTTL', ARGV[1] .. 'open:' .. name)))
end
return out
",
    )
}
