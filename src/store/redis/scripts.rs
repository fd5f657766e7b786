//! The Lua scripts behind [`RedisEventStore`](super::RedisEventStore).
//!
//! Every write is one script, so it is atomic: Redis runs a script to the end
//! before it serves any other command, which is what makes sequence
//! assignment safe with any number of instances appending. The scripts build
//! key names from the key prefix (`ARGV[1]`) and the stream id, so they are
//! for a single Redis (with replicas or Sentinel), not for Redis Cluster.
//!
//! Timestamps come from the Redis server's clock (`TIME`), so the instances
//! of a fleet agree on them whatever their own clocks say: `created`,
//! `active` and the `ended` index are microseconds since the Unix epoch, the
//! `instances` index milliseconds.

use std::sync::LazyLock;

use ::redis::Script;

/// Helpers shared by the scripts.
const PRELUDE: &str = r#"
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function fmt(n)
  return string.format('%d', n)
end

-- Ends the live stream `id` in `state` ('1' complete, '2' abandoned): records
-- the state and the time, indexes it (and its session) for the sweep, takes
-- it off its owner's list, sets the expiry that backs up the sweep, and
-- announces the final head. Returns its last sequence (a string), or nil and
-- the state code if it had already ended, or nil and nil if it does not exist.
local function end_live(P, id, state, ttl_ms, now)
  local meta = P .. 'meta:' .. id
  local m = redis.call('HMGET', meta, 'state', 'last', 'owner', 'session')
  if not m[1] then return nil, nil end
  if m[1] ~= '0' then return nil, tonumber(m[1]) end
  redis.call('HSET', meta, 'state', state, 'active', fmt(now))
  redis.call('ZADD', P .. 'ended', fmt(now), id)
  -- Outlives the expiry of the stream's keys, so that the sweep can still
  -- take the stream out of its session's set once they are gone.
  if m[4] then redis.call('HSET', P .. 'ended-sessions', id, m[4]) end
  if m[3] then redis.call('SREM', P .. 'owner:' .. m[3], id) end
  redis.call('PEXPIRE', meta, ttl_ms)
  redis.call('PEXPIRE', P .. 'log:' .. id, ttl_ms)
  redis.call('PUBLISH', P .. 'head:' .. id, m[2] .. ' ' .. state)
  return m[2], nil
end
"#;

/// Creates a live stream.
///
/// ARGV: prefix, id, kind, cap, owner instance, lease (ms), has session
/// (`0`/`1`), session, has identity, identity. Returns 1.
const CREATE: &str = r#"
local P, id, owner = ARGV[1], ARGV[2], ARGV[5]
local now = now_us()
local meta = P .. 'meta:' .. id
redis.call('HSET', meta, 'kind', ARGV[3], 'state', '0', 'cap', ARGV[4],
  'first', '1', 'last', '0', 'created', fmt(now), 'active', fmt(now), 'owner', owner)
if ARGV[7] == '1' then
  redis.call('HSET', meta, 'session', ARGV[8])
  redis.call('SADD', P .. 'session:' .. ARGV[8], id)
end
if ARGV[9] == '1' then redis.call('HSET', meta, 'identity', ARGV[10]) end
redis.call('SADD', P .. 'owner:' .. owner, id)
-- An owner list is only ever looked at through the instances index: make
-- sure the owner is in it, even if a sweep took it out while it was cut off.
if not redis.call('ZSCORE', P .. 'instances', owner) then
  redis.call('ZADD', P .. 'instances', fmt(math.floor(now / 1000) + tonumber(ARGV[6])), owner)
end
return 1
"#;

