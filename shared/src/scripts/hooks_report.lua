-- hooks_report.lua: records one delivery attempt (issue 13), fenced by the claim's token: a
-- worker whose lease ran out (and whose entry another worker took) records nothing.
--
-- KEYS[1] hooks        ZSET  delivery ids, score = due ms
-- KEYS[2] hook record prefix "<p>:{T}:hook:"
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] delivery id
-- ARGV[3] lease token
-- ARGV[4] outcome: "delivered", "retry" (due again after ARGV[5] ms) or "failed" (given up)
-- ARGV[5] delay ms before the next attempt (retry)
-- ARGV[6] the attempt (JSON object: status, error, latency_ms, body); `at` is added here
-- ARGV[7] seconds a finished record is kept
-- Returns: the attempt's number (from 1), or 0 if the token no longer holds the entry.
local hooks, prefix = KEYS[1], KEYS[2]
local now = script_now(ARGV[1])
local id, token, outcome = ARGV[2], ARGV[3], ARGV[4]
local key = prefix .. id
local f = redis.call('HMGET', key, 'token', 'state')
if f[1] ~= token or f[2] ~= 'pending' then
  return 0
end
local attempt = cjson.decode(ARGV[6])
attempt['at'] = now
local n = redis.call('HINCRBY', key, 'attempts', 1)
redis.call('HSET', key, 'a:' .. n, cjson.encode(attempt), 'token', '')
if outcome == 'retry' then
  local due = now + tonumber(ARGV[5])
  redis.call('HSET', key, 'next_at', string.format('%d', due))
  redis.call('ZADD', hooks, string.format('%d', due), id)
else
  redis.call('HSET', key, 'state', outcome, 'finished_at', string.format('%d', now))
  redis.call('HDEL', key, 'next_at')
  redis.call('ZREM', hooks, id)
  redis.call('EXPIRE', key, ARGV[7])
end
return n
