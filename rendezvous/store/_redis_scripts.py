"""The Lua scripts behind :mod:`rendezvous.store.redis`.

Redis runs each script as one atomic step: a write is applied completely or not at all. Most touch the keys
of one hash slot only (a session's keys share the ``{<id>}`` hash tag), so they run unchanged on a single
server and on Redis Cluster; ``CREATE_COUNTED``, ``DELETE_COUNTED`` and ``LIMITED_GET`` also touch the session
count or a rate-limit bucket, and are used on a single server only, to save a round trip. Clocks come from the
server's ``TIME`` so every worker agrees on them (since Redis 7, scripts are replicated by their effects, so
reading the clock before writing is allowed).

Session hash fields: ``g`` generation, ``d`` data, ``v`` version, ``m`` last-modified ms, ``e`` expires-at ms,
``w<n>`` the write id of the call that made version ``n`` (for the newest :data:`WRITE_IDS_KEPT` versions).
Txn record hash: ``txnId -> "W<version>"`` or ``"C<version>"`` (written or conflict, and the version
answered), then a space and the write id of the call that recorded it; txn order list: the recorded txnIds,
oldest first, at most :data:`~rendezvous.store.base.TXN_RECORDS_KEPT`. Deletion record: the write id of the call
that deleted the session, for :data:`DELETION_RECORD_MS`.

Re-sends: the store sends a script again when the connection broke before its reply arrived, and the first
attempt may have run. Every script that changes a session is therefore idempotent on a re-send: the store picks
a random *write id* once per call (and the session id before a create's first attempt), passes it to every
attempt, and the script records it with what it did. An attempt that finds its own write id recorded answers
what the first attempt did, without doing it again; a client's retry is a new call, with a new write id.
"""

from __future__ import annotations

#: How many versions back a write remembers the write id that made each (``w<n>`` fields). A re-send comes
#: within one call's timeouts, so this only has to cover the writes other workers land meanwhile.
WRITE_IDS_KEPT = 8
#: How long a deletion is remembered for a re-send of it: far longer than any one call's attempts take.
DELETION_RECORD_MS = 60_000

_NOW_MS = """
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

#: KEYS: live-set. ARGV: session id, ttl ms, max sessions (-1: unlimited).
#: Returns the server time in ms, or -1 if the store is full.
RESERVE = (
    _NOW_MS
    + """
local live = KEYS[1]
local ttl_ms = tonumber(ARGV[2])
local max_sessions = tonumber(ARGV[3])
-- Members are scored by their deadline: dropping the expired ones first makes ZCARD the live count.
redis.call('ZREMRANGEBYSCORE', live, '-inf', now_ms)
-- The id is new for each create: finding it counted already means this is a re-send, counted by the first.
if redis.call('ZSCORE', live, ARGV[1]) then
    return now_ms
end
if max_sessions >= 0 and redis.call('ZCARD', live) >= max_sessions then
    return -1
end
redis.call('ZADD', live, now_ms + ttl_ms, ARGV[1])
-- The set itself goes away once its last session would have expired.
if redis.call('PTTL', live) < ttl_ms then
    redis.call('PEXPIRE', live, ttl_ms)
end
return now_ms
"""
)

#: KEYS: live-set. ARGV: session id. Returns the number of members removed.
RELEASE = """
return redis.call('ZREM', KEYS[1], ARGV[1])
"""

#: KEYS: live-set. Returns the number of live sessions.
COUNT = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
return redis.call('ZCARD', KEYS[1])
"""
)

# Create-if-absent. A session already there is a re-send's own (made by the first attempt) if it bears the
# call's write id: it answers the creation time and lifetime left, as the first attempt did. Else the id is
# taken (192 random bits: never in practice).
_CREATED_BEFORE = """
local function created_before(session, write_id, ttl_ms)
    local f = redis.call('HMGET', session, 'w1', 'e')
    if f[1] ~= write_id then
        return false
    end
    return {tonumber(f[2]) - ttl_ms, redis.call('PTTL', session)}
end
"""

