-- StateStore.strike: engine.policies.abuse.strike_record on one subject record.
-- KEYS[1]  record hash {s = strike times "t1,t2", n = bans served, u = banned until, r = reason}
-- KEYS[2]  ban index: sorted set subject -> banned until (for active_bans)
-- ARGV     now ('' = server clock), subject, strikes, window_seconds, forgive_after_seconds,
--          kind, expire ('1'/'0'), ladder_seconds...
-- Returns  {'allowed', now} or {'banned', now, until, retry_after, reason, bans served}

local now = clock(ARGV[1])
local subject = ARGV[2]
local need = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local forgive = tonumber(ARGV[5])
local kind = ARGV[6]
local ladder = {}
for i = 8, #ARGV do
  ladder[#ladder + 1] = tonumber(ARGV[i])
end

local rec = redis.call('HMGET', KEYS[1], 's', 'n', 'u', 'r')
local bans = tonumber(rec[2] or '0')
local banned_until = nil
if rec[3] then
  banned_until = tonumber(rec[3])
end
local reason = rec[4] or ''

if banned_until ~= nil and now < banned_until then
  -- strikes during a ban are ignored rather than extending it
  return {'banned', num(now), num(banned_until), num(delay_until(now, banned_until)), reason,
          tostring(bans)}
end

local strikes = {}
if rec[1] and rec[1] ~= '' then
  for text in string.gmatch(rec[1], '[^,]+') do
    local t = tonumber(text)
    if t + window > now then
      strikes[#strikes + 1] = t
    end
  end
end
strikes[#strikes + 1] = now

local verdict
if #strikes < need then
  verdict = {'allowed', num(now)}
else
  local rung = bans
  if banned_until ~= nil and now >= banned_until + forgive then
    rung = 0 -- forgiven: back to the first rung
  end
  banned_until = now + ladder[math.min(rung, #ladder - 1) + 1]
  strikes = {}
  bans = rung + 1
  reason = kind
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', num(now))
  redis.call('ZADD', KEYS[2], num(banned_until), subject)
  verdict = {'banned', num(now), num(banned_until), num(delay_until(now, banned_until)), kind,
             tostring(bans)}
end

local parts = {}
for i, t in ipairs(strikes) do
  parts[i] = num(t)
end
redis.call('HSET', KEYS[1], 's', table.concat(parts, ','), 'n', tostring(bans), 'r', reason)
if banned_until ~= nil then
  redis.call('HSET', KEYS[1], 'u', num(banned_until))
end
if ARGV[7] == '1' then
  -- SubjectRecord.forget_at: from then on the record is the same as no record
  local forget = -math.huge
  for _, t in ipairs(strikes) do
    forget = math.max(forget, t + window)
  end
  if banned_until ~= nil then
    forget = math.max(forget, banned_until + forgive)
  end
  local ms = math.ceil((forget - now) * 1000)
  if ms < 1 then
    redis.call('DEL', KEYS[1])
  else
    redis.call('PEXPIRE', KEYS[1], ms)
  end
end
return verdict
