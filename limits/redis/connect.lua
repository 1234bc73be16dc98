-- connect.lua: counts a connection from one IP, if it has fewer than the
-- limit open.
--
-- KEYS[1]  the IP's connections, PREFIX.."conn:{"..ip.."}": a sorted set
--          of connection IDs scored by the expiry of their lease (ms)
-- ARGV[1]  the limit (> 0)
-- ARGV[2]  the lease (ms); the Limiter holding the connection renews it
-- ARGV[3]  the connection's ID
--
-- Returns 1 if the connection was counted, 0 if the IP is at the limit.
-- The key expires with its last lease.

local key = KEYS[1]
local limit, lease, id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]

redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now))
if redis.call('ZCARD', key) >= limit then
  return 0
end
redis.call('ZADD', key, int(now + lease), id)
redis.call('PEXPIRE', key, int(lease))
return 1
