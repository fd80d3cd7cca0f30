-- Active bans for dashboards (best effort, not part of any decision).
-- KEYS[1]  ban index: sorted set subject -> banned until
-- ARGV     now ('' = server clock), record key prefix, limit
-- Returns  {now, subject, until, bans served, reason, subject, ...}
-- Reads record keys it derives from the prefix: standalone or Sentinel Redis, not Redis Cluster.

local now = clock(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', num(now))
local rows = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. num(now), '+inf', 'WITHSCORES',
                        'LIMIT', 0, tonumber(ARGV[3]))
local out = {num(now)}
for i = 1, #rows, 2 do
  local rec = redis.call('HMGET', ARGV[2] .. rows[i], 'n', 'r')
  out[#out + 1] = rows[i]
  out[#out + 1] = rows[i + 1]
  out[#out + 1] = rec[1] or '0'
  out[#out + 1] = rec[2] or ''
end
return out
