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
-- The bytes released: the bodies of the entries below the lowest kept.
local freed = 0
if tonumber(ARGV[4]) > 1 then
  for _, e in ipairs(redis.call('XRANGE', key, '-', '0-' .. int(tonumber(ARGV[4]) - 1))) do
    local f = e[2]
    for j = 1, #f, 2 do
      if f[j] == 'b' then
        freed = freed + #f[j + 1]
      end
    end
  end
end
m.bytes = math.max(0, m.bytes - freed)
m.cnt = math.max(0, m.cnt - redis.call('XTRIM', key, 'MINID', '0-' .. ARGV[4]))
-- Once the member has acknowledged every message stored for it, nothing
-- it could still miss is lost: the mailbox holds what is left.
if tonumber(ARGV[4]) > m.last then
  m.cnt = redis.call('XLEN', key)
  if m.cnt == 0 then
    m.bytes = 0
  end
end
save(r)
touch(r)
return {'OK'}
