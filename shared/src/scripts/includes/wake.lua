-- includes/wake.lua: tells idle workers that `n` tasks became ready in this shard, on its
-- wake channel (passed as a KEY: it is in the shard's slot). A single server PUBLISHes; on a
-- cluster the broker runs this script's variant that SPUBLISHes (sharded pub/sub: the message
-- stays on the shard's node instead of crossing the whole cluster bus).
local function wake(channel, n)
  if n > 0 then
    redis.call('PUBLISH', channel, n)
  end
end
