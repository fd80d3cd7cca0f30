-- StateStore.acquire: one connection on every key, all or none, counting live nodes only.
-- A connection count is a lease: hash field <node> of a count hash, valid while the node's
-- heartbeat in the nodes sorted set lies in the future. A node that dies stops refreshing its
-- heartbeat, so its counts stop counting (and are pruned here and by refresh.lua's sweep).
-- KEYS[1]  nodes: sorted set node -> heartbeat expiry
-- KEYS[2]  this node's key set (count hashes it holds a field in)
-- KEYS[3..] count hashes {node = count}
-- ARGV     now ('' = server clock), node, cap per count hash ('' = no cap)...
-- Returns  -2 counted; -1 this node's heartbeat has expired (restore, then retry);
--          i >= 0 the 0-based index of the first count hash at its cap

local now = clock(ARGV[1])
local node = ARGV[2]
local nodes = KEYS[1]

local alive = redis.call('ZSCORE', nodes, node)
if not alive or tonumber(alive) <= now then
  return -1
end

local live = {}
local function is_live(owner)
  local known = live[owner]
  if known == nil then
    local expiry = redis.call('ZSCORE', nodes, owner)
    known = expiry ~= false and tonumber(expiry) > now
    live[owner] = known
  end
  return known
end

for i = 3, #KEYS do
  local cap = ARGV[i]
  if cap ~= '' then
    local total = 0
    local flat = redis.call('HGETALL', KEYS[i])
    for j = 1, #flat, 2 do
      if is_live(flat[j]) then
        total = total + tonumber(flat[j + 1])
      else
        redis.call('HDEL', KEYS[i], flat[j]) -- a dead node's lease
      end
    end
    if total >= tonumber(cap) then
      return i - 3
    end
  end
end
for i = 3, #KEYS do
  redis.call('HINCRBY', KEYS[i], node, 1)
  redis.call('SADD', KEYS[2], KEYS[i])
end
return -2
