-- raiseseq.lua: RaiseSeq. ARGV[3]: the sequence number the room's must
-- reach at least. Not activity. Returns {"OK"}.
local r = lookup()
if not r then
  return gone()
end
local seq = tonumber(ARGV[3])
if r.seq < seq then
  redis.call('HSET', room_key, 'seq', int(seq))
end
return {'OK'}
