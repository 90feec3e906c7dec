-- trim.lua: removes finished tasks older than their retention: the hash, the entry in its
-- finished set and the entry in its account's index; the bytes it held leave its account's
-- usage.
--
-- KEYS[1] completed  ZSET  score = finish ms
-- KEYS[2] failed     ZSET  score = finish ms
-- KEYS[3] cancelled  ZSET  score = finish ms
-- KEYS[4] task key prefix     "<p>:{T}:task:"
-- KEYS[5] account index prefix "<p>:{T}:account:"
-- KEYS[6] account bytes HASH: request bytes each account holds
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] completed retention ms
-- ARGV[3] failed retention ms
-- ARGV[4] cancelled retention ms
-- ARGV[5] limit: how many ids to remove per set and call
-- Returns: the removed ids (so their artifacts can be deleted too)
local task_prefix, account_prefix, account_bytes = KEYS[4], KEYS[5], KEYS[6]
local now, limit = script_now(ARGV[1]), tonumber(ARGV[5])
local removed = {}
for s = 1, 3 do
  local cutoff = now - tonumber(ARGV[s + 1])
  local ids = redis.call('ZRANGEBYSCORE', KEYS[s], '-inf', cutoff, 'LIMIT', 0, limit)
  if #ids > 0 then
    for _, id in ipairs(ids) do
      local key = task_prefix .. id
      local f = redis.call('HMGET', key, 'account_id', 'request')
      if f[1] then
        redis.call('ZREM', account_prefix .. f[1], id)
        if f[2] then
          redis.call('HINCRBY', account_bytes, f[1], -#f[2])
        end
      end
      redis.call('DEL', key)
      removed[#removed + 1] = id
    end
    redis.call('ZREM', KEYS[s], unpack(ids))
  end
end
return removed
