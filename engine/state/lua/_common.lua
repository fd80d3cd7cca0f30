-- Helpers prepended to every script by engine.state.redis (Redis runs each script atomically).
-- Numbers travel as strings: "%.17g" out and tonumber() in round-trip a double exactly.

-- Server time in seconds since EPOCH (a recent origin keeps doubles precise to ~1e-8 s).
-- An explicit `now` argument (tests) replaces the server clock.
local EPOCH = 1700000000

local function clock(arg)
  if arg ~= nil and arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return (tonumber(t[1]) - EPOCH) + tonumber(t[2]) / 1000000
end

local function num(x)
  return string.format('%.17g', x)
end

-- math.nextafter(x, inf), which Lua 5.1 lacks: x plus one unit in the last place.
local function ulp_above(y)
  local _, e = math.frexp(y)
  return math.ldexp(1, math.max(e - 53, -1074))
end

local function ulp_below(y)
  local m, e = math.frexp(y)
  if m == 0.5 then
    return math.ldexp(1, math.max(e - 54, -1074))
  end
  return math.ldexp(1, math.max(e - 53, -1074))
end

local function nextup(x)
  if x ~= x or x == math.huge then
    return x
  end
  if x == 0 then
    return math.ldexp(1, -1074)
  end
  if x > 0 then
    return x + ulp_above(x)
  end
  return -((-x) - ulp_below(-x))
end

-- engine.policies._expiry.delay_until: smallest d >= 0 with now + d >= deadline.
local function delay_until(now, deadline)
  local delay = math.max(0, deadline - now)
  for _ = 1, 64 do
    if now + delay >= deadline then
      return delay
    end
    delay = math.max(nextup(delay), nextup(now + delay) - now)
  end
  return delay
end
