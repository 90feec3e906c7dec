-- includes/promote.lua: moves due ids of `scheduled` and `retrying` (score = due ms) to
-- `queued` at their band, at most `limit` per set; returns how many moved. Needs band.lua.
local function promote_due(queued, scheduled, retrying, events, task_prefix, now, limit, maxlen)
  local promoted = 0
  for _, waiting in ipairs({ scheduled, retrying }) do
    local due = redis.call('ZRANGEBYSCORE', waiting, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
    if #due > 0 then
      local ready = {}
      local ids = {}
      for i = 1, #due, 2 do
        local id, at = due[i], tonumber(due[i + 1])
        local priority = redis.call('HGET', task_prefix .. id, 'priority')
        ids[#ids + 1] = id
        if priority then
          ready[#ready + 1] = band_score(priority, at)
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
  return promoted
end
