-- StateStore.release: undo one acquire of this node on every key.
-- KEYS[1]  this node's key set; KEYS[2..] count hashes
-- ARGV     node
for i = 2, #KEYS do
  if redis.call('HINCRBY', KEYS[i], ARGV[1], -1) <= 0 then
    redis.call('HDEL', KEYS[i], ARGV[1])
    redis.call('SREM', KEYS[1], KEYS[i])
  end
end
return 0
