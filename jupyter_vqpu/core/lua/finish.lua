-- finish: the fenced end of an attempt: 'completed' with its result, or 'failed'
-- with a reason. Accepted only from the agent holding the current token, once.
-- KEYS[1] = task             the task hash
-- KEYS[2] = history          the task history
-- KEYS[3] = events           the device's events stream
-- KEYS[4] = leases           the leases zset
-- KEYS[5] = result           the task's result key
-- KEYS[6] = stats            the device's stats hash
-- ARGV[1] = task_id
-- ARGV[2] = agent            agent id
-- ARGV[3] = token            the fencing token of the claim
-- ARGV[4] = outcome          'completed' | 'failed'
-- ARGV[5] = result           result JSON ('' on failure)
-- ARGV[6] = reason           reason code
-- ARGV[7] = error            error line
-- ARGV[8] = summary          JSON object for the event
-- ARGV[9] = events_maxlen
-- returns {'ok', outcome} | {'cancelled', state} | {'final', state} | {'fenced', state}
local task_id, agent, token, outcome = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local refused, task = fence(KEYS[1], KEYS[2], KEYS[3], ARGV[9], task_id, agent, token, outcome)
if refused then return refused end
if outcome ~= STATE.COMPLETED and outcome ~= STATE.FAILED then
  return redis.error_reply('finish: bad outcome ' .. outcome)
end
local now = now_ms()
local summary = cjson.decode(ARGV[8])
if outcome == STATE.COMPLETED then
  redis.call('SET', KEYS[5], ARGV[5])
  redis.call('HSET', KEYS[1], 'state', STATE.COMPLETED, 'finished_at', now, 'updated_at', now)
else
  redis.call('HSET', KEYS[1], 'state', STATE.FAILED, 'finished_at', now, 'updated_at', now,
             'reason', ARGV[6], 'error', ARGV[7])
  summary.reason = ARGV[6]
  summary.error = ARGV[7]
end
redis.call('HDEL', KEYS[1], 'lease_until')
redis.call('ZREM', KEYS[4], task_id)
record_end(KEYS[6], KEYS[1], outcome, ARGV[6], now, true)
summary.state = outcome
summary.agent = agent
summary.attempt = task.attempt
summary.token = token
emit(KEYS[2], KEYS[3], ARGV[9], task_id, task.owner, outcome, summary)
return {'ok', outcome}