/// Appends events to a live stream: reads the last sequence, adds each event
/// with the explicit entry id `<seq>-0`, trims to the stream's cap, records
/// the retained range and the time, and announces the new head.
///
/// ARGV: prefix, id, event count, then per event: has type (`0`/`1`), type,
/// data. Returns `{0, first_seq, last_seq}`, `{-1}` if the stream does not
/// exist, `{-2, state}` if it has ended.
const APPEND: &str = r#"
local P, id = ARGV[1], ARGV[2]
local meta, log = P .. 'meta:' .. id, P .. 'log:' .. id
local m = redis.call('HMGET', meta, 'state', 'last', 'cap')
if not m[1] then return {-1} end
if m[1] ~= '0' then return {-2, tonumber(m[1])} end
local last = tonumber(m[2])
local n = tonumber(ARGV[3])
if n == 0 then return {0, last + 1, last} end
local first = last + 1
local cap = tonumber(m[3])
-- Events that the trim below would delete at once are not written at all.
local skip = n - cap
local i = 4
for k = 1, n do
  last = last + 1
  if k > skip then
    local entry = string.format('%d-0', last)
    if ARGV[i] == '1' then
      redis.call('XADD', log, entry, 'd', ARGV[i + 2], 't', ARGV[i + 1])
    else
      redis.call('XADD', log, entry, 'd', ARGV[i + 2])
    end
  end
  i = i + 3
end
-- The stored string, not the Lua number: Lua turns large integers into
-- floats (9.2e18), which XTRIM refuses.
redis.call('XTRIM', log, 'MAXLEN', m[3])
local retained = redis.call('XLEN', log)
redis.call('HSET', meta, 'last', fmt(last), 'first', fmt(last - retained + 1), 'active', fmt(now_us()))
redis.call('PUBLISH', P .. 'head:' .. id, fmt(last) .. ' 0')
return {0, first, last}
"#;

/// Ends a stream. ARGV: prefix, id, state code, expiry (ms). Returns
/// `{0, last_seq}` if this call ended it, `{1, state}` if it had already
/// ended, `{-1}` if it does not exist.
const END: &str = r#"
local last, state = end_live(ARGV[1], ARGV[2], ARGV[3], ARGV[4], now_us())
if last then return {0, tonumber(last)} end
if state then return {1, state} end
return {-1}
"#;

/// Reads a page of events with the stream's metadata, in one step.
///
/// ARGV: prefix, id, after, count, max bytes. Returns false (nil) if the
/// stream does not exist, else `{metadata, entries}`: the metadata as
/// `HMGET` of [`META_FIELDS`](super::META_FIELDS), the entries as `XRANGE`
/// gives them, from `after + 1`, stopped early once `max bytes` of data are
/// in (but never empty when an event is there). Nothing is read when the
/// position cannot be served; the caller tells why from the metadata.
const READ: &str = r#"
local P, id = ARGV[1], ARGV[2]
local m = redis.call('HMGET', P .. 'meta:' .. id,
  'kind', 'state', 'first', 'last', 'created', 'active', 'session', 'identity')
if not m[2] then return false end
local after = tonumber(ARGV[3])
if after >= tonumber(m[4]) or after + 1 < tonumber(m[3]) then return {m, {}} end
local entries = redis.call('XRANGE', P .. 'log:' .. id, string.format('%d-0', after + 1), '+',
  'COUNT', ARGV[4])
local max_bytes = tonumber(ARGV[5])
local out, bytes = {}, 0
for i, entry in ipairs(entries) do
  if i > 1 and bytes >= max_bytes then break end
  out[i] = entry
  local fields = entry[2]
  for f = 1, #fields, 2 do
    if fields[f] == 'd' then bytes = bytes + #fields[f + 1] end
  end
end
return {m, out}
"#;

