-- Shared by the recovery scripts (prepended to each).
--
-- A namespace's history is a stream whose ids are "<epoch>-<seq>": the epoch is Redis's time
-- in ms when the history was created (a new epoch after the keys were lost, so an offset of
-- an earlier life is unknown, never misread), seq counts from 1. Its meta hash holds
--   e  the epoch           l  the last seq given
--   c  the cut: no offset below it is recoverable (events after it were deleted or lost)
--   b  the payload bytes kept
local function meta(key)
  local m = redis.call('HMGET', key, 'e', 'l', 'c', 'b')
  if not m[1] then
    return nil
  end
  return { e = m[1], l = tonumber(m[2]), c = tonumber(m[3]), b = tonumber(m[4]) }
end

-- The XRANGE start of the events after `mark`, or false when any of them is gone (or the
-- mark is unknown): recovery is all or nothing. "0-0" is the mark of an empty history.
local function start(m, mark)
  if mark == '0-0' then
    if m == nil or m.c == 0 then
      return '-'
    end
    return false
  end
  if m == nil then
    return false
  end
  local epoch, seq = string.match(mark, '^(%d+)%-(%d+)$')
  if epoch ~= m.e then
    return false
  end
  seq = tonumber(seq)
  if seq < m.c or seq > m.l then
    return false
  end
  return '(' .. mark
end

local function head(m)
  if m == nil then
    return false
  end
  return m.e .. '-' .. m.l
end

-- XRANGE entries as one string each, "id\na\nr\nx\nb\ns\nt\ne" (the JSON fields hold no raw
-- newline; the event name, which may, comes last): a client parses 1 reply element per
-- event instead of 16.
local function packed(entries)
  local out = {}
  for i = 1, #entries do
    local fields, f = entries[i][2], {}
    for j = 1, #fields, 2 do
      f[fields[j]] = fields[j + 1]
    end
    out[i] = table.concat({ entries[i][1], f.a, f.r, f.x, f.b, f.s, f.t, f.e }, '\n')
  end
  return out
end
