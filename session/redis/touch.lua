-- touch.lua: Touch, and Subscribe's check. Returns {"OK", gen}.
local r = lookup()
if not r then
  return gone()
end
touch(r)
return {'OK', r.gen}
