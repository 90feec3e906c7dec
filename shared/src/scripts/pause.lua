-- pause.lua: stops (ARGV[2] = "1") or resumes (ARGV[2] = "0") claiming for one task type.
-- Running tasks are not touched; resuming wakes idle workers.
--
-- KEYS[1] paused  STRING present while claiming is stopped (holds when, in ms)
-- KEYS[2] events  STREAM
-- KEYS[3] wake  CHANNEL idle workers listen on (PUBLISH; SPUBLISH on a cluster)
-- ARGV[1] now_ms ("" = the server's TIME)
-- ARGV[2] "1" to pause, "0" to resume
-- ARGV[3] events stream MAXLEN (approximate)
-- Returns: 1 if the state changed, 0 if it already was so
local paused, events, wake_channel = KEYS[1], KEYS[2], KEYS[3]
local changed
if ARGV[2] == '1' then
  changed = redis.call('SET', paused, string.format('%d', script_now(ARGV[1])), 'NX') and 1 or 0
else
  changed = redis.call('DEL', paused)
  if changed == 1 then
    wake(wake_channel, 1)
  end
end
if changed == 1 then
  redis.call('XADD', events, 'MAXLEN', '~', ARGV[3], '*', 'queue', ARGV[2] == '1' and 'paused' or 'resumed')
end
return changed
