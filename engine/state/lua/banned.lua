-- StateStore.banned: the running ban among the subjects that ends last (abuse.check_record).
-- KEYS     record hashes of the subjects, in order
-- ARGV     now ('' = server clock)
-- Returns  {0} or {index (1-based), until, retry_after, reason}

local now = clock(ARGV[1])
local best = 0
local best_until = 0
local best_reason = ''
for i, key in ipairs(KEYS) do
  local rec = redis.call('HMGET', key, 'u', 'r')
  if rec[1] then
    local u = tonumber(rec[1])
    if now < u and (best == 0 or u > best_until) then
      best = i
      best_until = u
      best_reason = rec[2] or ''
    end
  end
end
if best == 0 then
  return {0}
end
return {best, num(best_until), num(delay_until(now, best_until)), best_reason}
