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
local _, sender = find(r, ARGV[3])
if not sender then
  return {'NOTMEMBER'}
end
-- Only for the other member, and only once both have keys: a message is
-- encrypted to the other member's key.
local box = nil
for _, m in ipairs(r.members) do
  if m.id ~= ARGV[3] and m.key ~= '' then
    box = m.box
  end
end
if not box or sender.key == '' then
  return {'HSINCOMPLETE'}
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
