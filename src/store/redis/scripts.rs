//! The Lua scripts behind [`RedisEventStore`](super::RedisEventStore).
//!
//! Every script touches the keys of one hash slot only, all passed in
//! `KEYS`, so the same scripts run on a single Redis and on Redis Cluster:
//!
//! - the *stream* scripts touch a stream's metadata and log, whose names
//!   share the hash tag `{<stream id>}`, and announce heads on the stream's
//!   channel (same tag, so `SPUBLISH` stays on the stream's shard);
//! - the *index* scripts touch the fleet-wide indexes (the ended streams,
//!   the instances and their owner sets), whose names share the hash tag
//!   `{index}`.
//!
//! Work that spans both (creating, ending, purging and sweeping streams) is a
//! sequence of such scripts, ordered and written so that every step is
//! idempotent and a sequence cut short is completed by a retry or by the
//! next sweep (see each caller).
//!
//! Every write to a stream is one script, so it is atomic: Redis runs a
//! script to the end before it serves any other command, which is what makes
//! sequence assignment safe with any number of instances appending.
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
"#;

/// Creates a live stream's metadata (the caller has indexed it already).
///
/// KEYS: meta. ARGV: kind, cap, owner instance, has session (`0`/`1`),
/// session, has identity, identity. Returns 1.
const CREATE: &str = r#"
local meta = KEYS[1]
local now = now_us()
redis.call('HSET', meta, 'kind', ARGV[1], 'state', '0', 'cap', ARGV[2],
  'first', '1', 'last', '0', 'created', fmt(now), 'active', fmt(now), 'owner', ARGV[3])
if ARGV[4] == '1' then redis.call('HSET', meta, 'session', ARGV[5]) end
if ARGV[6] == '1' then redis.call('HSET', meta, 'identity', ARGV[7]) end
return 1
"#;

/// Index step of creating a stream: adds it to its owner's set and makes
/// sure the owner is in the instances index (a sweep may have taken it out
/// while it was cut off).
///
/// KEYS: instances, owner set. ARGV: stream id, owner, lease (ms). Returns 1.
const INDEX_CREATED: &str = r#"
redis.call('SADD', KEYS[2], ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZADD', KEYS[1], fmt(math.floor(now_us() / 1000) + tonumber(ARGV[3])), ARGV[2])
end
return 1
"#;

/// Appends events to a live stream: reads the last sequence, adds each event
/// with the explicit entry id `<seq>-0`, trims to the stream's cap, records
/// the retained range and the time, and announces the new head.
///
/// KEYS: meta, log. ARGV: publish command (`PUBLISH` or `SPUBLISH`), channel,
/// event count, then per event: has type (`0`/`1`), type, data. Returns
/// `{0, first_seq, last_seq}`, `{-1}` if the stream does not exist, `{-2,
/// state}` if it has ended.
const APPEND: &str = r#"
local meta, log = KEYS[1], KEYS[2]
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
redis.call(ARGV[1], ARGV[2], fmt(last) .. ' 0')
return {0, first, last}
"#;

/// Ends a live stream: records the state and the time, sets the expiry that
/// backs up the sweep, and announces the final head.
///
/// KEYS: meta, log. ARGV: state code (`1` complete, `2` abandoned), expiry
/// (ms), publish command, channel. Returns `{0, last_seq, ended_at, session,
/// owner}` if this call ended it, `{1, state, ended_at, session, owner}` if
/// it had already ended (so a retry can still complete the index step),
/// `{-1}` if it does not exist. `ended_at` is in microseconds; `session` and
/// `owner` are false (nil) when absent.
const END: &str = r#"
local meta, log = KEYS[1], KEYS[2]
local m = redis.call('HMGET', meta, 'state', 'last', 'owner', 'session', 'active')
if not m[1] then return {-1} end
if m[1] ~= '0' then return {1, tonumber(m[1]), m[5], m[4] or false, m[3] or false} end
local now = fmt(now_us())
redis.call('HSET', meta, 'state', ARGV[1], 'active', now)
redis.call('PEXPIRE', meta, ARGV[2])
redis.call('PEXPIRE', log, ARGV[2])
redis.call(ARGV[3], ARGV[4], m[2] .. ' ' .. ARGV[1])
return {0, tonumber(m[2]), now, m[4] or false, m[3] or false}
"#;

/// Index step of ending a stream: indexes it by end time for the sweep,
/// records its session (so the sweep can take it out of its session's set
/// even after the backstop expiry deleted its metadata), and takes it off
/// its owner's set. Idempotent.
///
/// KEYS: ended, ended-sessions, and the owner set when the stream has an
/// owner. ARGV: stream id, ended at (µs), has session (`0`/`1`), session.
/// Returns 1.
const INDEX_ENDED: &str = r#"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if ARGV[3] == '1' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[4]) end
if KEYS[3] then redis.call('SREM', KEYS[3], ARGV[1]) end
return 1
"#;

/// Reads a page of events with the stream's metadata, in one step.
///
/// KEYS: meta, log. ARGV: after, count, max bytes. Returns false (nil) if
/// the stream does not exist, else `{metadata, entries}`: the metadata as
/// `HMGET` of [`META_FIELDS`](super::META_FIELDS), the entries as `XRANGE`
/// gives them, from `after + 1`, stopped early once `max bytes` of data are
/// in (but never empty when an event is there). Nothing is read when the
/// position cannot be served; the caller tells why from the metadata.
const READ: &str = r#"
local m = redis.call('HMGET', KEYS[1],
  'kind', 'state', 'first', 'last', 'created', 'active', 'session', 'identity')
if not m[2] then return false end
local after = tonumber(ARGV[1])
if after >= tonumber(m[4]) or after + 1 < tonumber(m[3]) then return {m, {}} end
local entries = redis.call('XRANGE', KEYS[2], string.format('%d-0', after + 1), '+',
  'COUNT', ARGV[2])
local max_bytes = tonumber(ARGV[3])
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

/// Deletes a stream (for a session purge), announcing a live one as
/// abandoned first so its followers stop.
///
/// KEYS: meta, log. ARGV: publish command, channel. Returns `{last_seq,
/// owner}` (owner false when absent), or false if the stream does not exist.
const DELETE: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'state', 'last', 'owner')
if not m[1] then return false end
if m[1] == '0' then redis.call(ARGV[1], ARGV[2], m[2] .. ' 2') end
redis.call('UNLINK', KEYS[1], KEYS[2])
return {tonumber(m[2]), m[3] or false}
"#;

