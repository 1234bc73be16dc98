-- append.lua: Append. ARGV[3]: sender's member ID, ARGV[4]: body.
-- Returns {"OK", seq}.
local r = lookup()
if not r then
  return {'NOTFOUND'}
end
if not find(r, ARGV[3]) then
  return {'NOTMEMBER'}
end
-- For the other member, or, with none, for whoever joins next.
local box = r.nextbox
for _, m in ipairs(r.members) do
  if m.id ~= ARGV[3] then
    box = m.box
  end
end
if redis.call('XLEN', box_key(box)) >= r.maxp then
  return {'MAILBOXFULL'}
end
r.seq = r.seq + 1
redis.call('XADD', box_key(box), '0-' .. int(r.seq), 'f', ARGV[3], 'b', ARGV[4])
save(r)
touch(r)
return {'OK', int(r.seq)}
