-- publish.lua: Publish. ARGV[3]: channel, ARGV[4]: the encoded event. The
-- message is the room's gen followed by the event, so that subscribers
-- can tell rooms that had the same ID apart.
local r = lookup()
if not r then
  return gone()
end
touch(r)
redis.call(publish_cmd, ARGV[3], r.gen .. ARGV[4])
return {'OK'}