#: KEYS: session. ARGV: generation, data, ttl ms, write id.
#: Returns {created ms, pttl}, or false if the id is taken.
CREATE = (
    _NOW_MS
    + _CREATED_BEFORE
    + """
local session = KEYS[1]
local ttl_ms = tonumber(ARGV[3])
if redis.call('EXISTS', session) == 1 then
    return created_before(session, ARGV[4], ttl_ms)
end
redis.call('HSET', session, 'g', ARGV[1], 'd', ARGV[2], 'v', 1, 'm', now_ms, 'e', now_ms + ttl_ms, 'w1', ARGV[4])
redis.call('PEXPIRE', session, ttl_ms)
return {now_ms, redis.call('PTTL', session)}
"""
)

#: One server only (the live set and the session are in different cluster slots): RESERVE and CREATE in one step.
#: KEYS: live-set, session. ARGV: session id, generation, data, ttl ms, max sessions (-1: unlimited), write id.
#: Returns {created ms, pttl}, -1 if the store is full, or false if the id is taken.
CREATE_COUNTED = (
    _NOW_MS
    + _CREATED_BEFORE
    + """
local live = KEYS[1]
local session = KEYS[2]
local ttl_ms = tonumber(ARGV[4])
local max_sessions = tonumber(ARGV[5])
-- Before the count: a re-send must find its own session, counted already, not a full store.
if redis.call('EXISTS', session) == 1 then
    return created_before(session, ARGV[6], ttl_ms)
end
redis.call('ZREMRANGEBYSCORE', live, '-inf', now_ms)
if max_sessions >= 0 and redis.call('ZCARD', live) >= max_sessions then
    return -1
end
redis.call('HSET', session, 'g', ARGV[2], 'd', ARGV[3], 'v', 1, 'm', now_ms, 'e', now_ms + ttl_ms, 'w1', ARGV[6])
redis.call('PEXPIRE', session, ttl_ms)
redis.call('ZADD', live, now_ms + ttl_ms, ARGV[1])
if redis.call('PTTL', live) < ttl_ms then
    redis.call('PEXPIRE', live, ttl_ms)
end
return {now_ms, redis.call('PTTL', session)}
"""
)

#: KEYS: session. Returns {g, d, v, m, e, pttl} or false.
GET = """
local f = redis.call('HMGET', KEYS[1], 'g', 'd', 'v', 'm', 'e')
if not f[1] then
    return false
end
return {f[1], f[2], f[3], f[4], f[5], redis.call('PTTL', KEYS[1])}
"""

#: KEYS: session, txn records, txn order. ARGV: data, expected version, txn id ('' for none), channel,
#: generation ('' for any), txn records kept, write id.
#: Returns false if there is no session (of that generation), else {outcome, answered version, g, d, v, m, e,
#: pttl} where outcome is W (written), C (conflict), RW / RC (replay of a recorded written / conflict).
WRITE = (
    f"local write_ids_kept = {WRITE_IDS_KEPT}\n"
    + """
local session = KEYS[1]
local txns = KEYS[2]
local order = KEYS[3]
local txn_id = ARGV[3]
local write_id = ARGV[7]
local generation = redis.call('HGET', session, 'g')
if not generation or (ARGV[5] ~= '' and generation ~= ARGV[5]) then
    return false
end
local outcome
local answered
local recorded = false
if txn_id ~= '' then
    recorded = redis.call('HGET', txns, txn_id)
end
local expected = tonumber(ARGV[2])
if recorded then
    local code, version, recorded_by = string.match(recorded, '^(%a)(%d+) ?(.*)$')
    -- Recorded by this very call (a re-send after a lost reply): answered as the first attempt was.
    outcome = recorded_by == write_id and code or 'R' .. code
    answered = tonumber(version)
elseif redis.call('HGET', session, 'w' .. (expected + 1)) == write_id then
    -- This call's write was applied by an attempt whose reply was lost: written, even if others wrote since.
    outcome = 'W'
    answered = expected + 1
else
    local version = tonumber(redis.call('HGET', session, 'v'))
    if version == expected then
        local clock = redis.call('TIME')
        local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
        version = version + 1
        -- HSET keeps the key's TTL: writes never extend a session's life.
        redis.call('HSET', session, 'd', ARGV[1], 'v', version, 'm', now_ms, 'w' .. version, write_id)
        redis.call('HDEL', session, 'w' .. (version - write_ids_kept))
        redis.call('SPUBLISH', ARGV[4], version)
        outcome = 'W'
    else
        outcome = 'C'
    end
    answered = version
    if txn_id ~= '' then
        redis.call('HSET', txns, txn_id, outcome .. version .. ' ' .. write_id)
        -- Recording order, oldest first: past the bound, the oldest record is forgotten.
        if redis.call('RPUSH', order, txn_id) > tonumber(ARGV[6]) then
            redis.call('HDEL', txns, redis.call('LPOP', order))
        end
        -- The records die with their session, at the same instant.
        local deadline = redis.call('PEXPIRETIME', session)
        redis.call('PEXPIREAT', txns, deadline)
        redis.call('PEXPIREAT', order, deadline)
    end
end
local f = redis.call('HMGET', session, 'g', 'd', 'v', 'm', 'e')
return {outcome, answered, f[1], f[2], f[3], f[4], f[5], redis.call('PTTL', session)}
"""
)

