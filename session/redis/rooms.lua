-- rooms.lua: a partition's census, for Rooms, for the fleet-wide bounds
-- on a Cluster, and for the sweeper's list of the ledgers to settle.
-- KEYS[1] is the partition's room index, KEYS[2] its bytes waiting,
-- KEYS[3] its ledger index (there is no room). ARGV[1]: how many due
-- ledgers to list at most (0: none). Returns {"OK", live rooms, bytes,
-- then gen..id for each ledger due, the most overdue first}.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', int(now))
local out = {'OK', int(redis.call('ZCARD', KEYS[1])), redis.call('GET', KEYS[2]) or '0'}
local n = tonumber(ARGV[1])
if n > 0 then
  for _, v in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', int(now), 'LIMIT', 0, n)) do
    out[#out + 1] = v
  end
end
return out
