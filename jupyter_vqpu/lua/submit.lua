-- submit: create a queued task, idempotently.
-- KEYS[1] task hash          KEYS[2] task history      KEYS[3] device events
-- KEYS[4] device hash        KEYS[5] work stream       KEYS[6] pending zset
-- KEYS[7] idempotency key    KEYS[8] owner's index     KEYS[9] pinned snapshot (or device hash)
-- ARGV[1] task id            ARGV[2] owner             ARGV[3] task fields (JSON object)
-- ARGV[4] idempotency ttl s (0: none)                  ARGV[5] pinned snapshot id ('' : none)
-- ARGV[6] events maxlen      ARGV[7] max queued per owner on this device (0: unlimited)
-- returns {'created', id, position} | {'existing', id} | {'error', code, detail}
local task_id, owner = ARGV[1], ARGV[2]
if redis.call('EXISTS', KEYS[4]) == 0 then
  return {'error', 'unknown_device', ''}
end
if redis.call('HGET', KEYS[4], 'admin_state') == 'draining' then
  return {'error', 'device_draining', ''}
end
if ARGV[4] ~= '0' then
  local existing = redis.call('GET', KEYS[7])
  if existing then return {'existing', existing} end
end
if ARGV[5] ~= '' and redis.call('EXISTS', KEYS[9]) == 0 then
  return {'error', 'unknown_snapshot', ARGV[5]}
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'error', 'duplicate_id', task_id}
end
local limit = tonumber(ARGV[7])
if limit > 0 then
  local queued = tonumber(redis.call('HGET', KEYS[4], 'queued:' .. owner) or '0')
  if queued >= limit then return {'error', 'queue_limit', tostring(limit)} end
end

local fields = cjson.decode(ARGV[3])
local now = now_ms()
local seq = redis.call('HINCRBY', KEYS[4], 'seq', 1)
local args = {'id', task_id, 'owner', owner, 'state', 'queued', 'attempt', '0',
              'agent', '', 'seq', seq, 'created_at', now, 'updated_at', now,
              'pinned_snapshot', ARGV[5]}
for k, v in pairs(fields) do
  args[#args + 1] = k
  args[#args + 1] = tostring(v)
end
redis.call('HSET', KEYS[1], unpack(args))
redis.call('ZADD', KEYS[6], seq, task_id)
redis.call('XADD', KEYS[5], '*', 'task', task_id)
redis.call('ZADD', KEYS[8], now, task_id)
redis.call('HINCRBY', KEYS[4], 'queued:' .. owner, 1)
if ARGV[4] ~= '0' then
  redis.call('SET', KEYS[7], task_id, 'EX', tonumber(ARGV[4]))
end
local position = redis.call('ZRANK', KEYS[6], task_id) + 1
emit(KEYS[2], KEYS[3], ARGV[6], task_id, owner, 'queued',
     {state = 'queued', position = position, shots = tonumber(fields.shots)})
return {'created', task_id, position}
