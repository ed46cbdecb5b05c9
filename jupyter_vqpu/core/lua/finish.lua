-- finish: the fenced end of an attempt: 'completed' with its result, or 'failed'
-- with a reason. Accepted only from the agent holding the current token, once.
-- KEYS[1] task hash   KEYS[2] task history   KEYS[3] device events
-- KEYS[4] leases zset KEYS[5] result key    KEYS[6] device stats hash
-- ARGV[1] task id     ARGV[2] agent id       ARGV[3] token (attempt)
-- ARGV[4] outcome ('completed' | 'failed')   ARGV[5] result JSON ('' on failure)
-- ARGV[6] reason code ARGV[7] error line     ARGV[8] summary (JSON object for the event)
-- ARGV[9] events maxlen
-- returns {'ok', outcome} | {'cancelled', state} | {'final', state} | {'fenced', state}
local task_id, agent, token, outcome = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local verdict, state = fence(KEYS[1], agent, token)
if verdict == 'final' then return {state == 'cancelled' and 'cancelled' or 'final', state} end
if verdict == 'fenced' then
  fenced(KEYS[2], KEYS[3], ARGV[9], task_id, redis.call('HGET', KEYS[1], 'owner'), agent, token,
         state, outcome)
  return {'fenced', state}
end
if outcome ~= 'completed' and outcome ~= 'failed' then
  return redis.error_reply('finish: bad outcome ' .. outcome)
end
local now = now_ms()
local summary = cjson.decode(ARGV[8])
if outcome == 'completed' then
  redis.call('SET', KEYS[5], ARGV[5])
  redis.call('HSET', KEYS[1], 'state', 'completed', 'finished_at', now, 'updated_at', now)
else
  redis.call('HSET', KEYS[1], 'state', 'failed', 'finished_at', now, 'updated_at', now,
             'reason', ARGV[6], 'error', ARGV[7])
  summary.reason = ARGV[6]
  summary.error = ARGV[7]
end
redis.call('HDEL', KEYS[1], 'lease_until')
redis.call('ZREM', KEYS[4], task_id)
record_end(KEYS[6], KEYS[1], outcome, ARGV[6], now, true)
summary.state = outcome
summary.agent = agent
summary.token = tonumber(token)
emit(KEYS[2], KEYS[3], ARGV[9], task_id, redis.call('HGET', KEYS[1], 'owner'), outcome, summary)
return {'ok', outcome}
