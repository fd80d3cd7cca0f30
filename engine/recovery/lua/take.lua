-- RecoveryStore.peek / restore: the session, if every event after its mark is still kept.
-- KEYS[1] session, KEYS[2] stream, KEYS[3] meta
-- ARGV    the client's offset ('' = none: the session's head), '1' to take the session (once)
--         and read the events after the mark
-- Returns false, or {session JSON} (peek), or {session JSON, head, entries} (take).
local raw = redis.call('GET', KEYS[1])
if not raw then
  return false
end
local take = ARGV[2] == '1'
if take then
  redis.call('DEL', KEYS[1]) -- taken once, recovered or not
end
local mark = ARGV[1]
if mark == '' then
  local session = cjson.decode(raw)
  mark = session.head
  if type(mark) ~= 'string' then
    mark = '0-0'
  end
end
local m = meta(KEYS[3])
local from = start(m, mark)
if not from then
  return false
end
if not take then
  return { raw }
end
return { raw, head(m) or '0-0', packed(redis.call('XRANGE', KEYS[2], from, '+')) }
