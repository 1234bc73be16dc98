-- reserve.lua: on a Cluster, adds the bytes of a message about to be
-- appended to its source's counter, which lives in the source's own slot
-- (lib.lua's cluster). KEYS[1]: the counter, PREFIX.."src:{"..source.."}".
-- ARGV[1]: the bytes, ARGV[2]: Budget.PerSource (0: no bound), ARGV[3]:
-- how long (ms) the counter lives after this. Returns {"SOURCEBUDGET"},
-- adding nothing, if the bytes would take the counter over the bound,
-- else {"OK"}.
local n, per = tonumber(ARGV[1]), tonumber(ARGV[2])
local held = tonumber(redis.call('GET', KEYS[1]) or 0)
if per > 0 and held + n > per then
  return {'SOURCEBUDGET'}
end
if n > 0 then
  redis.call('INCRBY', KEYS[1], n)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return {'OK'}
