-- ack.lua: Ack. ARGV[3]: member ID, ARGV[4]: the lowest sequence number
-- to keep (seq+1).
local r = lookup()
if not r then
  return gone()
end
local _, m = find(r, ARGV[3])
if not m then
  return {'NOTMEMBER'}
end
local key = box_key(m.box)
-- The bytes released: the bodies of the entries below the lowest kept,
-- in all and by the source each came from (s; "" if none, or if stored
-- before sources were).
local freed, by_source = 0, {}
if tonumber(ARGV[4]) > 1 then
  for _, e in ipairs(redis.call('XRANGE', key, '-', '0-' .. int(tonumber(ARGV[4]) - 1))) do
    local f = e[2]
    local size, source = 0, ''
    for j = 1, #f, 2 do
      if f[j] == 'b' then
        size = #f[j + 1]
      elseif f[j] == 's' then
        source = f[j + 1]
      end
    end
    freed = freed + size
    by_source[source] = (by_source[source] or 0) + size
  end
end
for source, n in pairs(by_source) do
  release_some(r.gen, m.box, source, n)
end
m.bytes = math.max(0, m.bytes - freed)
m.cnt = math.max(0, m.cnt - redis.call('XTRIM', key, 'MINID', '0-' .. ARGV[4]))
-- Once the member has acknowledged every message stored for it, nothing
-- it could still miss is lost: the mailbox holds what is left. If that
-- is nothing, what the room and the ledger still count for it was
-- evicted: it is given back.
if tonumber(ARGV[4]) > m.last then
  m.cnt = redis.call('XLEN', key)
  if m.cnt == 0 and m.bytes > 0 then
    m.bytes = 0
    release(r.gen, m.box)
  end
end
touch_counts(r, m)
return {'OK'}
