-- schedule_confirm.lua: the task of a claimed tick (`pending`) was enqueued (or refused for
-- good): the claim is cleared, the schedule shows its last task (or the error), and it is due
-- again at its `next` (unless paused).
--
-- KEYS[1] schedule  HASH
-- KEYS[2] due       ZSET
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] id
-- ARGV[3] the tick (ms) the caller enqueued: must be the schedule's `pending`
-- ARGV[4] the task id, or "" when the enqueue was refused
-- ARGV[5] why it was refused ("" when enqueued)
-- Returns: "ok", "gone" or "stale" (the tick was confirmed already).
local key, due = KEYS[1], KEYS[2]
local now, id, tick, task_id, err = script_now(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local f = redis.call('HMGET', key, 'next', 'pending', 'paused')
if not f[1] then
  return 'gone'
end
if f[2] ~= tick then
  return 'stale'
end
redis.call('HDEL', key, 'pending')
if task_id ~= '' then
  redis.call('HSET', key, 'last_task_id', task_id, 'last_enqueued_at', now, 'last_tick_at', tick,
    'last_error', '')
  redis.call('HINCRBY', key, 'fired', 1)
else
  redis.call('HSET', key, 'last_error', err, 'last_tick_at', tick)
end
if f[3] == '1' then
  redis.call('ZREM', due, id)
else
  redis.call('ZADD', due, f[1], id)
end
return 'ok'
