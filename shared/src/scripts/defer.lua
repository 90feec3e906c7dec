-- defer.lua: a running task that waits for something (a course waiting for its lessons) gives
-- its worker slot back: it goes to `scheduled` until ARGV due time, and the attempt it used is
-- given back, so waiting never uses up attempts. Fenced by the lease token.
--
-- KEYS[1] processing  ZSET  leased ids
-- KEYS[2] scheduled   ZSET  ids waiting for a time, score = due ms
-- KEYS[3] events      STREAM
-- KEYS[4] task key prefix "<p>:{T}:task:"
-- ARGV[1] id
-- ARGV[2] lease token
-- ARGV[3] due ms
-- ARGV[4] message
-- ARGV[5] events stream MAXLEN (approximate)
-- Returns: 1 deferred, 0 refused (lease not held); a cancel-requested task is not deferred
--          (0) so that its worker acknowledges the cancel instead.
local processing, scheduled, events, task_prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, token, due = ARGV[1], ARGV[2], tonumber(ARGV[3])
local key = task_prefix .. id
local f = redis.call('HMGET', key, 'status', 'lease', 'cancel_requested')
if f[1] ~= 'processing' or f[2] ~= token or f[3] == '1' then
  return 0
end
redis.call('ZREM', processing, id)
redis.call('HINCRBY', key, 'attempts', -1)
redis.call('HSET', key, 'status', 'scheduled', 'run_at', due, 'message', ARGV[4])
redis.call('HDEL', key, 'lease', 'worker_id')
redis.call('ZADD', scheduled, due, id)
redis.call('XADD', events, 'MAXLEN', '~', ARGV[5], '*', 'id', id, 'status', 'scheduled', 'message', ARGV[4])
return 1
