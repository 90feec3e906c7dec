-- batch_discard.lua: takes back the held tasks of one shard of a batch whose writing failed
-- part-way (issue 13): all or none. Only tasks still held (`scheduled`, of this batch) go.
--
-- KEYS[1] scheduled      ZSET
-- KEYS[2] stats          HASH  (enqueued given back)
-- KEYS[3] account bytes  HASH
-- KEYS[4] task key prefix    "<p>:{T}:task:"
-- KEYS[5] account index prefix "<p>:{T}:account:"
-- ARGV[1] batch id
-- ARGV[2..] task ids
-- Returns: how many were removed.
local scheduled, stats, account_bytes, task_prefix, account_prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local bid = ARGV[1]
local removed = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local key = task_prefix .. id
  local f = redis.call('HMGET', key, 'status', 'batch_id', 'account_id', 'request')
  if f[1] == 'scheduled' and f[2] == bid then
    redis.call('ZREM', scheduled, id)
    if f[3] then
      redis.call('ZREM', account_prefix .. f[3], id)
      redis.call('HINCRBY', account_bytes, f[3], -#(f[4] or ''))
    end
    redis.call('HINCRBY', stats, 'enqueued', -1)
    redis.call('DEL', key)
    removed = removed + 1
  end
end
return removed
