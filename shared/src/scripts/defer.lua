-- defer.lua: a running task that waits for something (a course waiting for its lessons) gives
-- its worker slot back: it goes to `scheduled` until now + a delay, and the attempt it used is
-- given back, so waiting never uses up attempts. Fenced by the lease token. A task whose
-- cancel was requested is not deferred: it ends `cancelled` (the cancel is acknowledged here).
--
-- KEYS[1] processing  ZSET  leased ids
-- KEYS[2] scheduled   ZSET  ids waiting for a time, score = due ms
-- KEYS[3] cancelled   ZSET  finished ids, score = finish ms
-- KEYS[4] stats       HASH  counters (cancelled)
-- KEYS[5] events      STREAM
-- KEYS[6] task key prefix "<p>:{T}:task:"
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] id
-- ARGV[3] lease token
-- ARGV[4] delay ms
-- ARGV[5] message
-- ARGV[6] events stream MAXLEN (approximate)
-- Returns: {outcome, children}: outcome "deferred", "cancelled" or "stale" (lease not held:
--          nothing changed); children as in fail.lua for a cancelled task.
local processing, scheduled, cancelled, stats, events, task_prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now = script_now(ARGV[1])
local id, token = ARGV[2], ARGV[3]
local due = now + tonumber(ARGV[4])
local key = task_prefix .. id
local f = redis.call('HMGET', key, 'status', 'lease', 'cancel_requested', 'children')
if f[1] ~= 'processing' or f[2] ~= token then
  return { 'stale', '' }
end
redis.call('ZREM', processing, id)
redis.call('HINCRBY', key, 'attempts', -1)
redis.call('HDEL', key, 'lease', 'worker_id')
if f[3] == '1' then
  redis.call('HSET', key, 'status', 'cancelled', 'finished_at', now)
  redis.call('ZADD', cancelled, now, id)
  redis.call('HINCRBY', stats, 'cancelled', 1)
  outbox(task_prefix, id, 'cancelled', now)
  redis.call('XADD', events, 'MAXLEN', '~', ARGV[6], '*', 'id', id, 'status', 'cancelled')
  return { 'cancelled', f[4] or '' }
end
redis.call('HSET', key, 'status', 'scheduled', 'run_at', due, 'message', ARGV[5])
redis.call('ZADD', scheduled, due, id)
redis.call('XADD', events, 'MAXLEN', '~', ARGV[6], '*', 'id', id, 'status', 'scheduled', 'message', ARGV[5])
return { 'deferred', '' }
