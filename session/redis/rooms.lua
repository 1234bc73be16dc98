-- rooms.lua: Rooms. KEYS[1] is the room index (there is no room). Returns
-- {"OK", count}.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', int(now))
return {'OK', int(redis.call('ZCARD', KEYS[1]))}
