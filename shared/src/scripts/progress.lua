-- progress.lua: a running task reports how far it got, fenced by its lease token.
--
-- KEYS[1] events  STREAM
-- KEYS[2] task key prefix "<p>:{T}:task:"
-- ARGV[1] id
-- ARGV[2] lease token
-- ARGV[3] percent (0-100)
-- ARGV[4] message
-- ARGV[5] events stream MAXLEN (approximate)
-- Returns: 1 written, 0 refused (lease not held)
local events, task_prefix = KEYS[1], KEYS[2]
local id = ARGV[1]
local key = task_prefix .. id
local f = redis.call('HMGET', key, 'status', 'lease')
if f[1] ~= 'processing' or f[2] ~= ARGV[2] then
  return 0
end
redis.call('HSET', key, 'progress', ARGV[3], 'message', ARGV[4])
redis.call('XADD', events, 'MAXLEN', '~', ARGV[5], '*', 'id', id, 'status', 'processing', 'progress', ARGV[3], 'message', ARGV[4])
return 1
