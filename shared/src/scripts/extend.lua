-- extend.lua: a worker's heartbeat for the tasks it holds: pushes their lease deadlines out.
--
-- KEYS[1] processing  ZSET  leased ids, score = lease deadline ms
-- KEYS[2] task key prefix "<p>:{T}:task:"
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] lease_ms
-- ARGV[3..] pairs: id, lease token
-- Returns: {lost, cancel}: ids whose lease this worker no longer holds (recovered, finished
--          or gone; they were not extended), and ids that were extended but are cancel-requested.
local processing, task_prefix = KEYS[1], KEYS[2]
local deadline = script_now(ARGV[1]) + tonumber(ARGV[2])
local lost, cancel, extended = {}, {}, {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', task_prefix .. id, 'status', 'lease', 'cancel_requested')
  if f[1] ~= 'processing' or f[2] ~= token then
    lost[#lost + 1] = id
  else
    extended[#extended + 1] = deadline
    extended[#extended + 1] = id
    if f[3] == '1' then cancel[#cancel + 1] = id end
  end
end
if #extended > 0 then
  redis.call('ZADD', processing, unpack(extended))
end
return { lost, cancel }
