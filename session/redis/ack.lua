-- ack.lua: Ack. ARGV[3]: member ID, ARGV[4]: the lowest sequence number
-- to keep (seq+1).
local r = lookup()
if not r then
  return {'NOTFOUND'}
end
local _, m = find(r, ARGV[3])
if not m then
  return {'NOTMEMBER'}
end
redis.call('XTRIM', box_key(m.box), 'MINID', '0-' .. ARGV[4])
touch(r)
return {'OK'}
