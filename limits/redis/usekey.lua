-- usekey.lua: records that a public key is used in a room, unless it was
-- used in another room within the window.
--
-- KEYS[1]  the key's record, PREFIX.."key:"..hex(SHA-256(public key)),
--          whose value is hex(SHA-256(room ID))
-- ARGV[1]  the room's digest
-- ARGV[2]  the window (ms)
--
-- Returns 1 if recorded (the window restarts), 0 if the key was used in
-- another room (nothing changes).

local key, room, window = KEYS[1], ARGV[1], tonumber(ARGV[2])

local had = redis.call('GET', key)
if had and had ~= room then
  return 0
end
redis.call('SET', key, room, 'PX', int(window))
return 1
