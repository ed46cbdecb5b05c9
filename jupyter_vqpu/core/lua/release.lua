-- release: the agent holding a task hands it back because of a fault of its own
-- (it could not stage the bundle: disk full, unwritable work root), not the task's.
-- The task goes back to the queue at its old fair-share place WITHOUT using an
-- attempt: 'handbacks' counts these, and recover.lua discounts them from the
-- attempts. The attempt counter itself is kept (the next claim makes it
-- attempt+1), so a fencing token is never handed out twice. After too many
-- hand-backs the task fails with reason 'agent_fault', so a broken fleet cannot
-- bounce it forever.
-- KEYS[1] task hash   KEYS[2] task history   KEYS[3] device events   KEYS[4] leases zset
-- KEYS[5] pending zset KEYS[6] work stream   KEYS[7] device hash     KEYS[8] device stats hash
-- ARGV[1] task id     ARGV[2] agent id       ARGV[3] token (attempt)
-- ARGV[4] max hand-backs                     ARGV[5] what went wrong (one line)
-- ARGV[6] events maxlen
-- returns {'requeued', hand-backs} | {'failed', hand-backs} | {'cancelled', state} | {'final', state}
--       | {'fenced', state}
local task_id, agent, token = ARGV[1], ARGV[2], ARGV[3]
local verdict, state = fence(KEYS[1], agent, token)
if verdict == 'final' then return {state == 'cancelled' and 'cancelled' or 'final', state} end
if verdict == 'fenced' then
  fenced(KEYS[2], KEYS[3], ARGV[6], task_id, redis.call('HGET', KEYS[1], 'owner'), agent, token,
         state, 'release')
  return {'fenced', state}
end
local t = redis.call('HMGET', KEYS[1], 'owner', 'score')
local owner = t[1]
local now = now_ms()
local handbacks = redis.call('HINCRBY', KEYS[1], 'handbacks', 1)
redis.call('ZREM', KEYS[4], task_id)
redis.call('HDEL', KEYS[1], 'lease_until')
if handbacks > tonumber(ARGV[4]) then
  local msg = 'agent_fault: handed back ' .. handbacks .. ' times by agents that could not run it; last: '
              .. ARGV[5]
  redis.call('HSET', KEYS[1], 'state', 'failed', 'agent', '', 'reason', 'agent_fault', 'error', msg,
             'finished_at', now, 'updated_at', now)
  record_end(KEYS[8], KEYS[1], 'failed', 'agent_fault', now, false)
  emit(KEYS[2], KEYS[3], ARGV[6], task_id, owner, 'failed',
       {state = 'failed', reason = 'agent_fault', error = msg, previous = state, agent = agent,
        token = tonumber(token), handbacks = handbacks})
  return {'failed', handbacks}
end
redis.call('HSET', KEYS[1], 'state', 'queued', 'agent', '', 'updated_at', now, 'requeued_at', now)
redis.call('HINCRBY', KEYS[8], 'requeued', 1)
-- Its old score puts it back where it was: the agent's fault must not cost it its turn.
redis.call('ZADD', KEYS[5], tonumber(t[2]) or 0, task_id)
redis.call('XADD', KEYS[6], '*', 'task', task_id)
redis.call('HINCRBY', KEYS[7], 'queued:' .. owner, 1)
emit(KEYS[2], KEYS[3], ARGV[6], task_id, owner, 'queued',
     {state = 'queued', reason = 'agent_fault', error = ARGV[5], previous = state, agent = agent,
      token = tonumber(token), handbacks = handbacks,
      position = redis.call('ZRANK', KEYS[5], task_id) + 1})
return {'requeued', handbacks}
