-- Shared helpers, prepended to every vQPU script when it is registered.
-- Scripts never build key names: every key arrives through KEYS, under one
-- device hash tag, so the same scripts run unchanged on Redis Cluster.

local ACTIVE = {claimed = true, scheduled = true, running = true}
local FINAL = {completed = true, failed = true, cancelled = true}

-- Server time in milliseconds: one clock for every agent and client.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Append one transition to the task's own history and to the device's events
-- stream. Both carry the same JSON; the stream adds top-level fields so that
-- readers can filter without decoding.
local function emit(history_key, events_key, maxlen, task_id, owner, event, fields)
  local ts = now_ms()
  local entry = {ts = ts, task = task_id, event = event}
  for k, v in pairs(fields) do entry[k] = v end
  local data = cjson.encode(entry)
  if history_key ~= nil and task_id ~= '' then
    redis.call('RPUSH', history_key, data)
  end
  redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*',
             'event', event, 'task', task_id, 'owner', owner or '', 'data', data)
  return ts
end

-- Is (agent, token) the holder of the task's current attempt?
-- Returns 'ok', 'final' (our attempt, but the task already ended: a late or
-- repeated report, or a cancel) or 'fenced' (another attempt owns the task,
-- or none does), and the task's state.
local function fence(task_key, agent, token)
  local t = redis.call('HMGET', task_key, 'state', 'attempt', 'agent')
  if not t[1] then return 'fenced', 'missing' end
  if t[2] ~= token or t[3] ~= agent then return 'fenced', t[1] end
  if FINAL[t[1]] then return 'final', t[1] end
  if not ACTIVE[t[1]] then return 'fenced', t[1] end
  return 'ok', t[1]
end

-- Record a rejected write from an agent that no longer holds the task.
local function fenced(history_key, events_key, maxlen, task_id, owner, agent, token, state, what)
  emit(history_key, events_key, maxlen, task_id, owner, 'fenced',
       {agent = agent, token = tonumber(token), task_state = state, write = what})
end
