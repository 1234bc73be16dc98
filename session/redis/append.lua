-- append.lua: Append. ARGV[3]: sender's member ID, ARGV[4]: body,
-- ARGV[5]: the room's channel, ARGV[6]: the message event encoded up to its
-- sequence number (encodeEvent's layout: the script adds the uvarint seq and
-- the body). The event is published in the same script as the message is
-- stored, so a stored message is always announced, whatever happens to the
-- relay that appended it. Returns {"OK", seq}.
local r = lookup()
if not r then
  return {'NOTFOUND'}
end
if not find(r, ARGV[3]) then
  return {'NOTMEMBER'}
end
-- For the other member, or, with none, for whoever joins next.
local box = r.nextbox
for _, m in ipairs(r.members) do
  if m.id ~= ARGV[3] then
    box = m.box
  end
end
if redis.call('XLEN', box_key(box)) >= r.maxp then
  return {'MAILBOXFULL'}
end
r.seq = r.seq + 1
redis.call('XADD', box_key(box), '0-' .. int(r.seq), 'f', ARGV[3], 'b', ARGV[4])
save(r)
touch(r)
local n, v = r.seq, {}
while n >= 128 do
  v[#v + 1] = string.char(n % 128 + 128)
  n = math.floor(n / 128)
end
v[#v + 1] = string.char(n)
redis.call('PUBLISH', ARGV[5], r.gen .. ARGV[6] .. table.concat(v) .. ARGV[4])
return {'OK', int(r.seq)}
