-- includes/outbox.lua: a task's terminal transition, announced durably (issue 13). Called by
-- every script that ends a task (completed, failed, cancelled), inside that script, so the
-- announcement is written atomically with the ending, in the task's own slot:
-- - a task with a `webhook_url` gets a delivery record `<p>:{T}:hook:<task id>.<n>` (HASH:
--   event, url, account_id, body, created_at, attempts, state = pending) whose id goes into
--   the shard's delivery queue `<p>:{T}:hooks` (ZSET, score = due ms);
-- - a task of a batch puts a note `b|<batch id>|<task id>|<status>` into the same ZSET, which
--   a worker carries to the batch's record (another slot: batch_note.lua).
-- The keys are derived from the task key prefix ("<p>:{T}:task:"), spelled as keys.rs spells
-- them (`hooks`, `hook_prefix`), so no script's KEYS change.
-- `outbox_with` takes the task's `webhook_url` and `batch_id` as its caller already read them
-- (false when absent), so a hot script (complete) pays nothing more for a task with neither;
-- `outbox` reads them itself.
local function outbox_with(task_prefix, id, status, now, webhook_url, batch_id)
  if not webhook_url and not batch_id then
    return
  end
  local key = task_prefix .. id
  local f = { webhook_url, batch_id }
  local base = string.sub(task_prefix, 1, #task_prefix - 5)
  local hooks = base .. 'hooks'
  local at = string.format('%d', now)
  if f[2] then
    redis.call('ZADD', hooks, at, 'b|' .. f[2] .. '|' .. id .. '|' .. status)
  end
  if f[1] then
    local n = redis.call('HINCRBY', key, 'hooks', 1)
    local did = id .. '.' .. n
    local t = redis.call('HMGET', key, 'task_type', 'account_id', 'result', 'error')
    local result = 'null'
    if status == 'completed' and t[3] and t[3] ~= '' then
      result = t[3]
    end
    local err = 'null'
    if status ~= 'completed' and t[4] then
      err = cjson.encode(t[4])
    elseif status == 'cancelled' then
      err = '"cancelled"'
    end
    local body = '{"event":"task.finished","task_id":' .. cjson.encode(id)
      .. ',"task_type":' .. cjson.encode(t[1] or '')
      .. ',"status":"' .. status .. '","result":' .. result .. ',"error":' .. err
      .. ',"batch_id":' .. (f[2] and cjson.encode(f[2]) or 'null')
      .. ',"finished_at":' .. at .. '}'
    redis.call('HSET', base .. 'hook:' .. did, 'task_id', id, 'event', 'task.finished',
      'url', f[1], 'account_id', t[2] or '', 'body', body, 'created_at', at, 'attempts', 0,
      'state', 'pending')
    redis.call('ZADD', hooks, at, did)
  end
end

local function outbox(task_prefix, id, status, now)
  local f = redis.call('HMGET', task_prefix .. id, 'webhook_url', 'batch_id')
  outbox_with(task_prefix, id, status, now, f[1], f[2])
end
