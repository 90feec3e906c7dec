-- fail.lua: records failed attempts, fenced by their lease tokens; this script alone decides
-- between a retry after a backoff and the terminal `failed`.
--
-- KEYS[1] processing  ZSET  leased ids
-- KEYS[2] retrying    ZSET  ids waiting out a backoff, score = due ms
-- KEYS[3] failed      ZSET  finished ids, score = finish ms
-- KEYS[4] cancelled   ZSET  finished ids, score = finish ms
-- KEYS[5] stats       HASH  counters (retried, failed, cancelled, busy_ms)
-- KEYS[6] events      STREAM
-- KEYS[7] task key prefix "<p>:{T}:task:"
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] backoff base ms
-- ARGV[3] backoff cap ms
-- ARGV[4] events stream MAXLEN (approximate)
-- ARGV[5..] 5 values per task: id, lease token, error message, kind ("retry" or "permanent"),
--           jitter in [0, 1) (full jitter: the delay is jitter * min(base * 2^(attempts-1), cap))
-- Returns: per task a pair {status, children}: the status it went to, "retrying", "failed" or
--          "cancelled" (a task whose cancel was requested ends cancelled), or "stale" (lease
--          not held: nothing changed); children is the task's `children` field (JSON) when it
--          ended failed or cancelled, else "", so the caller cancels what it started.
local processing, retrying, failed, cancelled = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local stats, events, task_prefix = KEYS[5], KEYS[6], KEYS[7]
local now = script_now(ARGV[1])
local base, cap = tonumber(ARGV[2]), tonumber(ARGV[3])
local maxlen = ARGV[4]
local out = {}
for i = 5, #ARGV, 5 do
  local id, token, err, kind, jitter = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
  local key = task_prefix .. id
  local f = redis.call('HMGET', key, 'status', 'lease', 'attempts', 'max_attempts', 'cancel_requested', 'started_at', 'children')
  if f[1] ~= 'processing' or f[2] ~= token then
    out[#out + 1] = { 'stale', '' }
  else
    local attempts, max_attempts = tonumber(f[3]), tonumber(f[4])
    local status
    redis.call('ZREM', processing, id)
    redis.call('HDEL', key, 'lease')
    redis.call('HINCRBY', stats, 'busy_ms', now - (tonumber(f[6]) or now))
    if f[5] == '1' then
      status = 'cancelled'
      redis.call('HSET', key, 'status', status, 'finished_at', now)
      redis.call('ZADD', cancelled, now, id)
      redis.call('HINCRBY', stats, 'cancelled', 1)
      outbox(task_prefix, id, status, now)
    elseif kind == 'retry' and attempts < max_attempts then
      status = 'retrying'
      local ceiling = math.min(base * 2 ^ (attempts - 1), cap)
      local due = now + math.floor(jitter * ceiling)
      redis.call('HSET', key, 'status', status, 'error', err, 'run_at', due)
      redis.call('ZADD', retrying, due, id)
      redis.call('HINCRBY', stats, 'retried', 1)
    else
      status = 'failed'
      redis.call('HSET', key, 'status', status, 'error', err, 'finished_at', now)
      redis.call('ZADD', failed, now, id)
      redis.call('HINCRBY', stats, 'failed', 1)
      outbox(task_prefix, id, status, now)
    end
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'id', id, 'status', status, 'error', err)
    out[#out + 1] = { status, status == 'retrying' and '' or (f[7] or '') }
  end
end
return out
