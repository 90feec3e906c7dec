-- enqueue.lua: writes one or many new tasks of one type and makes them claimable.
--
-- KEYS[1] queued     ZSET   ready ids, score = band * 1e13 + enqueue ms
-- KEYS[2] scheduled  ZSET   ids waiting for run_at, score = run_at ms
-- KEYS[3] stats      HASH   counters (enqueued)
-- KEYS[4] events     STREAM task events, capped: one entry {ids, status} per status and call
-- KEYS[5] signal     LIST   wake-up markers that idle workers block on
-- KEYS[6] task key prefix          "<p>:{T}:task:"     .. id          = the task HASH
-- KEYS[7] account index prefix     "<p>:{T}:account:"  .. account_id  = ZSET of its ids
-- KEYS[8] idempotency key prefix   "<p>:{T}:idem:"     .. account_id .. ":" .. key = STRING id
-- ARGV[1] now_ms
-- ARGV[2] task type name
-- ARGV[3] idempotency TTL in seconds
-- ARGV[4] events stream MAXLEN (approximate)
-- ARGV[5..] 11 values per task: id, priority, run_at_ms (0 = now), max_attempts, request (JSON),
--           account_id, user_id, webhook_url, parent_id, batch_id, idempotency_key ("" = none)
-- Returns: for a call of one task, {id, status, 1 if written now or 0 if an Idempotency-Key
--          found an earlier task (whose id and status these are), its queue position (ZRANK;
--          -1 if not queued), the type's counters busy_ms and completed} (the API answers an
--          enqueue in one round trip). For a batch, only the exceptions, 3 values each:
--          {position in the batch (from 1), earlier id, its status} for every task an
--          Idempotency-Key found; every other task was written as asked (`scheduled` if its
--          run_at is after now, else `queued`), which the caller knows, so a large batch
--          costs no reply per task.
local queued, scheduled, stats, events, signal = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local task_prefix, account_prefix, idem_prefix = KEYS[6], KEYS[7], KEYS[8]
local now = tonumber(ARGV[1])
local task_type = ARGV[2]
local idem_ttl = ARGV[3]
local maxlen = ARGV[4]
local STRIDE = 11
local BANDS = { urgent = 0, high = 1, normal = 2, low = 3 }
local BAND_WIDTH = 10000000000000
-- A number handed to redis.call is formatted with '%.17g' on every call: format them once.
local created = string.format('%d', now)
local band_scores = {}
-- Optional fields are written only when set: a small task stays a small listpack hash.
local OPTIONAL = { 'account_id', 'user_id', 'webhook_url', 'parent_id', 'batch_id' }

local out = {}
local single = #ARGV - 4 == STRIDE
local ready = {}
local later = {}
local written = 0
-- Per account, the ZADD arguments of its index: one call per account, not one per task.
local by_account = {}
local accounts = {}
-- Per status, the ids written: one event per status and call, not one per task.
local ids_by_status = { queued = {}, scheduled = {} }
-- One HSET argument list, refilled for each task (no table per task): the first 14 entries
-- keep their places, the rest are overwritten up to n.
local fields = { 'id', '', 'task_type', task_type, 'priority', '', 'request', '', 'attempts', '0',
  'max_attempts', '', 'created_at', created }
for i = 5, #ARGV, STRIDE do
  local id, priority, run_at = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local account_id, idem = ARGV[i + 5], ARGV[i + 10]
  local existing = false
  if idem ~= '' then
    local idem_key = idem_prefix .. account_id .. ':' .. idem
    local earlier = redis.call('GET', idem_key)
    if earlier then
      local status = redis.call('HGET', task_prefix .. earlier, 'status')
      if status then
        if single then
          out[1], out[2], out[3] = earlier, status, 0
        else
          out[#out + 1] = (i - 5) / STRIDE + 1
          out[#out + 1] = earlier
          out[#out + 1] = status
        end
        existing = true
      end
    end
    if not existing then
      redis.call('SET', idem_key, id, 'EX', idem_ttl)
    end
  end
  if not existing then
    local status = 'queued'
    fields[2], fields[6], fields[8], fields[12] = id, priority, ARGV[i + 4], ARGV[i + 3]
    local n = 14
    if run_at > now then
      status = 'scheduled'
      later[#later + 1] = run_at
      later[#later + 1] = id
      fields[15], fields[16] = 'run_at', run_at
      n = 16
    else
      local score = band_scores[priority]
      if not score then
        score = string.format('%d', BANDS[priority] * BAND_WIDTH + now)
        band_scores[priority] = score
      end
      ready[#ready + 1] = score
      ready[#ready + 1] = id
    end
    fields[n + 1], fields[n + 2] = 'status', status
    n = n + 2
    for j = 1, 5 do
      local v = ARGV[i + 4 + j]
      if v ~= '' then
        fields[n + 1], fields[n + 2] = OPTIONAL[j], v
        n = n + 2
      end
    end
    redis.call('HSET', task_prefix .. id, unpack(fields, 1, n))
    if account_id ~= '' then
      local args = by_account[account_id]
      if not args then
        args = {}
        by_account[account_id] = args
        accounts[#accounts + 1] = account_id
      end
      args[#args + 1] = created
      args[#args + 1] = id
    end
    local same = ids_by_status[status]
    same[#same + 1] = id
    written = written + 1
    if single then
      out[1], out[2], out[3] = id, status, 1
    end
  end
end
if #ready > 0 then
  redis.call('ZADD', queued, unpack(ready))
  -- One marker per task, at most 16: enough to wake that many idle workers.
  local wake = math.min(#ready / 2, 16)
  local markers = {}
  for j = 1, wake do markers[j] = 1 end
  redis.call('LPUSH', signal, unpack(markers))
  redis.call('LTRIM', signal, 0, 63)
end
if #later > 0 then
  redis.call('ZADD', scheduled, unpack(later))
end
for _, account_id in ipairs(accounts) do
  redis.call('ZADD', account_prefix .. account_id, unpack(by_account[account_id]))
end
for _, status in ipairs({ 'queued', 'scheduled' }) do
  local ids = ids_by_status[status]
  if #ids > 0 then
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'ids', table.concat(ids, ','), 'status', status)
  end
end
if written > 0 then
  redis.call('HINCRBY', stats, 'enqueued', written)
end
if single then
  out[4] = redis.call('ZRANK', queued, out[1]) or -1
  local c = redis.call('HMGET', stats, 'busy_ms', 'completed')
  out[5] = tonumber(c[1]) or 0
  out[6] = tonumber(c[2]) or 0
end
return out
