-- includes/now.lua: the time a script acts at. Every script takes it as ARGV[1]: a number of
-- ms since the epoch (a test moving time), or empty: then the Redis server's own TIME, so that
-- every process's leases, due times and backoffs are judged by one clock (DESIGN §5).
local function script_now(arg)
  local ms = tonumber(arg)
  if ms then
    return ms
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
