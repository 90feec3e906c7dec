-- claim.lua: promotes due scheduled and retrying tasks, then leases up to N ready tasks.
--
-- KEYS[1] queued      ZSET  ready ids, score = band * 1e13 + enqueue ms
-- KEYS[2] scheduled   ZSET  ids waiting for run_at, score = due ms
-- KEYS[3] retrying    ZSET  ids waiting out a backoff, score = due ms
-- KEYS[4] processing  ZSET  leased ids, score = lease deadline ms
-- KEYS[5] paused      STRING present while claiming is stopped for this type
-- KEYS[6] stats       HASH  counters (started)
-- KEYS[7] events      STREAM one entry {ids, status = processing} per call; one per promoted id
-- KEYS[8] signal      LIST  wake-up markers (pushed when promotion makes work ready)
-- KEYS[9] task key prefix "<p>:{T}:task:"
-- ARGV[1] now_ms
-- ARGV[2] n: how many tasks to lease at most (0 = only promote)
-- ARGV[3] lease_ms
-- ARGV[4] worker id
-- ARGV[5] lease token prefix, unique to this call (the token is prefix .. ":" .. i)
-- ARGV[6] promote limit: how many due ids to move per set and call
-- ARGV[7] events stream MAXLEN (approximate)
-- Returns: {promoted, then 11 values per leased task: id, lease, attempts, max_attempts,
--           priority, created_at, request, account_id, user_id, parent_id, webhook_url}
local queued, scheduled, retrying, processing = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local paused, stats, events, signal, task_prefix = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local worker_id, token_prefix = ARGV[4], ARGV[5]
local promote_limit = tonumber(ARGV[6])
local maxlen = ARGV[7]
local BANDS = { urgent = 0, high = 1, normal = 2, low = 3 }
local BAND_WIDTH = 10000000000000

local promoted = 0
for _, waiting in ipairs({ scheduled, retrying }) do
  local due = redis.call('ZRANGEBYSCORE', waiting, '-inf', now, 'WITHSCORES', 'LIMIT', 0, promote_limit)
  if #due > 0 then
    local ready = {}
    local ids = {}
    for i = 1, #due, 2 do
      local id, at = due[i], tonumber(due[i + 1])
      local priority = redis.call('HGET', task_prefix .. id, 'priority')
      ids[#ids + 1] = id
      if priority then
        ready[#ready + 1] = BANDS[priority] * BAND_WIDTH + at
        ready[#ready + 1] = id
        redis.call('HSET', task_prefix .. id, 'status', 'queued')
        redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'id', id, 'status', 'queued')
      end
    end
    redis.call('ZREM', waiting, unpack(ids))
    if #ready > 0 then
      redis.call('ZADD', queued, unpack(ready))
      promoted = promoted + #ready / 2
    end
  end
end
if promoted > 0 and n == 0 then
  -- Promotion without a claim (the scheduler's tick): wake idle workers.
  local markers = {}
  for j = 1, math.min(promoted, 16) do markers[j] = 1 end
  redis.call('LPUSH', signal, unpack(markers))
  redis.call('LTRIM', signal, 0, 63)
end

local out = { promoted }
if n == 0 or redis.call('EXISTS', paused) == 1 then
  return out
end
local popped = redis.call('ZPOPMIN', queued, n)
local leased = {}
local claimed = {}
local count = 0
-- A number handed to redis.call is formatted with '%.17g' on every call: format these once.
local started = string.format('%d', now)
local deadline = string.format('%d', now + lease_ms)
for i = 1, #popped, 2 do
  local id = popped[i]
  local key = task_prefix .. id
  -- One read instead of EXISTS + HINCRBY + HMGET: enqueue writes 'attempts' and nothing
  -- deletes it, so it is missing only when the hash is.
  local f = redis.call('HMGET', key, 'max_attempts', 'priority', 'created_at', 'request', 'account_id', 'user_id', 'parent_id', 'webhook_url', 'attempts')
  if f[9] then
    count = count + 1
    local token = token_prefix .. ':' .. count
    local attempts = tonumber(f[9]) + 1
    local attempt = string.format('%d', attempts)
    redis.call('HSET', key, 'attempts', attempt, 'status', 'processing', 'lease', token, 'started_at', started, 'worker_id', worker_id)
    out[#out + 1] = id
    out[#out + 1] = token
    out[#out + 1] = attempts
    for j = 1, 8 do out[#out + 1] = f[j] or '' end
    leased[#leased + 1] = deadline
    leased[#leased + 1] = id
    claimed[#claimed + 1] = id
  end
end
if count > 0 then
  -- One event for the batch: readers follow a task by `id` or by membership in `ids`.
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'ids', table.concat(claimed, ','), 'status', 'processing')
  redis.call('ZADD', processing, unpack(leased))
  redis.call('HINCRBY', stats, 'started', count)
end
return out
