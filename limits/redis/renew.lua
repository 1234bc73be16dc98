-- renew.lua: renews the leases of the connections one Limiter holds from
-- one IP, adding back any that Redis lost (a restart without
-- persistence): they are still open.
--
-- KEYS[1]  the IP's connections (see connect.lua)
-- ARGV[1]  the lease (ms)
-- ARGV[2…] the connections' IDs
--
-- Returns the number of connections the IP has.

local key = KEYS[1]
local lease = tonumber(ARGV[1])

redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now))
local args = {}
for i = 2, #ARGV do
  args[#args + 1] = int(now + lease)
  args[#args + 1] = ARGV[i]
end
if #args > 0 then
  redis.call('ZADD', key, unpack(args))
end
if redis.call('ZCARD', key) > 0 then
  redis.call('PEXPIRE', key, int(lease))
end
return redis.call('ZCARD', key)
