-- progress: a fenced write from the agent holding a task: renew its lease
-- (heartbeat) and optionally move it to 'scheduled' or 'running'.
-- KEYS[1] task hash   KEYS[2] task history   KEYS[3] device events   KEYS[4] leases zset
-- ARGV[1] task id     ARGV[2] agent id       ARGV[3] token (attempt)
-- ARGV[4] new state ('' : heartbeat only, 'scheduled', 'running')
-- ARGV[5] detail (JSON object)               ARGV[6] lease ms        ARGV[7] events maxlen
-- returns {'ok', state} | {'cancelled', state} | {'final', state} | {'fenced', state}
local task_id, agent, token, new = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local verdict, state = fence(KEYS[1], agent, token)
if verdict == 'final' then return {state == 'cancelled' and 'cancelled' or 'final', state} end
if verdict == 'fenced' then
  fenced(KEYS[2], KEYS[3], ARGV[7], task_id, redis.call('HGET', KEYS[1], 'owner'), agent, token,
         state, new ~= '' and new or 'heartbeat')
  return {'fenced', state}
end
local now = now_ms()
local lease = now + tonumber(ARGV[6])
redis.call('ZADD', KEYS[4], lease, task_id)
redis.call('HSET', KEYS[1], 'lease_until', lease)
if new == '' then return {'ok', state} end
if new ~= 'scheduled' and new ~= 'running' then
  return redis.error_reply('progress: bad state ' .. new)
end
if new == 'scheduled' and state == 'running' then return {'ok', state} end
local detail = cjson.decode(ARGV[5])
local args = {'state', new, 'updated_at', now}
if detail.job_id then args[#args + 1] = 'job_id'; args[#args + 1] = tostring(detail.job_id) end
if detail.reason then args[#args + 1] = 'job_reason'; args[#args + 1] = tostring(detail.reason) end
if detail.executor then args[#args + 1] = 'executor'; args[#args + 1] = tostring(detail.executor) end
if new == 'running' and state ~= 'running' then args[#args + 1] = 'started_at'; args[#args + 1] = now end
if new == 'scheduled' and state ~= 'scheduled' then args[#args + 1] = 'scheduled_at'; args[#args + 1] = now end
redis.call('HSET', KEYS[1], unpack(args))
detail.state = new
detail.agent = agent
detail.token = tonumber(token)
emit(KEYS[2], KEYS[3], ARGV[7], task_id, redis.call('HGET', KEYS[1], 'owner'), new, detail)
return {'ok', new}
