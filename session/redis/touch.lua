-- touch.lua: Touch, and Subscribe's check. Returns {"OK", gen}.
local r = lookup()
if not r then
  return gone()
end
-- A connected member's keepalive also removes a peer whose grace is over
-- (its mailbox has already expired with the grace).
prune(r)
touch(r)
return {'OK', r.gen}
