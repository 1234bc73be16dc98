-- create.lua: CreateRoom. ARGV[3..12]: ttl (ns), grace (ns), ttlms,
-- gracems, maxp, group, maxRooms (<= 0: no limit), maxb, empty (ns),
-- emptyms; ARGV[13]: the live rooms of the other partitions, as the Go
-- side last counted them (0 with one partition).
if lookup() then
  return {'EXISTS'}
end
redis.call('ZREMRANGEBYSCORE', index_key, '-inf', int(now))
local max = tonumber(ARGV[9])
if max > 0 and redis.call('ZCARD', index_key) + tonumber(ARGV[13]) >= max then
  return {'TOOMANY'}
end
-- gen, the creation time, orders the rooms that have had this ID: the
-- previous one expired at least a millisecond after it was created.
local gen = string.format('%016d', now)
redis.call('HSET', room_key,
  'ttl', ARGV[3], 'grace', ARGV[4], 'ttlms', ARGV[5], 'gracems', ARGV[6],
  'maxp', ARGV[7], 'cgroup', ARGV[8], 'gen', gen, 'maxb', ARGV[10],
  'empty', ARGV[11], 'emptyms', ARGV[12])
local r = {
  ttl = ARGV[3], grace = ARGV[4], ttlms = tonumber(ARGV[5]), gracems = tonumber(ARGV[6]),
  maxp = tonumber(ARGV[7]), cgroup = ARGV[8], gen = gen, maxb = tonumber(ARGV[10]),
  empty = ARGV[11], emptyms = tonumber(ARGV[12]),
  group = ARGV[8], seq = 0, boxes = 1, nextbox = '1', members = {},
}
save(r)
touch(r)
return {'OK'}
