-- lease.lua: renews an instance's lease. KEYS[1]: the registry of
-- instances (PREFIX.."instances", scored by when each lease ends, ms).
-- ARGV[1]: the instance, ARGV[2]: the lease (ms), ARGV[3]: "1" when the
-- instance registers, "0" when it renews. A renewal whose lease has
-- already ended returns {"LOST"}: the other instances may have marked its
-- seats disconnected, so it must not go on as if they were its own.
-- Returns {"OK"} otherwise. (The instance's sets of seats, one per
-- partition, live inst_life after their last change; the renewer extends
-- them, a few partitions at a time.)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ARGV[3] ~= '1' and (not score or tonumber(score) <= now) then
  return {'LOST'}
end
local ends = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], ends, ARGV[1])
-- The registry outlives the lease by a day, for the survivors (or the
-- next instance to start) to reap.
local life = ends + inst_life
local pttl = redis.call('PTTL', KEYS[1])
if pttl < 0 or now + pttl < life then
  redis.call('PEXPIREAT', KEYS[1], life)
end
return {'OK'}
