-- disconnect.lua: Disconnect. ARGV[3]: member ID, ARGV[4]: the
-- disconnecting connection's generation.
local r = lookup()
if not r then
  return {'NOTFOUND'}
end
local _, m = find(r, ARGV[3])
if not m then
  return {'NOTMEMBER'}
end
-- A superseded connection's disconnect changes nothing: a newer one holds
-- the seat.
if m.gen ~= tonumber(ARGV[4]) then
  return {'OK'}
end
-- A member already disconnected keeps its first time.
if m.conn then
  m.conn = false
  m.dat = now
end
save(r)
touch(r)
return {'OK'}
