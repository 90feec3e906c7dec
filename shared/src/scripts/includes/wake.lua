-- includes/wake.lua: wakes up to `n` idle workers (at most 16) blocked on the type's signal
-- list; the list is capped, so markers nobody took do not pile up.
local function wake(signal, n)
  n = math.min(n, 16)
  if n < 1 then
    return
  end
  local markers = {}
  for j = 1, n do
    markers[j] = 1
  end
  redis.call('LPUSH', signal, unpack(markers))
  redis.call('LTRIM', signal, 0, 63)
end
