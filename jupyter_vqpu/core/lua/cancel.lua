-- cancel: any non-final state -> cancelled. A held task loses its lease at once;
-- its agent learns of it on its next heartbeat (or from the event) and stops the job.
-- KEYS[1] = task             the task hash
-- KEYS[2] = history          the task history
-- KEYS[3] = events           the device's events stream
-- KEYS[4] = leases           the leases zset
-- KEYS[5] = pending          the pending zset
-- KEYS[6] = device           the device hash
-- KEYS[7] = stats            the device's stats hash
-- ARGV[1] = task_id
-- ARGV[2] = by               who cancelled it
-- ARGV[3] = events_maxlen
-- returns {'cancelled', previous state, agent, job id} | {'final', state} | {'missing'}
local task_id = ARGV[1]
local t = redis.call('HMGET', KEYS[1], 'state', 'agent', 'job_id', 'owner')
local state = t[1]
if not state then return {'missing'} end
if FINAL[state] then return {'final', state} end
local now = now_ms()
redis.call('HSET', KEYS[1], 'state', STATE.CANCELLED, 'finished_at', now, 'updated_at', now,
           'reason', STATE.CANCELLED, 'cancelled_by', ARGV[2])
redis.call('HDEL', KEYS[1], 'lease_until')
redis.call('ZREM', KEYS[4], task_id)
if state == STATE.QUEUED and redis.call('ZREM', KEYS[5], task_id) == 1 then
  redis.call('HINCRBY', KEYS[6], 'queued:' .. t[4], -1)
end
record_end(KEYS[7], KEYS[1], STATE.CANCELLED, '', now, false)
emit(KEYS[2], KEYS[3], ARGV[3], task_id, t[4], STATE.CANCELLED,
     {state = STATE.CANCELLED, previous = state, by = ARGV[2], agent = t[2], job_id = t[3]})
return {STATE.CANCELLED, state, t[2] or '', t[3] or ''}
