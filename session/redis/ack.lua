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
ack(r, m, tonumber(ARGV[4]))
touch_counts(r, m)
return {'OK'}
