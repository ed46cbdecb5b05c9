-- recover: a task whose lease expired goes back to the queue with its attempt
-- kept (the next claim makes it attempt+1), or fails with reason 'lost' once it
-- has used its attempts. Its old token is void either way.
-- KEYS[1] task hash   KEYS[2] task history   KEYS[3] device events   KEYS[4] leases zset
-- KEYS[5] pending zset KEYS[6] work stream   KEYS[7] device hash     KEYS[8] device stats hash
-- ARGV[1] task id     ARGV[2] max attempts   ARGV[3] recovered by    ARGV[4] events maxlen
-- ARGV[5] '1' to recover even if the lease has not expired (operator's force)
-- returns {'requeued', attempt} | {'failed', attempt} | {'alive', ms left} | {'gone', state}
local task_id = ARGV[1]
local lease = redis.call('ZSCORE', KEYS[4], task_id)
local t = redis.call('HMGET', KEYS[1], 'state', 'attempt', 'agent', 'owner', 'score', 'handbacks')
if not t[1] or not ACTIVE[t[1]] then
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
  local msg = 'lost: its executor or agent vanished on each of ' .. used .. ' attempts'
  redis.call('HSET', KEYS[1], 'state', 'failed', 'agent', '', 'reason', 'lost', 'error', msg,
             'finished_at', now, 'updated_at', now)
  record_end(KEYS[8], KEYS[1], 'failed', 'lost', now, false)
  emit(KEYS[2], KEYS[3], ARGV[4], task_id, t[4], 'failed',
       {state = 'failed', reason = 'lost', error = msg, previous = t[1], lost_agent = t[3],
        token = attempt, by = ARGV[3]})
  return {'failed', attempt}
end
redis.call('HSET', KEYS[1], 'state', 'queued', 'agent', '', 'updated_at', now, 'requeued_at', now)
redis.call('HINCRBY', KEYS[8], 'requeued', 1)
-- Its old score puts it back at the front: it has waited its turn already.
redis.call('ZADD', KEYS[5], tonumber(t[5]) or 0, task_id)
redis.call('XADD', KEYS[6], '*', 'task', task_id)
redis.call('HINCRBY', KEYS[7], 'queued:' .. t[4], 1)
emit(KEYS[2], KEYS[3], ARGV[4], task_id, t[4], 'queued',
     {state = 'queued', reason = 'lease_expired', previous = t[1], lost_agent = t[3],
      token = attempt, by = ARGV[3], position = redis.call('ZRANK', KEYS[5], task_id) + 1})
return {'requeued', attempt}
