-- claim: queued -> claimed for the first claimable of a few candidate tasks,
-- binding the device's CURRENT snapshot (unless the task pinned one) and
-- handing out a fencing token (the attempt number) and a lease.
-- KEYS[1] device events  KEYS[2] device hash   KEYS[3] pending zset
-- KEYS[4] leases zset    KEYS[5] work stream
-- KEYS[4+2i] task hash, KEYS[5+2i] task history of candidate i (i = 1..n)
-- ARGV[1] agent id       ARGV[2] lease ms      ARGV[3] stream group
-- ARGV[4] stream entry id ('' : none)          ARGV[5] events maxlen
-- ARGV[6] '1' : consume the pointer even when no candidate is claimable
-- ARGV[6+i] task id of candidate i
-- returns {'claimed', task id, attempt, snapshot id, field, value, ...} | {'skip', state of the last}
--
-- Candidates are the head of the pending set in order, read by the caller just
-- before: several agents racing for the head each take the next one still
-- queued here, instead of all retrying for the same task.
local agent = ARGV[1]
-- The stream entry is only a wake-up pointer: consumed here, in the same step as the claim.
local function consume()
  if ARGV[4] ~= '' then
    redis.call('XACK', KEYS[5], ARGV[3], ARGV[4])
    redis.call('XDEL', KEYS[5], ARGV[4])
  end
end
local n = #ARGV - 6
local task_key, history_key, task_id
local state = 'missing'
for i = 1, n do
  local key = KEYS[4 + 2 * i]
  state = redis.call('HGET', key, 'state') or 'missing'
  if state == 'queued' then
    task_key, history_key, task_id = key, KEYS[5 + 2 * i], ARGV[6 + i]
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
local now = now_ms()
local lease = now + tonumber(ARGV[2])
redis.call('HSET', task_key, 'state', 'claimed', 'agent', agent, 'snapshot', snapshot,
           'claimed_at', now, 'updated_at', now, 'lease_until', lease)
redis.call('ZADD', KEYS[4], lease, task_id)
redis.call('ZREM', KEYS[3], task_id)
redis.call('HINCRBY', KEYS[2], 'queued:' .. owner, -1)
-- The fair-share clock only moves forward (a requeued task has an old tag).
if t[3] and tonumber(t[3]) > tonumber(d[3] or '0') then
  redis.call('HSET', KEYS[2], 'vclock', t[3])
end
emit(history_key, KEYS[1], ARGV[5], task_id, owner, 'claimed',
     {state = 'claimed', agent = agent, token = attempt, snapshot = snapshot,
      device_version = tonumber(d[2])})
local out = {'claimed', task_id, attempt, snapshot}
local all = redis.call('HGETALL', task_key)
for i = 1, #all do out[#out + 1] = all[i] end
return out
