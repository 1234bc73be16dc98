-- join.lua: Join. ARGV[3]: member ID, ARGV[4]: token hash (hex), ARGV[5]:
-- the joining connection's instance.
local r = lookup()
if not r then
  return gone()
end
-- Members past their grace period give up their seats (and mailboxes)
-- first, whatever the outcome.
prune(r)
if #r.members >= 2 then
  return {'FULL'}
end
if find(r, ARGV[3]) then
  return {'DUPLICATE'}
end
-- The new member takes the next (empty) mailbox: messages are only stored
-- for a member with a key (append.lua).
r.members[#r.members + 1] = {id = ARGV[3], tok = ARGV[4], key = '', conn = true, dat = 0, box = r.nextbox, gen = 1, cnt = 0, last = 0, bytes = 0, inst = ''}
hold_seat(r.members[#r.members], ARGV[5])
r.boxes = r.boxes + 1
r.nextbox = int(r.boxes)
save(r)
touch(r)
return snapshot(r)
