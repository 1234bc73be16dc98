-- rooms.lua: a partition's census, for Rooms and, on a Cluster, for the
-- fleet-wide bounds. KEYS[1] is the partition's room index, KEYS[2] its
-- bytes waiting (there is no room). Returns {"OK", live rooms, bytes}.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', int(now))
return {'OK', int(redis.call('ZCARD', KEYS[1])), redis.call('GET', KEYS[2]) or '0'}
