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
  fail_unheld(KEYS, ARGV[6], task_id, owner, 'agent_fault',
              'agent_fault: handed back ' .. handbacks .. ' times by agents that could not run it; last: ' .. ARGV[5],
              now, {previous = state, agent = agent, attempt = task.attempt, token = token, handbacks = handbacks})
  return {STATE.FAILED, handbacks}
end
-- Its old score puts it back where it was: the agent's fault must not cost it its turn.
requeue(KEYS, ARGV[6], task_id, owner, tonumber(t[2]) or 0, now,
        {reason = 'agent_fault', error = ARGV[5], previous = state, agent = agent, attempt = task.attempt,
         token = token, handbacks = handbacks})
return {'requeued', handbacks}
