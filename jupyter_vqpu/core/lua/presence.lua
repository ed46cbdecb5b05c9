-- presence: an agent says it is alive and serving this device, and whether it is
-- healthy. Membership changes (an agent appearing, or one whose presence
-- expired) and health changes are events, so a device's online / degraded /
-- offline status is projected like any other state change.
-- KEYS[1] = agents           the agents zset
-- KEYS[2] = events           the device's events stream
-- KEYS[3] = device           the device hash
-- KEYS[4] = agent_health     the agent health hash
-- ARGV[1] = agent            agent id
-- ARGV[2] = ttl_ms           presence length ('0' : leaving)
-- ARGV[3] = events_maxlen
-- ARGV[4] = problem          '' : healthy, else why the agent is unhealthy (one line: it cannot run work now)
-- returns number of live agents
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, a in ipairs(expired) do
  redis.call('ZREM', KEYS[1], a)
  redis.call('HDEL', KEYS[4], a)
  emit(nil, KEYS[2], ARGV[3], '', '', 'agent_offline', {agent = a, reason = 'expired'})
end
if ARGV[2] == '0' then
  redis.call('HDEL', KEYS[4], ARGV[1])
  if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
    emit(nil, KEYS[2], ARGV[3], '', '', 'agent_offline', {agent = ARGV[1], reason = 'left'})
  end
else
  if redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) == 1 then
    emit(nil, KEYS[2], ARGV[3], '', '', 'agent_online', {agent = ARGV[1]})
  end
  local before = redis.call('HGET', KEYS[4], ARGV[1])
  local problem = ARGV[4] or ''
  if problem == '' then
    if before then
      redis.call('HDEL', KEYS[4], ARGV[1])
      emit(nil, KEYS[2], ARGV[3], '', '', 'agent_healthy', {agent = ARGV[1]})
    end
  elseif before ~= problem then
    redis.call('HSET', KEYS[4], ARGV[1], problem)
    emit(nil, KEYS[2], ARGV[3], '', '', 'agent_unhealthy', {agent = ARGV[1], reason = problem})
  end
end
local n = redis.call('ZCARD', KEYS[1])
if n == 0 then
  redis.call('HSETNX', KEYS[3], 'offline_since', now)  -- keeps the first moment
else
  redis.call('HDEL', KEYS[3], 'offline_since')
end
return n
