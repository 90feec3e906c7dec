-- cancel.lua: cancels one task. A waiting task ends at once; a running one is marked, and its
-- worker learns of it at its next heartbeat (extend.lua) and acknowledges through fail.lua.
--
-- KEYS[1] queued      ZSET
-- KEYS[2] scheduled   ZSET
-- KEYS[3] retrying    ZSET
-- KEYS[4] cancelled   ZSET  finished ids, score = finish ms
-- KEYS[5] stats       HASH  counters (cancelled)
-- KEYS[6] events      STREAM
-- KEYS[7] task key prefix "<p>:{T}:task:"
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] id
-- ARGV[3] events stream MAXLEN (approximate)
-- Returns: {outcome, status, children}: outcome "cancelled" (ended now), "requested" (running:
--          the worker stops it), "terminal" (already finished: nothing changed) or "not_found";
--          status is the task's status after the call; children as in fail.lua when it ended now.
local queued, scheduled, retrying, cancelled = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local stats, events, task_prefix = KEYS[5], KEYS[6], KEYS[7]
local now, id, maxlen = script_now(ARGV[1]), ARGV[2], ARGV[3]
local key = task_prefix .. id
local f = redis.call('HMGET', key, 'status', 'children')
local status = f[1]
if not status then
  return { 'not_found', '', '' }
end
local waiting = { queued = queued, scheduled = scheduled, retrying = retrying }
if waiting[status] then
  redis.call('ZREM', waiting[status], id)
  redis.call('HSET', key, 'status', 'cancelled', 'finished_at', now)
  redis.call('ZADD', cancelled, now, id)
  redis.call('HINCRBY', stats, 'cancelled', 1)
  outbox(task_prefix, id, 'cancelled', now)
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'id', id, 'status', 'cancelled')
  return { 'cancelled', 'cancelled', f[2] or '' }
elseif status == 'processing' then
  redis.call('HSET', key, 'cancel_requested', 1)
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'id', id, 'status', 'processing', 'cancel_requested', 1)
  return { 'requested', 'processing', '' }
end
return { 'terminal', status, '' }
