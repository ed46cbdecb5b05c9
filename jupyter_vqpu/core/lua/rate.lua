-- rate: a sliding-window count of one owner's submissions (across devices).
-- KEYS[1] = rate             the owner's window (a sorted set of submission times)
-- ARGV[1] = max_count        most submissions in the window
-- ARGV[2] = window_ms        window length
-- returns {'ok', count} | {'limited', ms until a slot frees}
local now = now_ms()
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {'limited', tonumber(oldest[2]) + window - now}
end
-- Unique even for two submissions in one millisecond: the second sees one more.
redis.call('ZADD', KEYS[1], now, now .. '-' .. count)
redis.call('PEXPIRE', KEYS[1], window)
return {'ok', count + 1}