/// Index step of deleting a stream: takes it out of the ended index and off
/// its owner's set. Idempotent.
///
/// KEYS: ended, ended-sessions, and the owner set when the owner is known.
/// ARGV: stream id. Returns 1.
const INDEX_DELETED: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if KEYS[3] then redis.call('SREM', KEYS[3], ARGV[1]) end
return 1
"#;

/// Sweep step: the instances whose lease has run out (they crashed, or lost
/// Redis for longer than the lease), at most `limit`.
///
/// KEYS: instances. ARGV: limit. Returns their ids.
const DEAD_INSTANCES: &str = r#"
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', fmt(math.floor(now_us() / 1000)),
  'LIMIT', 0, ARGV[1])
"#;

/// Sweep (or retire) step: takes the streams just ended off an instance's
/// set, then drops the instance from the index if its set is empty and
/// (unless forced, for an instance retiring itself) its lease is still
/// expired: an instance that came back meanwhile keeps its entry and its
/// new streams. Idempotent.
///
/// KEYS: instances, owner set. ARGV: instance, force (`0`/`1`), then the
/// stream ids. Returns 1 if the instance was dropped, else 0.
const DROP_INSTANCE: &str = r#"
for i = 3, #ARGV do redis.call('SREM', KEYS[2], ARGV[i]) end
if redis.call('SCARD', KEYS[2]) > 0 then return 0 end
if ARGV[2] ~= '1' then
  local lease = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if lease and tonumber(lease) > math.floor(now_us() / 1000) then return 0 end
end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"#;

/// Sweep step: the ended streams idle for longer than the maximum age, at
/// most `limit`, each with its recorded session.
///
/// KEYS: ended, ended-sessions. ARGV: max age (µs), limit. Returns `{id,
/// session, id, session, ...}`, the session false when none is recorded.
const IDLE_ENDED: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. fmt(now_us() - tonumber(ARGV[1])),
  'LIMIT', 0, ARGV[2])
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id)
end
return out
"#;

/// Sweep step: deletes an ended stream. A live one is left alone (only
/// ended streams are indexed as ended; this guards against data changed by
/// hand).
///
/// KEYS: meta, log. Returns `{1, events deleted, session}` if it was
/// deleted, `{0, 0, session}` if it no longer existed, `{-1}` if it is live.
/// The session is false when unknown.
const DELETE_ENDED: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'state', 'session')
if m[1] == '0' then return {-1} end
if not m[1] then return {0, 0, false} end
local events = redis.call('XLEN', KEYS[2])
redis.call('UNLINK', KEYS[1], KEYS[2])
return {1, events, m[2] or false}
"#;

/// Renews an instance's lease. KEYS: instances. ARGV: instance, lease (ms).
const HEARTBEAT: &str = r#"
redis.call('ZADD', KEYS[1], fmt(math.floor(now_us() / 1000) + tonumber(ARGV[2])), ARGV[1])
return 1
"#;

/// The compiled scripts (the hash of each is computed once; Redis caches the
/// script body, and the client loads it again on the node that answers
/// `NOSCRIPT`, after a restart or a failover).
pub(super) struct Scripts {
    pub(super) create: Script,
    pub(super) index_created: Script,
    pub(super) append: Script,
    pub(super) end: Script,
    pub(super) index_ended: Script,
    pub(super) read: Script,
    pub(super) delete: Script,
    pub(super) index_deleted: Script,
    pub(super) dead_instances: Script,
    pub(super) drop_instance: Script,
    pub(super) idle_ended: Script,
    pub(super) delete_ended: Script,
    pub(super) heartbeat: Script,
}

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let script = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
    Scripts {
        create: script(CREATE),
        index_created: script(INDEX_CREATED),
        append: script(APPEND),
        end: script(END),
        index_ended: script(INDEX_ENDED),
        read: script(READ),
        delete: script(DELETE),
        index_deleted: script(INDEX_DELETED),
        dead_instances: script(DEAD_INSTANCES),
        drop_instance: script(DROP_INSTANCE),
        idle_ended: script(IDLE_ENDED),
        delete_ended: script(DELETE_ENDED),
        heartbeat: script(HEARTBEAT),
    }
});
