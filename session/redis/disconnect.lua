-- disconnect.lua: Disconnect, and its retries. ARGV[3]: member ID,
-- ARGV[4]: the disconnecting connection's generation, ARGV[5]: how long
-- ago the connection ended (ms; 0 but on a retry), ARGV[6] and ARGV[7]:
-- on a retry, the room's channel and the member's EventLeft (dropped),
-- encoded, to publish if this marks the member disconnected (no relay is
-- left to announce it); "" otherwise. Returns {"OK", "1"} if it marked the
-- member disconnected, {"OK", "0"} if it was already, {"SUPERSEDED"} if a
-- newer generation holds the seat.
local r = lookup()
if not r then
  return gone()
end
local _, m = find(r, ARGV[3])
if not m then
  return {'NOTMEMBER'}
end
-- A superseded connection's disconnect changes nothing: a newer one holds
-- the seat.
if m.gen ~= tonumber(ARGV[4]) then
  return {'SUPERSEDED'}
end
-- A member already disconnected keeps its first time.
local changed = m.conn
if changed then
  m.conn = false
  m.dat = now - tonumber(ARGV[5])
end
release_seat(m)
save(r)
touch(r)
if changed and ARGV[6] ~= '' then
  redis.call(publish_cmd, ARGV[6], r.gen .. ARGV[7])
end
if changed then
  return {'OK', '1'}
end
return {'OK', '0'}
