-- append.lua: Append. ARGV[3]: sender's member ID, ARGV[4]: body,
-- ARGV[5]: the room's channel, ARGV[6]: the message event encoded up to its
-- sequence number (encodeEvent's layout: the script adds the uvarint seq and
-- the body). The event is published in the same script as the message is
-- stored, so a stored message is always announced, whatever happens to the
-- relay that appended it. ARGV[7]: the sender's source ("" for none),
-- ARGV[8] and ARGV[9]: the store's Budget.PerSource and Budget.Total (0:
-- no bound; PerSource is 0 on a Cluster, where the Go side checks it),
-- ARGV[10]: the bytes waiting in the other partitions, as the Go side last
-- counted them (0 with one partition), ARGV[11]: the sender's own
-- acknowledgement to apply first, if the message is stored, as Ack's
-- lowest sequence number to keep ("0": none). Returns {"OK", seq}.
local r = lookup()
if not r then
  return gone()
end
-- A recipient whose grace is over is gone, with its mailbox.
prune(r)
local _, sender = find(r, ARGV[3])
if not sender then
  return {'NOTMEMBER'}
end
-- Only for the other member, and only once both have keys: a message is
-- encrypted to the other member's key.
local to = nil
for _, m in ipairs(r.members) do
  if m.id ~= ARGV[3] and m.key ~= '' then
    to = m
  end
end
if not to or sender.key == '' then
  return {'HSINCOMPLETE'}
end
-- The bound is on what the mailbox holds (what it costs Redis), not on
-- to.cnt, which still counts messages that Redis evicted (so it is never
-- less: below the bound, the mailbox is too).
if to.cnt >= r.maxp and redis.call('XLEN', box_key(to.box)) >= r.maxp then
  return {'MAILBOXFULL'}
end
-- The bytes waiting are what the room says (after an eviction, more than
-- the mailbox holds, until the member acknowledges everything).
if r.maxb > 0 and to.bytes + #ARGV[4] > r.maxb then
  return {'MAILBOXFULL'}
end
-- The store's budgets, counted across every instance sharing the Redis
-- (lib.lua): the total first, as the memory store checks them.
local source, size = ARGV[7], #ARGV[4]
local per, total = tonumber(ARGV[8]), tonumber(ARGV[9])
if total > 0 and tonumber(redis.call('GET', total_key) or 0) + tonumber(ARGV[10]) + size > total then
  return {'STOREBUDGET'}
end
if source ~= '' and per > 0 and tonumber(redis.call('GET', source_key(source)) or 0) + size > per then
  return {'SOURCEBUDGET'}
end
local keep = tonumber(ARGV[11])
if keep > 0 then
  ack(r, sender, keep)
end
r.seq = r.seq + 1
-- s, last, so that pending.lua finds f and b where they always were.
redis.call('XADD', box_key(to.box), '0-' .. int(r.seq), 'f', ARGV[3], 'b', ARGV[4], 's', source)
to.cnt = to.cnt + 1
to.bytes = to.bytes + size
to.last = r.seq
count(r, to.box, source, size)
if keep > 0 then
  touch_counts(r, to, sender)
else
  touch_counts(r, to)
end
local n, v = r.seq, {}
while n >= 128 do
  v[#v + 1] = string.char(n % 128 + 128)
  n = math.floor(n / 128)
end
v[#v + 1] = string.char(n)
redis.call(publish_cmd, ARGV[5], r.gen .. ARGV[6] .. table.concat(v) .. ARGV[4])
return {'OK', int(r.seq)}
