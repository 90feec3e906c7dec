-- hooks_ack.lua: takes a batch note off its shard's delivery queue once batch_note.lua has
-- counted it (issue 13). Notes carry no token: counting is idempotent, so a note carried twice
-- (its first worker died, or its lease ran out) does no harm.
--
-- KEYS[1] hooks  ZSET  the shard's delivery queue
-- ARGV[1] the note (its member)
-- Returns: 1 if it was removed.
return redis.call('ZREM', KEYS[1], ARGV[1])
