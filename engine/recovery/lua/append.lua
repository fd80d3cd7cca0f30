-- RecoveryStore.append: keep one event, trim the history to its bounds; its offset.
-- KEYS[1] stream, KEYS[2] meta
-- ARGV    event, args JSON, rooms JSON ('' = namespace), exclusions JSON, binary flag,
--         size, max_events, max_bytes, max_age_ms, gap ('1': events were lost before this one)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local m = meta(KEYS[2])
if m == nil then
  redis.call('DEL', KEYS[1]) -- entries of an earlier life (its meta is gone): unusable
  m = { e = string.format('%d', now), l = 0, c = 0, b = 0 }
end
if ARGV[10] == '1' then
  m.l = m.l + 1 -- the lost events take one seq: every earlier offset becomes unrecoverable
  m.c = m.l
end
local seq = m.l + 1
local size = tonumber(ARGV[6])
redis.call('XADD', KEYS[1], m.e .. '-' .. seq, 'e', ARGV[1], 'a', ARGV[2], 'r', ARGV[3],
  'x', ARGV[4], 'b', ARGV[5], 's', size, 't', now)
m.l = seq
m.b = m.b + size

local len = redis.call('XLEN', KEYS[1])
local max_events, max_bytes = tonumber(ARGV[7]), tonumber(ARGV[8])
local oldest = now - tonumber(ARGV[9])
local cursor, cut = '-', nil
while len > 0 do
  local entry = redis.call('XRANGE', KEYS[1], cursor, '+', 'COUNT', 1)[1]
  if not entry then
    break
  end
  local fields, bytes, at = entry[2], 0, now
  for i = 1, #fields, 2 do
    if fields[i] == 's' then
      bytes = tonumber(fields[i + 1])
    elseif fields[i] == 't' then
      at = tonumber(fields[i + 1])
    end
  end
  if len <= max_events and m.b <= max_bytes and at >= oldest then
    break
  end
  len = len - 1
  m.b = m.b - bytes
  cut = tonumber(string.match(entry[1], '%-(%d+)$'))
  cursor = '(' .. entry[1]
end
if cut then
  redis.call('XTRIM', KEYS[1], 'MINID', m.e .. '-' .. (cut + 1))
  m.c = cut
end
redis.call('HSET', KEYS[2], 'e', m.e, 'l', m.l, 'c', m.c, 'b', m.b)
return { m.e .. '-' .. seq, len, m.b }
