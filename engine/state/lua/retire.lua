-- A node that stops cleanly: drop its heartbeat and every count it holds.
-- KEYS[1]  nodes sorted set; KEYS[2] this node's key set
-- ARGV     node
for _, key in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('HDEL', key, ARGV[1])
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return 0
