"""The Lua scripts behind :mod:`rendezvous.store.redis`.

Redis runs each script as one atomic step: a write is applied completely or not at all. Most touch the keys
of one hash slot only (a session's keys share the ``{<id>}`` hash tag), so they run unchanged on a single
server and on Redis Cluster; ``CREATE_COUNTED``, ``DELETE_COUNTED`` and ``LIMITED_GET`` also touch the session
count or a rate-limit bucket, and are used on a single server only, to save a round trip. Clocks come from the
server's ``TIME`` so every worker agrees on them (since Redis 7, scripts are replicated by their effects, so
reading the clock before writing is allowed).

Session hash fields: ``g`` generation, ``d`` data, ``v`` version, ``m`` last-modified ms, ``e`` expires-at ms.
Txn record hash: ``txnId -> "W<version>"`` or ``"C<version>"`` (written or conflict, and the version
answered); txn order list: the recorded txnIds, oldest first, at most
:data:`~rendezvous.store.base.TXN_RECORDS_KEPT`.
"""

from __future__ import annotations

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

#: KEYS: session. ARGV: generation, data, ttl ms.
#: Returns {now ms, pttl}, or false if the id is taken.
CREATE = (
    _NOW_MS
    + """
local session = KEYS[1]
if redis.call('EXISTS', session) == 1 then
    return false
end
local ttl_ms = tonumber(ARGV[3])
redis.call('HSET', session, 'g', ARGV[1], 'd', ARGV[2], 'v', 1, 'm', now_ms, 'e', now_ms + ttl_ms)
redis.call('PEXPIRE', session, ttl_ms)
return {now_ms, redis.call('PTTL', session)}
"""
)

#: One server only (the live set and the session are in different cluster slots): RESERVE and CREATE in one step.
#: KEYS: live-set, session. ARGV: session id, generation, data, ttl ms, max sessions (-1: unlimited).
#: Returns {now ms, pttl}, -1 if the store is full, or false if the id is taken.
CREATE_COUNTED = (
    _NOW_MS
    + """
local live = KEYS[1]
local session = KEYS[2]
local ttl_ms = tonumber(ARGV[4])
local max_sessions = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', live, '-inf', now_ms)
if max_sessions >= 0 and redis.call('ZCARD', live) >= max_sessions then
    return -1
end
if redis.call('EXISTS', session) == 1 then
    return false
end
redis.call('HSET', session, 'g', ARGV[2], 'd', ARGV[3], 'v', 1, 'm', now_ms, 'e', now_ms + ttl_ms)
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
#: generation ('' for any), txn records kept.
#: Returns false if there is no session (of that generation), else {outcome, answered version, g, d, v, m, e,
#: pttl} where outcome is W (written), C (conflict), RW / RC (replay of a recorded written / conflict).
WRITE = """
local session = KEYS[1]
local txns = KEYS[2]
local order = KEYS[3]
local txn_id = ARGV[3]
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
if recorded then
    outcome = 'R' .. string.sub(recorded, 1, 1)
    answered = tonumber(string.sub(recorded, 2))
else
    local version = tonumber(redis.call('HGET', session, 'v'))
    if version == tonumber(ARGV[2]) then
        local clock = redis.call('TIME')
        local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
        version = version + 1
        -- HSET keeps the key's TTL: writes never extend a session's life.
        redis.call('HSET', session, 'd', ARGV[1], 'v', version, 'm', now_ms)
        redis.call('SPUBLISH', ARGV[4], version)
        outcome = 'W'
    else
        outcome = 'C'
    end
    answered = version
    if txn_id ~= '' then
        redis.call('HSET', txns, txn_id, outcome .. version)
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

#: KEYS: session, txn records, txn order. ARGV: channel. Returns 1 if a session was deleted, else 0.
DELETE = """
local deleted = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2], KEYS[3])
if deleted == 1 then
    redis.call('SPUBLISH', ARGV[1], 'deleted')
end
return deleted
"""

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
#: KEYS: session, txn records, txn order, live-set. ARGV: channel, session id. Returns 1 if a session was deleted,
#: else 0.
DELETE_COUNTED = """
local deleted = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2], KEYS[3])
if deleted == 1 then
    redis.call('SPUBLISH', ARGV[1], 'deleted')
    redis.call('ZREM', KEYS[4], ARGV[2])
end
return deleted
"""

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
