-- release: the agent holding a task hands it back because of a fault of its own
-- (it could not stage the bundle: disk full, unwritable work root), not the task's.
-- The task goes back to the queue at its old fair-share place WITHOUT using an
-- attempt: 'handbacks' counts these, and recover.lua discounts them from the
-- attempts. The attempt counter itself is kept (the next claim makes it
-- attempt+1), so a fencing token is never handed out twice. After too many
-- hand-backs the task fails with reason 'agent_fault', so a broken fleet cannot
-- bounce it forever.
-- KEYS[1] = task             the task hash
-- KEYS[2] = history          the task history
-- KEYS[3] = events           the device's events stream
-- KEYS[4] = leases           the leases zset
-- KEYS[5] = pending          the pending zset
-- KEYS[6] = queue            the work stream
-- KEYS[7] = device           the device hash
-- KEYS[8] = stats            the device's stats hash
-- ARGV[1] = task_id
-- ARGV[2] = agent            agent id
-- ARGV[3] = token            the fencing token of the claim
-- ARGV[4] = max_handbacks    hand-backs before the task fails as 'agent_fault'
-- ARGV[5] = problem          what went wrong (one line)
-- ARGV[6] = events_maxlen
-- returns {'requeued', hand-backs} | {'failed', hand-backs} | {'cancelled', state} | {'final', state}
--       | {'fenced', state}
local task_id, agent, token = ARGV[1], ARGV[2], ARGV[3]
local refused, task = fence(KEYS[1], KEYS[2], KEYS[3], ARGV[6], task_id, agent, token, 'release')
if refused then return refused end
local state = task.state
local t = redis.call('HMGET', KEYS[1], 'owner', 'score')
local owner = t[1]
local now = now_ms()
local handbacks = redis.call('HINCRBY', KEYS[1], 'handbacks', 1)
redis.call('ZREM', KEYS[4], task_id)
redis.call('HDEL', KEYS[1], 'lease_until')
if handbacks > tonumber(ARGV[4]) then
  local msg = 'agent_fault: handed back ' .. handbacks .. ' times by agents that could not run it; last: '
              .. ARGV[5]
  redis.call('HSET', KEYS[1], 'state', STATE.FAILED, 'agent', '', 'reason', 'agent_fault', 'error', msg,
             'finished_at', now, 'updated_at', now)
  record_end(KEYS[8], KEYS[1], STATE.FAILED, 'agent_fault', now, false)
  emit(KEYS[2], KEYS[3], ARGV[6], task_id, owner, STATE.FAILED,
       {state = STATE.FAILED, reason = 'agent_fault', error = msg, previous = state, agent = agent,
        attempt = task.attempt, token = token, handbacks = handbacks})
  return {STATE.FAILED, handbacks}
end
redis.call('HSET', KEYS[1], 'state', STATE.QUEUED, 'agent', '', 'updated_at', now, 'requeued_at', now)
redis.call('HINCRBY', KEYS[8], 'requeued', 1)
-- Its old score puts it back where it was: the agent's fault must not cost it its turn.
redis.call('ZADD', KEYS[5], tonumber(t[2]) or 0, task_id)
redis.call('XADD', KEYS[6], '*', 'task', task_id)
redis.call('HINCRBY', KEYS[7], 'queued:' .. owner, 1)
emit(KEYS[2], KEYS[3], ARGV[6], task_id, owner, STATE.QUEUED,
     {state = STATE.QUEUED, reason = 'agent_fault', error = ARGV[5], previous = state, agent = agent,
      attempt = task.attempt, token = token, handbacks = handbacks,
      position = redis.call('ZRANK', KEYS[5], task_id) + 1})
return {'requeued', handbacks}
