-- trim.lua: removes finished tasks older than their retention: the hash, the entry in its
-- finished set and the entry in its account's index.
--
-- KEYS[1] completed  ZSET  score = finish ms
-- KEYS[2] failed     ZSET  score = finish ms
-- KEYS[3] cancelled  ZSET  score = finish ms
-- KEYS[4] task key prefix     "<p>:{T}:task:"
-- KEYS[5] account index prefix "<p>:{T}:account:"
-- ARGV[1] now_ms
-- ARGV[2] completed retention ms
-- ARGV[3] failed retention ms
-- ARGV[4] cancelled retention ms
-- ARGV[5] limit: how many ids to remove per set and call
-- Returns: the removed ids (so their artifacts can be deleted too)
local task_prefix, account_prefix = KEYS[4], KEYS[5]
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[5])
local removed = {}
for s = 1, 3 do
  local cutoff = now - tonumber(ARGV[s + 1])
  local ids = redis.call('ZRANGEBYSCORE', KEYS[s], '-inf', cutoff, 'LIMIT', 0, limit)
  if #ids > 0 then
    for _, id in ipairs(ids) do
      local key = task_prefix .. id
      local account = redis.call('HGET', key, 'account_id')
      if account then
        redis.call('ZREM', account_prefix .. account, id)
      end
      redis.call('DEL', key)
      removed[#removed + 1] = id
    end
    redis.call('ZREM', KEYS[s], unpack(ids))
  end
end
return removed
