-- includes/claim.lua: the claim itself, shared by claim.lua and complete.lua (which claims the
-- next tasks in the same call as it completes others). Promotes due scheduled and retrying
-- ids, then leases up to n ready ids unless the type is paused, records the ids it leased
-- under `record` for one lease (unclaim.lua), and returns {promoted, then 11 values per
-- leased task: id, lease, attempts, max_attempts, priority, created_at, request, account_id,
-- user_id, parent_id, webhook_url}. Needs band.lua and promote.lua.
local function claim_ready(queued, scheduled, retrying, processing, paused, stats, events, task_prefix, record,
                           now, n, lease_ms, worker_id, token_prefix, promote_limit, maxlen)
  local promoted = promote_due(queued, scheduled, retrying, events, task_prefix, now, promote_limit, maxlen)
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
end
