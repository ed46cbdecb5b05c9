-- submit: create a queued task, idempotently, at its fair-share place in the queue.
-- KEYS[1] = task             the task hash
-- KEYS[2] = history          the task history
-- KEYS[3] = events           the device's events stream
-- KEYS[4] = device           the device hash
-- KEYS[5] = queue            the work stream
-- KEYS[6] = pending          the pending zset
-- KEYS[7] = owner_index      the owner's index of tasks on this device
-- KEYS[8] = agents           the agents zset
-- KEYS[9] = idempotency      (optional: only with an idempotency ttl) the idempotency key
-- KEYS[10] = snapshot        (optional: only with a pinned snapshot; KEYS[9] when there is no
--                            idempotency key) the pinned snapshot
-- ARGV[1] = task_id
-- ARGV[2] = owner
-- ARGV[3] = fields           task fields (JSON object)
-- ARGV[4] = idempotency_ttl_s  seconds (0: no idempotency key)
-- ARGV[5] = pinned_snapshot  snapshot id ('' : none)
-- ARGV[6] = events_maxlen
-- ARGV[7] = max_queued       most queued per owner on this device (0: unlimited)
-- returns {'created', id, position, now ms, seq, vtag, newest agent expiry ms ('' : none),
--          offline since ms ('' : never seen)} | {'existing', id} | {'error', code, detail}
--
-- Fair share (start-time fair queuing): the device keeps a virtual clock
-- 'vclock' (the tag of the last claimed task) and each owner the tag of their
-- last queued task ('vt:<owner>'). A new task's tag is max(vclock, owner's
-- tag) + 1, so an owner with 500 queued tasks holds tags vclock+1..+500 while
-- a newcomer's first task gets vclock+1: claims, which take the lowest score,
-- rotate across owners with queued work. The score orders equal tags by
-- arrival, so the queue position a user sees is the real claim order.
local task_id, owner = ARGV[1], ARGV[2]
-- The optional keys follow the fixed ones, each only when it is used.
local idem_key, snapshot_key
local next_key = 9
if ARGV[4] ~= '0' then idem_key = KEYS[next_key]; next_key = next_key + 1 end
if ARGV[5] ~= '' then snapshot_key = KEYS[next_key] end
if redis.call('EXISTS', KEYS[4]) == 0 then
  return {'error', 'unknown_device', ''}
end
if redis.call('HGET', KEYS[4], 'admin_state') == 'draining' then
  return {'error', 'device_draining', ''}
end
if ARGV[4] ~= '0' then
  local existing = redis.call('GET', idem_key)
  if existing then return {'existing', existing} end
end
if ARGV[5] ~= '' and redis.call('EXISTS', snapshot_key) == 0 then
  return {'error', 'unknown_snapshot', ARGV[5]}
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'error', 'duplicate_id', task_id}
end
local d = redis.call('HMGET', KEYS[4], 'queued:' .. owner, 'vclock', 'vt:' .. owner, 'offline_since')
local queued = tonumber(d[1] or '0')
local limit = tonumber(ARGV[7])
if limit > 0 and queued >= limit then
  return {'error', 'queue_limit', tostring(limit)}
end

local vclock = tonumber(d[2] or '0')
local start = vclock
-- An owner's own tag only counts while they have work queued: one who
-- cancelled or drained their backlog starts again at the clock.
if queued > 0 and d[3] and tonumber(d[3]) > start then start = tonumber(d[3]) end
local vtag = start + 1

local fields = cjson.decode(ARGV[3])
local now = now_ms()
local seq = redis.call('HINCRBY', KEYS[4], 'seq', 1)
-- Tags stay far below 2^31 and the arrival part wraps at 2^22: the score is exact in a double.
local score = vtag * 4194304 + seq % 4194304
local args = {'id', task_id, 'owner', owner, 'state', STATE.QUEUED, 'attempt', '0',
              'agent', '', 'seq', seq, 'vtag', vtag, 'score', score,
              'created_at', now, 'updated_at', now, 'pinned_snapshot', ARGV[5]}
for k, v in pairs(fields) do
  args[#args + 1] = k
  args[#args + 1] = tostring(v)
end
redis.call('HSET', KEYS[1], unpack(args))
redis.call('ZADD', KEYS[6], score, task_id)
redis.call('XADD', KEYS[5], '*', 'task', task_id)
redis.call('ZADD', KEYS[7], now, task_id)
redis.call('HSET', KEYS[4], 'queued:' .. owner, queued + 1, 'vt:' .. owner, vtag)
if ARGV[4] ~= '0' then
  redis.call('SET', idem_key, task_id, 'EX', tonumber(ARGV[4]))
end
local position = redis.call('ZRANK', KEYS[6], task_id) + 1
emit(KEYS[2], KEYS[3], ARGV[6], task_id, owner, STATE.QUEUED,
     {state = STATE.QUEUED, position = position, shots = tonumber(fields.shots)})
local newest = redis.call('ZRANGE', KEYS[8], -1, -1, 'WITHSCORES')
return {'created', task_id, position, now, seq, vtag, newest[2] or '', d[4] or ''}
