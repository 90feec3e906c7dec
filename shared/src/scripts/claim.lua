-- claim.lua: promotes due scheduled and retrying tasks, then leases up to N ready tasks, and
-- records which ids this call leased (briefly), so a caller whose reply was lost can give them
-- back (unclaim.lua) instead of leaving them to expire and use up an attempt.
--
-- KEYS[1] queued      ZSET  ready ids, score = band * 1e13 + enqueue ms
-- KEYS[2] scheduled   ZSET  ids waiting for run_at, score = due ms
-- KEYS[3] retrying    ZSET  ids waiting out a backoff, score = due ms
-- KEYS[4] processing  ZSET  leased ids, score = lease deadline ms
-- KEYS[5] paused      STRING present while claiming is stopped for this type
-- KEYS[6] stats       HASH  counters (started)
-- KEYS[7] events      STREAM one entry {ids, status = processing} per call; one per promoted id
-- KEYS[8] task key prefix "<p>:{T}:task:"
-- KEYS[9] claim record STRING + TTL: the ids this call leased, comma-separated (lives one lease)
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] n: how many tasks to lease at most
-- ARGV[3] lease_ms
-- ARGV[4] worker id
-- ARGV[5] lease token prefix, unique to this call (the token is prefix .. ":" .. i)
-- ARGV[6] promote limit: how many due ids to move per set and call
-- ARGV[7] events stream MAXLEN (approximate)
-- Returns: {promoted, then 11 values per leased task: id, lease, attempts, max_attempts,
--           priority, created_at, request, account_id, user_id, parent_id, webhook_url}
local now = script_now(ARGV[1])
return claim_ready(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9],
  now, tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7])
