-- schedule_advance.lua: a scheduler claims a schedule's due tick, compare-and-set: only if the
-- schedule's `next` is still the tick the caller read and no claimed tick waits, it moves
-- `next` on and records the tick to enqueue (`pending`), so two schedulers racing can never
-- both advance, nor skip a tick the other claimed. The task itself lives in another slot: the
-- caller enqueues it (with an id derived from schedule and tick, so a second enqueue finds the
-- first) and then confirms (schedule_confirm.lua). A claimed tick whose confirm never came
-- stays due, and any scheduler enqueues it again (the same id) and confirms it.
--
-- KEYS[1] schedule  HASH
-- KEYS[2] due       ZSET   score = ms the schedule next needs a scheduler
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] id
-- ARGV[3] expected next (ms): what the caller read
-- ARGV[4] new next (ms)
-- ARGV[5] the tick to enqueue (ms), or "" for none (missed ticks skipped)
-- ARGV[6] how many due ticks are not enqueued (missed, skipped or folded into a catch-up)
-- Returns: "ok", "gone" (deleted), "paused" or "conflict" (another scheduler moved it first).
local key, due = KEYS[1], KEYS[2]
local id, expected, new_next, fire = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local f = redis.call('HMGET', key, 'next', 'pending', 'paused')
if not f[1] then
  return 'gone'
end
if f[3] == '1' then
  return 'paused'
end
if f[1] ~= expected or (f[2] and f[2] ~= '') then
  return 'conflict'
end
redis.call('HSET', key, 'next', new_next)
redis.call('HINCRBY', key, 'skipped', tonumber(ARGV[6]) or 0)
if fire ~= '' then
  redis.call('HSET', key, 'pending', fire)
  redis.call('ZADD', due, fire, id)
else
  redis.call('ZADD', due, new_next, id)
end
return 'ok'
