-- release.lua: gives leased tasks back unfinished (a worker shutting down), without using up
-- an attempt: each goes back to `queued` at the place it had. A task whose cancel was
-- requested meanwhile ends `cancelled` instead: the cancel is honoured, not forgotten.
--
-- KEYS[1] processing  ZSET  leased ids
-- KEYS[2] queued      ZSET  ready ids, score = band * 1e13 + enqueue ms
-- KEYS[3] cancelled   ZSET  finished ids, score = finish ms
-- KEYS[4] stats       HASH  counters (cancelled)
-- KEYS[5] events      STREAM
-- KEYS[6] wake      CHANNEL idle workers listen on (PUBLISH; SPUBLISH on a cluster)
-- KEYS[7] task key prefix "<p>:{T}:task:"
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] events stream MAXLEN (approximate)
-- ARGV[3..] pairs: id, lease token
-- Returns: per task a pair {outcome, children}: outcome "released", "cancelled" or "stale"
--          (lease not held: nothing changed); children as in fail.lua for a cancelled task.
local processing, queued, cancelled, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local events, wake_channel, task_prefix = KEYS[5], KEYS[6], KEYS[7]
local now = script_now(ARGV[1])
local maxlen = ARGV[2]
local out = {}
local released = 0
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = task_prefix .. id
  local f = redis.call('HMGET', key, 'status', 'lease', 'priority', 'created_at', 'cancel_requested', 'children')
  if f[1] == 'processing' and f[2] == token then
    redis.call('ZREM', processing, id)
    redis.call('HINCRBY', key, 'attempts', -1)
    redis.call('HDEL', key, 'lease', 'worker_id', 'started_at')
    if f[5] == '1' then
      redis.call('HSET', key, 'status', 'cancelled', 'finished_at', now)
      redis.call('ZADD', cancelled, now, id)
      redis.call('HINCRBY', stats, 'cancelled', 1)
      outbox(task_prefix, id, 'cancelled', now)
      redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'id', id, 'status', 'cancelled')
      out[#out + 1] = { 'cancelled', f[6] or '' }
    else
      redis.call('HSET', key, 'status', 'queued')
      redis.call('ZADD', queued, band_score(f[3], tonumber(f[4])), id)
      redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'id', id, 'status', 'queued')
      released = released + 1
      out[#out + 1] = { 'released', '' }
    end
  else
    out[#out + 1] = { 'stale', '' }
  end
end
wake(wake_channel, released)
return out
