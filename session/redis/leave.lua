-- leave.lua: Leave. ARGV[3]: member ID.
local r = lookup()
if not r then
  return gone()
end
local i = find(r, ARGV[3])
if not i then
  return {'NOTMEMBER'}
end
remove(r, i)
save(r)
touch(r)
return {'OK'}
