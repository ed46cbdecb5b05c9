-- claim: queued -> claimed, binding the device's CURRENT snapshot (unless the
-- task pinned one) and handing out a fencing token (the attempt number) and a lease.
-- KEYS[1] task hash     KEYS[2] task history    KEYS[3] device events
-- KEYS[4] device hash   KEYS[5] pending zset    KEYS[6] leases zset     KEYS[7] work stream
-- ARGV[1] task id       ARGV[2] agent id        ARGV[3] lease ms
-- ARGV[4] stream group  ARGV[5] stream entry id ('' : none)            ARGV[6] events maxlen
-- ARGV[7] '1' : consume the pointer even when the task is not claimable
-- returns {'claimed', attempt, snapshot id, field, value, ...} | {'skip', state}
local task_id, agent = ARGV[1], ARGV[2]
-- The stream entry is only a wake-up pointer: consumed here, in the same step as the claim.
local function consume()
  if ARGV[5] ~= '' then
    redis.call('XACK', KEYS[7], ARGV[4], ARGV[5])
    redis.call('XDEL', KEYS[7], ARGV[5])
  end
end
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' then
  if ARGV[7] == '1' then consume() end
  return {'skip', state or 'missing'}
end
consume()

local pinned = redis.call('HGET', KEYS[1], 'pinned_snapshot')
local snapshot = pinned
if not snapshot or snapshot == '' then
  snapshot = redis.call('HGET', KEYS[4], 'snapshot')
end
local owner = redis.call('HGET', KEYS[1], 'owner')
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
local now = now_ms()
local lease = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'state', 'claimed', 'agent', agent, 'snapshot', snapshot,
           'claimed_at', now, 'updated_at', now, 'lease_until', lease)
redis.call('ZADD', KEYS[6], lease, task_id)
redis.call('ZREM', KEYS[5], task_id)
redis.call('HINCRBY', KEYS[4], 'queued:' .. owner, -1)
emit(KEYS[2], KEYS[3], ARGV[6], task_id, owner, 'claimed',
     {state = 'claimed', agent = agent, token = attempt, snapshot = snapshot,
      device_version = tonumber(redis.call('HGET', KEYS[4], 'version'))})
local out = {'claimed', attempt, snapshot}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all do out[#out + 1] = all[i] end
return out
