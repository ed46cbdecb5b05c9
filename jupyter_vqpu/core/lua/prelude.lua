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
  if outcome == 'failed' then
    redis.call('HINCRBY', stats_key, 'failed:' .. (reason ~= '' and reason or 'unknown'), 1)
  end
  if outcome == 'cancelled' then return end
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
