-- reap.lua: the seat of member ARGV[3] in the set of instance ARGV[4],
-- whose lease has ended. If that instance still holds the seat (the
-- member is connected through it), the member is marked disconnected now,
-- which starts its grace period, and its EventLeft (dropped), ARGV[6]
-- encoded, is published on the room's channel ARGV[5]. The seat leaves
-- the instance's set in any case. Returns {"OK", "1"} if it marked the
-- member disconnected, {"OK", "0"} if not.
local seat = room_id .. '\n' .. ARGV[3]
local r = lookup()
if not r then
  redis.call('SREM', inst_key(ARGV[4]), seat)
  return {'OK', '0'}
end
local _, m = find(r, ARGV[3])
if not m or not m.conn or m.inst ~= ARGV[4] then
  redis.call('SREM', inst_key(ARGV[4]), seat)
  return {'OK', '0'}
end
m.conn = false
m.dat = now
release_seat(m)
save(r) -- takes the seat out of the set once the room is written
r.exp = limit(r, r.exp)
expire(r)
redis.call(publish_cmd, ARGV[5], r.gen .. ARGV[6])
return {'OK', '1'}
