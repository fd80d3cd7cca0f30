-- (Re)register this node: heartbeat plus its exact connection counts, atomically.
-- Used at start, after the heartbeat expired (Redis unreachable for longer than the lease),
-- and after a call whose outcome is unknown (a timeout): the node's own counts are the truth.
-- KEYS[1]  nodes sorted set; KEYS[2] this node's key set; KEYS[3..] count hashes to hold
-- ARGV     now ('' = server clock), node, ttl_seconds, count per count hash...
-- Returns  now

local now = clock(ARGV[1])
local node = ARGV[2]
for _, key in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('HDEL', key, node)
end
redis.call('DEL', KEYS[2])
for i = 3, #KEYS do
  redis.call('HSET', KEYS[i], node, ARGV[i + 1])
  redis.call('SADD', KEYS[2], KEYS[i])
end
redis.call('ZADD', KEYS[1], num(now + tonumber(ARGV[3])), node)
return num(now)
