-- lib.lua: the part every script starts with; each script is this file
-- followed by its own. Redis runs a script atomically. All times are the
-- Redis server's clock (TIME), the one that expires keys, in milliseconds.

local function int(x)
  return string.format('%d', x)
end

local now
do
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
