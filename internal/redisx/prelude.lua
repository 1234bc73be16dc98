-- prelude.lua: what every script of every package starts with, before the
-- package's own lib.lua (see redisx.LoadScript). Redis runs a script
-- atomically. All times are the Redis server's clock (TIME), the one that
-- expires keys, in milliseconds.

-- int formats a number as an integer, without the exponent that Lua's
-- tostring gives large numbers.
local function int(x)
  return string.format('%d', x)
end

-- now is the Redis server's time, in ms since the Unix epoch.
local now
do
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
