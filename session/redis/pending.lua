-- pending.lua: Pending. ARGV[3]: member ID, ARGV[4]: the lowest sequence
-- number wanted (after+1). Not activity. Returns {"OK", then seq, from,
-- body for each message}.
local r = lookup()
if not r then
  return {'NOTFOUND'}
end
local _, m = find(r, ARGV[3])
if not m then
  return {'NOTMEMBER'}
end
local out = {'OK'}
for _, e in ipairs(redis.call('XRANGE', box_key(m.box), '0-' .. ARGV[4], '+')) do
  local f = e[2]
  out[#out + 1] = string.sub(e[1], 3)
  out[#out + 1] = f[2]
  out[#out + 1] = f[4]
end
return out
