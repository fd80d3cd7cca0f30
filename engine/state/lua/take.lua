-- StateStore.take: engine.policies.rate_limit.take on one bucket, as MemoryStateStore.take_now.
-- KEYS[1]  bucket hash {t = tokens, u = updated}
-- ARGV     now ('' = server clock), rate_per_second, burst, cost, tolerance, expire ('1'/'0')
-- Returns  {allowed (1/0), retry_after, tokens, updated}

local now = clock(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local tolerance = tonumber(ARGV[5])

local function level(tokens, updated, at)
  if at <= updated then
    return tokens
  end
  return math.min(burst, tokens + (at - updated) * rate)
end

-- rate_limit._delay_until_level: smallest delay after which the bucket holds `target`.
local function delay_until_level(tokens, updated, from, target, slack)
  local deficit = math.max(0, target - tokens)
  local delay = math.max(0, updated - from) + deficit / rate
  for _ = 1, 64 do
    if level(tokens, updated, from + delay) >= target - slack then
      return delay
    end
    delay = math.max(nextup(delay), nextup(from + delay) - from)
  end
  return delay
end

local saved = redis.call('HMGET', KEYS[1], 't', 'u')
local tokens, updated
if saved[1] then
  tokens = tonumber(saved[1])
  updated = tonumber(saved[2])
  if tokens > burst then
    tokens = burst -- the limit was lowered: cap what the bucket holds
  end
  tokens = level(tokens, updated, now)
  updated = math.max(updated, now)
else
  tokens = burst
  updated = now
end

local allowed = 0
local retry = 0
if tokens >= cost - tolerance then
  allowed = 1
  tokens = tokens - cost
elseif cost > burst then
  retry = math.huge
else
  retry = delay_until_level(tokens, updated, now, cost, tolerance)
end

redis.call('HSET', KEYS[1], 't', num(tokens), 'u', num(updated))
if ARGV[6] == '1' then
  -- a full bucket is the same as no bucket: let Redis forget it then (rate_limit.full_at)
  local full = updated + delay_until_level(tokens, updated, updated, burst, 0)
  redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((full - now) * 1000)))
end
return {allowed, num(retry), num(tokens), num(updated)}