/// Deletes every stream of a session, ending live ones as abandoned first so
/// their followers stop. ARGV: prefix, session. Returns
/// `{id, last_seq, id, last_seq, ...}` of the streams deleted.
const PURGE: &str = r#"
local P = ARGV[1]
local skey = P .. 'session:' .. ARGV[2]
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', skey)) do
  local meta = P .. 'meta:' .. id
  local m = redis.call('HMGET', meta, 'state', 'last', 'owner')
  if m[1] then
    if m[1] == '0' then
      if m[3] then redis.call('SREM', P .. 'owner:' .. m[3], id) end
      redis.call('PUBLISH', P .. 'head:' .. id, m[2] .. ' 2')
    end
    redis.call('UNLINK', meta, P .. 'log:' .. id)
    redis.call('ZREM', P .. 'ended', id)
    redis.call('HDEL', P .. 'ended-sessions', id)
    out[#out + 1] = id
    out[#out + 1] = tonumber(m[2])
  end
end
redis.call('DEL', skey)
return out
"#;

/// Applies retention, at most `limit` items of each kind per call.
///
/// First, if ARGV[4] is `1`, the live streams of instances whose lease has
/// run out (they crashed, or lost Redis for longer than the lease) are ended
/// as abandoned. Then ended streams idle for longer than the maximum age
/// are deleted.
///
/// ARGV: prefix, max age (µs), limit, abandon dead owners (`0`/`1`), expiry
/// of ended streams (ms). Returns `{streams deleted, events deleted,
/// streams abandoned, more}`, `more` being 1 when a limit was reached.
const SWEEP: &str = r#"
local P = ARGV[1]
local limit = tonumber(ARGV[3])
local now = now_us()
local abandoned, more = 0, 0
if ARGV[4] == '1' then
  local dead = redis.call('ZRANGEBYSCORE', P .. 'instances', '-inf', fmt(math.floor(now / 1000)),
    'LIMIT', 0, limit)
  for _, owner in ipairs(dead) do
    local okey = P .. 'owner:' .. owner
    for _, id in ipairs(redis.call('SMEMBERS', okey)) do
      if end_live(P, id, '2', ARGV[5], now) then abandoned = abandoned + 1 end
    end
    redis.call('DEL', okey)
    redis.call('ZREM', P .. 'instances', owner)
  end
  if #dead == limit then more = 1 end
end
local idle = redis.call('ZRANGEBYSCORE', P .. 'ended', '-inf', '(' .. fmt(now - tonumber(ARGV[2])),
  'LIMIT', 0, limit)
local streams, events = 0, 0
for _, id in ipairs(idle) do
  local meta = P .. 'meta:' .. id
  local m = redis.call('HMGET', meta, 'state', 'session')
  -- A live stream (state 0) is left alone; one whose metadata is gone
  -- (nil) is still taken out of its session.
  if m[1] ~= '0' then
    if m[1] then
      local log = P .. 'log:' .. id
      events = events + redis.call('XLEN', log)
      streams = streams + 1
      redis.call('UNLINK', meta, log)
    end
    -- The session is in the metadata, or, once the backstop expiry has
    -- deleted that, in `ended-sessions` (streams ended by earlier versions
    -- are only in the metadata).
    local session = m[2] or redis.call('HGET', P .. 'ended-sessions', id)
    if session then redis.call('SREM', P .. 'session:' .. session, id) end
  end
  redis.call('ZREM', P .. 'ended', id)
  redis.call('HDEL', P .. 'ended-sessions', id)
end
if #idle == limit then more = 1 end
return {streams, events, abandoned, more}
"#;

/// Renews an instance's lease. ARGV: prefix, instance, lease (ms).
const HEARTBEAT: &str = r#"
redis.call('ZADD', ARGV[1] .. 'instances', fmt(math.floor(now_us() / 1000) + tonumber(ARGV[3])), ARGV[2])
return 1
"#;

/// Retires an instance (its store is closing): ends its live streams as
/// abandoned and drops its lease. ARGV: prefix, instance, expiry of ended
/// streams (ms). Returns `{id, last_seq, ...}` of the streams it ended.
const RETIRE: &str = r#"
local P, owner = ARGV[1], ARGV[2]
local okey = P .. 'owner:' .. owner
local now = now_us()
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', okey)) do
  local last = end_live(P, id, '2', ARGV[3], now)
  if last then
    out[#out + 1] = id
    out[#out + 1] = tonumber(last)
  end
end
redis.call('DEL', okey)
redis.call('ZREM', P .. 'instances', owner)
return out
"#;

/// The compiled scripts (the hash of each is computed once; Redis caches the
/// script body, and the client reloads it after a Redis restart).
pub(super) struct Scripts {
    pub(super) create: Script,
    pub(super) append: Script,
    pub(super) end: Script,
    pub(super) read: Script,
    pub(super) purge: Script,
    pub(super) sweep: Script,
    pub(super) heartbeat: Script,
    pub(super) retire: Script,
}

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let script = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
    Scripts {
        create: script(CREATE),
        append: script(APPEND),
        end: script(END),
        read: script(READ),
        purge: script(PURGE),
        sweep: script(SWEEP),
        heartbeat: script(HEARTBEAT),
        retire: script(RETIRE),
    }
});
