-- room.lua: Room. Not activity.
local r = lookup()
if not r then
  return {'NOTFOUND'}
end
return snapshot(r)
