-- window.lua: counts one attempt in a sliding window, if it is admitted:
-- two fixed windows of width ms, the current one (number now // width) and
-- the one before it, whose count is weighted by the part of it still
-- within width of now. The Go code (type sliding) applies the same rule.
--
-- KEYS[1]  the counter, a hash: b (the current window's number), c (its
--          count), p (the previous window's count)
-- ARGV[1]  the limit (> 0)
-- ARGV[2]  the width (ms, > 0)
--
-- Returns 1 if the attempt is admitted, and then counted, 0 if not (and
-- nothing changes). The key expires when both its windows are past.

local key = KEYS[1]
local limit, width = tonumber(ARGV[1]), tonumber(ARGV[2])

local bucket = math.floor(now / width)
local h = redis.call('HMGET', key, 'b', 'c', 'p')
local b, c, p = tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0
if b == nil then
  c, p = 0, 0
elseif b > bucket then
  bucket = b -- the clock went back: stay in the counter's window
elseif b == bucket - 1 then
  c, p = 0, c
elseif b < bucket - 1 then
  c, p = 0, 0
end
local elapsed = math.min(math.max(now - bucket * width, 0), width)
if p * (width - elapsed) / width + c >= limit then
  return 0
end
redis.call('HSET', key, 'b', int(bucket), 'c', int(c + 1), 'p', int(p))
redis.call('PEXPIREAT', key, int((bucket + 2) * width))
return 1
