-- The events after an offset, if none of them is gone.
-- KEYS[1] stream, KEYS[2] meta
-- ARGV    the offset ('0-0': from the start of the history, if nothing was trimmed; '': every
--         event kept), most entries to read ('' = all)
-- Returns false or {head, entries}.
local m = meta(KEYS[2])
local from = '-'
if ARGV[1] ~= '' then
  from = start(m, ARGV[1])
end
if not from then
  return false
end
local entries
if ARGV[2] == '' then
  entries = redis.call('XRANGE', KEYS[1], from, '+')
else
  entries = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', tonumber(ARGV[2]))
end
return { head(m) or '0-0', packed(entries) }
