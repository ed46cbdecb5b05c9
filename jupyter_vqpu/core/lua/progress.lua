-- progress: a fenced write from the agent holding a task: renew its lease
-- (heartbeat) and optionally move it to 'scheduled' or 'running'.
-- KEYS[1] = task             the task hash
-- KEYS[2] = history          the task history
-- KEYS[3] = events           the device's events stream
-- KEYS[4] = leases           the leases zset
-- ARGV[1] = task_id
-- ARGV[2] = agent            agent id
-- ARGV[3] = token            the fencing token of the claim
-- ARGV[4] = state            new state ('' : heartbeat only, 'scheduled', 'running')
-- ARGV[5] = detail           JSON object
-- ARGV[6] = lease_ms         lease length
-- ARGV[7] = events_maxlen
-- returns {'ok', state} | {'cancelled', state} | {'final', state} | {'fenced', state}
local task_id, agent, token, new = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local refused, task = fence(KEYS[1], KEYS[2], KEYS[3], ARGV[7], task_id, agent, token,
                            new ~= '' and new or 'heartbeat')
if refused then return refused end
local state = task.state
local now = now_ms()
local lease = now + tonumber(ARGV[6])
redis.call('ZADD', KEYS[4], lease, task_id)
redis.call('HSET', KEYS[1], 'lease_until', lease)
if new == '' then return {'ok', state} end
if new ~= STATE.SCHEDULED and new ~= STATE.RUNNING then
  return redis.error_reply('progress: bad state ' .. new)
end
if new == STATE.SCHEDULED and state == STATE.RUNNING then return {'ok', state} end
local detail = cjson.decode(ARGV[5])
local args = {'state', new, 'updated_at', now}
if detail.job_id then args[#args + 1] = 'job_id'; args[#args + 1] = tostring(detail.job_id) end
if detail.reason then args[#args + 1] = 'job_reason'; args[#args + 1] = tostring(detail.reason) end
if detail.executor then args[#args + 1] = 'executor'; args[#args + 1] = tostring(detail.executor) end
if new == STATE.RUNNING and state ~= STATE.RUNNING then args[#args + 1] = 'started_at'; args[#args + 1] = now end
if new == STATE.SCHEDULED and state ~= STATE.SCHEDULED then args[#args + 1] = 'scheduled_at'; args[#args + 1] = now end
redis.call('HSET', KEYS[1], unpack(args))
detail.state = new
detail.agent = agent
detail.attempt = task.attempt
detail.token = token
emit(KEYS[2], KEYS[3], ARGV[7], task_id, task.owner, new, detail)
return {'ok', new}
