-- lib.lua: the part every room script starts with; each script is
-- redisx's prelude (int, and now: the Redis server's clock in ms), this
-- file, then its own. Redis runs a script atomically: nothing else
-- touches the data between its first read and its last write.
--
-- KEYS[1]  the room's hash, PREFIX.."room:{"..id.."}"
-- KEYS[2]  the room index, PREFIX.."rooms": a sorted set of room IDs
--          scored by expiry (ms), so that counting rooms is exact
-- ARGV[1]  the room ID
-- ARGV[2]  the prefix of the room's mailbox keys, PREFIX.."mbox:{"..id.."}:"
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
--
-- The hash says what each mailbox should hold (cnt and last) so that a
-- mailbox that Redis evicted, or that is shorter than it should be for any
-- reason, is reported (pending.lua's LOST) instead of replayed as empty.
--
-- Every key of the room expires at exp, exactly (PEXPIREAT), and so does
-- the index once its last room has. All times come from the Redis server's
-- clock (TIME), the one that expires keys.

local room_key, index_key = KEYS[1], KEYS[2]
local room_id, box_prefix = ARGV[1], ARGV[2]

local function box_key(box)
  return box_prefix .. box
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
      bytes = tonumber(h[p .. 'bytes']) or 0,
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
    local keys = box_keys(r)
    keys[#keys + 1] = room_key
    redis.call('DEL', unpack(keys))
    redis.call('ZREM', index_key, room_id)
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
    local fields = {p .. 'id', m.id, p .. 'tok', m.tok, p .. 'key', m.key, p .. 'conn', conn, p .. 'dat', int(m.dat), p .. 'box', m.box, p .. 'gen', int(m.gen), p .. 'cnt', int(m.cnt), p .. 'last', int(m.last), p .. 'bytes', int(m.bytes)}
    for _, v in ipairs(fields) do
      f[#f + 1] = v
    end
  end
  redis.call('HSET', room_key, unpack(f))
  for i = #r.members + 1, 2 do
    local p = 'm' .. i .. '.'
    redis.call('HDEL', room_key, p .. 'id', p .. 'tok', p .. 'key', p .. 'conn', p .. 'dat', p .. 'box', p .. 'gen', p .. 'cnt', p .. 'last', p .. 'bytes')
  end
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

-- expire sets the expiry of the room and all its keys to r.exp; the
-- mailbox of a disconnected member expires when its grace ends, if that
-- is earlier.
local function expire(r)
  local exp = int(r.exp)
  redis.call('HSET', room_key, 'exp', exp)
  redis.call('PEXPIREAT', room_key, exp)
  redis.call('PEXPIREAT', box_key(r.nextbox), exp)
  for _, m in ipairs(r.members) do
    local e = r.exp
    if not m.conn then
      e = math.min(e, grace_end(r, m))
    end
    redis.call('PEXPIREAT', box_key(m.box), int(e))
  end
  redis.call('ZADD', index_key, exp, room_id)
  local pttl = redis.call('PTTL', index_key)
  if pttl < 0 or now + pttl < r.exp then
    redis.call('PEXPIREAT', index_key, exp)
  end
end

-- touch records activity: the room and all its keys expire TTL from now,
-- or earlier if it holds no connected member (limit). It must follow
-- save, which creates the hash of a new room.
local function touch(r)
  r.exp = limit(r, now + r.ttlms)
  expire(r)
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

-- remove removes the i-th member and the messages waiting for it.
local function remove(r, i)
  redis.call('DEL', box_key(r.members[i].box))
  table.remove(r.members, i)
end

-- grace_over reports whether m has been disconnected for longer than the
-- room's resume grace period.
local function grace_over(r, m)
  return not m.conn and now - m.dat > r.gracems
end

-- prune removes the members whose grace period is over, with their
-- mailboxes, and saves the room if it removed any, shortening its life
-- if it has no member left (not activity). It returns whether it did.
local function prune(r)
  local kept = {}
  for _, m in ipairs(r.members) do
    if grace_over(r, m) then
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
