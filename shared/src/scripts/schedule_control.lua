-- schedule_control.lua: pause, resume or delete a schedule.
-- pause: no tick is claimed while paused (a tick claimed before is still enqueued);
-- resume: due again at its kept `next`, so the ticks missed while paused count as missed (its
-- catch_up decides: `skip` enqueues none of them, `one` a single catch-up);
-- delete: gone, with its place in every index.
--
-- KEYS[1] schedule  HASH
-- KEYS[2] due       ZSET
-- KEYS[3] all       ZSET
-- KEYS[4] account   ZSET   the schedule's account's index
-- ARGV[1] now_ms ("" = the server's TIME) (unused: kept for the scripts' one convention)
-- ARGV[2] id
-- ARGV[3] "pause", "resume" or "delete"
-- Returns: "ok" or "not_found".
local key, due, all, account = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, op = ARGV[2], ARGV[3]
local f = redis.call('HMGET', key, 'next', 'pending')
if not f[1] then
  return 'not_found'
end
local pending = f[2] or ''
if op == 'pause' then
  redis.call('HSET', key, 'paused', '1')
  if pending == '' then
    redis.call('ZREM', due, id)
  end
elseif op == 'resume' then
  redis.call('HSET', key, 'paused', '0')
  if pending ~= '' then
    redis.call('ZADD', due, pending, id)
  else
    redis.call('ZADD', due, f[1], id)
  end
elseif op == 'delete' then
  redis.call('DEL', key)
  redis.call('ZREM', due, id)
  redis.call('ZREM', all, id)
  redis.call('ZREM', account, id)
else
  return redis.error_reply('unknown op ' .. op)
end
return 'ok'
