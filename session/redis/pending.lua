-- pending.lua: Pending. ARGV[3]: member ID, ARGV[4]: the lowest sequence
-- number wanted (after+1). Not activity. Returns {"OK", then seq, from,
-- body for each message}; {"LOST", then the same} if the mailbox holds
-- fewer messages than the room says it should (Redis evicted it) and the
-- member has not received the last one stored for it.
local r = lookup()
if not r then
  return gone()
end
local _, m = find(r, ARGV[3])
if not m then
  return {'NOTMEMBER'}
end
local key = box_key(m.box)
local out = {'OK'}
if tonumber(ARGV[4]) <= m.last and redis.call('XLEN', key) < m.cnt then
  out[1] = 'LOST'
end
for _, e in ipairs(redis.call('XRANGE', key, '0-' .. ARGV[4], '+')) do
  -- f and b come first in every entry; s, if there, follows (unused).
  local f = e[2]
  out[#out + 1] = string.sub(e[1], 3)
  out[#out + 1] = f[2]
  out[#out + 1] = f[4]
end
return out
