-- pause.lua: stops (ARGV[1] = "1") or resumes (ARGV[1] = "0") claiming for one task type.
-- Running tasks are not touched; resuming wakes idle workers.
--
-- KEYS[1] paused  STRING present while claiming is stopped
-- KEYS[2] events  STREAM
-- KEYS[3] signal  LIST   wake-up markers
-- ARGV[1] "1" to pause, "0" to resume
-- ARGV[2] now_ms
-- ARGV[3] events stream MAXLEN (approximate)
-- Returns: 1 if the state changed, 0 if it already was so
local paused, events, signal = KEYS[1], KEYS[2], KEYS[3]
local changed
if ARGV[1] == '1' then
  changed = redis.call('SET', paused, ARGV[2], 'NX') and 1 or 0
else
  changed = redis.call('DEL', paused)
  if changed == 1 then
    redis.call('LPUSH', signal, 1)
    redis.call('LTRIM', signal, 0, 63)
  end
end
if changed == 1 then
  redis.call('XADD', events, 'MAXLEN', '~', ARGV[3], '*', 'queue', ARGV[1] == '1' and 'paused' or 'resumed')
end
return changed
