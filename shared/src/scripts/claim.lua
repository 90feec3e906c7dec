-- claim.lua: promotes due scheduled and retrying tasks, then leases up to N ready tasks, and
-- records which ids this call leased (briefly), so a caller whose reply was lost can give them
-- back (unclaim.lua) instead of leaving them to expire and use up an attempt.
--
-- KEYS[1] queued      ZSET  ready ids, score = band * 1e13 + enqueue ms
-- KEYS[2] scheduled   ZSET  ids waiting for run_at, score = due ms
-- KEYS[3] retrying    ZSET  ids waiting out a backoff, score = due ms
-- KEYS[4] processing  ZSET  leased ids, score = lease deadline ms
-- KEYS[5] paused      STRING present while claiming is stopped for this type
-- KEYS[6] stats       HASH  counters (started)
-- KEYS[7] events      STREAM one entry {ids, status = processing} per call; one per promoted id
-- KEYS[8] task key prefix "<p>:{T}:task:"
-- KEYS[9] claim record STRING + TTL: the ids this call leased, comma-separated (lives one lease)
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] n: how many tasks to lease at most
-- ARGV[3] lease_ms
-- ARGV[4] worker id
-- ARGV[5] lease token prefix, unique to this call (the token is prefix .. ":" .. i)
-- ARGV[6] promote limit: how many due ids to move per set and call
-- ARGV[7] events stream MAXLEN (approximate)
-- Returns: {promoted, then 11 values per leased task: id, lease, attempts, max_attempts,
--           priority, created_at, request, account_id, user_id, parent_id, webhook_url}
local queued, scheduled, retrying, processing = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local paused, stats, events, task_prefix, record = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local now = script_now(ARGV[1])
local n = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local worker_id, token_prefix = ARGV[4], ARGV[5]
local maxlen = ARGV[7]

local promoted = promote_due(queued, scheduled, retrying, events, task_prefix, now, tonumber(ARGV[6]), maxlen)
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
  local ids = table.concat(claimed, ',')
  -- One event for the batch: readers follow a task by `id` or by membership in `ids`.
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'ids', ids, 'status', 'processing')
  redis.call('ZADD', processing, unpack(leased))
  redis.call('HINCRBY', stats, 'started', count)
  redis.call('SET', record, ids, 'PX', lease_ms)
end
return out
