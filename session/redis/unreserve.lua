-- unreserve.lua: on a Cluster, takes bytes given back off their source's
-- counter (reserve.lua's), never below zero; a counter that reaches zero
-- is deleted. KEYS[1]: the counter, ARGV[1]: the bytes. Returns {"OK"}.
local n = tonumber(ARGV[1])
if tonumber(redis.call('GET', KEYS[1]) or 0) > n then
  redis.call('DECRBY', KEYS[1], n)
else
  redis.call('DEL', KEYS[1])
end
return {'OK'}
