-- submit: create a queued task, idempotently, at its fair-share place in the queue.
-- KEYS[1] task hash          KEYS[2] task history      KEYS[3] device events
-- KEYS[4] device hash        KEYS[5] work stream       KEYS[6] pending zset
-- KEYS[7] idempotency key    KEYS[8] owner's index     KEYS[9] pinned snapshot (or device hash)
-- KEYS[10] agents zset
-- ARGV[1] task id            ARGV[2] owner             ARGV[3] task fields (JSON object)
-- ARGV[4] idempotency ttl s (0: none)                  ARGV[5] pinned snapshot id ('' : none)
-- ARGV[6] events maxlen      ARGV[7] max queued per owner on this device (0: unlimited)
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
local args = {'id', task_id, 'owner', owner, 'state', 'queued', 'attempt', '0',
              'agent', '', 'seq', seq, 'vtag', vtag, 'score', score,
              'created_at', now, 'updated_at', now, 'pinned_snapshot', ARGV[5]}
for k, v in pairs(fields) do
  args[#args + 1] = k
  args[#args + 1] = tostring(v)
end
redis.call('HSET', KEYS[1], unpack(args))
redis.call('ZADD', KEYS[6], score, task_id)
redis.call('XADD', KEYS[5], '*', 'task', task_id)
redis.call('ZADD', KEYS[8], now, task_id)
redis.call('HSET', KEYS[4], 'queued:' .. owner, queued + 1, 'vt:' .. owner, vtag)
if ARGV[4] ~= '0' then
  redis.call('SET', KEYS[7], task_id, 'EX', tonumber(ARGV[4]))
end
local position = redis.call('ZRANK', KEYS[6], task_id) + 1
emit(KEYS[2], KEYS[3], ARGV[6], task_id, owner, 'queued',
     {state = 'queued', position = position, shots = tonumber(fields.shots)})
local newest = redis.call('ZRANGE', KEYS[10], -1, -1, 'WITHSCORES')
return {'created', task_id, position, now, seq, vtag, newest[2] or '', d[4] or ''}
