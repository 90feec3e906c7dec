-- includes/band.lua: a ready task's score in `queued`: band × 10^13 + enqueue ms, so that
-- every urgent task runs before any high one, and within a band the oldest first.
local BANDS = { urgent = 0, high = 1, normal = 2, low = 3 }
local BAND_WIDTH = 10000000000000
local function band_score(priority, created_ms)
  return BANDS[priority] * BAND_WIDTH + created_ms
end
