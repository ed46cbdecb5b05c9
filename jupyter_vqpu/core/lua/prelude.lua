-- Shared helpers, prepended to every vQPU script when it is registered.
-- Scripts never build key names: every key arrives through KEYS, under one
-- device hash tag, so the same scripts run unchanged on Redis Cluster.

-- The task states, named once (jupyter_vqpu/core/lifecycle.py's TaskState; checked
-- against it by tests/unit/test_state_vocabulary.py): scripts say STATE.QUEUED,
-- never 'queued'. An event that enters a state is named after it.
local STATE = {
  QUEUED = 'queued',
  CLAIMED = 'claimed',
  SCHEDULED = 'scheduled',
  RUNNING = 'running',
  COMPLETED = 'completed',
  FAILED = 'failed',
  CANCELLED = 'cancelled',
}
-- States a task never leaves.
local FINAL = {
  [STATE.COMPLETED] = true,
  [STATE.FAILED] = true,
  [STATE.CANCELLED] = true,
}
-- Held by an agent under a lease and a fencing token.
local HELD = {
  [STATE.CLAIMED] = true,
  [STATE.SCHEDULED] = true,
  [STATE.RUNNING] = true,
}

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

-- The opening of every fenced script (progress, finish, release): is (agent, token)
-- the holder of the task's current claim? The token is the whole string claim.lua
-- minted (attempt and a nonce), so a claim replayed after a failover rolled Redis
-- back gets a new token and the old one stays void.
-- Returns nil and the task's hash fields {state, attempt, owner} when it is. Otherwise
-- the script's reply, which it returns at once: {'cancelled' | 'final', state} for
-- our own claim of a task that already ended (a late or repeated report, or a
-- cancel), or {'fenced', state} for a write from anyone else (another claim owns the
-- task, or none does), recorded as a 'fenced' event naming ``what`` was refused.
local function fence(task_key, history_key, events_key, maxlen, task_id, agent, token, what)
  local t = redis.call('HMGET', task_key, 'state', 'token', 'agent', 'attempt', 'owner')
  local state = t[1]
  if state and t[2] == token and t[3] == agent then
    if FINAL[state] then return {state == STATE.CANCELLED and STATE.CANCELLED or 'final', state} end
    if HELD[state] then return nil, {state = state, attempt = tonumber(t[4]), owner = t[5]} end
  end
  state = state or 'missing'
  emit(history_key, events_key, maxlen, task_id, t[5], 'fenced',
       {agent = agent, token = token, task_state = state, write = what})
  return {'fenced', state}
end

-- Operations statistics: cumulative counters and latency histograms in the
-- device's stats hash, read at scrape time by jupyter_vqpu/metrics.py. Kept in
-- Redis (not in a service's memory) so that every replica reports the same
-- numbers and a restart loses none. Field names describe themselves:
--   finished:<outcome>   failed:<reason>   requeued
--   lat:<phase>:le:<upper bound in s>  (per bucket, not cumulative)
--   lat:<phase>:sum_ms
local LATENCY_BUCKETS = {
  {50, '0.05'}, {100, '0.1'}, {250, '0.25'}, {500, '0.5'}, {1000, '1'}, {2500, '2.5'},
  {5000, '5'}, {10000, '10'}, {30000, '30'}, {60000, '60'}, {120000, '120'},
  {300000, '300'}, {600000, '600'}, {1800000, '1800'}, {3600000, '3600'},
}

local function observe(stats_key, phase, ms)
  if ms == nil or ms < 0 then return end
  local le = '+Inf'
  for _, b in ipairs(LATENCY_BUCKETS) do
    if ms <= b[1] then le = b[2]; break end
  end
  redis.call('HINCRBY', stats_key, 'lat:' .. phase .. ':le:' .. le, 1)
  redis.call('HINCRBY', stats_key, 'lat:' .. phase .. ':sum_ms', ms)
end

-- Count a task's end. 'ran' is true when the attempt ended through its agent
-- (finish), so its queue / schedule / run phases are its own; a task failed by
-- the reaper or cancelled counts, but only in the phases that mean something.
local function record_end(stats_key, task_key, outcome, reason, now, ran)
  redis.call('HINCRBY', stats_key, 'finished:' .. outcome, 1)
  if outcome == STATE.FAILED then
    redis.call('HINCRBY', stats_key, 'failed:' .. (reason ~= '' and reason or 'unknown'), 1)
  end
  if outcome == STATE.CANCELLED then return end
  local t = redis.call('HMGET', task_key, 'created_at', 'requeued_at', 'claimed_at', 'started_at')
  local created, requeued = tonumber(t[1]), tonumber(t[2])
  local claimed, started = tonumber(t[3]), tonumber(t[4])
  if created then observe(stats_key, 'total', now - created) end
  if not ran or not claimed then return end
  -- the queue wait of the attempt that ran: from its (re)queueing to its claim
  local queued = requeued or created
  if queued and queued <= claimed then observe(stats_key, 'queue', claimed - queued) end
  -- started_at may be left from an earlier attempt that got further: only this attempt's counts
  if started and started >= claimed then
    observe(stats_key, 'schedule', started - claimed)
    observe(stats_key, 'run', now - started)
  end
end

-- The two ways a task that was held, and no longer is, leaves its attempt (recover.lua,
-- release.lua): both scripts' KEYS are task, history, events, leases, pending, queue,
-- device, stats, passed here as ``K``. ``detail`` is the event's own fields.

-- Failed for good: the reason and its one-line error, counted in the stats, an event.
local function fail_unheld(K, maxlen, task_id, owner, reason, msg, now, detail)
  redis.call('HSET', K[1], 'state', STATE.FAILED, 'agent', '', 'reason', reason, 'error', msg,
             'finished_at', now, 'updated_at', now)
  record_end(K[8], K[1], STATE.FAILED, reason, now, false)
  detail.state, detail.reason, detail.error = STATE.FAILED, reason, msg
  emit(K[2], K[3], maxlen, task_id, owner, STATE.FAILED, detail)
end

-- Back to the queue at its old fair-share score (it has waited its turn already), with a
-- fresh work pointer; the event says where it now stands.
local function requeue(K, maxlen, task_id, owner, score, now, detail)
  redis.call('HSET', K[1], 'state', STATE.QUEUED, 'agent', '', 'updated_at', now, 'requeued_at', now)
  redis.call('HINCRBY', K[8], 'requeued', 1)
  redis.call('ZADD', K[5], score, task_id)
  redis.call('XADD', K[6], '*', 'task', task_id)
  redis.call('HINCRBY', K[7], 'queued:' .. owner, 1)
  detail.state = STATE.QUEUED
  detail.position = redis.call('ZRANK', K[5], task_id) + 1
  emit(K[2], K[3], maxlen, task_id, owner, STATE.QUEUED, detail)
end
