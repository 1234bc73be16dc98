-- dead.lua: the instances whose lease has ended. KEYS[1]: the registry of
-- instances, KEYS[2]: the room index (for lib.lua). ARGV[1]: at most how
-- many. An instance with no seat left is forgotten here. Returns
-- {"OK", instance...}: those that still have seats to reap.
local out = {'OK'}
for _, inst in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. int(now), 'LIMIT', 0, tonumber(ARGV[1]))) do
  if redis.call('SCARD', inst_key(inst)) == 0 then
    redis.call('ZREM', KEYS[1], inst)
    redis.call('DEL', inst_key(inst))
  else
    out[#out + 1] = inst
  end
end
return out
