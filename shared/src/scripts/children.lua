-- children.lua: a running task records the tasks it started (a course's lesson videos), so
-- that when it ends cancelled or failed those are cancelled too. Fenced by the lease token.
--
-- KEYS[1] task key prefix "<p>:{T}:task:"
-- ARGV[1] now_ms (unused; the convention)
-- ARGV[2] id
-- ARGV[3] lease token
-- ARGV[4] children: a JSON array of [task_type, id] pairs
-- Returns: 1 written, 0 refused (lease not held)
local key = KEYS[1] .. ARGV[2]
local f = redis.call('HMGET', key, 'status', 'lease')
if f[1] ~= 'processing' or f[2] ~= ARGV[3] then
  return 0
end
redis.call('HSET', key, 'children', ARGV[4])
return 1
