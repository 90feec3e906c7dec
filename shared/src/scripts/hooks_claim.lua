-- hooks_claim.lua: leases due entries of one shard's delivery queue (issue 13). An entry's
-- score is when it is due; claiming pushes it to now + lease, so an entry whose worker dies
-- (SIGKILL mid-delivery) comes due again when the lease runs out and another worker takes it:
-- nothing is lost, no recoverer needed.
--
-- KEYS[1] hooks        ZSET  delivery ids and batch notes, score = due ms
-- KEYS[2] hook record prefix "<p>:{T}:hook:" .. delivery id = HASH
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] lease ms
-- ARGV[3] most entries to take
-- ARGV[4] lease token (fences the report)
-- Returns: a list of entries: {"note", member} for a batch note, {"hook", id, url,
--          account_id, body, attempts} for a delivery. Records already finished (or gone) are
--          dropped from the queue.
local hooks, prefix = KEYS[1], KEYS[2]
local now = script_now(ARGV[1])
local lease, limit, token = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local due = redis.call('ZRANGEBYSCORE', hooks, '-inf', now, 'LIMIT', 0, limit)
local until_ms = string.format('%d', now + lease)
local out = {}
for _, m in ipairs(due) do
  if string.sub(m, 1, 2) == 'b|' then
    redis.call('ZADD', hooks, until_ms, m)
    out[#out + 1] = { 'note', m }
  else
    local key = prefix .. m
    local f = redis.call('HMGET', key, 'url', 'account_id', 'body', 'attempts', 'state')
    if f[5] ~= 'pending' then
      redis.call('ZREM', hooks, m)
    else
      redis.call('ZADD', hooks, until_ms, m)
      redis.call('HSET', key, 'token', token)
      out[#out + 1] = { 'hook', m, f[1] or '', f[2] or '', f[3] or '', f[4] or '0' }
    end
  end
end
return out
