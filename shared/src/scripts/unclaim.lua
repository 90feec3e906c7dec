-- unclaim.lua: gives back what one claim call leased when its caller never got the reply (a
-- timeout): each id still leased under that call's token prefix goes back to `queued` at its
-- place with its attempt given back, as if the claim had not happened.
--
-- KEYS[1] processing  ZSET  leased ids
-- KEYS[2] queued      ZSET  ready ids
-- KEYS[3] events      STREAM
-- KEYS[4] wake      CHANNEL idle workers listen on (PUBLISH; SPUBLISH on a cluster)
-- KEYS[5] task key prefix "<p>:{T}:task:"
-- KEYS[6] claim record STRING: the ids the call leased (claim.lua)
-- ARGV[1] now_ms ("" = the server's TIME; unused but for the convention)
-- ARGV[2] the call's lease token prefix
-- ARGV[3] events stream MAXLEN (approximate)
-- Returns: {found, released}: 1 if the record existed (the claim ran), and how many ids went back
local processing, queued, events, wake_channel, task_prefix, record = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local prefix, maxlen = ARGV[2] .. ':', ARGV[3]
local ids = redis.call('GET', record)
if not ids then
  return { 0, 0 }
end
redis.call('DEL', record)
local released = 0
for id in string.gmatch(ids, '[^,]+') do
  local key = task_prefix .. id
  local f = redis.call('HMGET', key, 'status', 'lease', 'priority', 'created_at')
  if f[1] == 'processing' and f[2] and string.sub(f[2], 1, #prefix) == prefix then
    redis.call('ZREM', processing, id)
    redis.call('HINCRBY', key, 'attempts', -1)
    redis.call('HSET', key, 'status', 'queued')
    redis.call('HDEL', key, 'lease', 'worker_id', 'started_at')
    redis.call('ZADD', queued, band_score(f[3], tonumber(f[4])), id)
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'id', id, 'status', 'queued')
    released = released + 1
  end
end
wake(wake_channel, released)
return { 1, released }
