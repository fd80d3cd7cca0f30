-- Heartbeat of this node's leases, plus a sweep of nodes whose heartbeat has expired.
-- KEYS[1]  nodes: sorted set node -> heartbeat expiry
-- ARGV     now ('' = server clock), node, ttl_seconds, key prefix, max nodes to sweep
-- Returns  {1 if refreshed, 0 if the heartbeat had expired (caller restores), now}

local now = clock(ARGV[1])
local node = ARGV[2]
local prefix = ARGV[4]
local expiry = redis.call('ZSCORE', KEYS[1], node)
if not expiry or tonumber(expiry) <= now then
  return {0, num(now)}
end
redis.call('ZADD', KEYS[1], num(now + tonumber(ARGV[3])), node)

-- A dead node's key set lists the count hashes still holding its field.
-- Reads keys derived from the prefix: standalone or Sentinel Redis, not Redis Cluster.
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', num(now), 'LIMIT', 0,
                        tonumber(ARGV[5]))
for _, other in ipairs(dead) do
  local owned = prefix .. 'n:' .. other
  for _, key in ipairs(redis.call('SMEMBERS', owned)) do
    redis.call('HDEL', key, other)
  end
  redis.call('DEL', owned)
  redis.call('ZREM', KEYS[1], other)
end
return {1, num(now)}
