-- enqueue.lua: writes one or many new tasks of one type and makes them claimable.
--
-- KEYS[1] queued     ZSET   ready ids, score = band * 1e13 + enqueue ms
-- KEYS[2] scheduled  ZSET   ids waiting for run_at, score = run_at ms
-- KEYS[3] stats      HASH   counters (enqueued)
-- KEYS[4] events     STREAM task events, capped: one entry {ids, status} per status and call
-- KEYS[5] wake       CHANNEL idle workers listen on (PUBLISH; SPUBLISH on a cluster)
-- KEYS[6] task key prefix          "<p>:{T}:task:"     .. id          = the task HASH
-- KEYS[7] account index prefix     "<p>:{T}:account:"  .. account_id  = ZSET of its ids
-- KEYS[8] idempotency key prefix   "<p>:{T}:idem:"     .. account_id .. ":" .. key = STRING id
-- KEYS[9] account bytes HASH: request bytes each account holds (its quota; trim gives back)
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] task type name
-- ARGV[3] idempotency TTL in seconds
-- ARGV[4] events stream MAXLEN (approximate)
-- ARGV[5] mode: "all" (if any task is refused, nothing is written) or "each" (each on its own)
-- ARGV[6] most tasks of this type one account may hold (0 = no limit)
-- ARGV[7] most request bytes of this type one account may hold (0 = no limit)
-- ARGV[8] "1": answer each task's queue position (ZRANK in queued; -1 if not queued), for
--         callers that show it; "" = no positions (a batch that does not need them)
-- ARGV[9..] 13 values per task: id, explicit ("1" if the caller chose the id), priority,
--           run_at_ms (0 = now), max_attempts, request (JSON), account_id, user_id,
--           webhook_url, parent_id, batch_id, idempotency_key ("" = none), fingerprint (of
--           what the caller asked; compared when an Idempotency-Key is used again)
-- Returns: {now, busy_ms, completed, P, then P positions (one per task, in order, if ARGV[8]
--          asked: the ZRANK in queued of the task each answers with, else -1), then 4 values
--          per task that was not written as asked: its index in the call (from 1), outcome,
--          id, status}. busy_ms and completed are the type's counters (the API's estimate).
--          Outcomes: "exists" (an
--          Idempotency-Key or the explicit id found an earlier task: id and status are that
--          task's), "mismatch" (the Idempotency-Key was used with a different request: the
--          earlier task's id and status), "quota_tasks" and "quota_bytes" (the account holds
--          its most). Every other task was written as asked (`scheduled` if its run_at is
--          after now, else `queued`), which the caller knows, so a batch costs no reply per task.
local queued, scheduled, stats, events, wake_channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local task_prefix, account_prefix, idem_prefix, account_bytes = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local now = script_now(ARGV[1])
local task_type = ARGV[2]
local idem_ttl = ARGV[3]
local maxlen = ARGV[4]
local all_or_nothing = ARGV[5] == 'all'
local max_tasks, max_bytes = tonumber(ARGV[6]), tonumber(ARGV[7])
local want_positions = ARGV[8] == '1'
local FIRST, STRIDE = 9, 13
local count = (#ARGV - FIRST + 1) / STRIDE
-- A number handed to redis.call is formatted with '%.17g' on every call: format them once.
local created = string.format('%d', now)

-- Pass 1: which tasks are new, which an earlier task answers, which the account's quota
-- refuses. Nothing is written yet, so "all" can refuse the call whole.
local exceptions = {}
local refused = false
local skip = {}
-- Keys and ids chosen earlier in this same call: a repeat within the call is answered by the
-- first, as a repeat in a later call would be.
local seen = {}
local usage = {}
local function status_of(run_at)
  return run_at > now and 'scheduled' or 'queued'
end
for k = 1, count do
  local i = FIRST + (k - 1) * STRIDE
  local id, explicit, run_at = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 3])
  local request, account_id, idem, fp = ARGV[i + 5], ARGV[i + 6], ARGV[i + 11], ARGV[i + 12]
  local found, found_status, found_fp
  local lookup = idem ~= '' and ('k' .. account_id .. ':' .. idem) or (explicit == '1' and 'i' .. id or nil)
  if lookup and seen[lookup] then
    found, found_status, found_fp = seen[lookup][1], seen[lookup][2], seen[lookup][3]
  elseif idem ~= '' then
    local earlier = redis.call('GET', idem_prefix .. account_id .. ':' .. idem)
    if earlier then
      local f = redis.call('HMGET', task_prefix .. earlier, 'status', 'fingerprint')
      if f[1] then
        found, found_status, found_fp = earlier, f[1], f[2] or ''
      end
    end
  end
  if not found and explicit == '1' then
    local s = redis.call('HGET', task_prefix .. id, 'status')
    if s then
      found, found_status, found_fp = id, s, fp
    end
  end
  if found then
    skip[k] = true
    local outcome = (idem ~= '' and found_fp ~= fp) and 'mismatch' or 'exists'
    refused = refused or outcome == 'mismatch'
    exceptions[#exceptions + 1] = { k, outcome, found, found_status }
  else
    local u = usage[account_id]
    if not u and (max_tasks > 0 or max_bytes > 0) then
      u = { tasks = redis.call('ZCARD', account_prefix .. account_id),
            bytes = tonumber(redis.call('HGET', account_bytes, account_id)) or 0 }
      usage[account_id] = u
    end
    local over
    if u then
      if max_tasks > 0 and u.tasks + 1 > max_tasks then
        over = 'quota_tasks'
      elseif max_bytes > 0 and u.bytes + #request > max_bytes then
        over = 'quota_bytes'
      end
    end
    if over then
      skip[k] = true
      refused = true
      exceptions[#exceptions + 1] = { k, over, '', '' }
    else
      if u then
        u.tasks = u.tasks + 1
        u.bytes = u.bytes + #request
      end
      if lookup then
        seen[lookup] = { id, status_of(run_at), fp }
      end
    end
  end
end

local out = { now, 0, 0, 0 }
local function answer()
  for _, e in ipairs(exceptions) do
    for j = 1, 4 do out[#out + 1] = e[j] end
  end
  return out
end
if refused and all_or_nothing then
  return answer()
end

-- Pass 2: write the new tasks.
local ready = {}
local later = {}
local written = 0
local band_scores = {}
-- Optional fields are written only when set: a small task stays a small listpack hash.
local OPTIONAL = { 'account_id', 'user_id', 'webhook_url', 'parent_id', 'batch_id' }
-- Per account, the ZADD arguments of its index and the bytes added: one call per account.
local by_account = {}
local bytes_by_account = {}
local accounts = {}
-- Per status, the ids written: one event per status and call, not one per task.
local ids_by_status = { queued = {}, scheduled = {} }
-- One HSET argument list, refilled for each task (no table per task): the first 14 entries
-- keep their places, the rest are overwritten up to n.
local fields = { 'id', '', 'task_type', task_type, 'priority', '', 'request', '', 'attempts', '0',
  'max_attempts', '', 'created_at', created }
for k = 1, count do
  if not skip[k] then
    local i = FIRST + (k - 1) * STRIDE
    local id, priority, run_at = ARGV[i], ARGV[i + 2], tonumber(ARGV[i + 3])
    local request, account_id, idem = ARGV[i + 5], ARGV[i + 6], ARGV[i + 11]
    local status = status_of(run_at)
    fields[2], fields[6], fields[8], fields[12] = id, priority, request, ARGV[i + 4]
    local n = 14
    if status == 'scheduled' then
      later[#later + 1] = run_at
      later[#later + 1] = id
      fields[15], fields[16] = 'run_at', run_at
      n = 16
    else
      local score = band_scores[priority]
      if not score then
        score = string.format('%d', band_score(priority, now))
        band_scores[priority] = score
      end
      ready[#ready + 1] = score
      ready[#ready + 1] = id
    end
    fields[n + 1], fields[n + 2] = 'status', status
    n = n + 2
    for j = 1, 5 do
      local v = ARGV[i + 5 + j]
      if v ~= '' then
        fields[n + 1], fields[n + 2] = OPTIONAL[j], v
        n = n + 2
      end
    end
    if idem ~= '' then
      fields[n + 1], fields[n + 2] = 'fingerprint', ARGV[i + 12]
      n = n + 2
      redis.call('SET', idem_prefix .. account_id .. ':' .. idem, id, 'EX', idem_ttl)
    end
    redis.call('HSET', task_prefix .. id, unpack(fields, 1, n))
    if account_id ~= '' then
      local args = by_account[account_id]
      if not args then
        args = {}
        by_account[account_id] = args
        bytes_by_account[account_id] = 0
        accounts[#accounts + 1] = account_id
      end
      args[#args + 1] = created
      args[#args + 1] = id
      bytes_by_account[account_id] = bytes_by_account[account_id] + #request
    end
    local same = ids_by_status[status]
    same[#same + 1] = id
    written = written + 1
  end
end
if #ready > 0 then
  redis.call('ZADD', queued, unpack(ready))
  -- One message for the call, carrying how many became ready.
  wake(wake_channel, #ready / 2)
end
if #later > 0 then
  redis.call('ZADD', scheduled, unpack(later))
end
for _, account_id in ipairs(accounts) do
  redis.call('ZADD', account_prefix .. account_id, unpack(by_account[account_id]))
  redis.call('HINCRBY', account_bytes, account_id, bytes_by_account[account_id])
end
for _, status in ipairs({ 'queued', 'scheduled' }) do
  local ids = ids_by_status[status]
  if #ids > 0 then
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'ids', table.concat(ids, ','), 'status', status)
  end
end
if written > 0 then
  redis.call('HINCRBY', stats, 'enqueued', written)
end
if want_positions then
  local c = redis.call('HMGET', stats, 'busy_ms', 'completed')
  out[2] = tonumber(c[1]) or 0
  out[3] = tonumber(c[2]) or 0
  out[4] = count
  -- The id each task answers with: its own, or the earlier task's that an exception names.
  local answered_by = {}
  for _, e in ipairs(exceptions) do
    if e[3] ~= '' then answered_by[e[1]] = e[3] end
  end
  for k = 1, count do
    local id = answered_by[k] or ARGV[FIRST + (k - 1) * STRIDE]
    out[#out + 1] = redis.call('ZRANK', queued, id) or -1
  end
end
return answer()
