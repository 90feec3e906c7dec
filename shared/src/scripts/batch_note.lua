-- batch_note.lua: one task of a batch reached a terminal state (issue 13). Runs in the batch's
-- slot (a task and its batch may live in different slots, so the task's own script leaves a
-- note in its shard's delivery queue, and a worker carries it here). Idempotent: a note
-- carried twice (its worker died before taking it off) counts once. The batch finishes
-- exactly once fleet-wide: the call that sees every task done and wins HSETNX finished_at
-- writes the `batch.finished` delivery (if the batch has a webhook_url) in this slot's queue.
--
-- KEYS[1] batch        HASH  the batch record (total, account_id, webhook_url, ...)
-- KEYS[2] batch done   HASH  task id -> the status it ended with
-- KEYS[3] hooks        ZSET  this shard's delivery queue
-- KEYS[4] hook record prefix "<p>:{T}:hook:"
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] batch id
-- ARGV[3] task id
-- ARGV[4] status it ended with
-- ARGV[5] seconds a finished batch's record is kept (its keys expire then)
-- Returns: 0 no such batch, 1 counted, 2 this call finished the batch.
local batch, done, hooks, prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = script_now(ARGV[1])
local bid, tid, status = ARGV[2], ARGV[3], ARGV[4]
local total = tonumber(redis.call('HGET', batch, 'total') or '')
if not total then
  return 0
end
redis.call('HSETNX', done, tid, status)
if redis.call('HLEN', done) < total then
  return 1
end
local at = string.format('%d', now)
if redis.call('HSETNX', batch, 'finished_at', at) == 0 then
  return 1
end
local counts = { completed = 0, failed = 0, cancelled = 0 }
for _, s in ipairs(redis.call('HVALS', done)) do
  counts[s] = (counts[s] or 0) + 1
end
redis.call('HSET', batch, 'completed', counts.completed, 'failed', counts.failed, 'cancelled', counts.cancelled)
redis.call('EXPIRE', batch, ARGV[5])
redis.call('EXPIRE', done, ARGV[5])
local b = redis.call('HMGET', batch, 'webhook_url', 'account_id')
if b[1] then
  local did = bid .. '.finished'
  local body = '{"event":"batch.finished","batch_id":' .. cjson.encode(bid)
    .. ',"total":' .. total .. ',"completed":' .. counts.completed
    .. ',"failed":' .. counts.failed .. ',"cancelled":' .. counts.cancelled
    .. ',"finished_at":' .. at .. '}'
  redis.call('HSET', prefix .. did, 'task_id', bid, 'event', 'batch.finished', 'url', b[1],
    'account_id', b[2] or '', 'body', body, 'created_at', at, 'attempts', 0, 'state', 'pending')
  redis.call('ZADD', hooks, at, did)
end
return 2
