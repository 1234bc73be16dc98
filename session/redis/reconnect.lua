-- reconnect.lua: Reconnect. ARGV[3]: member ID, ARGV[4]: token hash (hex),
-- ARGV[5]: the resuming connection's instance.
local r = lookup()
if not r then
  return gone()
end
local _, m = find(r, ARGV[3])
if not m then
  -- A member removed after its grace is told so, once.
  for j, g in ipairs(r.gone) do
    if g.id == ARGV[3] and equal(g.tok, ARGV[4]) then
      table.remove(r.gone, j)
      save(r)
      return {'RESUMEEXPIRED'}
    end
  end
  return {'NOTMEMBER'}
end
-- The token first: a wrong one learns nothing about the grace period.
if not equal(m.tok, ARGV[4]) then
  return {'BADTOKEN'}
end
if grace_over(r, m) then
  prune(r)
  for j, g in ipairs(r.gone) do
    if g.id == m.id then
      table.remove(r.gone, j) -- told now
      break
    end
  end
  save(r)
  return {'RESUMEEXPIRED'}
end
m.conn = true
m.dat = 0
hold_seat(m, ARGV[5])
-- The newest connection holds the seat.
m.gen = m.gen + 1
save(r)
touch(r)
return snapshot(r)
