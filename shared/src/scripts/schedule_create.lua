-- schedule_create.lua: writes a new recurring schedule, active, due at its first tick.
--
-- KEYS[1] schedule  HASH   the schedule (DESIGN §3)
-- KEYS[2] due       ZSET   active schedule ids, score = ms they next need a scheduler
-- KEYS[3] all       ZSET   every schedule id, score = created ms
-- KEYS[4] account   ZSET   the account's schedule ids, score = created ms
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] id
-- ARGV[3] next: the first tick, ms
-- ARGV[4] how many schedules one account may hold
-- ARGV[5..] field, value pairs of the schedule's definition
-- Returns: "created", "exists" (the id is taken; nothing changes) or "quota" (the account holds
--          its most schedules; nothing written).
local key, due, all, account = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, id, next, most = script_now(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
if redis.call('EXISTS', key) == 1 then
  return 'exists'
end
if redis.call('ZCARD', account) >= most then
  return 'quota'
end
local fields = { 'id', id, 'created_at', now, 'next', next, 'paused', '0', 'fired', 0, 'skipped', 0 }
for i = 5, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', key, unpack(fields))
redis.call('ZADD', due, next, id)
redis.call('ZADD', all, now, id)
redis.call('ZADD', account, now, id)
return 'created'
