-- claim: queued -> claimed for the first claimable of a few candidate tasks,
-- binding the device's CURRENT snapshot (unless the task pinned one) and
-- handing out a lease and a fencing token unique to this claim.
-- KEYS[1] = events           the device's events stream
-- KEYS[2] = device           the device hash
-- KEYS[3] = pending          the pending zset (fair-share order)
-- KEYS[4] = leases           the leases zset
-- KEYS[5] = queue            the work stream
-- KEYS[4+2i] = task          candidate i's task hash (i = 1..n)
-- KEYS[5+2i] = history       candidate i's task history
-- ARGV[1] = agent            agent id
-- ARGV[2] = lease_ms         lease length
-- ARGV[3] = group            the work stream's consumer group
-- ARGV[4] = entry_id         the stream entry that woke the agent ('' : none)
-- ARGV[5] = events_maxlen
-- ARGV[6] = consume_on_skip  '1' : consume the pointer even when no candidate is claimable
-- ARGV[7] = nonce            fresh random hex from the caller, one per call
-- ARGV[7+i] = task_id        candidate i's task id
-- returns {'claimed', task id, attempt, token, snapshot id, field, value, ...} | {'skip', state of the last}
--
-- Candidates are the head of the pending set in order, read by the caller just
-- before: several agents racing for the head each take the next one still
-- queued here, instead of all retrying for the same task.
--
-- The token is '<attempt>-<nonce>'. The attempt alone is not unique: a failover
-- to a replica that had not yet seen a claim rolls the attempt counter back, and
-- the same claim made again would hand out the same number, so two runs of the
-- task would both pass the fence. The nonce makes every claim's token its own.
-- It comes from the caller (Python's secrets), not from math.random: Redis 7.0 seeds
-- Lua's generator the same way at every process start (the first math.random(1e9) of
-- a fresh redis-server is 396464774 each time), so a restarted or promoted node would
-- replay the same "random" values.
local agent, nonce = ARGV[1], ARGV[7]
if not string.match(nonce, '^[0-9a-f]+$') or #nonce < 8 or #nonce > 32 then
  return redis.error_reply('claim: the nonce must be 8-32 lower-case hex digits')
end
-- The stream entry is only a wake-up pointer: consumed here, in the same step as the claim.
local function consume()
  if ARGV[4] ~= '' then
    redis.call('XACK', KEYS[5], ARGV[3], ARGV[4])
    redis.call('XDEL', KEYS[5], ARGV[4])
  end
end
local n = #ARGV - 7
local task_key, history_key, task_id
local state = 'missing'
for i = 1, n do
  local key = KEYS[4 + 2 * i]
  state = redis.call('HGET', key, 'state') or 'missing'
  if state == STATE.QUEUED then
    task_key, history_key, task_id = key, KEYS[5 + 2 * i], ARGV[7 + i]
    break
  end
end
if not task_key then
  if ARGV[6] == '1' then consume() end
  return {'skip', state}
end
consume()

local t = redis.call('HMGET', task_key, 'pinned_snapshot', 'owner', 'vtag')
local snapshot = t[1]
local d = redis.call('HMGET', KEYS[2], 'snapshot', 'version', 'vclock')
if not snapshot or snapshot == '' then snapshot = d[1] end
local owner = t[2]
local attempt = redis.call('HINCRBY', task_key, 'attempt', 1)
local token = attempt .. '-' .. nonce
local now = now_ms()
local lease = now + tonumber(ARGV[2])
redis.call('HSET', task_key, 'state', STATE.CLAIMED, 'agent', agent, 'token', token, 'snapshot', snapshot,
           'claimed_at', now, 'updated_at', now, 'lease_until', lease)
redis.call('ZADD', KEYS[4], lease, task_id)
redis.call('ZREM', KEYS[3], task_id)
redis.call('HINCRBY', KEYS[2], 'queued:' .. owner, -1)
-- The fair-share clock only moves forward (a requeued task has an old tag).
if t[3] and tonumber(t[3]) > tonumber(d[3] or '0') then
  redis.call('HSET', KEYS[2], 'vclock', t[3])
end
emit(history_key, KEYS[1], ARGV[5], task_id, owner, STATE.CLAIMED,
     {state = STATE.CLAIMED, agent = agent, attempt = attempt, token = token, snapshot = snapshot,
      device_version = tonumber(d[2])})
local out = {STATE.CLAIMED, task_id, attempt, token, snapshot}
local all = redis.call('HGETALL', task_key)
for i = 1, #all do out[#out + 1] = all[i] end
return out
