-- complete.lua: records the results of finished tasks, fenced by their lease tokens, and then
-- (the worker's "fetch next") claims up to N more tasks of the same shard in the same call, as
-- claim.lua would: one script call per finished batch instead of a complete and a claim.
--
-- KEYS[1] processing  ZSET  leased ids
-- KEYS[2] completed   ZSET  finished ids, score = finish ms
-- KEYS[3] stats       HASH  counters (completed, busy_ms; started)
-- KEYS[4] events      STREAM one entry {ids, status = completed} per call (and one processing)
-- KEYS[5] task key prefix "<p>:{T}:task:"
-- KEYS[6] queued      ZSET  ready ids (the claim)
-- KEYS[7] scheduled   ZSET  ids waiting for run_at (promoted when due)
-- KEYS[8] retrying    ZSET  ids waiting out a backoff (promoted when due)
-- KEYS[9] paused      STRING present while claiming is stopped for this type
-- KEYS[10] claim record STRING + TTL: the ids the claim leased (see claim.lua)
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] events stream MAXLEN (approximate)
-- ARGV[3] n: how many tasks to claim after completing (0 = none)
-- ARGV[4] lease_ms      ARGV[5] worker id      ARGV[6] lease token prefix (unique to the call)
-- ARGV[7] promote limit
-- ARGV[8..] triples: id, lease token, result (JSON)
-- Returns: one integer per task: 1 completed, 0 refused (the lease is not this token's any
--          more: recovered, cancelled or finished; nothing was changed); then, if n > 0, the
--          claim's answer as claim.lua gives it ({promoted, 11 values per leased task}).
local processing, completed, stats, events, task_prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = script_now(ARGV[1])
local maxlen = ARGV[2]
local claim_n = tonumber(ARGV[3])
local out, done, ids = {}, {}, {}
local busy = 0
-- A number handed to redis.call is formatted with '%.17g' on every call: format now once.
local finished = string.format('%d', now)
for i = 8, #ARGV, 3 do
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
if claim_n > 0 then
  local claimed = claim_ready(KEYS[6], KEYS[7], KEYS[8], processing, KEYS[9], stats, events, task_prefix,
    KEYS[10], now, claim_n, tonumber(ARGV[4]), ARGV[5], ARGV[6], tonumber(ARGV[7]), maxlen)
  for _, v in ipairs(claimed) do out[#out + 1] = v end
end
return out
