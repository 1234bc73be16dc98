-- ack.lua: Ack. ARGV[3]: member ID, ARGV[4]: the lowest sequence number
-- to keep (seq+1).
local r = lookup()
if not r then
  return gone()
end
local _, m = find(r, ARGV[3])
if not m then
  return {'NOTMEMBER'}
end
local key = box_key(m.box)
m.cnt = math.max(0, m.cnt - redis.call('XTRIM', key, 'MINID', '0-' .. ARGV[4]))
-- Once the member has acknowledged every message stored for it, nothing
-- it could still miss is lost: the mailbox holds what is left.
if tonumber(ARGV[4]) > m.last then
  m.cnt = redis.call('XLEN', key)
end
save(r)
touch(r)
return {'OK'}
