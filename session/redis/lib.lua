-- lib.lua: the part every room script starts with; each script is
-- redisx's prelude (int, and now: the Redis server's clock in ms), this
-- file, then its own, wrapped in a function whose reply epilogue.lua
-- returns. Redis runs a script atomically: nothing else touches the data
-- between its first read and its last write.
--
-- The store's keys are spread over partitions (one on a single Redis or
-- Sentinel; RedisConfig.Partitions, 256 by default, on a Cluster). P, the
-- partition's prefix, is PREFIX on a single Redis and
-- PREFIX.."{"..tag.."}:" on a Cluster, where tag hashes to the
-- partition's own slot; a room lives in the partition its ID hashes to,
-- and every key a room script touches starts with its P, so that each
-- script touches one slot.
--
-- KEYS[1]  the room's hash, P.."room:"..id
-- KEYS[2]  the partition's room index, P.."rooms": a sorted set of room
--          IDs scored by expiry (ms), so that counting rooms is exact
-- KEYS[3]  the partition's bytes waiting, P.."budget:total"; the other
--          budget keys (below) start with P.."budget:" too
-- KEYS[4]  the ledger index, P.."budget:ledgers" (below)
-- ARGV[1]  the room ID
-- ARGV[2]  the prefix of the room's mailbox keys, P.."mbox:"..id..":"
--          (a mailbox is a stream of the messages for one member, or for
--          the next member to join; entry IDs are "0-"..seq)
--
-- The room hash holds the fields
--   ttl, grace     RoomConfig.TTL and ResumeGrace in ns, as given (for Room)
--   ttlms, gracems the same in ms (ttlms rounded up), for arithmetic
--   maxp, cgroup   RoomConfig.MaxPending and Group
--   maxb           RoomConfig.MaxPendingBytes (absent in rooms stored
--                  before it: 0, no bound)
--   empty, emptyms RoomConfig.EmptyTTL in ns, as given, and in ms (0, or
--                  absent in rooms stored before it: TTL)
--   gen            this incarnation of the room ID: its creation time (ms,
--                  16 digits), so that later incarnations compare greater
--   group, seq     the room's group and LastSeq
--   exp            ExpiresAt, ms since the Unix epoch (the server's clock)
--   boxes          the highest mailbox number handed out
--   nextbox        the mailbox of the next member to join
--   gone           members removed after their grace period, so that
--                  Reconnect tells them ErrResumeExpired once: "" or
--                  id.."\n"..tok, newest last, at most two, joined by "\n"
--   n              the number of members, 0 to 2, then for each member i
--   mi.id mi.tok mi.key mi.conn mi.dat mi.box mi.gen mi.cnt mi.last mi.bytes
--                  ID, SHA-256 of its resume token (hex), public key,
--                  "1" if connected, DisconnectedAt (ms), mailbox number,
--                  Generation (absent in rooms stored before it: 1), how
--                  many messages its mailbox should hold, the seq of
--                  the last message stored for it (both absent in rooms
--                  stored before them: the mailbox's length, and 0), and
--                  the bytes of the bodies its mailbox holds (absent in
--                  rooms stored before it: 0)
--   mi.inst        the instance whose connection holds the member (its
--                  RedisStore's instance ID) while connected; "" (or
--                  absent, in rooms stored before it) when disconnected
--
-- Instance liveness: P.."inst:"..instance is the set of the seats
-- ("room\nmember") that an instance's connections hold in the partition,
-- and
-- PREFIX.."instances" a sorted set of instances scored by when their
-- lease ends (ms). Join and Reconnect add the seat to the set of the
-- instance that asks; Disconnect, Leave and the removal of a member take
-- it out. When an instance's lease ends, the survivors' sweepers mark its
-- seats disconnected (reap.lua), announcing each, and forget the instance.
--
-- The hash says what each mailbox should hold (cnt and last) so that a
-- mailbox that Redis evicted, or that is shorter than it should be for any
-- reason, is reported (pending.lua's LOST) instead of replayed as empty.
--
-- Every key of the room expires at exp, exactly (PEXPIREAT), and so does
-- the index once its last room has. All times come from the Redis server's
-- clock (TIME), the one that expires keys.
--
-- A mailbox entry has the fields f (the sender's member ID), b (the body)
-- and s (the source the sender's connection came from, for the Budget;
-- absent in entries stored before it, which were never counted).
--
-- The Budget (RedisConfig.Budget) is counted across every instance that
-- shares the Redis and prefix, in these keys (B is P.."budget:"):
--   B.."total"     the bytes of the bodies waiting in the partition (a
--                  string, INCRBY'd; absent when 0); on a Cluster the Go
--                  side adds up the partitions (its census)
--   B.."src:"..s   the bytes waiting from source s ("" counts in the total
--                  only; absent when 0, so idle sources leave nothing).
--                  Not on a Cluster, where a source's counter is
--                  PREFIX.."src:{"..s.."}", in the source's own slot, kept
--                  by the Go side (see cluster and given)
--   B.."ledger:"..id..":"..gen
--                  the room incarnation's ledger, a hash of box..":"..s to
--                  the bytes waiting in mailbox box from source s, and
--                  until, when the ledger expires (ms); absent when no
--                  bytes wait. It says what to give back when a mailbox
--                  goes, even one that Redis expired or evicted, and it
--                  outlives its room by at least ledger_life, so that a
--                  room that Redis expired is given back later: the gen in
--                  its name keeps it apart from a later room with that ID.
--   B.."ledgers"   the ledger index: a sorted set of gen..id (gen has 16
--                  digits), one per ledger, scored by when the sweeper
--                  must look at it (due): when the room expires, or the
--                  grace of a disconnected member ends, if earlier.
-- The counters and the ledgers change in the same script as the mailboxes
-- (append, ack, leave, prune, the removal of an expired room), so they
-- always agree. A room that Redis expires by itself gives back nothing;
-- the sweeper of every instance runs settle.lua on the due entries of the
-- index, which prunes the members of a live room whose grace is over, or
-- gives back the whole ledger of an incarnation that is gone. Nothing
-- lives for ever all the same: a ledger expires at until, the index and
-- the counters no earlier than every ledger that counts in them (so a
-- counter never loses bytes a ledger still holds), and until is pushed
-- ledger_life further each time the room's expiry comes within
-- ledger_life of it (a write per room and day, not per call).

local room_key, index_key = KEYS[1], KEYS[2]
local total_key, ledgers_key = KEYS[3], KEYS[4]
local room_id, box_prefix = ARGV[1], ARGV[2]

-- cluster: the store runs on a Redis Cluster (the Go side appends
-- "cluster" as the last ARGV of every room script). Events then go by
-- sharded Pub/Sub (SPUBLISH, only through the shard that owns the
-- partition), and a source's counter lives in the source's own slot,
-- outside the partition: the Go side adds to it before Append, and takes
-- off what the script gives back, which the script returns (given,
-- below; epilogue.lua).
local cluster = ARGV[#ARGV] == 'cluster'
local publish_cmd = 'PUBLISH'
if cluster then
  publish_cmd = 'SPUBLISH'
end

-- given is, on a Cluster, the bytes the script gave back by source.
local given = {}

-- key_prefix is P (index_key is P.."rooms"); every room script passes
-- the index as KEYS[2].
local key_prefix = index_key and string.sub(index_key, 1, #index_key - #'rooms')

-- inst_life is how long (ms) an instance's set of seats outlives its
-- lease at least: a day for survivors, or the next instance, to reap it.
local inst_life = 86400000

-- inst_key returns the set of the seats instance inst holds.
local function inst_key(inst)
  return key_prefix .. 'inst:' .. inst
end

-- released lists the seats to take out of their instances' sets once the
-- room is saved (flush_seats): a script that Redis stops at a write it
-- refuses (full, under noeviction) must not have forgotten a seat whose
-- member it leaves connected.
local released = {}

-- release_seat takes m's seat out of the set of the instance holding it
-- (when the room is saved), and forgets the instance.
local function release_seat(m)
  if m.inst and m.inst ~= '' then
    released[#released + 1] = {inst_key(m.inst), room_id .. '\n' .. m.id}
  end
  m.inst = ''
end

-- flush_seats takes the released seats out of their sets.
local function flush_seats()
  for _, s in ipairs(released) do
    redis.call('SREM', s[1], s[2])
  end
  released = {}
end

-- hold_seat records that instance inst holds m's seat, taking it from any
-- other instance first.
local function hold_seat(m, inst)
  if m.inst ~= inst then
    release_seat(m)
  end
  m.inst = inst
  if inst ~= '' then
    local k = inst_key(inst)
    redis.call('SADD', k, room_id .. '\n' .. m.id)
    -- The instance's renewer extends it too (one partition at a time).
    redis.call('PEXPIRE', k, inst_life)
  end
end

-- budget_prefix is B above (total_key without "total"); nil in scripts
-- that name no room (rooms.lua, due.lua).
local budget_prefix = total_key and string.sub(total_key, 1, #total_key - #'total')

-- ledger_life is how long (ms) a ledger, and the counters it adds to,
-- outlive the room at least: a day for an instance to come back and give
-- back the bytes of the rooms that expired while none ran.
local ledger_life = 86400000

local function box_key(box)
  return box_prefix .. box
end

local function source_key(source)
  return budget_prefix .. 'src:' .. source
end

local function ledger_key(gen)
  return budget_prefix .. 'ledger:' .. room_id .. ':' .. gen
end

-- extend makes key, if it exists, expire at t unless it expires later.
local function extend(key, t)
  local pttl = redis.call('PTTL', key)
  if pttl == -1 or (pttl >= 0 and now + pttl < t) then
    redis.call('PEXPIREAT', key, int(t))
  end
end

-- uncount subtracts n bytes from the total and from source's counter,
-- never below zero; a counter that reaches zero is deleted. On a Cluster
-- the source's part is given back by the Go side (given).
local function uncount(source, n)
  local keys = {total_key}
  if source ~= '' and cluster then
    given[source] = (given[source] or 0) + n
  elseif source ~= '' then
    keys[2] = source_key(source)
  end
  for _, k in ipairs(keys) do
    if redis.call('DECRBY', k, n) <= 0 then
      redis.call('DEL', k)
    end
  end
end

-- forget_if_empty deletes incarnation gen's ledger, and its entry in the
-- index, once it counts no bytes (until is all that is left, or nothing).
local function forget_if_empty(gen)
  local lk = ledger_key(gen)
  if redis.call('HLEN', lk) - redis.call('HEXISTS', lk, 'until') <= 0 then
    redis.call('DEL', lk)
    redis.call('ZREM', ledgers_key, gen .. room_id)
  end
end

-- release gives back what incarnation gen's ledger holds for mailbox box,
-- or for every mailbox if box is nil, and forgets it.
local function release(gen, box)
  local lk = ledger_key(gen)
  local raw = redis.call('HGETALL', lk)
  for i = 1, #raw, 2 do
    local b, source = string.match(raw[i], '^([^:]*):(.*)$')
    if b and (box == nil or b == box) then
      uncount(source, tonumber(raw[i + 1]))
      redis.call('HDEL', lk, raw[i])
    end
  end
  forget_if_empty(gen)
end

-- release_some gives back n bytes of mailbox box from source, or what the
-- ledger holds if that is less (bodies stored before the budget was
-- counted were never counted).
local function release_some(gen, box, source, n)
  local lk, f = ledger_key(gen), box .. ':' .. source
  local held = tonumber(redis.call('HGET', lk, f) or 0)
  n = math.min(n, held)
  if n <= 0 then
    return
  end
  uncount(source, n)
  if held > n then
    redis.call('HINCRBY', lk, f, -n)
  else
    -- The ledger stays, even empty, while its room lives (the next
    -- message would make it anew); the sweeper forgets it with the room.
    redis.call('HDEL', lk, f)
  end
end

-- box_keys returns the keys of every mailbox of room r.
local function box_keys(r)
  local keys = {box_key(r.nextbox)}
  for _, m in ipairs(r.members) do
    keys[#keys + 1] = box_key(m.box)
  end
  return keys
end

-- load returns the room as stored, expired or not, or nil.
local function load()
  local raw = redis.call('HGETALL', room_key)
  if #raw == 0 then
    return nil
  end
  local h = {}
  for i = 1, #raw, 2 do
    h[raw[i]] = raw[i + 1]
  end
  local r = {
    ttl = h.ttl, grace = h.grace, ttlms = tonumber(h.ttlms), gracems = tonumber(h.gracems),
    maxp = tonumber(h.maxp), cgroup = h.cgroup, gen = h.gen, maxb = tonumber(h.maxb) or 0,
    empty = h.empty or '0', emptyms = tonumber(h.emptyms) or 0, gone = {},
    group = h.group, seq = tonumber(h.seq), exp = tonumber(h.exp),
    boxes = tonumber(h.boxes), nextbox = h.nextbox, members = {},
  }
  if h.gone and h.gone ~= '' then
    local parts = {}
    for p in string.gmatch(h.gone, '[^\n]+') do
      parts[#parts + 1] = p
    end
    for i = 1, #parts - 1, 2 do
      r.gone[#r.gone + 1] = {id = parts[i], tok = parts[i + 1]}
    end
  end
  for i = 1, tonumber(h.n) do
    local p = 'm' .. i .. '.'
    r.members[i] = {
      id = h[p .. 'id'], tok = h[p .. 'tok'], key = h[p .. 'key'],
      conn = h[p .. 'conn'] == '1', dat = tonumber(h[p .. 'dat']), box = h[p .. 'box'],
      gen = tonumber(h[p .. 'gen']) or 1,
      cnt = tonumber(h[p .. 'cnt']), last = tonumber(h[p .. 'last']) or 0,
      bytes = tonumber(h[p .. 'bytes']) or 0, inst = h[p .. 'inst'] or '',
    }
    if not r.members[i].cnt then
      r.members[i].cnt = redis.call('XLEN', box_key(r.members[i].box))
    end
  end
  return r
end

-- lookup returns the live room, or nil. A room expires at exp exactly; one
-- that Redis has not removed yet (it does so a millisecond later) is
-- removed now.
local function lookup()
  local r = load()
  if r and now >= r.exp then
    for _, m in ipairs(r.members) do
      release_seat(m)
    end
    local keys = box_keys(r)
    keys[#keys + 1] = room_key
    redis.call('DEL', unpack(keys))
    flush_seats()
    redis.call('ZREM', index_key, room_id)
    release(r.gen, nil)
    return nil
  end
  return r
end

-- gone returns the reply for a room that lookup did not find: LOST if the
-- index says that it should still live (Redis evicted or deleted its hash
-- before its expiry: its members must not be told that it expired), else
-- NOTFOUND.
local function gone()
  local exp = redis.call('ZSCORE', index_key, room_id)
  if exp and tonumber(exp) > now then
    return {'LOST'}
  end
  return {'NOTFOUND'}
end

-- save writes what the scripts change: group, seq, mailboxes and members.
-- The keys keep their expiry.
local function save(r)
  local gone = {}
  for _, g in ipairs(r.gone or {}) do
    gone[#gone + 1] = g.id .. '\n' .. g.tok
  end
  local f = {'group', r.group, 'seq', int(r.seq), 'boxes', int(r.boxes), 'nextbox', r.nextbox, 'n', int(#r.members), 'gone', table.concat(gone, '\n')}
  for i, m in ipairs(r.members) do
    local p = 'm' .. i .. '.'
    local conn = '0'
    if m.conn then
      conn = '1'
    end
    local fields = {p .. 'id', m.id, p .. 'tok', m.tok, p .. 'key', m.key, p .. 'conn', conn, p .. 'dat', int(m.dat), p .. 'box', m.box, p .. 'gen', int(m.gen), p .. 'cnt', int(m.cnt), p .. 'last', int(m.last), p .. 'bytes', int(m.bytes), p .. 'inst', m.inst or ''}
    for _, v in ipairs(fields) do
      f[#f + 1] = v
    end
  end
  redis.call('HSET', room_key, unpack(f))
  flush_seats()
  for i = #r.members + 1, 2 do
    local p = 'm' .. i .. '.'
    redis.call('HDEL', room_key, p .. 'id', p .. 'tok', p .. 'key', p .. 'conn', p .. 'dat', p .. 'box', p .. 'gen', p .. 'cnt', p .. 'last', p .. 'bytes', p .. 'inst')
  end
end

-- save_counts returns what Append and Ack change, the room's seq and
-- the counts of the members given, as fields of the room hash for expire
-- to write with the room's expiry: one HSET of a few fields instead of
-- save's whole room.
local function save_counts(r, ...)
  local f = {'seq', int(r.seq)}
  for _, m in ipairs({...}) do
    for i, x in ipairs(r.members) do
      if x == m then
        local p = 'm' .. i .. '.'
        f[#f + 1], f[#f + 2] = p .. 'cnt', int(m.cnt)
        f[#f + 1], f[#f + 2] = p .. 'last', int(m.last)
        f[#f + 1], f[#f + 2] = p .. 'bytes', int(m.bytes)
      end
    end
  end
  return f
end

-- grace_end returns when m's grace period ends, plus the margin (Go's
-- GraceMargin), after which nothing of m is kept: its mailbox expires then.
local function grace_end(r, m)
  return m.dat + r.gracems + math.min(r.gracems, 5000)
end

-- limit returns exp, or earlier if the room holds no connected member:
-- now + emptyms for a room with no member, the last grace_end for one
-- whose members are all disconnected.
local function limit(r, exp)
  if #r.members == 0 then
    if r.emptyms > 0 then
      return math.min(exp, now + r.emptyms)
    end
    return exp
  end
  local last = 0
  for _, m in ipairs(r.members) do
    if m.conn then
      return exp
    end
    last = math.max(last, grace_end(r, m))
  end
  return math.min(exp, last)
end

-- due returns when the sweeper must look at r's ledger next: at r.exp,
-- or when the grace of a disconnected member is over, if that is earlier
-- (grace_over holds from then on; prune then gives its mailbox back).
local function due(r)
  local t = r.exp
  for _, m in ipairs(r.members) do
    if not m.conn then
      t = math.min(t, math.floor(m.dat + r.gracems) + 1)
    end
  end
  return t
end

-- fresh lists the counters that count (adds) to, which must live as
-- long as the ledger at least: sync_ledger extends them.
local fresh = {}

-- sync_ledger scores r's ledger, if it has one, by due(r) in the ledger
-- index, and keeps it alive at least ledger_life after r: when r.exp
-- comes within ledger_life of the ledger's until, until moves to
-- r.exp + 2 * ledger_life, and the ledger, the index and every counter
-- the ledger counts in are made to live that long. It returns until, or
-- nil if r has no ledger.
local function sync_ledger(r)
  local lk = ledger_key(r.gen)
  if redis.call('EXISTS', lk) == 0 then
    return nil
  end
  local added = redis.call('ZADD', ledgers_key, int(due(r)), r.gen .. room_id) == 1
  local t = tonumber(redis.call('HGET', lk, 'until') or 0)
  if t >= r.exp + ledger_life then
    -- The index lives as long as every ledger in it: only a new entry
    -- (or one the ZADD made anew, evicted) may need it longer.
    if added then
      extend(ledgers_key, t)
    end
    for _, k in ipairs(fresh) do
      extend(k, t)
    end
    fresh = {}
    return t
  end
  fresh = {}
  t = r.exp + 2 * ledger_life
  redis.call('HSET', lk, 'until', int(t))
  redis.call('PEXPIREAT', lk, int(t))
  extend(ledgers_key, t)
  extend(total_key, t)
  for _, f in ipairs(redis.call('HKEYS', lk)) do
    local source = string.match(f, '^[^:]*:(.*)$')
    if source and source ~= '' and not cluster then
      extend(source_key(source), t)
    end
  end
  return t
end

-- count adds n bytes from source, stored in mailbox box of r, to r's
-- ledger and to the counters (on a Cluster, the Go side has added them
-- to the source's counter already). It must precede expire (or
-- touch_counts), whose sync_ledger makes the counters expire no earlier
-- than the ledger: a counter made anew is extended then; one that
-- existed was extended when it was made, and whenever a ledger counting
-- in it moved its until, which a new ledger does at once (sync_ledger).
local function count(r, box, source, n)
  if n == 0 then
    return
  end
  redis.call('HINCRBY', ledger_key(r.gen), box .. ':' .. source, n)
  local keys = {total_key}
  if source ~= '' and not cluster then
    keys[2] = source_key(source)
  end
  for _, k in ipairs(keys) do
    if redis.call('INCRBY', k, n) == n then
      fresh[#fresh + 1] = k
    end
  end
end

-- expire sets the expiry of the room and all its keys to r.exp; the
-- mailbox of a disconnected member expires when its grace ends, if that
-- is earlier. The ledger follows (sync_ledger). fields, if given, are
-- more field, value pairs of the room hash to write with exp.
local function expire(r, fields)
  local exp = int(r.exp)
  if fields then
    fields[#fields + 1] = 'exp'
    fields[#fields + 1] = exp
    redis.call('HSET', room_key, unpack(fields))
  else
    redis.call('HSET', room_key, 'exp', exp)
  end
  redis.call('PEXPIREAT', room_key, exp)
  if #r.members < 2 then
    -- With two members, the next member's mailbox is a new, empty one:
    -- there is no key to expire (join gives it to the member it admits).
    redis.call('PEXPIREAT', box_key(r.nextbox), exp)
  end
  for _, m in ipairs(r.members) do
    local e = r.exp
    if not m.conn then
      e = math.min(e, grace_end(r, m))
    end
    redis.call('PEXPIREAT', box_key(m.box), int(e))
  end
  if redis.call('ZADD', index_key, exp, room_id) == 1 then
    -- A new room (or the index is new): the index must live as long.
    extend(index_key, r.exp)
  else
    -- The index has an expiry: the room's earlier one at least.
    redis.call('PEXPIREAT', index_key, exp, 'GT')
  end
  sync_ledger(r)
end

-- touch records activity: the room and all its keys expire TTL from now,
-- or earlier if it holds no connected member (limit). It must follow
-- save, which creates the hash of a new room.
local function touch(r)
  r.exp = limit(r, now + r.ttlms)
  expire(r)
end

-- touch_counts is touch for Append and Ack, which change no member but
-- the counts of the members given: they are written with the expiry
-- (save_counts) instead of by save.
local function touch_counts(r, ...)
  r.exp = limit(r, now + r.ttlms)
  expire(r, save_counts(r, ...))
end

-- find returns the index and the member with id, or nil.
local function find(r, id)
  for i, m in ipairs(r.members) do
    if m.id == id then
      return i, m
    end
  end
  return nil, nil
end

-- remove removes the i-th member and the messages waiting for it, and
-- gives their bytes back.
local function remove(r, i)
  release_seat(r.members[i])
  release(r.gen, r.members[i].box)
  redis.call('DEL', box_key(r.members[i].box))
  table.remove(r.members, i)
end

-- grace_over reports whether m has been disconnected for longer than the
-- room's resume grace period.
local function grace_over(r, m)
  return not m.conn and now - m.dat > r.gracems
end

-- prune removes the members whose grace period is over, with their
-- mailboxes (whose bytes it gives back, even if Redis has expired the
-- mailbox already), and saves the room if it removed any, shortening its
-- life if it has no member left (not activity). It returns whether it
-- did.
local function prune(r)
  local kept = {}
  for _, m in ipairs(r.members) do
    if grace_over(r, m) then
      release_seat(m)
      release(r.gen, m.box)
      redis.call('DEL', box_key(m.box))
      r.gone[#r.gone + 1] = {id = m.id, tok = m.tok}
      if #r.gone > 2 then
        table.remove(r.gone, 1)
      end
    else
      kept[#kept + 1] = m
    end
  end
  if #kept == #r.members then
    return false
  end
  r.members = kept
  save(r)
  r.exp = limit(r, r.exp)
  expire(r)
  return true
end

-- ack discards the messages for member m of r below keep (the lowest
-- sequence number to keep), giving their bytes back. The caller saves
-- m's counts (touch_counts).
local function ack(r, m, keep)
  local key = box_key(m.box)
  -- The bytes released: the bodies of the entries below the lowest kept,
  -- in all and by the source each came from (s; "" if none, or if stored
  -- before sources were).
  local freed, by_source = 0, {}
  if keep > 1 then
    for _, e in ipairs(redis.call('XRANGE', key, '-', '0-' .. int(keep - 1))) do
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
  m.cnt = math.max(0, m.cnt - redis.call('XTRIM', key, 'MINID', '0-' .. int(keep)))
  -- Once the member has acknowledged every message stored for it, nothing
  -- it could still miss is lost: the mailbox holds what is left. If that
  -- is nothing, what the room and the ledger still count for it was
  -- evicted: it is given back.
  if keep > m.last then
    m.cnt = redis.call('XLEN', key)
    if m.cnt == 0 and m.bytes > 0 then
      m.bytes = 0
      release(r.gen, m.box)
    end
  end
end

-- equal compares two strings in time that depends only on their length.
local function equal(a, b)
  if #a ~= #b then
    return false
  end
  local d = 0
  for i = 1, #a do
    d = bit.bor(d, bit.bxor(string.byte(a, i), string.byte(b, i)))
  end
  return d == 0
end

-- snapshot returns the room as the Go side decodes it: "OK", ttl, grace,
-- maxp, cgroup, group, seq, exp, maxb, empty, n, then id, tok, key, conn,
-- dat, gen for each member.
local function snapshot(r)
  local out = {'OK', r.ttl, r.grace, int(r.maxp), r.cgroup, r.group, int(r.seq), int(r.exp), int(r.maxb), r.empty, int(#r.members)}
  for _, m in ipairs(r.members) do
    local conn = '0'
    if m.conn then
      conn = '1'
    end
    local fields = {m.id, m.tok, m.key, conn, int(m.dat), int(m.gen)}
    for _, v in ipairs(fields) do
      out[#out + 1] = v
    end
  end
  return out
end

-- The script's own part follows. It returns {status, ...}; status is "OK"
-- or names the error.
