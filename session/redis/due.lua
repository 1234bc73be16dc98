-- due.lua: the sweeper's list of the ledgers to settle. KEYS[1] is the
-- ledger index (there is no room). ARGV[1]: how many at most. Returns
-- {"OK", then gen..id for each ledger due, the most overdue first}.
local out = {'OK'}
for _, v in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now), 'LIMIT', 0, tonumber(ARGV[1]))) do
  out[#out + 1] = v
end
return out
