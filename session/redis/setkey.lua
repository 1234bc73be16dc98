-- setkey.lua: SetKey. ARGV[3]: member ID, ARGV[4]: group, ARGV[5]: key.
local r = lookup()
if not r then
  return gone()
end
local _, m = find(r, ARGV[3])
if not m then
  return {'NOTMEMBER'}
end
if m.key ~= '' then
  return {'KEYSET'}
end
if r.group ~= '' and r.group ~= ARGV[4] then
  return {'GROUPMISMATCH'}
end
for _, o in ipairs(r.members) do
  if o.id ~= ARGV[3] and o.key == ARGV[5] then
    return {'REFLECTED'}
  end
end
r.group = ARGV[4]
m.key = ARGV[5]
save(r)
touch(r)
return snapshot(r)
