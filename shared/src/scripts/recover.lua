-- recover.lua: takes back tasks whose worker is gone: leases past their deadline, and the
-- leases of workers named as dead (their heartbeat key expired). A task with attempts left goes
-- back to `queued` at the place it had (its lease expiry already delayed it); one without ends
-- `failed` with error "lease expired". The old lease token is dropped, so the old worker's
-- late extend, complete or fail is refused.
--
-- KEYS[1] processing  ZSET  leased ids, score = lease deadline ms
-- KEYS[2] queued      ZSET
-- KEYS[3] failed      ZSET
-- KEYS[4] cancelled   ZSET
-- KEYS[5] stats       HASH  counters (recovered, failed, cancelled)
-- KEYS[6] events      STREAM
-- KEYS[7] wake      CHANNEL idle workers listen on (PUBLISH; SPUBLISH on a cluster)
-- KEYS[8] task key prefix "<p>:{T}:task:"
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] limit: how many leases to look at per call
-- ARGV[3] events stream MAXLEN (approximate)
-- ARGV[4] older-than ms: also take back leases whose attempt started more than this long ago
--         (an operator's cleanup of stuck tasks); 0 = none
-- ARGV[5..] ids of dead workers (optional)
-- Returns: {requeued ids, failed ids, cancelled ids, children}: children lists the `children`
--          field (JSON, as in fail.lua) of each task that ended failed or cancelled and had one
local processing, queued, failed, cancelled = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local stats, events, wake_channel, task_prefix = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local now, limit, maxlen = script_now(ARGV[1]), tonumber(ARGV[2]), ARGV[3]

local older_than = tonumber(ARGV[4])
local started_before = older_than > 0 and now - older_than or 0
local candidates = redis.call('ZRANGEBYSCORE', processing, '-inf', now, 'LIMIT', 0, limit)
if #ARGV >= 5 or started_before > 0 then
  local dead = {}
  for i = 5, #ARGV do dead[ARGV[i]] = true end
  local seen = {}
  for _, id in ipairs(candidates) do seen[id] = true end
  for _, id in ipairs(redis.call('ZRANGE', processing, 0, limit - 1)) do
    if not seen[id] then
      local f = redis.call('HMGET', task_prefix .. id, 'worker_id', 'started_at')
      if dead[f[1] or ''] or (tonumber(f[2]) or now) < started_before then
        candidates[#candidates + 1] = id
      end
    end
  end
end

local requeued, dead_letters, ended, children = {}, {}, {}, {}
for _, id in ipairs(candidates) do
  local key = task_prefix .. id
  local f = redis.call('HMGET', key, 'status', 'attempts', 'max_attempts', 'priority', 'created_at', 'cancel_requested', 'worker_id', 'children')
  redis.call('ZREM', processing, id)
  if f[1] == 'processing' then
    local err = 'lease expired (worker ' .. (f[7] or '?') .. ', attempt ' .. f[2] .. ')'
    redis.call('HDEL', key, 'lease')
    local status
    if f[6] == '1' then
      status = 'cancelled'
      redis.call('HSET', key, 'status', status, 'finished_at', now)
      redis.call('ZADD', cancelled, now, id)
      redis.call('HINCRBY', stats, 'cancelled', 1)
      outbox(task_prefix, id, status, now)
      ended[#ended + 1] = id
    elseif tonumber(f[2]) < tonumber(f[3]) then
      status = 'queued'
      redis.call('HSET', key, 'status', status, 'error', err)
      redis.call('ZADD', queued, band_score(f[4], tonumber(f[5])), id)
      requeued[#requeued + 1] = id
    else
      status = 'failed'
      redis.call('HSET', key, 'status', status, 'error', err, 'finished_at', now)
      redis.call('ZADD', failed, now, id)
      redis.call('HINCRBY', stats, 'failed', 1)
      outbox(task_prefix, id, status, now)
      dead_letters[#dead_letters + 1] = id
    end
    if status ~= 'queued' and f[8] then
      children[#children + 1] = f[8]
    end
    redis.call('HINCRBY', stats, 'recovered', 1)
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'id', id, 'status', status, 'error', err)
  end
end
wake(wake_channel, #requeued)
return { requeued, dead_letters, ended, children }
