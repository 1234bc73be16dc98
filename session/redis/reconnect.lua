-- reconnect.lua: Reconnect. ARGV[3]: member ID, ARGV[4]: token hash (hex).
local r = lookup()
if not r then
  return gone()
end
local i, m = find(r, ARGV[3])
if not m then
  return {'NOTMEMBER'}
end
-- The token first: a wrong one learns nothing about the grace period.
if not equal(m.tok, ARGV[4]) then
  return {'BADTOKEN'}
end
if grace_over(r, m) then
  remove(r, i)
  save(r)
  return {'RESUMEEXPIRED'}
end
m.conn = true
m.dat = 0
-- The newest connection holds the seat.
m.gen = m.gen + 1
save(r)
touch(r)
return snapshot(r)