# Deletes the session and its txnId records, and remembers the deletion for a while under the call's write id:
# a re-send of the same call finds nothing to delete, but answers 1 as the first attempt did.
_DELETE_SESSION = """
local function delete_session(session, txns, order, deletion, channel, write_id, record_ms)
    local deleted = redis.call('DEL', session)
    redis.call('DEL', txns, order)
    if deleted == 1 then
        redis.call('SPUBLISH', channel, 'deleted')
        redis.call('SET', deletion, write_id, 'PX', record_ms)
        return 1, true
    end
    return redis.call('GET', deletion) == write_id and 1 or 0, false
end
"""

#: KEYS: session, txn records, txn order, deletion record. ARGV: channel, write id, deletion record ms.
#: Returns 1 if a session was deleted (by this call), else 0.
DELETE = (
    _DELETE_SESSION
    + """
local deleted = delete_session(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3])
return deleted
"""
)

# Takes one token from the bucket KEYS[1] (ARGV[1] per second, at most ARGV[2]); returns 0 if one was taken, else
# the ms until one will be available.
_BUCKET_TAKE = """
local function take_token(bucket, rate_per_s, burst)
    local clock = redis.call('TIME')
    local now_ms = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
    local rate_per_ms = rate_per_s / 1000
    local state = redis.call('HMGET', bucket, 't', 'u')
    local tokens = burst
    if state[1] then
        -- max(0, ...): a server clock stepping backwards must not drain the bucket.
        local elapsed = math.max(0, now_ms - tonumber(state[2]))
        tokens = math.min(burst, tonumber(state[1]) + elapsed * rate_per_ms)
    end
    local wait_ms = 0
    if tokens >= 1 then
        tokens = tokens - 1
    else
        wait_ms = math.max(1, math.floor((1 - tokens) / rate_per_ms) + 1)
    end
    redis.call('HSET', bucket, 't', string.format('%.17g', tokens), 'u', string.format('%.17g', now_ms))
    -- A full bucket holds no information, so the key lives only until it would be full again.
    redis.call('PEXPIRE', bucket, math.ceil((burst - tokens) / rate_per_ms) + 1)
    return wait_ms
end
"""

#: One server only: DELETE and RELEASE in one step.
#: KEYS: session, txn records, txn order, deletion record, live-set. ARGV: channel, write id, deletion record ms,
#: session id. Returns 1 if a session was deleted (by this call), else 0.
DELETE_COUNTED = (
    _DELETE_SESSION
    + """
local deleted, just_now = delete_session(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3])
-- Uncounted by the attempt that deleted (a re-send finds nothing to uncount).
if just_now then
    redis.call('ZREM', KEYS[5], ARGV[4])
end
return deleted
"""
)

#: KEYS: bucket. ARGV: rate per second, burst.
#: Returns 0 if a token was taken, else the ms until one will be available.
RATE_LIMIT = (
    _BUCKET_TAKE
    + """
return take_token(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
"""
)

#: KEYS: bucket, session (or only the bucket, when the id cannot be a session's). ARGV: rate per second, burst.
#: Returns {wait ms} when no token was left, else {0} (no session) or {0, g, d, v, m, e, pttl}.
#: The bucket and the session are in different cluster slots: only for a single server.
LIMITED_GET = (
    _BUCKET_TAKE
    + """
local wait_ms = take_token(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
if wait_ms > 0 or not KEYS[2] then
    return {wait_ms}
end
local f = redis.call('HMGET', KEYS[2], 'g', 'd', 'v', 'm', 'e')
if not f[1] then
    return {0}
end
return {0, f[1], f[2], f[3], f[4], f[5], redis.call('PTTL', KEYS[2])}
"""
)
