-- complete.lua: records the results of finished tasks, fenced by their lease tokens.
--
-- KEYS[1] processing  ZSET  leased ids
-- KEYS[2] completed   ZSET  finished ids, score = finish ms
-- KEYS[3] stats       HASH  counters (completed, busy_ms)
-- KEYS[4] events      STREAM one entry {ids, status = completed} per call
-- KEYS[5] task key prefix "<p>:{T}:task:"
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] events stream MAXLEN (approximate)
-- ARGV[3..] triples: id, lease token, result (JSON)
-- Returns: one integer per task: 1 completed, 0 refused (the lease is not this token's any
--          more: recovered, cancelled or finished; nothing was changed).
local processing, completed, stats, events, task_prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = script_now(ARGV[1])
local maxlen = ARGV[2]
local out, done, ids = {}, {}, {}
local busy = 0
-- A number handed to redis.call is formatted with '%.17g' on every call: format now once.
local finished = string.format('%d', now)
for i = 3, #ARGV, 3 do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = task_prefix .. id
  local f = redis.call('HMGET', key, 'status', 'lease', 'started_at', 'webhook_url', 'batch_id')
  if f[1] == 'processing' and f[2] == token then
    -- An empty lease matches no token: later calls with the old one are refused.
    redis.call('HSET', key, 'status', 'completed', 'result', ARGV[i + 2], 'finished_at', finished, 'progress', '100', 'lease', '')
    outbox_with(task_prefix, id, 'completed', now, f[4], f[5])
    busy = busy + (now - (tonumber(f[3]) or now))
    done[#done + 1] = finished
    done[#done + 1] = id
    ids[#ids + 1] = id
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if #ids > 0 then
  -- One event for the batch: readers follow a task by `id` or by membership in `ids`.
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'ids', table.concat(ids, ','), 'status', 'completed')
  redis.call('ZREM', processing, unpack(ids))
  redis.call('ZADD', completed, unpack(done))
  redis.call('HINCRBY', stats, 'completed', #ids)
  redis.call('HINCRBY', stats, 'busy_ms', busy)
end
return out
