-- recover: a task whose lease expired goes back to the queue with its attempt
-- kept (the next claim makes it attempt+1), or fails with reason 'lost' once it
-- has used its attempts. Its old token is void either way.
-- KEYS[1] = task             the task hash
-- KEYS[2] = history          the task history
-- KEYS[3] = events           the device's events stream
-- KEYS[4] = leases           the leases zset
-- KEYS[5] = pending          the pending zset
-- KEYS[6] = queue            the work stream
-- KEYS[7] = device           the device hash
-- KEYS[8] = stats            the device's stats hash
-- ARGV[1] = task_id
-- ARGV[2] = max_attempts
-- ARGV[3] = by               who recovers it
-- ARGV[4] = events_maxlen
-- ARGV[5] = force            '1' to recover even if the lease has not expired (operator's force)
-- returns {'requeued', attempt} | {'failed', attempt} | {'alive', ms left} | {'gone', state}
local task_id = ARGV[1]
local lease = redis.call('ZSCORE', KEYS[4], task_id)
local t = redis.call('HMGET', KEYS[1], 'state', 'attempt', 'agent', 'owner', 'score', 'handbacks', 'token')
if not t[1] or not HELD[t[1]] then
  redis.call('ZREM', KEYS[4], task_id)
  return {'gone', t[1] or 'missing'}
end
local now = now_ms()
if lease and tonumber(lease) > now and ARGV[5] ~= '1' then
  return {'alive', tonumber(lease) - now}
end
local attempt = tonumber(t[2])
-- Claims handed back for an agent's own fault (release.lua) do not count as attempts.
local used = attempt - (tonumber(t[6]) or 0)
redis.call('ZREM', KEYS[4], task_id)
redis.call('HDEL', KEYS[1], 'lease_until')
if used >= tonumber(ARGV[2]) then
  fail_unheld(KEYS, ARGV[4], task_id, t[4], 'lost', 'lost: its executor or agent vanished on each of ' .. used .. ' attempts',
              now, {previous = t[1], lost_agent = t[3], attempt = attempt, token = t[7], by = ARGV[3]})
  return {STATE.FAILED, attempt}
end
requeue(KEYS, ARGV[4], task_id, t[4], tonumber(t[5]) or 0, now,
        {reason = 'lease_expired', previous = t[1], lost_agent = t[3], attempt = attempt, token = t[7], by = ARGV[3]})
return {'requeued', attempt}
