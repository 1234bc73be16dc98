-- room.lua: Room. Not activity.
local r = lookup()
if not r then
  return gone()
end
return snapshot(r)
