-- renew: one device's heartbeat in one call: the fenced lease renewal of every
-- task an agent holds there (progress with state '' is the same for one task).
-- KEYS[1] = events           the device's events stream
-- KEYS[2] = leases           the leases zset
-- KEYS[1+2i] = task          held task i's task hash (i = 1..n)
-- KEYS[2+2i] = history       held task i's task history
-- ARGV[1] = agent            agent id
-- ARGV[2] = lease_ms         lease length
-- ARGV[3] = events_maxlen
-- ARGV[2+2i] = task_id       held task i's id
-- ARGV[3+2i] = token         the fencing token of held task i's claim
-- returns one verdict per task, in order: 'ok' | 'cancelled' | 'final' | 'fenced'
--
-- All of a device's keys share its hash tag, so this is one call on the one node
-- that serves the device, however many tasks the agent holds there.
local agent, maxlen = ARGV[1], ARGV[3]
local lease = now_ms() + tonumber(ARGV[2])
local verdicts = {}
for i = 1, (#KEYS - 2) / 2 do
  local task_key, task_id = KEYS[1 + 2 * i], ARGV[2 + 2 * i]
  local refused = fence(task_key, KEYS[2 + 2 * i], KEYS[1], maxlen, task_id, agent, ARGV[3 + 2 * i], 'heartbeat')
  if refused then
    verdicts[i] = refused[1]
  else
    redis.call('ZADD', KEYS[2], lease, task_id)
    redis.call('HSET', task_key, 'lease_until', lease)
    verdicts[i] = 'ok'
  end
end
return verdicts
