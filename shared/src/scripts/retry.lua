-- retry.lua: puts a failed or cancelled task back in its queue, from the outside (its owner or
-- an operator): a new attempt budget, at its band's place as if enqueued now, and what ended it
-- (status, error, attempts, finish time) appended to its `previous_errors` (a JSON array, the
-- newest last, at most ARGV[5] entries). Any other state is refused and nothing changes.
--
-- KEYS[1] queued     ZSET   ready ids, score = band * 1e13 + ms
-- KEYS[2] failed     ZSET   finished ids, score = finish ms
-- KEYS[3] cancelled  ZSET   finished ids, score = finish ms
-- KEYS[4] stats      HASH   counters (resubmitted)
-- KEYS[5] events     STREAM
-- KEYS[6] wake       CHANNEL idle workers listen on (PUBLISH; SPUBLISH on a cluster)
-- KEYS[7] task key prefix "<p>:{T}:task:"
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] id
-- ARGV[3] max_attempts of the new budget (the type's, as configured now)
-- ARGV[4] events stream MAXLEN (approximate)
-- ARGV[5] how many earlier endings `previous_errors` keeps
-- Returns: {outcome, status, children}: outcome "queued" (retried), "conflict" (neither failed
--          nor cancelled: status is what it is) or "not_found"; children is the task's
--          `children` field (JSON) when it was retried, so the caller retries what it started.
local queued, failed, cancelled = KEYS[1], KEYS[2], KEYS[3]
local stats, events, wake_channel, task_prefix = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local now, id, max_attempts = script_now(ARGV[1]), ARGV[2], ARGV[3]
local maxlen, keep = ARGV[4], tonumber(ARGV[5])
local key = task_prefix .. id
local f = redis.call('HMGET', key, 'status', 'priority', 'error', 'attempts', 'finished_at',
  'previous_errors', 'children')
local status = f[1]
if not status then
  return { 'not_found', '', '' }
end
local finished = { failed = failed, cancelled = cancelled }
if not finished[status] then
  return { 'conflict', status, '' }
end
local history = {}
if f[6] and f[6] ~= '' then
  local ok, decoded = pcall(cjson.decode, f[6])
  if ok and type(decoded) == 'table' then
    history = decoded
  end
end
history[#history + 1] = {
  status = status,
  error = f[3] or '',
  attempts = tonumber(f[4]) or 0,
  finished_at = tonumber(f[5]) or now,
  retried_at = now,
}
while #history > keep do
  table.remove(history, 1)
end
redis.call('ZREM', finished[status], id)
redis.call('HDEL', key, 'error', 'finished_at', 'started_at', 'worker_id', 'lease',
  'cancel_requested', 'result', 'progress', 'message', 'run_at')
redis.call('HSET', key, 'status', 'queued', 'attempts', 0, 'max_attempts', max_attempts,
  'previous_errors', cjson.encode(history))
redis.call('ZADD', queued, string.format('%d', band_score(f[2], now)), id)
redis.call('HINCRBY', stats, 'resubmitted', 1)
redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'id', id, 'status', 'queued')
wake(wake_channel, 1)
return { 'queued', 'queued', f[7] or '' }
