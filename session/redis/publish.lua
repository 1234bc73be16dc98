-- publish.lua: Publish. ARGV[3]: channel, ARGV[4]: the encoded event. The
-- message is the room's gen followed by the event, so that subscribers
-- can tell rooms that had the same ID apart. Only the room's gen and
-- expiry are read, and nothing is written: publishing is not activity
-- (the call whose outcome it announces was).
local v = redis.call('HMGET', room_key, 'gen', 'exp')
if not v[1] or not v[2] or tonumber(v[2]) <= now then
  return gone()
end
redis.call(publish_cmd, ARGV[3], v[1] .. ARGV[4])
return {'OK'}
