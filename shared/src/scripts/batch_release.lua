-- batch_release.lua: makes a batch's held tasks of one shard claimable (issue 13). A batch is
-- written held: every task `scheduled` far enough ahead that no worker takes it while the
-- rest are written (other shards, other slots); once all are written, each shard's share is
-- released here (or discarded by batch_discard.lua if any write failed), so workers never see
-- half a batch.
--
-- KEYS[1] queued     ZSET
-- KEYS[2] scheduled  ZSET
-- KEYS[3] events     STREAM
-- KEYS[4] wake       CHANNEL
-- KEYS[5] task key prefix "<p>:{T}:task:"
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] batch id
-- ARGV[3] events stream MAXLEN (approximate)
-- ARGV[4..] pairs: task id, run_at ms its caller asked for (0 = now)
-- Returns: how many became queued.
local queued, scheduled, events, wake_channel, task_prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = script_now(ARGV[1])
local bid, maxlen = ARGV[2], ARGV[3]
local ready, ids = 0, {}
for i = 4, #ARGV, 2 do
  local id, run_at = ARGV[i], tonumber(ARGV[i + 1])
  local key = task_prefix .. id
  local f = redis.call('HMGET', key, 'status', 'batch_id', 'priority', 'created_at')
  if f[1] == 'scheduled' and f[2] == bid then
    if run_at > now then
      redis.call('ZADD', scheduled, run_at, id)
      redis.call('HSET', key, 'run_at', run_at)
    else
      redis.call('ZREM', scheduled, id)
      redis.call('HSET', key, 'status', 'queued')
      -- The hold is not the caller's: its run_at goes, or back to what the caller asked.
      if run_at > 0 then
        redis.call('HSET', key, 'run_at', run_at)
      else
        redis.call('HDEL', key, 'run_at')
      end
      redis.call('ZADD', queued, band_score(f[3], tonumber(f[4])), id)
      ids[#ids + 1] = id
      ready = ready + 1
    end
  end
end
if #ids > 0 then
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'ids', table.concat(ids, ','), 'status', 'queued')
end
wake(wake_channel, ready)
return ready
