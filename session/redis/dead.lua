-- dead.lua: the instances whose lease has ended. KEYS[1]: the registry of
-- instances. ARGV[1]: at most how many. Returns {"OK", instance...}; the
-- Go side reaps their seats in every partition, then forgets them.
local out = {'OK'}
for _, inst in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. int(now), 'LIMIT', 0, tonumber(ARGV[1]))) do
  out[#out + 1] = inst
end
return out
