-- reserve.lua: on a Cluster, adds the bytes of a message about to be
-- appended to its source's counter, which lives in the source's own slot
-- (lib.lua's cluster), after taking off what the source is owed (bytes
-- given back since its last message). KEYS[1]: the counter,
-- PREFIX.."src:{"..source.."}". ARGV[1]: the bytes, ARGV[2]:
-- Budget.PerSource (0: no bound), ARGV[3]: how long (ms) the counter
-- lives after this, ARGV[4]: the bytes owed. Returns {"SOURCEBUDGET"},
-- adding nothing (but taking off what was owed), if the bytes would take
-- the counter over the bound, else {"OK"}.
local n, per, owed = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local held = tonumber(redis.call('GET', KEYS[1]) or 0)
if owed > 0 then
  held = math.max(0, held - owed)
  if held == 0 then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], held, 'KEEPTTL')
  end
end
if per > 0 and held + n > per then
  return {'SOURCEBUDGET'}
end
if n > 0 then
  redis.call('INCRBY', KEYS[1], n)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return {'OK'}
