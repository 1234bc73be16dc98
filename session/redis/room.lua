-- room.lua: Room. Not activity; it removes the members whose grace is
-- over (their mailboxes expired with the grace), as the memory store's
-- sweeper does.
local r = lookup()
if not r then
  return gone()
end
prune(r)
return snapshot(r)
