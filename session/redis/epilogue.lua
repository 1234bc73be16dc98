-- epilogue.lua: what follows every script's own part, which redisx wraps
-- in the function main. On a Cluster the reply is {reply, given, bytes,
-- rooms}: given is source, bytes, ... for each source the script gave
-- bytes back to (lib.lua's given), for the Go side to take off the
-- sources' counters; bytes and rooms are the partition's bytes waiting
-- and its entries in the room index (some may have expired), which the
-- Go side's census of the partitions takes at once. Elsewhere the reply
-- is the script's own.
local reply = main()
if not cluster then
  return reply
end
local g = {}
for source, n in pairs(given) do
  g[#g + 1] = source
  g[#g + 1] = int(n)
end
return {reply, g, redis.call('GET', total_key) or '0', int(redis.call('ZCARD', index_key))}
