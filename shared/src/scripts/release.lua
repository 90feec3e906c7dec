-- release.lua: gives leased tasks back unfinished (a worker shutting down), without using up
-- an attempt: each goes back to `queued` at the place it had.
--
-- KEYS[1] processing  ZSET  leased ids
-- KEYS[2] queued      ZSET  ready ids, score = band * 1e13 + enqueue ms
-- KEYS[3] events      STREAM
-- KEYS[4] signal      LIST  wake-up markers
-- KEYS[5] task key prefix "<p>:{T}:task:"
-- ARGV[1] now_ms
-- ARGV[2] events stream MAXLEN (approximate)
-- ARGV[3..] pairs: id, lease token
-- Returns: one integer per task: 1 released, 0 refused (lease not held)
local processing, queued, events, signal, task_prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local maxlen = ARGV[2]
local BANDS = { urgent = 0, high = 1, normal = 2, low = 3 }
local BAND_WIDTH = 10000000000000
local out = {}
local released = 0
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = task_prefix .. id
  local f = redis.call('HMGET', key, 'status', 'lease', 'priority', 'created_at', 'cancel_requested')
  if f[1] == 'processing' and f[2] == token then
    redis.call('ZREM', processing, id)
    redis.call('HINCRBY', key, 'attempts', -1)
    redis.call('HSET', key, 'status', 'queued')
    redis.call('HDEL', key, 'lease', 'worker_id', 'started_at')
    redis.call('ZADD', queued, BANDS[f[3]] * BAND_WIDTH + tonumber(f[4]), id)
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'id', id, 'status', 'queued')
    released = released + 1
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if released > 0 then
  redis.call('LPUSH', signal, 1)
  redis.call('LTRIM', signal, 0, 63)
end
return out
