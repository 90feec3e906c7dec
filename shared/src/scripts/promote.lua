-- promote.lua: moves due scheduled and retrying tasks to `queued` and wakes idle workers (the
-- scheduler's tick; claim does the same step before it leases).
--
-- KEYS[1] queued     ZSET  ready ids, score = band * 1e13 + due ms
-- KEYS[2] scheduled  ZSET  ids waiting for run_at, score = due ms
-- KEYS[3] retrying   ZSET  ids waiting out a backoff, score = due ms
-- KEYS[4] events     STREAM one entry {id, status = queued} per promoted id
-- KEYS[5] wake     CHANNEL idle workers listen on (PUBLISH; SPUBLISH on a cluster)
-- KEYS[6] task key prefix "<p>:{T}:task:"
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] promote limit: how many due ids to move per set and call
-- ARGV[3] events stream MAXLEN (approximate)
-- Returns: how many ids moved
local queued, scheduled, retrying, events, wake_channel, task_prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now = script_now(ARGV[1])
local promoted = promote_due(queued, scheduled, retrying, events, task_prefix, now, tonumber(ARGV[2]), ARGV[3])
wake(wake_channel, promoted)
return promoted
